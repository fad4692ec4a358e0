//! Black-box tests of the runtime's connection handling, on the real
//! binary with `--shards 2` over loopback: the graceful close (the client
//! reads the last packet even while it is still writing), the timeout for
//! completing a started packet, and cross-shard backpressure instead of
//! loss. Every wait is bounded (socket read timeouts, [`TEST_LIMIT`]).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ringmq_tests::{binary, client_id_on_shard, hex, packet, Broker, READ_TIMEOUT};

const SHARDS: u16 = 2;
/// Longest any one of these tests may run.
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// Longest gap between two messages the flood test's subscriber accepts.
const FLOOD_READ_TIMEOUT: Duration = Duration::from_secs(20);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn config(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ringmq-runtime-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn connect(broker: &Broker) -> TcpStream {
    let s = TcpStream::connect_timeout(&broker.addr(), READ_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect: {e}"));
    s.set_read_timeout(Some(READ_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    s.set_nodelay(true).unwrap_or_else(|e| panic!("{e}"));
    s
}

/// One whole MQTT packet, or the I/O error (EOF is `UnexpectedEof`).
fn read_packet(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut packet = vec![0u8; 1];
    s.read_exact(&mut packet)?;
    let mut remaining = 0usize;
    for i in 0..4 {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        packet.push(b[0]);
        remaining |= usize::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            let mut body = vec![0u8; remaining];
            s.read_exact(&mut body)?;
            packet.extend_from_slice(&body);
            return Ok(packet);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "bad remaining length",
    ))
}

/// Reads until the broker closes: `Ok` for a clean EOF (FIN), the error
/// for a reset or a timeout.
fn read_to_eof(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    Ok(rest)
}

/// PUBLISH v5, QoS 2, no properties.
fn publish_v5_qos2(topic: &str, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.push(0); // properties length
    body.extend_from_slice(payload);
    packet::frame(0x34, &body)
}

/// 5.0 [MQTT-3.3.4-9]: a client that sends more unacknowledged QoS 2
/// publishes than the broker's Receive Maximum gets DISCONNECT 0x93. The
/// client here pipelines 40 publishes (Receive Maximum is 2) and handles
/// each PUBREC slowly, writing its PUBREL: its writes must keep working
/// and it must read the DISCONNECT, then a clean EOF. An abrupt close
/// (unread client bytes at close) would reset the connection: the PUBREL
/// write fails with "broken pipe" and the reason code is lost.
#[test]
fn v5_client_still_writing_reads_disconnect_0x93_after_exceeding_receive_maximum() {
    let cfg = config("receive-max.toml", "[limits]\nreceive_maximum = 2\n");
    let broker = Broker::start(&bin(), &["--config", &cfg]);
    let started = Instant::now();
    for shard in 0..SHARDS {
        let mut s = connect(&broker);
        let id = client_id_on_shard("rm", shard, SHARDS);
        s.write_all(&packet::connect_v5(&id, true, 0))
            .unwrap_or_else(|e| panic!("{e}"));
        let connack = read_packet(&mut s).unwrap_or_else(|e| panic!("CONNACK: {e}"));
        assert_eq!(connack[0], 0x20, "CONNACK: {}", hex(&connack));
        let mut burst = Vec::new();
        for id in 1..=40u16 {
            burst.extend(publish_v5_qos2("rm/t", id, &[b'x'; 512]));
        }
        s.write_all(&burst).unwrap_or_else(|e| panic!("{e}"));
        let mut pubrecs = 0;
        let disconnect = loop {
            let p = read_packet(&mut s).unwrap_or_else(|e| {
                panic!("read after {pubrecs} PUBRECs (expected DISCONNECT 0x93): {e}")
            });
            match p[0] {
                0x50 => {
                    pubrecs += 1;
                    // A slow client: the broker has closed by now.
                    std::thread::sleep(Duration::from_millis(100));
                    let pubrel = [0x62, 0x02, p[2], p[3]];
                    s.write_all(&pubrel)
                        .unwrap_or_else(|e| panic!("PUBREL after the broker's close: {e}"));
                }
                0xe0 => break p,
                _ => panic!("unexpected packet {}", hex(&p)),
            }
        };
        assert_eq!(pubrecs, 2, "one PUBREC per publish within Receive Maximum");
        assert_eq!(
            disconnect.get(2),
            Some(&0x93),
            "DISCONNECT reason: {}",
            hex(&disconnect)
        );
        let rest = read_to_eof(&mut s).unwrap_or_else(|e| panic!("clean EOF expected: {e}"));
        assert!(rest.is_empty(), "nothing after DISCONNECT: {}", hex(&rest));
    }
    assert!(started.elapsed() < TEST_LIMIT);
}

/// 3.1.1 [MQTT-3.1.3-8]: an empty client id without a clean session is
/// refused with CONNACK 0x02. The client pipelined publishes after its
/// CONNECT and keeps writing: it must still read the CONNACK and a clean
/// EOF, not a reset.
#[test]
fn v311_client_still_writing_reads_the_refusing_connack() {
    let broker = Broker::start(&bin(), &[]);
    let mut s = connect(&broker);
    let mut first = packet::connect_v311("", false, 0);
    for _ in 0..64 {
        first.extend(packet::publish_v311("c/t", &[b'y'; 1024], 0, 0, false));
    }
    s.write_all(&first).unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..16 {
        s.write_all(&packet::publish_v311("c/t", &[b'z'; 1024], 0, 0, false))
            .unwrap_or_else(|e| panic!("write after the broker's close: {e}"));
    }
    let connack = read_packet(&mut s).unwrap_or_else(|e| panic!("CONNACK: {e}"));
    assert_eq!(hex(&connack), hex(&[0x20, 0x02, 0x00, 0x02]));
    let rest = read_to_eof(&mut s).unwrap_or_else(|e| panic!("clean EOF expected: {e}"));
    assert!(rest.is_empty(), "nothing after CONNACK: {}", hex(&rest));
}

/// `packet_complete_timeout_ms`: a client with keep-alive 0 (no other
/// timeout applies) that sends the start of a PUBLISH and stalls is closed
/// once the timeout passes; one that completes its packet in pieces within
/// the timeout is served.
#[test]
fn a_started_packet_that_stalls_is_cut_by_packet_complete_timeout() {
    let cfg = config(
        "packet-timeout.toml",
        "[runtime]\npacket_complete_timeout_ms = 500\n",
    );
    let broker = Broker::start(&bin(), &["--config", &cfg]);
    for shard in 0..SHARDS {
        // Completed in pieces, 200 ms apart, within the timeout: served.
        let mut steady = connect(&broker);
        steady
            .write_all(&packet::connect_v311(
                &client_id_on_shard("steady", shard, SHARDS),
                true,
                0,
            ))
            .unwrap_or_else(|e| panic!("{e}"));
        let connack = read_packet(&mut steady).unwrap_or_else(|e| panic!("CONNACK: {e}"));
        assert_eq!(hex(&connack), hex(&[0x20, 0x02, 0x00, 0x00]));
        for byte in packet::PINGREQ {
            std::thread::sleep(Duration::from_millis(200));
            steady.write_all(&[byte]).unwrap_or_else(|e| panic!("{e}"));
        }
        let pong = read_packet(&mut steady).unwrap_or_else(|e| panic!("PINGRESP: {e}"));
        assert_eq!(hex(&pong), hex(&packet::PINGRESP));

        // Started and stalled: closed after the timeout, not before.
        let mut stalled = connect(&broker);
        stalled
            .write_all(&packet::connect_v311(
                &client_id_on_shard("stall", shard, SHARDS),
                true,
                0,
            ))
            .unwrap_or_else(|e| panic!("{e}"));
        let connack = read_packet(&mut stalled).unwrap_or_else(|e| panic!("CONNACK: {e}"));
        assert_eq!(hex(&connack), hex(&[0x20, 0x02, 0x00, 0x00]));
        let publish = packet::publish_v311("s/t", &[b'p'; 4000], 0, 0, false);
        let sent_at = Instant::now();
        stalled
            .write_all(&publish[..1000])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut rest = Vec::new();
        // EOF (or a reset: the close carries no reason code) ends the read;
        // a read timeout means the connection was not cut.
        if let Err(e) = stalled.read_to_end(&mut rest) {
            assert!(
                !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "stalled packet not cut within {READ_TIMEOUT:?}"
            );
        }
        let took = sent_at.elapsed();
        assert!(rest.is_empty(), "no reply: {}", hex(&rest));
        assert!(
            took >= Duration::from_millis(450),
            "cut before the timeout: {took:?}"
        );
        // The steady connection was not affected.
        steady
            .write_all(&packet::PINGREQ)
            .unwrap_or_else(|e| panic!("{e}"));
        let pong = read_packet(&mut steady).unwrap_or_else(|e| panic!("PINGRESP: {e}"));
        assert_eq!(hex(&pong), hex(&packet::PINGRESP));
    }
}

/// Full-ring policy: with rings of 2 slots and an overflow of 4 messages
/// (one 16 KiB read of this flood produces over 1,000 messages), a QoS 0
/// flood from a publisher on shard 1 to a subscriber on shard 0 that reads
/// as fast as it can loses nothing: the broker stops reading the publisher
/// while the ring is full instead of dropping.
#[test]
fn qos0_flood_across_tiny_rings_loses_nothing_for_a_prompt_subscriber() {
    const MESSAGES: u32 = 20_000;
    let cfg = config(
        "tiny-rings.toml",
        "[runtime]\nring_capacity_slots = 2\nring_overflow_max_messages = 4\n",
    );
    let broker = Broker::start(&bin(), &["--config", &cfg]);
    let started = Instant::now();
    let mut sub = connect(&broker);
    // Tiny rings are slow (a few messages per cross-thread wake-up), more
    // so on a loaded machine: allow a long gap, within TEST_LIMIT. (A lost
    // wake-up once stalled this flood until the next $SYS tick, 10 s; the
    // ring task's OVERFLOW_RECHECK_MS bounds that now.)
    sub.set_read_timeout(Some(FLOOD_READ_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    sub.write_all(&packet::connect_v311(
        &client_id_on_shard("flood-sub", 0, SHARDS),
        true,
        0,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        hex(&read_packet(&mut sub).unwrap_or_else(|e| panic!("CONNACK: {e}"))),
        hex(&[0x20, 0x02, 0x00, 0x00])
    );
    sub.write_all(&packet::subscribe_v311(1, "f/#", 0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        hex(&read_packet(&mut sub).unwrap_or_else(|e| panic!("SUBACK: {e}"))),
        hex(&[0x90, 0x03, 0x00, 0x01, 0x00])
    );
    // The subscription reaches shard 1 over the ring: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let reader = std::thread::spawn(move || {
        let mut next = 0u32;
        loop {
            let p = read_packet(&mut sub)
                .unwrap_or_else(|e| panic!("subscriber read after {next} messages: {e}"));
            assert_eq!(p[0] & 0xf0, 0x30, "PUBLISH: {}", hex(&p[..p.len().min(16)]));
            // 3.1.1 QoS 0: topic length, topic, payload (4-byte sequence).
            let topic_len = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let topic = &p[4..4 + topic_len];
            if topic == b"f/end" {
                return next;
            }
            let payload = &p[4 + topic_len..];
            let seq = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            assert_eq!(seq, next, "in order, none lost");
            next += 1;
        }
    });
    let mut publisher = connect(&broker);
    publisher
        .write_all(&packet::connect_v311(
            &client_id_on_shard("flood-pub", 1, SHARDS),
            true,
            0,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        hex(&read_packet(&mut publisher).unwrap_or_else(|e| panic!("CONNACK: {e}"))),
        hex(&[0x20, 0x02, 0x00, 0x00])
    );
    let mut burst = Vec::new();
    for seq in 0..MESSAGES {
        burst.extend(packet::publish_v311("f/t", &seq.to_be_bytes(), 0, 0, false));
        if burst.len() >= 64 * 1024 {
            publisher
                .write_all(&burst)
                .unwrap_or_else(|e| panic!("{e}"));
            burst.clear();
        }
    }
    burst.extend(packet::publish_v311("f/end", b"", 0, 0, false));
    publisher
        .write_all(&burst)
        .unwrap_or_else(|e| panic!("{e}"));
    let received = reader
        .join()
        .unwrap_or_else(|_| panic!("subscriber thread panicked"));
    assert_eq!(received, MESSAGES);
    assert!(
        started.elapsed() < TEST_LIMIT,
        "took {:?}",
        started.elapsed()
    );
}

/// The allocator policy of `ringmq_net::alloc::large_blocks_from_os` is in
/// force in the broker: it reads the option back from mimalloc at start
/// and logs it (debug). Without it, grown tables reuse resident arena
/// ranges and 100,000 idle connections cost ~40% more RSS
/// (docs/benchmarks.md, "Freed memory the allocator keeps committed").
#[test]
fn the_broker_maps_large_blocks_from_the_os() {
    let broker = Broker::start(&bin(), &["--log-level", "debug"]);
    let expected = if std::env::var_os("MIMALLOC_ARENA_MAX_OBJECT_SIZE").is_some() {
        "large_blocks=Unchanged"
    } else {
        "large_blocks=FromOs arena_max_object_kib=2048"
    };
    let deadline = Instant::now() + TEST_LIMIT;
    loop {
        let log = broker.log();
        if let Some(line) = log.lines().find(|l| l.contains("allocator: large blocks")) {
            assert!(line.contains(expected), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "no allocator line; log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
