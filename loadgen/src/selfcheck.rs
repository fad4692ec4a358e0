//! Was loadgen itself the bottleneck? Three signs, each with a limit:
//!
//! - a worker thread's own CPU use over the measured window (from
//!   `/proc/self/task/TID/stat`, sampled by the main thread at the window's
//!   start and end): near 100 % the thread cannot keep its schedule;
//! - the publishers' send lag (how late sends left against their intended
//!   times, paced runs), p99;
//! - the subscribers' receive backlog: from the read that brought a message
//!   to the moment its subscriber task started taking it, p99 (a busy
//!   thread delays its other tasks).
//!
//! [`SelfCheck::judge`] turns them into findings; the text summary, the
//! JSON line and the HTML report show them.

use serde::{Deserialize, Serialize};

/// A worker thread busier than this over the window, in % of one CPU, was
/// likely saturated.
pub const THREAD_BUSY_LIMIT_PCT: f64 = 90.0;
/// Send lag p99 above this, in µs, means publishers ran behind schedule.
pub const SEND_LAG_P99_LIMIT_US: f64 = 1_000.0;
/// Receive backlog p99 above this, in µs, means subscribers fell behind.
pub const RECV_BACKLOG_P99_LIMIT_US: f64 = 1_000.0;
/// A CPU window shorter than this, in ns, says nothing (ticks are 10 ms).
const CPU_WINDOW_MIN_NS: u64 = 200_000_000;

/// The kernel id of the calling thread (from `/proc/thread-self`).
pub fn current_thread_id() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// User + system CPU time of thread `tid` of this process, in clock ticks.
pub fn thread_cpu_ticks(tid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// utime + stime (fields 14 and 15) of a `/proc/.../stat` line; the name
/// (field 2, in parentheses) may hold spaces, so fields count from its end.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The worker threads' CPU use over a window, sampled from outside them.
#[derive(Debug, Default)]
pub struct CpuSampler {
    /// (tid, ticks at the start) per thread; `None` where unreadable.
    start: Vec<Option<(u64, u64)>>,
    start_ns: u64,
    busy_pct: Option<Vec<f64>>,
}

impl CpuSampler {
    pub fn started(&self) -> bool {
        !self.start.is_empty()
    }

    /// Samples at the window's start.
    pub fn begin(&mut self, tids: &[Option<u64>], now_ns: u64) {
        self.start = tids
            .iter()
            .map(|t| t.and_then(|tid| Some((tid, thread_cpu_ticks(tid)?))))
            .collect();
        self.start_ns = now_ns;
    }

    /// Samples at the window's end (once; later calls keep the first).
    pub fn end(&mut self, now_ns: u64) {
        if !self.started() || self.busy_pct.is_some() {
            return;
        }
        let window_ns = now_ns.saturating_sub(self.start_ns);
        if window_ns < CPU_WINDOW_MIN_NS {
            self.busy_pct = Some(Vec::new());
            return;
        }
        let window_s = window_ns as f64 / 1e9;
        let tick_s = 1.0 / ringmq_net::os::clock_ticks_per_s() as f64;
        let busy = self
            .start
            .iter()
            .filter_map(|s| {
                let (tid, before) = (*s)?;
                let after = thread_cpu_ticks(tid)?;
                Some(after.saturating_sub(before) as f64 * tick_s / window_s * 100.0)
            })
            .collect();
        self.busy_pct = Some(busy);
    }

    /// Each thread's CPU use in % of one CPU (empty if never sampled).
    pub fn busy_pct(&self) -> Vec<f64> {
        self.busy_pct.clone().unwrap_or_default()
    }
}

/// The verdict with the figures behind it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// Each worker thread's CPU use over the measured window, % of one CPU.
    pub thread_busy_pct: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag_us_p99: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recv_backlog_us_p99: Option<f64>,
    /// True when any finding says loadgen limited the run.
    pub bottleneck: bool,
    /// What was over its limit, in words.
    pub findings: Vec<String>,
}

