//! Raw-packet black-box tests: the real binary with `--shards 2`, MQTT
//! bytes written by hand, and byte-exact expectations where the spec fixes
//! the bytes.

use std::path::PathBuf;
use std::time::Duration;

use ringmq_tests::{binary, client_id_on_shard, packet, Broker, RawClient};

const SHARDS: u16 = 2;

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn config(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ringmq-raw-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

#[test]
fn connack_for_v311_clean_connect_is_20_02_00_00_on_both_shards() {
    let broker = Broker::start(&bin(), &[]);
    for shard in 0..SHARDS {
        let id = client_id_on_shard("connack", shard, SHARDS);
        // Several connections, so both accepting shards are exercised
        // (the kernel spreads them) and some are handed off.
        for _ in 0..4 {
            let mut c = RawClient::connect(broker.addr());
            c.send(&packet::connect_v311(&id, true, 60));
            c.expect(&[0x20, 0x02, 0x00, 0x00]);
            c.send(&packet::PINGREQ);
            c.expect(&packet::PINGRESP);
            c.send(&packet::DISCONNECT);
            assert!(c.expect_closed().is_empty());
        }
    }
}

#[test]
fn connect_split_into_single_bytes_is_routed_and_answered() {
    let broker = Broker::start(&bin(), &[]);
    let id = client_id_on_shard("split", 1, SHARDS);
    let mut c = RawClient::connect(broker.addr());
    for b in packet::connect_v311(&id, true, 60) {
        c.send(&[b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    c.expect(&[0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn qos0_publish_crosses_shards_byte_exact() {
    let broker = Broker::start(&bin(), &[]);
    let mut sub = RawClient::connect_v311(broker.addr(), &client_id_on_shard("sub", 0, SHARDS));
    sub.send(&packet::subscribe_v311(1, "a/b", 0));
    sub.expect(&[0x90, 0x03, 0x00, 0x01, 0x00]);
    let mut publisher =
        RawClient::connect_v311(broker.addr(), &client_id_on_shard("pub", 1, SHARDS));
    let publish = packet::publish_v311("a/b", b"hello", 0, 0, false);
    publisher.send(&publish);
    sub.expect(&publish);
}

#[test]
fn retained_message_reaches_a_later_subscriber_on_another_shard() {
    let broker = Broker::start(&bin(), &[]);
    let mut publisher =
        RawClient::connect_v311(broker.addr(), &client_id_on_shard("rpub", 1, SHARDS));
    publisher.send(&packet::publish_v311("r/t", b"kept", 0, 0, true));
    // Retained state is replicated over the rings: allow it a moment.
    std::thread::sleep(Duration::from_millis(200));
    let mut sub = RawClient::connect_v311(broker.addr(), &client_id_on_shard("rsub", 0, SHARDS));
    sub.send(&packet::subscribe_v311(7, "r/#", 0));
    sub.expect(&[0x90, 0x03, 0x00, 0x07, 0x00]);
    sub.expect(&packet::publish_v311("r/t", b"kept", 0, 0, true));
}

#[test]
fn malformed_packet_closes_only_that_connection() {
    let broker = Broker::start(&bin(), &[]);
    let mut good = RawClient::connect_v311(broker.addr(), &client_id_on_shard("good", 0, SHARDS));
    for shard in 0..SHARDS {
        let mut bad =
            RawClient::connect_v311(broker.addr(), &client_id_on_shard("bad", shard, SHARDS));
        // Packet type 0 is reserved (section 2.1.2): malformed.
        bad.send(&[0x00, 0x00]);
        bad.expect_closed();
    }
    // A second CONNECT is a protocol violation (section 3.1, MQTT-3.1.0-2).
    let mut twice = RawClient::connect_v311(broker.addr(), "twice");
    twice.send(&packet::connect_v311("twice", true, 60));
    twice.expect_closed();
    good.send(&packet::PINGREQ);
    good.expect(&packet::PINGRESP);
}

#[test]
fn garbage_before_connect_closes_the_connection() {
    let broker = Broker::start(&bin(), &[]);
    let mut c = RawClient::connect(broker.addr());
    c.send(b"GET / HTTP/1.1\r\n\r\n");
    c.expect_closed();
    let mut ok = RawClient::connect_v311(broker.addr(), "after-garbage");
    ok.send(&packet::PINGREQ);
    ok.expect(&packet::PINGRESP);
}

#[test]
fn oversize_packet_closes_the_connection() {
    let cfg = config(
        "small-packets.toml",
        "[limits]\npacket_size_max_bytes = 1024\n",
    );
    let broker = Broker::start(&bin(), &["--config", &cfg]);
    let mut c = RawClient::connect_v311(broker.addr(), "big");
    c.send(&packet::publish_v311("t", &[0u8; 2000], 0, 0, false));
    c.expect_closed();
    let mut ok = RawClient::connect_v311(broker.addr(), "small");
    ok.send(&packet::publish_v311("t", &[0u8; 900], 0, 0, false));
    ok.send(&packet::PINGREQ);
    ok.expect(&packet::PINGRESP);
}

/// With more than one shard, an oversize CONNECT is refused from its
/// header: the routing step takes the configured maximum packet size, not
/// the protocol's, so it neither waits for nor buffers the announced body,
/// and the broker answers v5 CONNACK 0x95 (Packet too large) at once.
#[test]
fn oversize_connect_is_refused_before_its_body_arrives() {
    let cfg = config(
        "small-connect.toml",
        "[limits]\npacket_size_max_bytes = 1024\nconnect_timeout_ms = 60000\n",
    );
    let broker = Broker::start(&bin(), &["--config", &cfg]);
    for _ in 0..4 {
        // Several connections: both accepting shards are exercised.
        let mut c = RawClient::connect(broker.addr());
        // CONNECT announcing 2000 bytes (> 1024); only its start is sent:
        // protocol name "MQTT", level 5.
        c.send(&[0x10, 0xd0, 0x0f, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05]);
        c.expect(&[0x20, 0x03, 0x00, 0x95, 0x00]);
        c.expect_closed();
    }
}

#[test]
fn sys_topics_are_not_matched_by_hash() {
    let cfg = config("sys.toml", "[runtime]\nsys_interval_s = 1\n");
    let broker = Broker::start(&bin(), &["--config", &cfg]);
    let mut all = RawClient::connect_v311(broker.addr(), &client_id_on_shard("hash", 0, SHARDS));
    all.send(&packet::subscribe_v311(1, "#", 0));
    all.expect(&[0x90, 0x03, 0x00, 0x01, 0x00]);
    let mut sys = RawClient::connect_v311(broker.addr(), &client_id_on_shard("sys", 1, SHARDS));
    sys.send(&packet::subscribe_v311(2, "$SYS/#", 0));
    // A tick may come before the SUBACK (allowed): skipped.
    sys.expect_after_publishes(&[0x90, 0x03, 0x00, 0x02, 0x00]);
    // $SYS statistics arrive every second...
    let first = sys.read_packet();
    assert_eq!(first[0] & 0xf0, 0x30, "a PUBLISH");
    assert_eq!(&first[4..9], b"$SYS/", "topic starts with $SYS/");
    // ...but `#` does not match them (MQTT-4.7.2-1).
    all.expect_silence(Duration::from_millis(2500));
    let publish = packet::publish_v311("plain", b"x", 0, 0, false);
    let mut p = RawClient::connect_v311(broker.addr(), "sys-pub");
    p.send(&publish);
    all.expect(&publish);
}

#[test]
fn connection_limit_refuses_extra_sockets() {
    let cfg = config("limit.toml", "[limits]\nconnections_max = 2\n");
    let broker = Broker::start_with_args(
        &bin(),
        &["--listen", "127.0.0.1:0", "--shards", "1", "--config", &cfg],
    );
    let _a = RawClient::connect_v311(broker.addr(), "one");
    let _b = RawClient::connect_v311(broker.addr(), "two");
    let mut c = RawClient::connect(broker.addr());
    c.send(&packet::connect_v311("three", true, 60));
    c.expect_closed();
}

#[test]
fn silent_connection_is_closed_by_the_connect_timeout() {
    let cfg = config(
        "connect-timeout.toml",
        "[limits]\nconnect_timeout_ms = 300\n",
    );
    let broker = Broker::start(&bin(), &["--config", &cfg]);
    let started = std::time::Instant::now();
    // Nothing sent, and a partial CONNECT: both are still being routed
    // when the engine's CONNECT timeout closes them.
    let mut silent = RawClient::connect(broker.addr());
    let mut partial = RawClient::connect(broker.addr());
    partial.send(&packet::connect_v311("partial", true, 60)[..5]);
    silent.expect_closed();
    partial.expect_closed();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn takeover_sends_0x8e_to_the_old_v5_connection_on_either_shard() {
    let broker = Broker::start(&bin(), &[]);
    for owner in 0..SHARDS {
        let id = client_id_on_shard("raw-takeover", owner, SHARDS);
        let mut old = RawClient::connect(broker.addr());
        old.send(&packet::connect_v5(&id, true, 60));
        assert_eq!(old.read_packet()[0], 0x20, "CONNACK");
        let mut new = RawClient::connect(broker.addr());
        new.send(&packet::connect_v5(&id, true, 60));
        assert_eq!(new.read_packet()[0], 0x20, "CONNACK");
        let closing = old.expect_closed();
        let disconnect = closing
            .last()
            .unwrap_or_else(|| panic!("no DISCONNECT before close"));
        assert_eq!(disconnect[0], 0xe0, "DISCONNECT");
        assert_eq!(disconnect.get(2), Some(&0x8e), "reason Session taken over");
        new.send(&packet::PINGREQ);
        new.expect(&packet::PINGRESP);
    }
}

#[test]
fn ten_thousand_retained_1k_messages_all_reach_a_prompt_hash_subscriber() {
    // Issue 9 item 9: retained messages sent on SUBSCRIBE stream as the
    // subscriber's socket drains; none is dropped for a full buffer (it
    // used to receive about 1,011 of 10,000).
    const COUNT: usize = 10_000;
    let broker = Broker::start(&bin(), &[]);
    let id = |p: &str| client_id_on_shard(p, 0, SHARDS);
    let mut publisher = RawClient::connect_v311(broker.addr(), &id("bulk-pub"));
    let payload = vec![b'x'; 1024];
    let mut batch = Vec::new();
    for i in 0..COUNT {
        batch.extend(packet::publish_v311(
            &format!("bulk/{i}"),
            &payload,
            0,
            0,
            true,
        ));
        if batch.len() > 256 * 1024 {
            publisher.send(&batch);
            batch.clear();
        }
    }
    batch.extend_from_slice(&packet::PINGREQ);
    publisher.send(&batch);
    // Packets of one connection are handled in order: all are stored.
    // 0.5-0.7 s on the shared 2-core development machine (load 5), up to
    // 3.9 s with four busy loops beside it: the bound is for a stall, not
    // for speed.
    publisher.expect_within(&packet::PINGRESP, Duration::from_secs(60));
    let mut sub = RawClient::connect_v311(broker.addr(), &id("bulk-sub"));
    sub.send(&packet::subscribe_v311(3, "#", 0));
    sub.expect(&[0x90, 0x03, 0x00, 0x03, 0x00]);
    let mut topics = std::collections::HashSet::new();
    while topics.len() < COUNT {
        let p = sub.read_packet();
        // PUBLISH, QoS 0, RETAIN 1 ([MQTT-3.3.1-9]).
        assert_eq!(p.first(), Some(&0x31), "packet {}", topics.len());
        let len_bytes = p.iter().skip(1).take_while(|b| *b & 0x80 != 0).count() + 1;
        let body = &p[1 + len_bytes..];
        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        assert_eq!(body.len(), 2 + topic_len + payload.len());
        topics.insert(body[2..2 + topic_len].to_vec());
    }
    assert_eq!(topics.len(), COUNT);
    sub.expect_silence(Duration::from_millis(200));
}
