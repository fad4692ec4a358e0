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

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ringmq_engine::client::ClientOptions;
use ringmq_engine::codec::{Protocol, QoS};
use ringmq_net::client::ClientConfig;
use ringmq_net::clock::Clock;
use ringmq_net::conn::DriverConfig;

use crate::cli::{ConnectArgs, Topology, Version};
use crate::stats::{Live, Recorder};
use crate::tracker::SeqTracker;

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
/// Unsent bytes at which a publisher stops queueing and waits for its
/// writer, in bytes.
const PUBLISH_OUTGOING_MAX_BYTES: usize = 64 * 1024;
/// `start_ns` before the start is known.
pub const NOT_STARTED: u64 = u64::MAX;

/// What kind of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Pub,
    Sub,
    PubSub,
    Conn,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pub => "pub",
            Scenario::Sub => "sub",
            Scenario::PubSub => "pubsub",
            Scenario::Conn => "conn",
        }
    }
}

/// A fully resolved run: everything the threads need, shared read-only.
#[derive(Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub client_prefix: String,
    pub username: Option<Bytes>,
    pub password: Option<Bytes>,
    pub keep_alive_s: u16,
    pub threads: usize,
    pub warmup_ns: u64,
    pub duration_ns: u64,
    pub drain_ns: u64,
    pub qos: QoS,
    pub size_bytes: usize,
    /// Messages per second per publisher; 0 = unlimited.
    pub rate_per_pub: f64,
    /// Messages per publisher; `u64::MAX` = no limit.
    pub count: u64,
    pub inflight: u16,
    pub retain: bool,
    pub pubs: u32,
    pub subs: u32,
    pub topology: Option<Topology>,
    /// Topic of each publisher.
    pub pub_topics: Vec<Bytes>,
    /// `sub` scenario: filter of each subscriber.
    pub sub_filters: Vec<Bytes>,
    // conn scenario
    pub conn_count: u64,
    pub conn_rate_per_s: f64,
    pub conn_concurrency: usize,
    pub conns_per_source: u64,
}

impl Plan {
    /// Client options shared by every connection of the run.
    pub fn client_options(&self, role: &str, index: u64) -> ClientOptions {
        let id = format!("{}-{role}-{index}", self.client_prefix);
        let mut o = ClientOptions::new(self.protocol, Bytes::from(id));
        o.keep_alive_s = self.keep_alive_s;
        o.username = self.username.clone();
        o.password = self.password.clone();
        o.inflight_max = self.inflight.max(1);
        // An unpaced QoS 0 publisher stops at this much unsent data and
        // waits for the writer: the closed loop that paces it.
        o.outgoing_max_bytes = PUBLISH_OUTGOING_MAX_BYTES;
        o
    }

    /// Driver settings sized for this run's payloads.
    pub fn client_config(&self, role: &str) -> ClientConfig {
        let packet_max = ringmq_engine::client::PACKET_SIZE_MAX_BYTES_DEFAULT as usize;
        let chunk = match role {
            "conn" => 512,
            _ => 64 * 1024,
        };
        ClientConfig {
            driver: DriverConfig {
                read_chunk_bytes: chunk,
                read_buffer_max_bytes: packet_max + chunk,
                close_flush_timeout_ms: 2_000,
            },
            // Subscribers take each read's events before the next read, so
            // the read buffer is unshared again (reused, not reallocated).
            // Publishers' events (acks) hold no buffer: let reads run ahead.
            events_pause_at: if role == "pub" { 4096 } else { 1 },
            ..ClientConfig::default()
        }
    }

