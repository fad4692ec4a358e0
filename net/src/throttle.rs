//! Warnings about a condition that repeats while it lasts (an accept that
//! fails at the open-file limit every back-off, a hand-off refused for
//! each connection at it): the first is logged at once, then at most one
//! per [`WARN_INTERVAL_S`], with a `suppressed` field saying how many
//! were left out since, so that a sustained condition neither floods the
//! log nor goes unreported (docs/operations.md).

use std::time::{Duration, Instant};

/// The shortest time between two logged warnings of one [`WarnThrottle`],
/// in seconds.
pub const WARN_INTERVAL_S: u64 = 10;

/// Rate limit of one repeated warning (module docs).
#[derive(Debug)]
pub struct WarnThrottle {
    interval: Duration,
    /// When the last warning was logged; `None`: none yet.
    last: Option<Instant>,
    /// Warnings left out since the last one logged.
    suppressed: u64,
}

impl Default for WarnThrottle {
    fn default() -> Self {
        WarnThrottle::new(Duration::from_secs(WARN_INTERVAL_S))
    }
}

impl WarnThrottle {
    pub const fn new(interval: Duration) -> WarnThrottle {
        WarnThrottle {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// The condition happened at `now`: `Some(n)` when it is to be logged,
    /// `n` being how many were left out since the last one logged; `None`
    /// when this one is left out (and counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_per_interval_with_the_count_left_out() {
        let mut t = WarnThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0), "the first warning is logged");
        for ms in [1, 100, 5_000, 9_999] {
            assert_eq!(t.allow(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(
            t.allow(t0 + Duration::from_secs(10)),
            Some(4),
            "logged again after the interval, with the four left out"
        );
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.allow(t0 + Duration::from_secs(60)), Some(1));
        assert_eq!(
            t.allow(t0 + Duration::from_secs(120)),
            Some(0),
            "a condition that came back after a quiet spell is logged at once"
        );
    }
}
