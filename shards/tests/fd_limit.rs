//! The broker at its open-file limit (`EMFILE`), from the outside. The
//! limit is lowered on the running broker only (`prlimit(2)` on the child
//! process, soft limit set to the lowest descriptor number it does not
//! use, so that every new process descriptor fails), then raised again
//! ("descriptors free up"); the test process is never limited.
//!
//! - Native loop with direct descriptors: a connection accepted into a
//!   shard's ring table whose client id another shard owns needs a process
//!   descriptor for the hand-off (`FIXED_FD_INSTALL`); without one it is
//!   refused where it arrived, CONNACK 0x89 Server busy (v3.1.1: return
//!   code 3), then closed; the clients already connected keep working,
//!   the slots are reused (more refusals than a table holds), a warning is
//!   logged, and once the limit is raised the hand-offs work again
//!   (WebSocket: `ws.rs`, `ws_connection_that_cannot_be_handed_off_...`).
//! - monoio (epoll and its io_uring driver): every socket is a process
//!   descriptor, so the accept itself fails; the broker logs it and backs
//!   off, the connection waits in the listen backlog while the clients
//!   already connected keep working, and it is served once the limit is
//!   raised.
//!
//! Every wait is bounded.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringmq_tests::packet::{connect_v311, connect_v5, publish_v311, subscribe_v311};
use ringmq_tests::{binary, client_id_on_shard, fds, Broker, RawClient};

/// Slots of each shard's direct table: few, so that a slot kept by a
/// failed hand-off would fill it within the refusals asked for.
const DIRECT_SLOTS: usize = 6;
/// Refusals asked for, per protocol version: together more than twice a
/// table, so one shard sees more than its table holds.
const REFUSALS_PER_VERSION: usize = DIRECT_SLOTS + 2;
/// Connections tried at most (about half are handed off).
const ATTEMPTS_MAX: usize = 400;
/// How long a CONNACK (or the close) may take.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// Connections a monoio io_uring broker may still accept after its limit
/// was lowered (accepts armed before: see the test).
const STALE_ACCEPTS_MAX: usize = 8;
/// How long a connection waits unanswered while the monoio broker has no
/// descriptor (several of its 100 ms accept back-offs).
const UNANSWERED_WAIT: Duration = Duration::from_millis(600);

/// A 2-shard broker on `io` with `extra` arguments.
fn start(io: &str, extra: &[&str]) -> Broker {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--io",
        io,
    ];
    args.extend_from_slice(extra);
    Broker::start_with_args(&binary(env!("CARGO_BIN_EXE_ringmq")), &args)
}

/// What a connection attempt got.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// CONNACK accepting it (its client id's owner accepted it).
    Accepted,
    /// A CONNACK refusing it with this code, then the close.
    Refused(u8),
}

/// A CONNACK's body (its remaining length is below 128 here); an error
/// for anything else.
fn read_connack(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut header = [0u8; 2];
    s.read_exact(&mut header)?;
    if header[0] != 0x20 || header[1] >= 0x80 {
        return Err(io::Error::other(format!("not a CONNACK: {header:02x?}")));
    }
    let mut body = vec![0u8; usize::from(header[1])];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// Connects `client_id` (v5 or v3.1.1) and reads the answer: a CONNACK
/// accepting it (then DISCONNECT), or one refusing it followed by the
/// close. Panics on anything else, or without an answer in time.
fn attempt(addr: SocketAddr, client_id: &str, v5: bool) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, ANSWER_WAIT)
        .unwrap_or_else(|e| panic!("{client_id}: connect: {e}"));
    s.set_read_timeout(Some(ANSWER_WAIT))
        .unwrap_or_else(|e| panic!("{e}"));
    let connect = if v5 {
        connect_v5(client_id, true, 60)
    } else {
        connect_v311(client_id, true, 60)
    };
    s.write_all(&connect)
        .unwrap_or_else(|e| panic!("{client_id}: CONNECT: {e}"));
    let body = read_connack(&mut s).unwrap_or_else(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => panic!("{client_id}: closed without a CONNACK"),
        _ => panic!(
            "{client_id}: no CONNACK within {ANSWER_WAIT:?} (a slot kept by a failed hand-off?): {e}"
        ),
    });
    // v3.1.1: flags, return code; v5: flags, reason code, properties.
    let code = body.get(1).copied().unwrap_or(0xff);
    if code == 0 {
        s.write_all(&[0xe0, 0x00])
            .unwrap_or_else(|e| panic!("{client_id}: DISCONNECT: {e}"));
        return Answer::Accepted;
    }
    assert_eq!(body[0], 0, "{client_id}: Session Present on a refusal");
    // The refusal ends the connection: EOF (a reset would lose the CONNACK
    // for a client that reads late).
    let mut rest = [0u8; 16];
    match s.read(&mut rest) {
        Ok(0) => {}
        other => panic!("{client_id}: after the refusal, not a close: {other:?}"),
    }
    Answer::Refused(code)
}