    /// Publishers handled by `thread`.
    pub fn pubs_of(&self, thread: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.pubs).filter(move |p| *p as usize % self.threads == thread)
    }

    /// Subscribers handled by `thread`.
    pub fn subs_of(&self, thread: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.subs).filter(move |s| *s as usize % self.threads == thread)
    }

    /// Does subscriber `sub` receive publisher `publisher`'s messages?
    pub fn wired(&self, sub: u32, publisher: u32) -> bool {
        match self.topology {
            Some(Topology::Pairs) => sub == publisher,
            Some(_) => true,
            None => false,
        }
    }

    /// Topic filters subscriber `sub` subscribes to.
    pub fn filters_of(&self, sub: u32) -> Vec<Bytes> {
        match self.topology {
            None => self
                .sub_filters
                .get(sub as usize)
                .cloned()
                .into_iter()
                .collect(),
            Some(Topology::Pairs) => self
                .pub_topics
                .get(sub as usize)
                .cloned()
                .into_iter()
                .collect(),
            Some(topology) => {
                let mut topics: Vec<Bytes> = self.pub_topics.clone();
                topics.sort();
                topics.dedup();
                if topology == Topology::Shared {
                    topics
                        .into_iter()
                        .map(|t| {
                            let mut f = b"$share/loadgen/".to_vec();
                            f.extend_from_slice(&t);
                            Bytes::from(f)
                        })
                        .collect()
                } else {
                    topics
                }
            }
        }
    }

    /// Messages a correct broker delivers, given what each publisher sent.
    pub fn expected_received(&self, sent: &[u64]) -> u64 {
        match self.topology {
            Some(Topology::Shared) => sent.iter().sum(),
            Some(Topology::Pairs) => (0..self.subs.min(self.pubs))
                .map(|i| sent.get(i as usize).copied().unwrap_or(0))
                .sum(),
            Some(_) => sent.iter().sum::<u64>() * u64::from(self.subs),
            None => 0,
        }
    }

    /// Source address for connection `index` of the conn scenario.
    pub fn source_ip(&self, index: u64) -> Option<IpAddr> {
        let block = index / self.conns_per_source.max(1);
        if block == 0 {
            return None;
        }
        match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_loopback() && block < 250 => Some(IpAddr::V4(
                std::net::Ipv4Addr::new(127, 0, 0, 1 + block as u8),
            )),
            _ => None,
        }
    }
}

/// Coordination between the main thread and the workers.
pub struct Shared {
    pub clock: Clock,
    /// When the run starts, in ns on `clock` (`NOT_STARTED` until set).
    pub start_ns: AtomicU64,
    pub ready: AtomicUsize,
    pub setup_error: Mutex<Option<String>>,
    pub setup_failed: AtomicBool,
    pub stop: AtomicBool,
    pub pubs_finished: AtomicU32,
    /// Worker threads that returned (or never started).
    pub threads_done: AtomicUsize,
    /// conn scenario: threads that opened all their connections.
    pub opened_threads: AtomicUsize,
    /// Messages each publisher sent (final once it finished).
    pub pub_sent: Vec<AtomicU64>,
    /// Latest publisher finish time (conn: when the last connection
    /// attempt ended), ns on `clock`.
    pub pubs_end_ns: AtomicU64,
    pub live: Vec<Live>,
}

impl Shared {
    pub fn new(plan: &Plan, clock: Clock) -> Self {
        Shared {
            clock,
            start_ns: AtomicU64::new(NOT_STARTED),
            ready: AtomicUsize::new(0),
            setup_error: Mutex::new(None),
            setup_failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            pubs_finished: AtomicU32::new(0),
            opened_threads: AtomicUsize::new(0),
            threads_done: AtomicUsize::new(0),
            pub_sent: (0..plan.pubs).map(|_| AtomicU64::new(0)).collect(),
            pubs_end_ns: AtomicU64::new(0),
            live: (0..plan.threads).map(|_| Live::default()).collect(),
        }
    }

    pub fn fail_setup(&self, message: String) {
        if let Ok(mut e) = self.setup_error.lock() {
            e.get_or_insert(message);
        }
        self.setup_failed.store(true, Ordering::SeqCst);
    }

    pub fn start_ns(&self) -> u64 {
        self.start_ns.load(Ordering::Acquire)
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Total over threads of one live counter.
    pub fn live_sum(&self, field: impl Fn(&Live) -> &AtomicU64) -> u64 {
        self.live
            .iter()
            .map(|l| field(l).load(Ordering::Relaxed))
            .sum()
    }
}

/// What a worker thread hands back.
pub struct ThreadResult {
    pub recorder: Recorder,
    /// (subscriber, publisher, tracker)
    pub trackers: Vec<(u32, u32, SeqTracker)>,
}

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
