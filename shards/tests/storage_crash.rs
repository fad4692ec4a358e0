//! Durable storage under `kill -9` (issue 13): QoS 1 and QoS 2 publishers
//! and retained publishes under load, persistent subscribers, the broker
//! killed with SIGKILL at a random moment of each round and restarted on
//! the same `data_dir`. Three runs: MQTT 3.1.1 clients (clean session 0)
//! with `fsync = "always"`; MQTT 5 clients (Session Expiry Interval) with
//! `always`; MQTT 5 clients with `fsync = "interval"`. `interval` promises
//! the same as `always` against a killed process (every acknowledged write
//! was handed to the OS before the acknowledgement; only a power loss or
//! kernel crash may lose the last `fsync_interval_ms`, which a kill cannot
//! show), so the same is asserted for all three.
//!
//! Asserted after the last round:
//! - every QoS 1 message whose PUBACK the publisher saw, and every QoS 2
//!   message whose PUBREC it saw, reached its persistent subscriber;
//! - the QoS 2 subscriber got no message twice (it follows the protocol's
//!   exactly-once rule: a PUBLISH whose packet id awaits PUBREL is a
//!   re-send, not a new message; anything else seen twice is a duplicate);
//! - each retained topic holds the last acknowledged value, or one sent
//!   after it (a publish the broker stored but could not acknowledge
//!   before it was killed);
//! - every restart reads the store without a damaged record.
//!
//! Also: an UNSUBSCRIBE whose UNSUBACK was seen is not undone by a kill
//! (3.1.1 and 5.0, both fsync modes).
//!
//! Bounded: `rounds` rounds (12 for the 3.1.1 run, 6 for each other) of at
//! most `ROUND_LOAD_MAX_MS` of load each, every read with a timeout; prints
//! rounds, messages and losses.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ringmq_tests::wire::{
    ack_packet, ack_reason, is_timeout, parse_publish, unsubscribe_packet, Conn, Version,
};
use ringmq_tests::{binary, Broker};

/// Load before the kill: uniformly between these, in milliseconds.
const ROUND_LOAD_MIN_MS: u64 = 150;
const ROUND_LOAD_MAX_MS: u64 = 1_200;
/// Unacknowledged publishes a publisher keeps in flight.
const WINDOW: usize = 16;
/// Retained topics written in turn.
const RETAINED_TOPICS: u64 = 8;
/// A client's read timeout (it re-checks whether to stop).
const POLL: Duration = Duration::from_millis(50);
/// After the last round: how long the subscribers may take to receive
/// everything acknowledged.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// MQTT 5 sessions' Session Expiry Interval.
const EXPIRY_S: u32 = 3_600;

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

/// A tiny xorshift generator (the kill moments), seeded from the clock and
/// printed so a failing run can be repeated with `RINGMQ_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One run: the protocol of every client, the fsync mode, the rounds.
#[derive(Clone, Copy)]
struct Run {
    name: &'static str,
    version: Version,
    fsync: &'static str,
    rounds: u32,
}

/// What a persistent subscriber has received (kept across rounds, like a
/// real client's session state).
#[derive(Default)]
struct Subscriber {
    received: HashSet<String>,
    duplicates: Vec<String>,
    /// QoS 2: packet ids received and awaiting PUBREL.
    awaiting_rel: HashSet<u16>,
    subscribed: bool,
}

