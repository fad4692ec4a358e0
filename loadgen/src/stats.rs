//! Counters and histograms: live per-thread atomics for the progress line,
//! per-thread recorders merged at the end, and the [`Summary`] printed as
//! text or one JSON line.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::meta::Meta;
use crate::selfcheck::SelfCheck;
use crate::series::{SecondPoint, Series};

/// Latencies are recorded in ns from 1 ns to 60 s, 3 significant digits.
const LATENCY_MAX_NS: u64 = 60_000_000_000;
const LATENCY_SIGFIG: u8 = 3;
/// Error messages kept per thread for the summary.
const ERROR_SAMPLES_MAX: usize = 5;

pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIG) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts.
        Err(e) => unreachable!("histogram bounds: {e:?}"),
    }
}

/// Live counters of one worker thread, read by the progress line. Padded to
/// its own cache lines so threads do not share a line.
#[derive(Default)]
#[repr(align(128))]
pub struct Live {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub conns_open: AtomicU64,
    pub conns_failed: AtomicU64,
}

impl Live {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What one worker thread measured.
pub struct Recorder {
    /// End-to-end (pubsub), PUBACK/PUBCOMP (pub), or connect (conn) latency, ns.
    pub latency: Histogram<u64>,
    /// Paced publishers: how late each send was against its intended time,
    /// ns (the generator's own lag, included in end-to-end latency).
    pub send_lag: Histogram<u64>,
    /// Subscribers: from the read that brought a message to the moment
    /// its task started taking it, ns (the self-check's receive backlog).
    pub recv_backlog: Histogram<u64>,
    pub sent_total: u64,
    /// Sent with a latency origin inside the measured window.
    pub sent_measured: u64,
    pub received_total: u64,
    /// Received and inside the measured window.
    pub received_measured: u64,
    /// Messages without a loadgen header.
    pub foreign: u64,
    pub acked: u64,
    /// PUBACK / PUBREC / PUBCOMP with a failure reason code (v5).
    pub ack_failures: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub conns_opened: u64,
    pub conns_failed: u64,
    pub conns_dropped: u64,
    /// `retained`: messages a subscriber never received.
    pub missing: u64,
    /// MQTT bytes subscribers received / publishers sent, whole run
    /// (inside TLS and WebSocket framing).
    pub mqtt_bytes_received: u64,
    pub mqtt_bytes_sent: u64,
    /// Per-second counts and latencies of the measured window.
    pub series: Series,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder::with_series(Series::empty())
    }

    /// A recorder whose per-second series was allocated before the run.
    pub fn with_series(series: Series) -> Self {
        Recorder {
            series,
            latency: new_histogram(),
            send_lag: new_histogram(),
            recv_backlog: new_histogram(),
            sent_total: 0,
            sent_measured: 0,
            received_total: 0,
            received_measured: 0,
            foreign: 0,
            acked: 0,
            ack_failures: 0,
            errors: 0,
            error_samples: Vec::new(),
            conns_opened: 0,
            conns_failed: 0,
            conns_dropped: 0,
            missing: 0,
            mqtt_bytes_received: 0,
            mqtt_bytes_sent: 0,
        }
    }