impl SelfCheck {
    pub fn judge(
        thread_busy_pct: Vec<f64>,
        send_lag_us_p99: Option<f64>,
        recv_backlog_us_p99: Option<f64>,
    ) -> SelfCheck {
        let mut findings = Vec::new();
        for (t, busy) in thread_busy_pct.iter().enumerate() {
            if *busy >= THREAD_BUSY_LIMIT_PCT {
                findings.push(format!(
                    "thread {t} was {busy:.0}% busy (limit {THREAD_BUSY_LIMIT_PCT:.0}%): add --threads or cores"
                ));
            }
        }
        // Late with idle threads: the CPUs were taken by something else.
        let busiest = thread_busy_pct.iter().copied().fold(0.0, f64::max);
        let why = if !thread_busy_pct.is_empty() && busiest < THREAD_BUSY_LIMIT_PCT / 2.0 {
            format!(
                " while loadgen's threads were at most {busiest:.0}% busy: other processes held the CPUs"
            )
        } else {
            String::new()
        };
        if let Some(lag) = send_lag_us_p99.filter(|l| *l > SEND_LAG_P99_LIMIT_US) {
            findings.push(format!(
                "publishers ran late: send lag p99 {lag:.0} µs (limit {SEND_LAG_P99_LIMIT_US:.0} µs){why}"
            ));
        }
        if let Some(b) = recv_backlog_us_p99.filter(|b| *b > RECV_BACKLOG_P99_LIMIT_US) {
            findings.push(format!(
                "subscribers fell behind: receive backlog p99 {b:.0} µs (limit {RECV_BACKLOG_P99_LIMIT_US:.0} µs){why}"
            ));
        }
        SelfCheck {
            thread_busy_pct,
            send_lag_us_p99,
            recv_backlog_us_p99,
            bottleneck: !findings.is_empty(),
            findings,
        }
    }

    /// The figures in one line: "threads busy 41%, 38%; send lag p99 ...".
    pub fn figures(&self) -> String {
        let mut parts = Vec::new();
        if !self.thread_busy_pct.is_empty() {
            let busy: Vec<String> = self
                .thread_busy_pct
                .iter()
                .map(|b| format!("{b:.0}%"))
                .collect();
            parts.push(format!("threads busy {}", busy.join(", ")));
        }
        if let Some(l) = self.send_lag_us_p99 {
            parts.push(format!("send lag p99 {l:.0} µs"));
        }
        if let Some(b) = self.recv_backlog_us_p99 {
            parts.push(format!("receive backlog p99 {b:.0} µs"));
        }
        parts.join("; ")
    }

    /// The text summary's lines.
    pub fn text(&self) -> String {
        let figures = match self.figures() {
            f if f.is_empty() => "run too short to sample".to_string(),
            f => f,
        };
        if !self.bottleneck {
            return format!("  self-check: loadgen kept up ({figures})\n");
        }
        let mut s = format!(
            "  self-check: LOADGEN WAS THE BOTTLENECK ({figures}); figures measure loadgen, not only the broker:\n"
        );
        for f in &self.findings {
            s += &format!("    - {f}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_end_of_the_name() {
        let stat = "4242 (loadgen-0 (x)) R 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 1 0 5 6 7";
        assert_eq!(parse_cpu_ticks(stat), Some(281));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_threads_cpu_time_is_readable() {
        let tid = current_thread_id();
        assert!(tid.is_some());
        let before = tid.and_then(thread_cpu_ticks).unwrap_or(u64::MAX);
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i ^ (x >> 3));
        }
        std::hint::black_box(x);
        let after = tid.and_then(thread_cpu_ticks).unwrap_or(0);
        assert!(after >= before && before != u64::MAX, "{before} -> {after}");
    }

    #[test]
    fn findings_name_what_was_over_its_limit() {
        let ok = SelfCheck::judge(vec![40.0, 35.0], Some(80.0), Some(20.0));
        assert!(!ok.bottleneck, "{ok:?}");
        assert!(ok
            .text()
            .contains("kept up (threads busy 40%, 35%; send lag p99 80 µs"));
        let bad = SelfCheck::judge(vec![97.0, 50.0], Some(5_000.0), Some(3_000.0));
        assert!(bad.bottleneck);
        assert_eq!(bad.findings.len(), 3, "{bad:?}");
        assert!(bad.findings[0].starts_with("thread 0 was 97% busy"));
        assert!(bad.text().contains("LOADGEN WAS THE BOTTLENECK"));
        let json = serde_json::to_string(&bad).unwrap_or_default();
        let back: SelfCheck = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, bad);
    }
}