/// Runs a persistent subscriber until `stop` or the connection ends.
fn subscribe_round(
    addr: SocketAddr,
    version: Version,
    id: &str,
    filter: &str,
    qos: u8,
    state: &Mutex<Subscriber>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut s = Conn::open(addr, version, id, false, EXPIRY_S, POLL)?;
    if !state.lock().unwrap().subscribed {
        assert_eq!(s.subscribe(1, filter, qos)?, qos, "SUBACK");
        state.lock().unwrap().subscribed = true;
    }
    while !stop.load(Ordering::Relaxed) {
        let (first, body) = match s.read() {
            Err(e) if is_timeout(&e) => continue,
            other => other?,
        };
        let mut st = state.lock().unwrap();
        match first >> 4 {
            3 => {
                let Some(p) = parse_publish(version, first, &body) else {
                    panic!("bad PUBLISH {body:02x?}")
                };
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                let resend = p.qos == 2 && st.awaiting_rel.contains(&p.packet_id);
                if !resend && !st.received.insert(payload.clone()) && p.qos == 2 {
                    st.duplicates.push(payload);
                }
                if p.qos == 2 {
                    st.awaiting_rel.insert(p.packet_id);
                }
                drop(st);
                match p.qos {
                    1 => s.send(&ack_packet(0x40, p.packet_id))?,
                    2 => s.send(&ack_packet(0x50, p.packet_id))?,
                    _ => {}
                }
            }
            6 => {
                let pid = u16::from_be_bytes([body[0], body[1]]);
                st.awaiting_rel.remove(&pid);
                drop(st);
                s.send(&ack_packet(0x70, pid))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a publisher sent and had acknowledged, over all rounds.
#[derive(Default)]
struct Publisher {
    next: u64,
    acked: Vec<String>,
    /// Retained: per topic, every value sent, in order, and the last acked.
    sent_retained: HashMap<String, Vec<String>>,
    acked_retained: HashMap<String, String>,
}

/// Publishes at `qos` (retained to `RETAINED_TOPICS` topics if `retain`)
/// with a window of `WINDOW`, until `stop` or the connection ends.
fn publish_round(
    addr: SocketAddr,
    version: Version,
    name: &str,
    qos: u8,
    retain: bool,
    state: &Mutex<Publisher>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut s = Conn::open(addr, version, name, true, 0, POLL)?;
    // packet id -> (topic, payload)
    let mut in_flight: HashMap<u16, (String, String)> = HashMap::new();
    let mut pid: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        while in_flight.len() < WINDOW {
            let mut st = state.lock().unwrap();
            let seq = st.next;
            st.next += 1;
            let payload = format!("{name}:{seq}");
            let topic = if retain {
                format!("crash/ret/{}", seq % RETAINED_TOPICS)
            } else {
                format!("crash/q{qos}/{seq}")
            };
            if retain {
                st.sent_retained
                    .entry(topic.clone())
                    .or_default()
                    .push(payload.clone());
            }
            drop(st);
            pid = pid % 60_000 + 1;
            s.publish(&topic, payload.as_bytes(), qos, pid, retain)?;
            in_flight.insert(pid, (topic, payload));
        }
        let (first, body) = match s.read() {
            Err(e) if is_timeout(&e) => continue,
            other => other?,
        };
        let id = u16::from_be_bytes([body[0], body[1]]);
        match first >> 4 {
            // PUBACK (QoS 1), PUBREC (QoS 2): the broker has the message
            // (unless a 5.0 reason code refuses it).
            4 | 5 => {
                if let Some((topic, payload)) = in_flight.remove(&id) {
                    if ack_reason(&body) < 0x80 {
                        let mut st = state.lock().unwrap();
                        if retain {
                            st.acked_retained.insert(topic, payload.clone());
                        }
                        st.acked.push(payload);
                    }
                }
                if first >> 4 == 5 {
                    s.send(&ack_packet(0x62, id))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn config(dir: &Path, fsync: &str) -> PathBuf {
    let path = dir.join("ringmq.toml");
    let text = format!(
        "[storage]\nstorage = \"disk\"\ndata_dir = \"{}\"\nfsync = \"{fsync}\"\n\
         fsync_interval_ms = 100\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the broker on the run's data directory; the store must open
/// without a damaged record.
fn start(cfg: &str) -> Broker {
    let broker = Broker::start(&bin(), &["-c", cfg]);
    let log = broker.log();
    assert!(
        log.contains("storage opened") && log.contains("damaged=0"),
        "{log}"
    );
    broker
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    crash(Run {
        name: "v311-always",
        version: Version::V311,
        fsync: "always",
        rounds: 12,
    });
}

#[test]
fn v5_acknowledged_messages_survive_kill_9() {
    crash(Run {
        name: "v5-always",
        version: Version::V5,
        fsync: "always",
        rounds: 6,
    });
}

#[test]
fn fsync_interval_acknowledged_messages_survive_kill_9() {
    crash(Run {
        name: "v5-interval",
        version: Version::V5,
        fsync: "interval",
        rounds: 6,
    });
}

fn crash(run: Run) {
    let dir =
        std::env::temp_dir().join(format!("ringmq-crash-{}-{}", run.name, std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(&dir, run.fsync);
    let cfg = cfg.to_str().unwrap();
    let version = run.version;
    let seed = std::env::var("RINGMQ_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!(
        "crash test {} seed {seed} (RINGMQ_CRASH_SEED to repeat)",
        run.name
    );
    let mut rng = Rng(seed);
    let sub1 = Arc::new(Mutex::new(Subscriber::default()));
    let sub2 = Arc::new(Mutex::new(Subscriber::default()));
    let pub1 = Arc::new(Mutex::new(Publisher::default()));
    let pub2 = Arc::new(Mutex::new(Publisher::default()));
    let pubr = Arc::new(Mutex::new(Publisher::default()));
    let started = Instant::now();

    for round in 0..=run.rounds {
        let broker = start(cfg);
        let addr = broker.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (id, filter, qos, st) in [
            ("crash-sub-q1", "crash/q1/#", 1, sub1.clone()),
            ("crash-sub-q2", "crash/q2/#", 2, sub2.clone()),
        ] {
            let stop = stop.clone();
            threads.push(thread::spawn(move || {
                // The connection ends with the kill: not an error here.
                let _ended = subscribe_round(addr, version, id, filter, qos, &st, &stop);
            }));
        }
        // Publishers start once both subscriptions exist (SUBACK seen).
        let subscribed = Instant::now() + Duration::from_secs(10);
        while !(sub1.lock().unwrap().subscribed && sub2.lock().unwrap().subscribed) {
            assert!(Instant::now() < subscribed, "subscribers did not subscribe");
            thread::sleep(Duration::from_millis(10));
        }
        if round == run.rounds {
            // Last round: no load, no kill; wait for everything acknowledged.
            let deadline = Instant::now() + DRAIN_LIMIT;
            loop {
                let missing = missing(&pub1, &sub1) + missing(&pub2, &sub2);
                if missing == 0 || Instant::now() > deadline {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            check_retained(addr, version, &pubr);
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                t.join().unwrap();
            }
            let (status, _) = broker.stop();
            assert!(status.success(), "clean stop after the last round");
            break;
        }
        for (name, qos, retain, st) in [
            ("crash-pub-q1", 1, false, pub1.clone()),
            ("crash-pub-q2", 2, false, pub2.clone()),
            ("crash-pub-ret", 1, true, pubr.clone()),
        ] {
            let stop = stop.clone();
            threads.push(thread::spawn(move || {
                let _ended = publish_round(addr, version, name, qos, retain, &st, &stop);
            }));
        }
        let load = ROUND_LOAD_MIN_MS + rng.next() % (ROUND_LOAD_MAX_MS - ROUND_LOAD_MIN_MS);
        thread::sleep(Duration::from_millis(load));
        let mut broker = broker;
        broker.signal(libc::SIGKILL);
        broker.wait_exit(Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        // Retained state after every kill, not only at the end.
        if round % 4 == 3 {
            let b = start(cfg);
            check_retained(b.addr(), version, &pubr);
            let mut b = b;
            b.signal(libc::SIGKILL);
            b.wait_exit(Duration::from_secs(10));
        }
    }

    let lost1 = missing(&pub1, &sub1);
    let lost2 = missing(&pub2, &sub2);
    let dups = sub2.lock().unwrap().duplicates.clone();
    let acked1 = pub1.lock().unwrap().acked.len();
    let acked2 = pub2.lock().unwrap().acked.len();
    let ackedr = pubr.lock().unwrap().acked.len();
    println!(
        "crash test {} (fsync {}): {} kill -9 rounds in {:.1} s; acknowledged QoS 1 \
         {acked1}, QoS 2 {acked2}, retained {ackedr}; lost QoS 1 {lost1}, QoS 2 {lost2}; QoS 2 \
         duplicates {}",
        run.name,
        run.fsync,
        run.rounds,
        started.elapsed().as_secs_f64(),
        dups.len()
    );
    assert!(
        acked1 > 0 && acked2 > 0 && ackedr > 0,
        "no load went through"
    );
    assert_eq!(lost1, 0, "acknowledged QoS 1 messages lost");
    assert_eq!(lost2, 0, "acknowledged QoS 2 messages lost");
    assert!(dups.is_empty(), "QoS 2 duplicates: {dups:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Filters subscribed, then unsubscribed one UNSUBSCRIBE each (pipelined:
/// the kill lands right behind the last UNSUBACK).
const UNSUBSCRIBED_FILTERS: u16 = 16;

/// An UNSUBSCRIBE whose UNSUBACK the client saw stays done across a
/// `kill -9`: the session comes back (Clean Start 0 / clean session 0,
/// Session Present 1) with the subscription it kept, and without those it
/// removed: a message published to them is not delivered.
fn unsubscribe_then_kill(version: Version, fsync: &str) {
    let dir = std::env::temp_dir().join(format!(
        "ringmq-crash-unsub-{version:?}-{fsync}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(&dir, fsync);
    let cfg = cfg.to_str().unwrap();
    let id = "crash-unsub";
    let mut broker = start(cfg);
    let addr = broker.addr();
    // Load that keeps the store writing (a retained record per batch), so
    // that an UNSUBACK sent before its own batch is written would be seen
    // before the kill: without the load the race is too short to show.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        thread::spawn(move || {
            let Ok(mut p) = Conn::open(addr, version, "crash-unsub-load", true, 0, POLL) else {
                return;
            };
            let payload = [b'r'; 4096];
            // Ends with the kill (a write error) or `stop`.
            while !stop.load(Ordering::Relaxed) && p.publish("load/r", &payload, 0, 0, true).is_ok()
            {
            }
        })
    };
    thread::sleep(Duration::from_millis(200));
    let mut s = Conn::open(addr, version, id, false, EXPIRY_S, POLL).unwrap();
    assert_eq!(s.subscribe(1, "kept/#", 1).unwrap(), 1, "SUBACK");
    for i in 0..UNSUBSCRIBED_FILTERS {
        let filter = format!("gone/{i}");
        assert_eq!(s.subscribe(2 + i, &filter, 1).unwrap(), 1, "SUBACK");
    }
    let base = 100;
    for i in 0..UNSUBSCRIBED_FILTERS {
        let filter = format!("gone/{i}");
        s.send(&unsubscribe_packet(version, base + i, &filter))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut acked = 0;
    while acked < UNSUBSCRIBED_FILTERS {
        let (first, body) = s.read_until(deadline).unwrap();
        if first != 0xb0 {
            continue;
        }
        assert_eq!(body[..2], (base + acked).to_be_bytes(), "UNSUBACK order");
        if version == Version::V5 {
            // Packet id, properties length 0, the filter's reason code.
            assert_eq!(body[2..], [0, 0], "v5 UNSUBACK: success");
        }
        acked += 1;
    }
    broker.signal(libc::SIGKILL);
    broker.wait_exit(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    drop(s);

    let broker = start(cfg);
    let addr = broker.addr();
    let mut s = Conn::open(addr, version, id, false, EXPIRY_S, POLL).unwrap();
    assert!(s.session_present, "the session came back");
    let mut p = Conn::open(addr, version, "crash-unsub-pub", true, 0, POLL).unwrap();
    for i in 0..UNSUBSCRIBED_FILTERS {
        p.publish_acked(&format!("gone/{i}"), b"gone", 1, 1 + i, false)
            .unwrap();
    }
    p.publish_acked("kept/a", b"kept", 1, 999, false).unwrap();
    // The kept subscription's message arrives (the session works); the
    // removed ones' would have come before it (one publisher, in order),
    // and nothing else may come after it.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let quiet_until = loop {
        let (first, body) = s.read_until(deadline).unwrap();
        if first >> 4 != 3 {
            continue;
        }
        let publish = parse_publish(version, first, &body).unwrap();
        s.send(&ack_packet(0x40, publish.packet_id)).unwrap();
        let kept = publish.topic == "kept/a";
        got.push(publish.topic);
        if kept {
            break Instant::now() + Duration::from_millis(500);
        }
    };
    loop {
        match s.read_until(quiet_until) {
            Err(e) if is_timeout(&e) => break,
            Ok((first, body)) if first >> 4 == 3 => {
                got.push(parse_publish(version, first, &body).unwrap().topic);
            }
            Ok(_) => {}
            Err(e) => panic!("subscriber connection: {e}"),
        }
    }
    assert_eq!(
        got,
        ["kept/a"],
        "{version:?} fsync {fsync}: subscriptions whose UNSUBACK was seen came back after kill -9"
    );
    let (status, _) = broker.stop();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_acknowledged_unsubscribe_survives_kill_9() {
    unsubscribe_then_kill(Version::V311, "always");
    unsubscribe_then_kill(Version::V5, "always");
    unsubscribe_then_kill(Version::V5, "interval");
}

/// Acknowledged messages the subscriber has not received.
fn missing(p: &Mutex<Publisher>, s: &Mutex<Subscriber>) -> usize {
    let p = p.lock().unwrap();
    let s = s.lock().unwrap();
    p.acked.iter().filter(|m| !s.received.contains(*m)).count()
}

/// Subscribes afresh to the retained topics: each holds its last
/// acknowledged value or one sent after it.
fn check_retained(addr: SocketAddr, version: Version, p: &Mutex<Publisher>) {
    let mut s = Conn::open(addr, version, "crash-retained-check", true, 0, POLL).unwrap();
    s.send(&ringmq_tests::wire::subscribe_packet(
        version,
        1,
        "crash/ret/#",
        0,
    ))
    .unwrap();
    let p = p.lock().unwrap();
    let mut got: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < p.acked_retained.len() && Instant::now() < deadline {
        match s.read() {
            Ok((first, body)) if first >> 4 == 3 => {
                let m = parse_publish(version, first, &body).unwrap();
                got.insert(m.topic, String::from_utf8_lossy(&m.payload).into_owned());
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("retained check: {e}"),
        }
    }
    for (topic, last_acked) in &p.acked_retained {
        let sent = &p.sent_retained[topic];
        let from = sent.iter().position(|v| v == last_acked).unwrap();
        let value = got
            .get(topic)
            .unwrap_or_else(|| panic!("retained {topic} missing (last acknowledged {last_acked})"));
        assert!(
            sent[from..].contains(value),
            "retained {topic} = {value}, older than the last acknowledged {last_acked}"
        );
    }
}
