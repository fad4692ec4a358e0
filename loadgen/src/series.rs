//! The per-second series of the measured window: messages sent and
//! received and latency p50 / p99 for each second. Each worker thread
//! counts into preallocated seconds (one slot per second of --duration, at
//! most [`SERIES_SECONDS_MAX`]); a second's latencies go into a small
//! fixed log-linear histogram (8 steps per octave, about 9 % resolution),
//! so recording never allocates and threads merge exactly by adding.

use serde::{Deserialize, Serialize};

/// Most seconds a series holds (one hour); longer runs keep the first hour.
pub const SERIES_SECONDS_MAX: usize = 3_600;
/// Sub-steps per power of two in a second's latency histogram.
const STEPS_PER_OCTAVE: usize = 8;
/// Octaves covered: 1 ns .. 2^36 ns (about 69 s).
const OCTAVES: usize = 36;
const BUCKETS: usize = OCTAVES * STEPS_PER_OCTAVE;

/// One second of one thread (or of the merged run).
#[derive(Clone)]
struct Second {
    sent: u64,
    received: u64,
    latency: [u32; BUCKETS],
}

impl Default for Second {
    fn default() -> Self {
        Second {
            sent: 0,
            received: 0,
            latency: [0; BUCKETS],
        }
    }
}

/// Bucket of a latency in ns: the octave (position of the top bit) and
/// the next three bits below it.
fn bucket(ns: u64) -> usize {
    let ns = ns.max(1);
    let octave = 63 - ns.leading_zeros() as usize;
    let step = if octave >= 3 {
        ((ns >> (octave - 3)) & 0b111) as usize
    } else {
        ((ns << (3 - octave)) & 0b111) as usize
    };
    (octave * STEPS_PER_OCTAVE + step).min(BUCKETS - 1)
}

/// The upper edge of a bucket, in ns (what a percentile reports).
fn bucket_high_ns(b: usize) -> f64 {
    let octave = (b / STEPS_PER_OCTAVE) as i32;
    let step = (b % STEPS_PER_OCTAVE) as f64;
    2f64.powi(octave) * (1.0 + (step + 1.0) / STEPS_PER_OCTAVE as f64)
}

/// A thread's (or the run's) seconds of the measured window.
pub struct Series {
    /// Start of the measured window, ns on the run's clock.
    start_ns: u64,
    seconds: Vec<Second>,
}

impl Series {
    /// Seconds for a window of `duration_ns` starting at `start_ns`
    /// (allocated here, before the run).
    pub fn new(start_ns: u64, duration_ns: u64) -> Series {
        let n = duration_ns
            .div_ceil(1_000_000_000)
            .min(SERIES_SECONDS_MAX as u64) as usize;
        Series {
            start_ns,
            seconds: vec![Second::default(); n],
        }
    }

    /// The measured window starts at `start_ns` (known once the run starts).
    pub fn set_start(&mut self, start_ns: u64) {
        self.start_ns = start_ns;
    }

    /// An empty series (no window: `conn`, or before the start is known).
    pub fn empty() -> Series {
        Series {
            start_ns: 0,
            seconds: Vec::new(),
        }
    }

    fn at(&mut self, now_ns: u64) -> Option<&mut Second> {
        let i = now_ns.checked_sub(self.start_ns)? / 1_000_000_000;
        self.seconds.get_mut(usize::try_from(i).ok()?)
    }

    /// `n` messages sent at `now_ns`.
    pub fn sent(&mut self, now_ns: u64, n: u64) {
        if let Some(s) = self.at(now_ns) {
            s.sent += n;
        }
    }

    /// One message received, counted in the second of `at_ns` (when it was
    /// sent if its payload says so, else when it arrived), with its latency
    /// if it has one.
    pub fn received(&mut self, at_ns: u64, latency_ns: Option<u64>) {
        if let Some(s) = self.at(at_ns) {
            s.received += 1;
            if let Some(ns) = latency_ns {
                s.latency[bucket(ns)] = s.latency[bucket(ns)].saturating_add(1);
            }
        }
    }

