//! What a run is and how its threads coordinate: the resolved [`Plan`]
//! (shared read-only), the [`Shared`] atomics between the main thread and
//! the workers, what a worker hands back ([`ThreadResult`]), and the two
//! waits every worker does ([`wait_start`], [`wait_stop`]) and how a
//! thread connects its clients ([`connect_all`]). The runner
//! (`run`), the pub/sub workers (`worker`) and the conn scenario (`conn`)
//! all build on this module; it uses none of them.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ringmq_client::{ClientConfig, MqttConnection, Transport};
use ringmq_engine::client::ClientOptions;
use ringmq_engine::codec::{Protocol, QoS};
use ringmq_net::clock::Clock;
use ringmq_net::conn::DriverConfig;

use crate::cli::Topology;
use crate::stats::{Live, Recorder};
use crate::tracker::SeqTracker;

/// Unsent bytes at which a publisher stops queueing and waits for its
/// writer, in bytes.
const PUBLISH_OUTGOING_MAX_BYTES: usize = 64 * 1024;
/// Connects in progress at once per thread during setup.
const SETUP_CONNECT_CONCURRENCY: usize = 64;
/// Stop flag poll period of an idle thread, in ms.
pub const STOP_POLL_MS: u64 = 5;
/// `start_ns` before the start is known.
pub const NOT_STARTED: u64 = u64::MAX;

/// What kind of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Pub,
    Sub,
    PubSub,
    Conn,
    ReqResp,
    Retained,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pub => "pub",
            Scenario::Sub => "sub",
            Scenario::PubSub => "pubsub",
            Scenario::Conn => "conn",
            Scenario::ReqResp => "reqresp",
            Scenario::Retained => "retained",
        }
    }
}

/// A fully resolved run: everything the threads need, shared read-only.
#[derive(Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub addr: SocketAddr,
    /// TCP or TLS, shared by every connection.
    pub transport: Transport,
    pub protocol: Protocol,
    pub client_prefix: String,
    pub username: Option<Bytes>,
    pub password: Option<Bytes>,
    pub keep_alive_s: u16,
    pub threads: usize,
    /// CPUs the worker threads are pinned to (thread i on `pin[i % len]`);
    /// empty: not pinned.
    pub pin: Vec<usize>,
    /// `--rx-thread`: the subscribers on one more thread (`rxthread`),
    /// latency measured to the kernel's receive timestamps.
    pub rx_thread: bool,
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
    /// Paced publishers: messages per burst (1 = evenly paced).
    pub burst: u32,
    /// Each message its own socket write.
    pub write_each: bool,
    /// Subscribers' Topic Alias Maximum (v5; 0 = none).
    pub topic_alias_max: u16,
    pub pubs: u32,
    pub subs: u32,
    pub topology: Option<Topology>,
    /// Topic of each publisher.
    pub pub_topics: Vec<Bytes>,
    /// `sub` scenario: filter of each subscriber.
    pub sub_filters: Vec<Bytes>,
    /// `reqresp`: responders, each requester's response topic, and the
    /// filter responders subscribe to.
    pub responders: u32,
    pub resp_topics: Vec<Bytes>,
    pub request_filter: Bytes,
    /// `retained`: how many retained topics, under which prefix, and
    /// whether they stay after the run.
    pub retained_topics: u64,
    pub retained_prefix: String,
    pub retained_keep: bool,
    // conn scenario
    pub conn_count: u64,
    pub conn_rate_per_s: f64,
    pub conn_concurrency: usize,
    /// `conn --churn`: connect, subscribe, disconnect per connection.
    pub conn_churn: bool,
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
        if role == "sub" {
            o.topic_alias_max = self.topic_alias_max;
        }
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
                ..DriverConfig::default()
            },
            // Subscribers take each read's events before the next read, so
            // the read buffer is unshared again (reused, not reallocated).
            // Publishers' events (acks) hold no buffer: let reads run ahead.
            events_pause_at: if role == "pub" { 4096 } else { 1 },
            transport: self.transport.clone(),
            ..ClientConfig::default()
        }
    }

    /// Publishers handled by `thread`.
    pub fn pubs_of(&self, thread: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.pubs).filter(move |p| *p as usize % self.threads == thread)
    }

    /// Subscribers handled by worker `thread` (none with `--rx-thread`:
    /// that thread has them all).
    pub fn subs_of(&self, thread: usize) -> impl Iterator<Item = u32> + '_ {
        let subs = if self.rx_thread { 0 } else { self.subs };
        (0..subs).filter(move |s| *s as usize % self.threads == thread)
    }

    /// Threads that report to the main thread: the workers, and the
    /// receiving thread with `--rx-thread` (index `threads`).
    pub fn thread_total(&self) -> usize {
        self.threads + usize::from(self.rx_thread)
    }

    /// `reqresp` responders handled by `thread`.
    pub fn responders_of(&self, thread: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.responders).filter(move |r| *r as usize % self.threads == thread)
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
        if self.scenario == Scenario::ReqResp {
            // One reply per request.
            return sent.iter().sum();
        }
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
    /// Each worker thread's kernel id (0 until it started), for the
    /// self-check's CPU sampling.
    pub tids: Vec<AtomicU64>,
    /// `retained`: threads that stored their share / whose subscribers
    /// are done (the scenario's two barriers).
    pub retained_stored: AtomicUsize,
    pub retained_received: AtomicUsize,
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
            live: (0..plan.thread_total()).map(|_| Live::default()).collect(),
            tids: (0..plan.thread_total())
                .map(|_| AtomicU64::new(0))
                .collect(),
            retained_stored: AtomicUsize::new(0),
            retained_received: AtomicUsize::new(0),
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