    pub fn error(&mut self, live: &Live, message: impl FnOnce() -> String) {
        self.errors += 1;
        Live::add(&live.errors, 1);
        if self.error_samples.len() < ERROR_SAMPLES_MAX {
            self.error_samples.push(message());
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.send_lag.add(&other.send_lag);
        let _ = self.recv_backlog.add(&other.recv_backlog);
        self.sent_total += other.sent_total;
        self.sent_measured += other.sent_measured;
        self.received_total += other.received_total;
        self.received_measured += other.received_measured;
        self.foreign += other.foreign;
        self.acked += other.acked;
        self.ack_failures += other.ack_failures;
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES_MAX {
                self.error_samples.push(e);
            }
        }
        self.conns_opened += other.conns_opened;
        self.conns_failed += other.conns_failed;
        self.conns_dropped += other.conns_dropped;
        self.missing += other.missing;
        self.mqtt_bytes_received += other.mqtt_bytes_received;
        self.mqtt_bytes_sent += other.mqtt_bytes_sent;
        self.series.merge(&other.series);
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// The result of one run: printed as text, written as one JSON line, read
/// back by `loadgen report`. Units are in the field names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
    pub broker: String,
    /// "tcp", "tls", "ws" or "wss" (absent in files from before TLS: tcp).
    #[serde(default = "tcp")]
    pub transport: String,
    pub mqtt_version: u8,
    pub qos: u8,
    pub payload_bytes: usize,
    pub pubs: u32,
    pub subs: u32,
    pub threads: usize,
    /// "io_uring" or "legacy" (epoll).
    pub driver: String,
    /// 0 = unlimited.
    pub rate_msgs_per_s_per_pub: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Length of the window the rates are computed over.
    pub measured_s: f64,
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub msgs_per_s_sent: f64,
    pub msgs_per_s_received: f64,
    /// Including warm-up and drain.
    pub msgs_sent_total: u64,
    pub msgs_received_total: u64,
    /// What a correct broker delivers for `msgs_sent_total` (pubsub only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_expected_total: Option<u64>,
    /// "end_to_end", "publish_ack", "connect", "round_trip", "retained_all" or "none".
    pub latency_kind: String,
    /// Where end-to-end latency ends: "kernel" (`--rx-thread`: the
    /// kernel's receive time of the read that brought the message); absent:
    /// when loadgen's subscriber task processed that read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_time: Option<String>,
    pub latency_samples: u64,
    pub latency_us_min: f64,
    pub latency_us_mean: f64,
    pub latency_us_p50: f64,
    pub latency_us_p90: f64,
    pub latency_us_p99: f64,
    pub latency_us_p99_9: f64,
    pub latency_us_p99_99: f64,
    pub latency_us_max: f64,
    /// `None` where loss cannot be known (sub alone counts gaps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    pub duplicated: u64,
    pub reordered: u64,
    pub foreign: u64,
    pub acked: u64,
    pub ack_failures: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
    /// MQTT bytes (packets, inside TLS / WebSocket) subscribers received and
    /// publishers sent over the whole run, CONNACK / SUBACK / acks included.
    #[serde(default)]
    pub mqtt_bytes_received_total: u64,
    #[serde(default)]
    pub mqtt_bytes_sent_total: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conns_requested: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conns_opened: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conns_failed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conns_dropped: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conns_per_s: Option<f64>,
    /// `conn --rate` (0 = as fast as possible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conns_target_per_s: Option<f64>,
    /// `shared`: unique messages each consumer of the group received.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_subscriber_received: Vec<u64>,
    /// Paced runs: lateness of sends against their intended times (the
    /// load generator's own lag; already part of the end-to-end latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag_us_p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag_us_p99: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag_us_max: Option<f64>,
    /// [percentile (0-100), latency µs] pairs for charts.
    pub latency_us_percentiles: Vec<(f64, f64)>,
    /// Each second of the measured window (absent in older files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_second: Vec<SecondPoint>,
    /// Date, command line, versions, machine, parameters (absent in older
    /// files: empty).
    #[serde(default)]
    pub meta: Meta,
    /// Was loadgen itself the bottleneck (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_check: Option<SelfCheck>,
}

fn tcp() -> String {
    "tcp".into()
}

impl Summary {
    /// Fills the latency fields from a histogram of nanoseconds.
    pub fn set_latency(&mut self, kind: &str, h: &Histogram<u64>) {
        self.latency_kind = kind.to_string();
        self.latency_samples = h.len();
        if h.is_empty() {
            return;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        self.latency_us_min = us(h.min());
        self.latency_us_mean = h.mean() / 1000.0;
        self.latency_us_p50 = us(h.value_at_quantile(0.5));
        self.latency_us_p90 = us(h.value_at_quantile(0.9));
        self.latency_us_p99 = us(h.value_at_quantile(0.99));
        self.latency_us_p99_9 = us(h.value_at_quantile(0.999));
        self.latency_us_p99_99 = us(h.value_at_quantile(0.9999));
        self.latency_us_max = us(h.max());
        self.latency_us_percentiles = h
            .iter_quantiles(5)
            .map(|v| (v.quantile_iterated_to() * 100.0, us(v.value_iterated_to())))
            .collect();
    }

    /// Fills the send-lag fields (paced runs only).
    pub fn set_send_lag(&mut self, h: &Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        self.send_lag_us_p50 = Some(h.value_at_quantile(0.5) as f64 / 1000.0);
        self.send_lag_us_p99 = Some(h.value_at_quantile(0.99) as f64 / 1000.0);
        self.send_lag_us_max = Some(h.max() as f64 / 1000.0);
    }
}

/// The HdrHistogram percentile distribution text (as Java's
/// `outputPercentileDistribution` writes it, values in µs), which the
/// HdrHistogram plotter reads.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let us = |ns: f64| ns / 1000.0;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = us(v.value_iterated_to() as f64);
            if q < 1.0 {
                s += &format!(
                    "{value:12.3} {q:14.12} {total:10} {:14.2}\n",
                    1.0 / (1.0 - q)
                );
            } else {
                s += &format!("{value:12.3} {q:14.12} {total:10}\n");
            }
        }
    }
    let sub_buckets = 1u64 << (2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil() as u32;
    s += &format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n",
        us(h.mean()),
        us(h.stdev())
    );
    s += &format!(
        "#[Max     = {:12.3}, Total count    = {:12}]\n",
        us(h.max() as f64),
        h.len()
    );
    s += &format!(
        "#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        h.buckets(),
        sub_buckets
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_latency_and_json_round_trip() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.saturating_record(v * 1000);
        }
        let mut s = Summary {
            scenario: "pubsub".into(),
            ..Summary::default()
        };
        s.set_latency("end_to_end", &h);
        assert!((s.latency_us_p50 - 5000.0).abs() < 10.0);
        assert!((s.latency_us_max - 10_000.0).abs() < 10.0);
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert!(json.contains("\"latency_us_p99\""));
        let back: Summary = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back.latency_samples, 10_000);
        assert!(!s.text().is_empty());
    }

    #[test]
    fn json_from_before_metadata_and_series_still_loads() {
        // A line as loadgen wrote it before `meta`, `per_second` and `transport`.
        let old = r#"{"scenario":"pubsub","broker":"127.0.0.1:1883","mqtt_version":4,"qos":0,"payload_bytes":64,"pubs":1,"subs":10,"threads":1,"driver":"io_uring","rate_msgs_per_s_per_pub":1000.0,"warmup_s":2.0,"duration_s":10.0,"measured_s":10.0,"msgs_sent":10000,"msgs_received":100000,"msgs_per_s_sent":1000.0,"msgs_per_s_received":10000.0,"msgs_sent_total":12000,"msgs_received_total":120000,"latency_kind":"end_to_end","latency_samples":100000,"latency_us_min":50.0,"latency_us_mean":90.0,"latency_us_p50":80.0,"latency_us_p90":120.0,"latency_us_p99":300.0,"latency_us_p99_9":900.0,"latency_us_p99_99":1500.0,"latency_us_max":2000.0,"lost":0,"duplicated":0,"reordered":0,"foreign":0,"acked":0,"ack_failures":0,"errors":0,"latency_us_percentiles":[[0.0,50.0],[50.0,80.0]]}"#;
        let s: Summary = match serde_json::from_str(old) {
            Ok(s) => s,
            Err(e) => panic!("old JSON: {e}"),
        };
        assert_eq!(s.transport, "tcp");
        assert!(s.per_second.is_empty());
        assert!(s.meta.date_utc.is_empty() && s.meta.broker_version.is_none());
        // And a new line keeps what was written.
        let mut s = s;
        s.meta.date_utc = "2026-11-30T01:53:12Z".into();
        s.meta.machine.cores = 8;
        s.meta.parameters.insert("inflight".into(), "64".into());
        s.per_second = vec![crate::series::SecondPoint {
            second: 0,
            msgs_sent: 5,
            ..Default::default()
        }];
        let json = serde_json::to_string(&s).unwrap_or_default();
        let back: Summary = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back.meta.date_utc, "2026-11-30T01:53:12Z");
        assert_eq!(back.meta.machine.cores, 8);
        assert_eq!(
            back.meta.parameters.get("inflight").map(String::as_str),
            Some("64")
        );
        assert_eq!(back.per_second, s.per_second);
    }

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut h = new_histogram();
        for v in [1_000u64, 2_000, 3_000, 1_000_000] {
            h.saturating_record(v);
        }
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("#[Max     =     1000.447"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"));
        let last_row = text
            .lines()
            .rfind(|l| !l.starts_with('#'))
            .unwrap_or_default();
        assert!(last_row.contains("1.000000000000"), "{last_row}");
        assert!(last_row.trim_end().ends_with('4'), "{last_row}");
    }
}