    /// A latency (PUBLISH to PUBACK) completed at `now_ns`, not a delivery.
    pub fn latency(&mut self, now_ns: u64, latency_ns: u64) {
        if let Some(s) = self.at(now_ns) {
            let b = bucket(latency_ns);
            s.latency[b] = s.latency[b].saturating_add(1);
        }
    }

    /// Adds another thread's seconds (same window).
    pub fn merge(&mut self, other: &Series) {
        if self.seconds.is_empty() {
            self.start_ns = other.start_ns;
            self.seconds = vec![Second::default(); other.seconds.len()];
        }
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            a.sent += b.sent;
            a.received += b.received;
            for (x, y) in a.latency.iter_mut().zip(b.latency.iter()) {
                *x = x.saturating_add(*y);
            }
        }
    }

    /// The points for the summary; `measured_s` cuts seconds after the
    /// window really ended (publishers that stopped early).
    pub fn points(&self, measured_s: f64) -> Vec<SecondPoint> {
        let n = (measured_s.ceil().max(0.0) as usize).min(self.seconds.len());
        self.seconds
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, s)| {
                let count: u64 = s.latency.iter().map(|&c| u64::from(c)).sum();
                let quantile = |q: f64| -> Option<f64> {
                    if count == 0 {
                        return None;
                    }
                    let rank = ((q * count as f64).ceil() as u64).max(1);
                    let mut seen = 0u64;
                    for (b, &c) in s.latency.iter().enumerate() {
                        seen += u64::from(c);
                        if seen >= rank {
                            return Some(bucket_high_ns(b) / 1000.0);
                        }
                    }
                    None
                };
                SecondPoint {
                    second: i as u32,
                    msgs_sent: s.sent,
                    msgs_received: s.received,
                    latency_samples: count,
                    latency_us_p50: quantile(0.5),
                    latency_us_p99: quantile(0.99),
                }
            })
            .collect()
    }
}

/// One second of the measured window in the JSON result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondPoint {
    /// Seconds since the measured window began.
    pub second: u32,
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub latency_samples: u64,
    /// Upper edge of the bucket (about 9 % wide) holding the percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us_p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us_p99: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn buckets_are_monotonic_and_within_nine_percent() {
        let mut last = 0;
        for ns in [1u64, 2, 3, 7, 8, 9, 100, 1_000, 12_345, 1_000_000, 60 * S] {
            let b = bucket(ns);
            assert!(b >= last, "{ns}");
            last = b;
            let high = bucket_high_ns(b);
            assert!(
                high >= ns as f64 && high <= ns as f64 * 1.13,
                "{ns}: {high}"
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn seconds_count_and_merge_exactly() {
        let mut a = Series::new(10 * S, 3 * S);
        let mut b = Series::new(10 * S, 3 * S);
        a.sent(10 * S, 5);
        b.sent(11 * S + 1, 7);
        for i in 1..=100u64 {
            a.received(10 * S + i, Some(i * 1_000));
        }
        b.received(12 * S, None);
        // Outside the window: before it and past its last second.
        a.sent(9 * S, 1);
        a.received(13 * S, Some(1));
        let mut run = Series::empty();
        run.merge(&a);
        run.merge(&b);
        let p = run.points(3.0);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].msgs_sent, p[0].msgs_received), (5, 100));
        assert_eq!((p[1].msgs_sent, p[2].msgs_received), (7, 1));
        let p50 = p[0].latency_us_p50.unwrap_or(0.0);
        let p99 = p[0].latency_us_p99.unwrap_or(0.0);
        assert!((50.0..=56.0).contains(&p50), "{p50}");
        assert!((99.0..=108.0).contains(&p99), "{p99}");
        assert_eq!(p[2].latency_us_p50, None);
        // A window that ended early keeps only its seconds.
        assert_eq!(run.points(1.2).len(), 2);
    }

    #[test]
    fn series_length_is_bounded() {
        assert_eq!(Series::new(0, 10 * S).seconds.len(), 10);
        assert_eq!(Series::new(0, 10 * S + 1).seconds.len(), 11);
        assert_eq!(
            Series::new(0, 100_000 * S).seconds.len(),
            SERIES_SECONDS_MAX
        );
    }
}