/// A subscriber and a publisher connected before the descriptors run out:
/// a message from one reaches the other.
struct Keepers {
    sub: RawClient,
    publisher: RawClient,
    sent: u16,
}

impl Keepers {
    fn connect(addr: SocketAddr) -> Keepers {
        let mut sub = RawClient::connect_v311(addr, "keeper-sub");
        sub.send(&subscribe_v311(1, "keep/#", 0));
        sub.expect(&[0x90, 0x03, 0x00, 0x01, 0x00]);
        let publisher = RawClient::connect_v311(addr, "keeper-pub");
        Keepers {
            sub,
            publisher,
            sent: 0,
        }
    }

    /// Publishes one QoS 0 message and sees it arrive.
    fn still_served(&mut self) {
        self.sent += 1;
        let payload = format!("m{}", self.sent);
        self.publisher
            .send(&publish_v311("keep/a", payload.as_bytes(), 0, 0, false));
        let got = self.sub.read_packet();
        assert!(
            got[0] >> 4 == 3 && got.ends_with(payload.as_bytes()),
            "the subscriber connected before got {got:02x?}"
        );
    }
}

/// A repeated warning is rate-limited (`ringmq_net::throttle`): each of
/// the broker's two shards logs `needle` at most once per interval begun
/// since `since`, however often the condition came back.
fn assert_warnings_throttled(log: &str, needle: &str, since: std::time::Instant) {
    let lines = log.lines().filter(|l| l.contains(needle)).count();
    let interval_s = ringmq_net::throttle::WARN_INTERVAL_S;
    let intervals = usize::try_from(since.elapsed().as_secs() / interval_s).unwrap_or(usize::MAX);
    let most = 2 * (intervals + 1);
    assert!(
        (1..=most).contains(&lines),
        "{lines} lines with {needle:?} in {:?} (at most {most}: one per shard and interval); log:\n{log}",
        since.elapsed()
    );
}

