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

use crate::cli::{ConnectArgs, Version};
use crate::plan::{Plan, Scenario, Shared, ThreadResult};

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
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The main thread's part: wait for setup, set the start, print progress,
/// decide when to stop.
fn coordinate(plan: &Plan, shared: &Shared, quiet: bool) -> Timeline {
    let clock = shared.clock;
    let clients = u64::from(plan.pubs) + u64::from(plan.subs);
    let setup_deadline = clock.now_ns() + (SETUP_TIMEOUT_MS + clients) * 1_000_000;
    while shared.ready.load(Ordering::SeqCst) < plan.threads {
        if shared.setup_failed.load(Ordering::SeqCst) {
            shared.stop.store(true, Ordering::SeqCst);
            return Timeline::default();
        }
        if clock.now_ns() > setup_deadline {
            shared.fail_setup("setup (connect + subscribe) timed out".into());
            shared.stop.store(true, Ordering::SeqCst);
            return Timeline::default();
        }
        sleep_ms(2);
    }
    let start_ns = clock.now_ns() + START_LEAD_NS;
    shared.start_ns.store(start_ns, Ordering::Release);
    let publish_end_ns = start_ns + plan.warmup_ns + plan.duration_ns;
    let mut progress = Progress::new(start_ns);
    let mut next_progress_ns = start_ns + PROGRESS_PERIOD_MS * 1_000_000;
    let mut drain_deadline: Option<u64> = None;
    let mut hold_deadline: Option<u64> = None;
    loop {
        sleep_ms(5);
        let now = clock.now_ns();
        if now >= next_progress_ns {
            next_progress_ns += PROGRESS_PERIOD_MS * 1_000_000;
            if !quiet {
                progress.print(plan, shared, now);
            }
        }
        // Safety nets: every run ends by itself, even if a thread failed or
        // a publisher is stuck.
        let all_threads_gone = shared.threads_done.load(Ordering::SeqCst) >= plan.threads;
        let overdue = plan.scenario != Scenario::Conn
            && now > publish_end_ns + plan.drain_ns + RUN_OVERDUE_NS;
        if overdue && !quiet {
            eprintln!("\nloadgen: warning: publishers did not finish in time; stopping");
        }
        let done = all_threads_gone
            || overdue
            || shared.setup_failed.load(Ordering::SeqCst)
            || match plan.scenario {
                Scenario::Sub => now >= publish_end_ns,
                Scenario::Conn => {
                    if shared.opened_threads.load(Ordering::SeqCst) < plan.threads {
                        false
                    } else {
                        // Hold for --duration after the last connection opened.
                        now >= *hold_deadline.get_or_insert(now + plan.duration_ns)
                    }
                }
                Scenario::Pub | Scenario::PubSub => {
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
            shared.stop.store(true, Ordering::Release);
            if !quiet {
                eprintln!();
            }
            return Timeline {
                start_ns,
                ..Timeline::default()
            };
        }
    }
}

struct Progress {
    start_ns: u64,
    last_ns: u64,
    last_sent: u64,
    last_received: u64,
}

impl Progress {
    fn new(start_ns: u64) -> Self {
        Progress {
            start_ns,
            last_ns: start_ns,
            last_sent: 0,
            last_received: 0,
        }
    }

    fn print(&mut self, plan: &Plan, shared: &Shared, now: u64) {
        let secs = (now - self.last_ns) as f64 / 1e9;
        let elapsed = (now - self.start_ns) as f64 / 1e9;
        let errors = shared.live_sum(|l| &l.errors);
        let line = if plan.scenario == Scenario::Conn {
            format!(
                "[{elapsed:6.1}s] connections open {}  failed {}  errors {errors}",
                shared.live_sum(|l| &l.conns_open),
                shared.live_sum(|l| &l.conns_failed)
            )
        } else {
            let sent = shared.live_sum(|l| &l.sent);
            let received = shared.live_sum(|l| &l.received);
            let line = format!(
                "[{elapsed:6.1}s] sent {:>10.0} msg/s  received {:>10.0} msg/s  total sent {sent} received {received}  errors {errors}",
                (sent - self.last_sent) as f64 / secs,
                (received - self.last_received) as f64 / secs,
            );
            self.last_sent = sent;
            self.last_received = received;
            line
        };
        self.last_ns = now;
        eprint!("\r{line}   ");
    }
}

/// Resolves --host/--port to one socket address.
pub fn resolve(c: &ConnectArgs) -> Result<SocketAddr, String> {
    (c.host.as_str(), c.port)
        .to_socket_addrs()
        .map_err(|e| format!("--host {}: {e}", c.host))?
        .next()
        .ok_or_else(|| format!("--host {}: no address", c.host))
}

pub fn protocol_of(v: Version) -> Protocol {
    match v {
        Version::V3 => Protocol::V3_1,
        Version::V4 => Protocol::V3_1_1,
        Version::V5 => Protocol::V5,
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
