//! Durable storage across a change of the shard count (issue 13, "a changed
//! shard count moves sessions to their new owners"), from the outside.
//!
//! A broker with `storage = "disk"` and 2 (or 3) shards is given persistent
//! sessions (MQTT 5 with a Session Expiry Interval, 3.1.1 with clean
//! session 0), each with two subscriptions and queued QoS 1 / QoS 2
//! messages; one QoS 1 message taken and not acknowledged (in flight), one
//! QoS 2 message at the PUBREL stage, inbound QoS 2 ids awaiting PUBREL
//! (3.1.1 and 5.0 publishers), and retained messages (set, overwritten,
//! cleared). It is stopped (SIGTERM, or SIGKILL once every write was
//! acknowledged), and the data directory is restarted, in two copies,
//! with 1 and with 4 shards. Asserted for each:
//! - every session is found by its client id: CONNACK Session Present 1;
//! - its queued messages arrive exactly once (the unacknowledged QoS 1
//!   message again, with DUP and its packet id; the QoS 2 message at the
//!   PUBREL stage not again, but its PUBREL);
//! - the inbound QoS 2 publish re-sent with DUP is acknowledged and not
//!   routed a second time;
//! - the restored subscriptions route new publishes from any connection;
//! - the retained messages are the last acknowledged values, the cleared
//!   one absent;
//! - the log reports no damaged or refused record.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringmq_tests::wire::{
    ack_packet, ack_reason, is_timeout, parse_publish, publish_packet, Conn, Publish, Version,
};
use ringmq_tests::{binary, disk_storage_config, Broker};

/// Persistent subscribers of each protocol version.
const CLIENTS_PER_VERSION: usize = 4;
/// Queued messages per subscriber on its own topic.
const QUEUED: usize = 3;
/// Retained topics written (the first `RETAINED_UPDATED` twice, the last
/// one cleared).
const RETAINED: usize = 30;
const RETAINED_UPDATED: usize = 10;
const EXPIRY_S: u32 = 3_600;
const POLL: Duration = Duration::from_millis(200);
/// How long the last expected packet may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(10);
/// Silence that shows nothing more (no duplicate) is coming.
const QUIET: Duration = Duration::from_millis(400);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn start(cfg: &Path, shards: u16) -> Broker {
    let shards = shards.to_string();
    let cfg = cfg.to_str().unwrap_or_default();
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        &shards,
        "-c",
        cfg,
    ];
    let io = std::env::var("RINGMQ_TEST_IO").ok();
    if let Some(io) = io.as_deref() {
        args.extend_from_slice(&["--io", io]);
    }
    Broker::start_with_args(&bin(), &args)
}

fn config(dir: &Path) -> PathBuf {
    disk_storage_config(dir, &dir.join("data"), "fsync = \"always\"\n")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        }
    }
}

/// A persistent subscriber and what it must get after the restart.
struct Sub {
    id: String,
    version: Version,
    qos: u8,
    /// Payloads queued for it, in publish order.
    queued: Vec<String>,
}

impl Sub {
    fn own_topic(&self) -> String {
        format!("reshard/one/{}", self.id)
    }

    fn open(&self, addr: SocketAddr, clean: bool) -> Conn {
        Conn::open(addr, self.version, &self.id, clean, EXPIRY_S, POLL)
            .unwrap_or_else(|e| panic!("{}: {e}", self.id))
    }
}

fn subs() -> Vec<Sub> {
    let mut subs = Vec::new();
    for (version, tag) in [(Version::V5, "v5"), (Version::V311, "v3")] {
        for i in 0..CLIENTS_PER_VERSION {
            subs.push(Sub {
                id: format!("reshard-{tag}-{i}"),
                version,
                qos: if i % 2 == 0 { 1 } else { 2 },
                queued: Vec::new(),
            });
        }
    }
    subs
}

/// Everything the first broker was given, to check after the restart.
struct Written {
    subs: Vec<Sub>,
    /// Sub index and packet id of the QoS 1 message taken, not acknowledged.
    unacked_q1: (usize, u16, String),
    /// Sub index and packet id of the QoS 2 message at the PUBREL stage.
    at_pubrel: (usize, u16, String),
    /// Inbound QoS 2 publishers (id, version, packet id, payload).
    inbound: Vec<(String, Version, u16, String)>,
    retained: HashMap<String, String>,
}