#[test]
fn a_hand_off_without_a_descriptor_is_refused_server_busy_and_the_broker_goes_on() {
    let dir = std::env::temp_dir().join(format!("ringmq-fd-limit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("ringmq.toml");
    std::fs::write(
        &config,
        format!("[runtime]\nnative_direct_fds = {DIRECT_SLOTS}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = config.display().to_string();
    let broker = start("native", &["--config", &config]);
    if !broker.native_with_direct_fds() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let addr = broker.addr();
    let mut keepers = Keepers::connect(addr);
    keepers.still_served();
    let limit = fds::exhaust(&broker);
    let exhausted = std::time::Instant::now();

    // Each connection lands on either shard: one whose client id the
    // other shard owns cannot be handed over and is refused.
    let mut refused = [0usize; 2]; // v3.1.1, v5
    let mut accepted = 0;
    let mut attempts = 0;
    while refused.iter().any(|&n| n < REFUSALS_PER_VERSION) {
        assert!(
            attempts < ATTEMPTS_MAX,
            "{attempts} connections, refused (v3.1.1, v5) {refused:?}: too few hand-offs; log:\n{}",
            broker.log()
        );
        let v5 = attempts % 2 == 1;
        let id = format!("emfile-{attempts}");
        attempts += 1;
        match attempt(addr, &id, v5) {
            Answer::Accepted => accepted += 1,
            // v5: 0x89 Server busy; v3.1.1: 3, server unavailable.
            Answer::Refused(code) => {
                assert_eq!(code, if v5 { 0x89 } else { 3 }, "{id}: refusal code");
                refused[usize::from(v5)] += 1;
            }
        }
    }
    eprintln!(
        "at the limit: {attempts} connections, {accepted} accepted by their owner, refused \
         (v3.1.1, v5) {refused:?}"
    );
    keepers.still_served();
    let log = broker.log();
    assert!(
        log.contains("no descriptor to hand a connection to its owner shard")
            && log.contains("Too many open files"),
        "the refusals are logged with their cause; log:\n{log}"
    );
    // Every refusal past a shard's first within the interval is counted,
    // not logged.
    assert_warnings_throttled(&log, "no descriptor to hand a connection", exhausted);

    // Descriptors free up: hand-offs work again, to either shard.
    fds::set_soft_limit(&broker, limit);
    for i in 0..8u16 {
        let id = client_id_on_shard(&format!("after-{i}"), i % 2, 2);
        assert_eq!(
            attempt(addr, &id, i % 4 < 2),
            Answer::Accepted,
            "{id} after the limit was raised; log:\n{}",
            broker.log()
        );
    }
    keepers.still_served();
    let (status, _) = broker.stop();
    assert!(status.success(), "clean stop");
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}

/// monoio: at the limit the accept fails; the connection waits, the
/// others are served, and it is answered once descriptors free up.
fn monoio_accept_waits_for_a_descriptor(io: &str) {
    let broker = start(io, &[]);
    let addr = broker.addr();
    let mut keepers = Keepers::connect(addr);
    keepers.still_served();
    let limit = fds::exhaust(&broker);
    let exhausted = std::time::Instant::now();

    // io_uring takes the open-file limit when an accept is submitted
    // (`io_accept_prep`): accepts armed before the limit was lowered may
    // still succeed (one per shard or so); the connections they take are
    // answered and kept. The first one left unanswered waits for a
    // descriptor.
    let mut answered = Vec::new();
    let mut waiting = loop {
        assert!(
            answered.len() < STALE_ACCEPTS_MAX,
            "{io}: {} connections answered without a descriptor to accept with; log:\n{}",
            answered.len(),
            broker.log()
        );
        let mut s = TcpStream::connect_timeout(&addr, ANSWER_WAIT)
            .unwrap_or_else(|e| panic!("connect (the listen backlog takes it): {e}"));
        let id = format!("waiting-{}", answered.len());
        s.write_all(&connect_v5(&id, true, 60))
            .unwrap_or_else(|e| panic!("{e}"));
        s.set_read_timeout(Some(UNANSWERED_WAIT))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut first = [0u8; 1];
        match s.peek(&mut first) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break s
            }
            Ok(1) if io != "epoll" => answered.push(s),
            other => panic!("{io}: {id} answered without a descriptor to accept with: {other:?}"),
        }
    };
    eprintln!(
        "{io}: {} connections accepted by accepts armed before the limit was lowered",
        answered.len()
    );
    keepers.still_served();
    let log = broker.log();
    assert!(
        log.contains("accept failed") && log.contains("Too many open files"),
        "{io}: the failed accept is logged; log:\n{log}"
    );
    // Retried every 100 ms while the limit lasts: logged once per shard
    // and interval.
    assert_warnings_throttled(&log, "accept failed", exhausted);
    assert!(
        !log.contains("panicked"),
        "{io}: nothing panicked; log:\n{log}"
    );

    fds::set_soft_limit(&broker, limit);
    waiting
        .set_read_timeout(Some(ANSWER_WAIT))
        .unwrap_or_else(|e| panic!("{e}"));
    let connack = read_connack(&mut waiting).unwrap_or_else(|e| {
        panic!(
            "{io}: no CONNACK once descriptors freed up: {e}; log:\n{}",
            broker.log()
        )
    });
    // Session Present 0, reason 0x00 Success.
    assert_eq!(connack[..2], [0x00, 0x00], "{io}: CONNACK {connack:02x?}");
    keepers.still_served();
    let (status, _) = broker.stop();
    assert!(status.success(), "{io}: clean stop");
}

#[test]
fn monoio_epoll_accepts_again_once_descriptors_free_up() {
    monoio_accept_waits_for_a_descriptor("epoll");
}

#[test]
fn monoio_uring_accepts_again_once_descriptors_free_up() {
    monoio_accept_waits_for_a_descriptor("uring");
}
