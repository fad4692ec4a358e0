//! Thread-per-core runner: one monoio runtime per worker thread, each
//! owning a slice of the clients; the main thread coordinates phases
//! through a few atomics and prints the progress line.
//!
//! ```text
//! setup:   every thread connects its subscribers, subscribes, connects
//!          its publishers, then counts itself `ready`
//! start:   main sets `start_ns` (shared clock); warm-up, then the measured window
//! publish: publishers stop at start + warm-up + duration (or --count)
//! drain:   main waits until every expected message arrived or --drain passed
//! stop:    main sets `stop`; threads disconnect and return their recorders
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ringmq_engine::codec::Protocol;
use ringmq_net::clock::Clock;

use crate::cli::{ConnectArgs, ProtocolVersion};
use crate::plan::{Plan, Scenario, Shared, ThreadResult};
use crate::progress::{Phase, Progress};
use crate::selfcheck::CpuSampler;

/// Progress line period, in ms.
const PROGRESS_PERIOD_MS: u64 = 1_000;
/// How long threads get to connect and subscribe before the run is
/// abandoned, in ms (plus 1 ms per client).
const SETUP_TIMEOUT_MS: u64 = 30_000;
/// Lead time between "all ready" and the first send, in ns, so every thread
/// sees `start_ns` before it passes.
const START_LEAD_NS: u64 = 20_000_000;
/// How long past the planned end (publishing + drain) a run may go before
/// the main thread stops it anyway, in ns.
const RUN_OVERDUE_NS: u64 = 10_000_000_000;
/// Runs the plan: spawns the workers, coordinates, collects.
pub fn run(plan: Arc<Plan>, quiet: bool) -> Result<(Vec<ThreadResult>, Timeline), String> {
    let clock = Clock::new();
    let shared = Arc::new(Shared::new(&plan, clock));
    let mut handles = Vec::new();
    for t in 0..plan.threads {
        let plan = plan.clone();
        let shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || crate::worker::thread_main(t, plan, shared))
            .map_err(|e| format!("spawning worker thread: {e}"))?;
        handles.push(handle);
    }
    #[cfg(not(target_os = "linux"))]
    if plan.rx_thread {
        return Err("--rx-thread needs Linux (SO_TIMESTAMPNS, epoll)".into());
    }
    #[cfg(target_os = "linux")]
    if plan.rx_thread {
        let t = plan.threads;
        let (plan, shared) = (plan.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name("loadgen-rx".into())
            .spawn(move || crate::rxthread::rx_thread_main(t, plan, shared))
            .map_err(|e| format!("spawning the receiving thread: {e}"))?;
        handles.push(handle);
    }
    let timeline = coordinate(&plan, &shared, quiet);
    let mut results = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Some(r)) => results.push(r),
            Ok(None) => {}
            Err(_) => return Err("a worker thread panicked".into()),
        }
    }
    if shared.setup_failed.load(Ordering::SeqCst) {
        let e = shared.setup_error.lock().ok().and_then(|e| e.clone());
        return Err(e.unwrap_or_else(|| "setup failed".into()));
    }
    let mut timeline = timeline;
    timeline.pub_sent = shared
        .pub_sent
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    timeline.pubs_end_ns = shared.pubs_end_ns.load(Ordering::SeqCst);
    Ok((results, timeline))
}