/// Sleeps until the main thread sets the start time; `None` if the run was
/// abandoned first.
pub async fn wait_start(shared: &Shared) -> Option<u64> {
    loop {
        if shared.stopped() {
            return None;
        }
        let start = shared.start_ns();
        if start != NOT_STARTED {
            return Some(start);
        }
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn wait_stop(shared: &Shared) {
    while !shared.stopped() {
        monoio::time::sleep(Duration::from_millis(STOP_POLL_MS)).await;
    }
}

/// Connections of one role on a thread: (index, connection).
pub type Conns = Vec<(u32, Rc<MqttConnection>)>;

/// Connects `role` clients `indices`, [`SETUP_CONNECT_CONCURRENCY`] at a
/// time.
pub async fn connect_all(
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    role: &'static str,
    indices: &[u32],
) -> Result<Conns, String> {
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(SETUP_CONNECT_CONCURRENCY) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let options = plan.client_options(role, u64::from(i));
                let config = plan.client_config(role);
                let (addr, clock) = (plan.addr, shared.clock);
                monoio::spawn(async move {
                    MqttConnection::connect(addr, options, &config, clock).await
                })
            })
            .collect();
        for (task, &i) in tasks.into_iter().zip(chunk) {
            match task.await {
                Ok((conn, _)) => out.push((i, Rc::new(conn))),
                Err(e) => return Err(format!("{role} {i} ({}): {e}", plan.addr)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
impl Plan {
    /// A small plan with every field set, for unit tests: 1 publisher and
    /// 1 subscriber on one thread, 1 s warm-up, 2 s measured, 1 s drain.
    pub fn example(scenario: Scenario) -> Plan {
        Plan {
            scenario,
            addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
            transport: Transport::Tcp,
            protocol: Protocol::V3_1_1,
            client_prefix: "test".into(),
            username: None,
            password: None,
            keep_alive_s: 60,
            threads: 1,
            pin: Vec::new(),
            rx_thread: false,
            warmup_ns: 1_000_000_000,
            duration_ns: 2_000_000_000,
            drain_ns: 1_000_000_000,
            qos: QoS::AtMostOnce,
            size_bytes: 64,
            rate_per_pub: 10.0,
            count: u64::MAX,
            inflight: 1,
            retain: false,
            burst: 1,
            write_each: false,
            topic_alias_max: 0,
            pubs: 1,
            subs: 1,
            topology: Some(Topology::Fanout),
            pub_topics: vec![Bytes::from_static(b"t")],
            sub_filters: Vec::new(),
            responders: 0,
            resp_topics: Vec::new(),
            request_filter: Bytes::new(),
            retained_topics: 0,
            retained_prefix: String::new(),
            retained_keep: false,
            conn_count: 10,
            conn_rate_per_s: 10.0,
            conn_concurrency: 1,
            conn_churn: false,
            conns_per_source: u64::MAX,
        }
    }
}