fn fill(addr: SocketAddr) -> Written {
    let mut subs = subs();
    for s in &subs {
        // A new session (5.0: Clean Start 1 with an expiry; 3.1.1: clean
        // session 0 on a broker that has none).
        let clean = s.version == Version::V5;
        let mut c = s.open(addr, clean);
        assert!(!c.session_present, "{}: fresh broker", s.id);
        assert_eq!(
            c.subscribe(1, &s.own_topic(), s.qos)
                .unwrap_or_else(|e| panic!("{e}")),
            s.qos
        );
        assert_eq!(
            c.subscribe(2, "reshard/all", 1)
                .unwrap_or_else(|e| panic!("{e}")),
            1
        );
        c.disconnect().unwrap_or_else(|e| panic!("{e}"));
    }
    // An inbound subscriber for the QoS 2 publishers below.
    let mut c = Conn::open(
        addr,
        Version::V5,
        "reshard-inbound-sub",
        true,
        EXPIRY_S,
        POLL,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.subscribe(1, "reshard/inbound/#", 2)
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    c.disconnect().unwrap_or_else(|e| panic!("{e}"));

    // Queued messages: each sub's own topic at its QoS, one to all.
    let mut p = Conn::open(addr, Version::V5, "reshard-pub", true, 0, POLL)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut pid = 0u16;
    for s in &mut subs {
        for k in 0..QUEUED {
            let payload = format!("{}/m{k}", s.id);
            pid += 1;
            p.publish_acked(&s.own_topic(), payload.as_bytes(), s.qos, pid, false)
                .unwrap_or_else(|e| panic!("{e}"));
            s.queued.push(payload);
        }
    }
    pid += 1;
    p.publish_acked("reshard/all", b"all/m0", 1, pid, false)
        .unwrap_or_else(|e| panic!("{e}"));
    for s in &mut subs {
        s.queued.push("all/m0".into());
    }

    // Retained: set, overwrite the first few, clear the last.
    let mut retained = HashMap::new();
    for i in 0..RETAINED {
        let (topic, value) = (format!("reshard/ret/{i}"), format!("r{i}-v1"));
        pid += 1;
        p.publish_acked(&topic, value.as_bytes(), 1, pid, true)
            .unwrap_or_else(|e| panic!("{e}"));
        retained.insert(topic, value);
    }
    for i in 0..RETAINED_UPDATED {
        let (topic, value) = (format!("reshard/ret/{i}"), format!("r{i}-v2"));
        pid += 1;
        p.publish_acked(&topic, value.as_bytes(), 2, pid, true)
            .unwrap_or_else(|e| panic!("{e}"));
        retained.insert(topic, value);
    }
    let cleared = format!("reshard/ret/{}", RETAINED - 1);
    pid += 1;
    p.publish_acked(&cleared, b"", 1, pid, true)
        .unwrap_or_else(|e| panic!("{e}"));
    retained.remove(&cleared);
    p.disconnect().unwrap_or_else(|e| panic!("{e}"));

    // Inbound QoS 2 ids awaiting PUBREL, of persistent publishers: PUBREC
    // seen, no PUBREL sent.
    let mut inbound = Vec::new();
    for (id, version) in [
        ("reshard-inq2-v5", Version::V5),
        ("reshard-inq2-v3", Version::V311),
    ] {
        let mut c = Conn::open(addr, version, id, version == Version::V5, EXPIRY_S, POLL)
            .unwrap_or_else(|e| panic!("{e}"));
        let payload = format!("{id}/once");
        let topic = format!("reshard/inbound/{id}");
        c.publish(&topic, payload.as_bytes(), 2, 77, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let (first, body) = c
            .read_until(Instant::now() + ARRIVAL)
            .unwrap_or_else(|e| panic!("{id}: PUBREC: {e}"));
        assert_eq!((first, &body[..2]), (0x50, &[0, 77][..]), "{id}: PUBREC");
        c.disconnect().unwrap_or_else(|e| panic!("{e}"));
        inbound.push((id.to_string(), version, 77, payload));
    }

    // A QoS 1 subscriber takes its first message without acknowledging it.
    let q1 = subs.iter().position(|s| s.qos == 1).unwrap_or(0);
    let mut c = subs[q1].open(addr, false);
    assert!(c.session_present);
    let first = next_publish(&mut c);
    assert_eq!(
        first.payload,
        subs[q1].queued[0].as_bytes(),
        "{}",
        subs[q1].id
    );
    c.disconnect().unwrap_or_else(|e| panic!("{e}"));
    let unacked_q1 = (q1, first.packet_id, subs[q1].queued[0].clone());

    // A QoS 2 subscriber takes its first message to the PUBREL stage: PUBREC
    // sent, PUBREL seen (sent only once that stage is stored), no PUBCOMP.
    let q2 = subs.iter().position(|s| s.qos == 2).unwrap_or(1);
    let mut c = subs[q2].open(addr, false);
    assert!(c.session_present);
    // QoS 2 PUBLISHes wait for their stored stage, so the QoS 1 message
    // to reshard/all may come first (docs/storage.md); it stays
    // unacknowledged too.
    let first = loop {
        let p = next_publish(&mut c);
        if p.qos == 2 {
            break p;
        }
    };
    assert_eq!(
        first.payload,
        subs[q2].queued[0].as_bytes(),
        "{}",
        subs[q2].id
    );
    c.send(&ack_packet(0x50, first.packet_id))
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let (kind, body) = c
            .read_until(deadline)
            .unwrap_or_else(|e| panic!("PUBREL: {e}"));
        if kind == 0x62 && body[..2] == first.packet_id.to_be_bytes() {
            break;
        }
    }
    c.disconnect().unwrap_or_else(|e| panic!("{e}"));
    let at_pubrel = (q2, first.packet_id, subs[q2].queued[0].clone());
    Written {
        subs,
        unacked_q1,
        at_pubrel,
        inbound,
        retained,
    }
}

/// The next PUBLISH (other packets skipped), within [`ARRIVAL`].
fn next_publish(c: &mut Conn) -> Publish {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let (first, body) = c
            .read_until(deadline)
            .unwrap_or_else(|e| panic!("PUBLISH: {e}"));
        if let Some(p) = parse_publish(c.version, first, &body) {
            return p;
        }
    }
}