/// When things happened, for the summary.
#[derive(Debug, Default)]
pub struct Timeline {
    pub start_ns: u64,
    pub pubs_end_ns: u64,
    pub pub_sent: Vec<u64>,
    /// Each worker thread's CPU use over the measured window, %.
    pub thread_busy_pct: Vec<f64>,
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The main thread's part: wait for setup, set the start, print progress,
/// decide when to stop.
fn coordinate(plan: &Plan, shared: &Shared, quiet: bool) -> Timeline {
    let clock = shared.clock;
    let begin_ns = clock.now_ns();
    let mut progress = Progress::new(begin_ns, quiet);
    let mut next_progress_ns = begin_ns + PROGRESS_PERIOD_MS * 1_000_000;
    let clients = u64::from(plan.pubs) + u64::from(plan.subs);
    let setup_deadline = begin_ns + (SETUP_TIMEOUT_MS + clients) * 1_000_000;
    while shared.ready.load(Ordering::SeqCst) < plan.thread_total() {
        if shared.setup_failed.load(Ordering::SeqCst) {
            shared.stop.store(true, Ordering::SeqCst);
            progress.finish();
            return Timeline::default();
        }
        let now = clock.now_ns();
        if now > setup_deadline {
            shared.fail_setup("setup (connect + subscribe) timed out".into());
            shared.stop.store(true, Ordering::SeqCst);
            progress.finish();
            return Timeline::default();
        }
        if now >= next_progress_ns {
            next_progress_ns += PROGRESS_PERIOD_MS * 1_000_000;
            progress.print(plan, shared, Phase::Connecting, None, now);
        }
        sleep_ms(2);
    }
    let start_ns = clock.now_ns() + START_LEAD_NS;
    shared.start_ns.store(start_ns, Ordering::Release);
    progress.started(start_ns);
    let publish_end_ns = start_ns + plan.warmup_ns + plan.duration_ns;
    let mut cpu = CpuSampler::default();
    let tids: Vec<Option<u64>> = shared
        .tids
        .iter()
        .map(|t| Some(t.load(Ordering::Relaxed)).filter(|t| *t != 0))
        .collect();
    let mut drain_deadline: Option<u64> = None;
    let mut hold_deadline: Option<u64> = None;
    loop {
        sleep_ms(5);
        let now = clock.now_ns();
        // The self-check's CPU window: the measured one (conn: until every
        // connection opened).
        if !cpu.started() && now >= start_ns + plan.warmup_ns {
            cpu.begin(&tids, now);
        }
        let window_over = match plan.scenario {
            Scenario::Conn => shared.opened_threads.load(Ordering::SeqCst) >= plan.threads,
            Scenario::Sub => now >= publish_end_ns,
            Scenario::Retained => shared.retained_received.load(Ordering::SeqCst) >= plan.threads,
            Scenario::Pub | Scenario::PubSub | Scenario::ReqResp => {
                now >= publish_end_ns || shared.pubs_finished.load(Ordering::SeqCst) >= plan.pubs
            }
        };
        if window_over {
            cpu.end(now);
        }
        if now >= next_progress_ns {
            next_progress_ns += PROGRESS_PERIOD_MS * 1_000_000;
            let window = Window {
                start_ns,
                publish_end_ns,
                drain_deadline,
                hold_deadline,
            };
            let (phase, left_ns) = window.phase_at(plan, now);
            progress.print(plan, shared, phase, left_ns, now);
        }
        // Safety nets: every run ends by itself, even if a thread failed or
        // a publisher is stuck.
        let all_threads_gone = shared.threads_done.load(Ordering::SeqCst) >= plan.thread_total();
        let overdue = plan.scenario != Scenario::Conn
            && now > publish_end_ns + plan.drain_ns + RUN_OVERDUE_NS;
        if overdue {
            progress.warn("publishers did not finish in time; stopping");
        }
        let done = all_threads_gone
            || overdue
            || shared.setup_failed.load(Ordering::SeqCst)
            || match plan.scenario {
                Scenario::Sub => now >= publish_end_ns,
                // Each thread stores, receives and clears, then returns.
                Scenario::Retained => false,
                Scenario::Conn => {
                    if shared.opened_threads.load(Ordering::SeqCst) < plan.threads {
                        false
                    } else {
                        // Hold for --duration after the last connection opened.
                        now >= *hold_deadline.get_or_insert(now + plan.duration_ns)
                    }
                }
                Scenario::Pub | Scenario::PubSub | Scenario::ReqResp => {
                    if shared.pubs_finished.load(Ordering::SeqCst) < plan.pubs {
                        false
                    } else {
                        let deadline = *drain_deadline.get_or_insert(now + plan.drain_ns);
                        let sent: Vec<u64> = shared
                            .pub_sent
                            .iter()
                            .map(|a| a.load(Ordering::SeqCst))
                            .collect();
                        let complete = plan.scenario == Scenario::Pub
                            || shared.live_sum(|l| &l.received) >= plan.expected_received(&sent);
                        complete || now >= deadline
                    }
                }
            };
        if done {
            cpu.end(now);
            shared.stop.store(true, Ordering::Release);
            progress.finish();
            return Timeline {
                start_ns,
                thread_busy_pct: cpu.busy_pct(),
                ..Timeline::default()
            };
        }
    }
}

/// The times that decide a started run's phase (ns on the run's clock).
struct Window {
    start_ns: u64,
    /// Publishers stop here (start + warm-up + duration).
    publish_end_ns: u64,
    /// Set once every publisher finished: the drain ends here at the latest.
    drain_deadline: Option<u64>,
    /// `conn`: set once every connection opened; the hold ends here.
    hold_deadline: Option<u64>,
}

impl Window {
    /// The phase at `now`, and the time left in it where it is known.
    fn phase_at(&self, plan: &Plan, now: u64) -> (Phase, Option<u64>) {
        let left = |end: u64| Some(end.saturating_sub(now));
        if plan.scenario == Scenario::Conn {
            return match self.hold_deadline {
                Some(end) => (Phase::Holding, left(end)),
                None => (Phase::Connecting, None),
            };
        }
        let warmup_end_ns = self.start_ns + plan.warmup_ns;
        match self.drain_deadline {
            Some(end) => (Phase::Drain, left(end)),
            None if now < warmup_end_ns => (Phase::WarmUp, left(warmup_end_ns)),
            None => (Phase::Measuring, left(self.publish_end_ns)),
        }
    }
}

/// --port, or the transport's default.
pub fn port_of(c: &ConnectArgs) -> u16 {
    c.port.unwrap_or(c.transport.default_port())
}

/// Resolves --host/--port to one socket address.
pub fn resolve(c: &ConnectArgs) -> Result<SocketAddr, String> {
    let port = port_of(c);
    (c.host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("--host {}: {e}", c.host))?
        .next()
        .ok_or_else(|| format!("--host {}: no address", c.host))
}

pub fn protocol_of(v: ProtocolVersion) -> Protocol {
    match v {
        ProtocolVersion::V3 => Protocol::V3_1,
        ProtocolVersion::V4 => Protocol::V3_1_1,
        ProtocolVersion::V5 => Protocol::V5,
    }
}

/// Connections one source address can hold to one destination: the
/// ephemeral port range, less a margin, capped at 50_000.
pub fn default_conns_per_source() -> u64 {
    const CAP: u64 = 50_000;
    const MARGIN: u64 = 1_000;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|v| v.parse::<u64>().ok());
            Some((it.next()?, it.next()?))
        });
    match range {
        Some((low, high)) if high > low + MARGIN => (high - low + 1 - MARGIN).min(CAP),
        _ => 20_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn phases_follow_warm_up_measuring_drain() {
        let plan = Plan::example(Scenario::PubSub);
        let mut w = Window {
            start_ns: 10 * S,
            publish_end_ns: 13 * S,
            drain_deadline: None,
            hold_deadline: None,
        };
        assert_eq!(w.phase_at(&plan, 10 * S), (Phase::WarmUp, Some(S)));
        assert_eq!(w.phase_at(&plan, 11 * S), (Phase::Measuring, Some(2 * S)));
        // Publishers late past the window: still measuring, nothing left.
        assert_eq!(w.phase_at(&plan, 14 * S), (Phase::Measuring, Some(0)));
        w.drain_deadline = Some(15 * S);
        assert_eq!(w.phase_at(&plan, 14 * S), (Phase::Drain, Some(S)));
    }

    #[test]
    fn conn_phases_are_connecting_then_holding() {
        let plan = Plan::example(Scenario::Conn);
        let mut w = Window {
            start_ns: 0,
            publish_end_ns: 3 * S,
            drain_deadline: None,
            hold_deadline: None,
        };
        assert_eq!(w.phase_at(&plan, 2 * S), (Phase::Connecting, None));
        w.hold_deadline = Some(12 * S);
        assert_eq!(w.phase_at(&plan, 2 * S), (Phase::Holding, Some(10 * S)));
    }
}