/// Reads until `want` PUBLISHes arrived and then `QUIET` passed without
/// more; acknowledges each (QoS 2: PUBREC, then PUBCOMP for each PUBREL).
/// Returns the PUBLISHes and the packet ids of PUBRELs for messages not
/// received on this connection (a stage stored before the restart).
fn collect(c: &mut Conn, want: usize) -> (Vec<Publish>, Vec<u16>) {
    let mut got = Vec::new();
    let mut stored_pubrels = Vec::new();
    let mut awaiting_rel = HashSet::new();
    let deadline = Instant::now() + ARRIVAL;
    let mut quiet_from = None::<Instant>;
    loop {
        match c.read() {
            Ok((first, body)) => {
                if let Some(p) = parse_publish(c.version, first, &body) {
                    let ack = match p.qos {
                        1 => c.send(&ack_packet(0x40, p.packet_id)),
                        2 => {
                            awaiting_rel.insert(p.packet_id);
                            c.send(&ack_packet(0x50, p.packet_id))
                        }
                        _ => Ok(()),
                    };
                    ack.unwrap_or_else(|e| panic!("{e}"));
                    got.push(p);
                    quiet_from = None;
                } else if first == 0x62 {
                    let id = u16::from_be_bytes([body[0], body[1]]);
                    if !awaiting_rel.remove(&id) {
                        stored_pubrels.push(id);
                    }
                    c.send(&ack_packet(0x70, id))
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read: {e}"),
        }
        if got.len() >= want {
            let since = *quiet_from.get_or_insert_with(Instant::now);
            if since.elapsed() >= QUIET {
                return (got, stored_pubrels);
            }
        } else if Instant::now() > deadline {
            return (got, stored_pubrels);
        }
    }
}

fn payloads(got: &[Publish]) -> Vec<String> {
    let mut p: Vec<String> = got
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    p.sort();
    p
}

fn check(addr: SocketAddr, w: &Written, label: &str) {
    let mut online = Vec::new();
    for (i, s) in w.subs.iter().enumerate() {
        let mut c = s.open(addr, false);
        assert!(c.session_present, "{label}: {} lost its session", s.id);
        let mut want: Vec<String> = s.queued.clone();
        if i == w.at_pubrel.0 {
            want.retain(|p| *p != w.at_pubrel.2);
        }
        let (got, pubrels) = collect(&mut c, want.len());
        want.sort();
        assert_eq!(
            payloads(&got),
            want,
            "{label}: {} got its queued messages once each",
            s.id
        );
        if i == w.unacked_q1.0 {
            let again = got
                .iter()
                .find(|p| p.payload == w.unacked_q1.2.as_bytes())
                .unwrap_or_else(|| panic!("unreachable: checked above"));
            assert!(
                again.dup && again.packet_id == w.unacked_q1.1,
                "{label}: in-flight QoS 1 re-sent with DUP and its id: {again:?}"
            );
        }
        if i == w.at_pubrel.0 {
            assert_eq!(
                pubrels,
                vec![w.at_pubrel.1],
                "{label}: {} PUBREL of the stored stage",
                s.id
            );
        } else {
            assert!(
                pubrels.is_empty(),
                "{label}: {} unexpected PUBREL {pubrels:?}",
                s.id
            );
        }
        // Stays online for the live check below.
        online.push(c);
    }

    // Inbound QoS 2: the publisher re-sends with DUP; acknowledged, not
    // routed again; PUBREL completes it.
    for (id, version, pid, payload) in &w.inbound {
        let mut c =
            Conn::open(addr, *version, id, false, EXPIRY_S, POLL).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.session_present, "{label}: {id} lost its session");
        let topic = format!("reshard/inbound/{id}");
        c.send(&publish_packet(
            *version,
            &topic,
            payload.as_bytes(),
            2,
            *pid,
            false,
            true,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let (first, body) = c
            .read_until(Instant::now() + ARRIVAL)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (first, &body[..2]),
            (0x50, &pid.to_be_bytes()[..]),
            "{label}: {id} PUBREC again"
        );
        assert!(ack_reason(&body) < 0x80, "{label}: {id}: {body:02x?}");
        c.send(&ack_packet(0x62, *pid))
            .unwrap_or_else(|e| panic!("{e}"));
        let (first, _) = c
            .read_until(Instant::now() + ARRIVAL)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, 0x70, "{label}: {id} PUBCOMP");
        c.disconnect().unwrap_or_else(|e| panic!("{e}"));
    }
    let mut c = Conn::open(
        addr,
        Version::V5,
        "reshard-inbound-sub",
        false,
        EXPIRY_S,
        POLL,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        c.session_present,
        "{label}: inbound subscriber lost its session"
    );
    let (got, _) = collect(&mut c, w.inbound.len());
    let mut want: Vec<String> = w.inbound.iter().map(|i| i.3.clone()).collect();
    want.sort();
    assert_eq!(
        payloads(&got),
        want,
        "{label}: inbound QoS 2 messages exactly once"
    );
    c.disconnect().unwrap_or_else(|e| panic!("{e}"));

    // The restored subscriptions route: new publishes from another
    // connection reach every session, online again on its new owner.
    let mut p = Conn::open(addr, Version::V311, "reshard-live-pub", true, 0, POLL)
        .unwrap_or_else(|e| panic!("{e}"));
    p.publish_acked("reshard/all", b"all/live", 1, 1, false)
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, s) in w.subs.iter().enumerate() {
        let pid = u16::try_from(i + 2).unwrap_or(2);
        p.publish_acked(&s.own_topic(), b"own/live", s.qos, pid, false)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    p.disconnect().unwrap_or_else(|e| panic!("{e}"));
    for (s, c) in w.subs.iter().zip(&mut online) {
        let (got, _) = collect(c, 2);
        assert_eq!(
            payloads(&got),
            ["all/live", "own/live"],
            "{label}: {} live routing",
            s.id
        );
    }
    for c in online {
        c.disconnect().unwrap_or_else(|e| panic!("{e}"));
    }

    // Retained: complete, last values, the cleared one gone.
    let mut c = Conn::open(addr, Version::V5, "reshard-ret-check", true, 0, POLL)
        .unwrap_or_else(|e| panic!("{e}"));
    c.subscribe(1, "reshard/ret/#", 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let (got, _) = collect(&mut c, w.retained.len());
    let mut seen = HashMap::new();
    for p in got {
        assert!(p.retain, "{label}: {} without RETAIN", p.topic);
        let previous = seen.insert(
            p.topic.clone(),
            String::from_utf8_lossy(&p.payload).into_owned(),
        );
        assert!(previous.is_none(), "{label}: retained {} twice", p.topic);
    }
    assert_eq!(seen, w.retained, "{label}: retained messages");
}

fn reshard(write_shards: u16, kill: bool) {
    let dir = std::env::temp_dir().join(format!(
        "ringmq-reshard-{write_shards}-{kill}-{}",
        std::process::id()
    ));
    let cfg = config(&dir);
    let mut broker = start(&cfg, write_shards);
    let written = fill(broker.addr());
    if kill {
        broker.signal(libc::SIGKILL);
        broker.wait_exit(Duration::from_secs(10));
    } else {
        let (status, _) = broker.stop();
        assert!(status.success(), "clean stop");
    }
    for read_shards in [1u16, 4] {
        let label = format!(
            "written with {write_shards} shards, {}, read with {read_shards}",
            if kill { "killed" } else { "stopped" }
        );
        let case = dir.join(format!("as-{read_shards}"));
        copy_dir(&dir.join("data"), &case.join("data"));
        let cfg = config(&case);
        let broker = start(&cfg, read_shards);
        let log = broker.log();
        assert!(log.contains("damaged=0"), "{label}: {log}");
        assert!(log.contains("shard count changed"), "{label}: {log}");
        check(broker.addr(), &written, &label);
        let log = broker.log();
        assert!(!log.contains("stored record refused"), "{label}: {log}");
        let (status, _) = broker.stop();
        assert!(status.success(), "{label}: clean stop");
    }
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn sessions_written_with_2_shards_and_stopped_restore_with_1_and_4() {
    reshard(2, false);
}

#[test]
fn sessions_written_with_3_shards_and_killed_restore_with_1_and_4() {
    reshard(3, true);
}
