//! Broker-wide `$SYS` totals with Mosquitto's topic names, computed
//! across two shards: publishers on each shard, a subscriber reading
//! `$SYS/broker/...` until the totals show what was sent (bounded wait).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringmq_tests::{binary, client_id_on_shard, packet, Broker, RawClient};

const SHARDS: u16 = 2;

/// Topic and payload of a QoS 0 PUBLISH packet (v3.1.1).
fn topic_and_payload(p: &[u8]) -> Option<(String, String)> {
    if p.first()? & 0xf0 != 0x30 {
        return None;
    }
    let mut i = 1;
    while p.get(i)? & 0x80 != 0 {
        i += 1;
    }
    i += 1;
    let len = usize::from(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]));
    let topic = p.get(i + 2..i + 2 + len)?;
    let payload = p.get(i + 2 + len..)?;
    Some((
        String::from_utf8_lossy(topic).into_owned(),
        String::from_utf8_lossy(payload).into_owned(),
    ))
}

#[test]
fn broker_wide_totals_sum_both_shards_under_mosquittos_names() {
    let bin = binary(env!("CARGO_BIN_EXE_ringmq"));
    // sys_interval_s is 10 by default: a 1 s tick for the test.
    let dir = std::env::temp_dir().join(format!("ringmq-sys-totals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("ringmq.toml");
    std::fs::write(&config, "[runtime]\nsys_interval_s = 1\n").unwrap_or_else(|e| panic!("{e}"));
    let config = config.display().to_string();
    let broker = Broker::start(&bin, &["--config", &config]);
    let addr = broker.addr();

    let mut watcher = RawClient::connect_v311(addr, &client_id_on_shard("watch", 0, SHARDS));
    watcher.send(&packet::subscribe_v311(1, "$SYS/broker/#", 0));
    // A tick may come before the SUBACK (allowed): skipped.
    watcher.expect_after_publishes(&[0x90, 0x03, 0x00, 0x01, 0x00]);
    // Two messages published on shard 0, three on shard 1 (to a topic
    // nobody reads).
    let mut on0 = RawClient::connect_v311(addr, &client_id_on_shard("p", 0, SHARDS));
    let mut on1 = RawClient::connect_v311(addr, &client_id_on_shard("p", 1, SHARDS));
    for _ in 0..2 {
        on0.send(&packet::publish_v311("data/x", b"12345", 0, 0, false));
    }
    for _ in 0..3 {
        on1.send(&packet::publish_v311("data/y", b"1234567", 0, 0, false));
    }
    // Pings make sure both shards handled the publishes before we wait.
    for c in [&mut on0, &mut on1] {
        c.send(&[0xc0, 0x00]);
        assert_eq!(c.read_packet(), [0xd0, 0x00]);
    }

    let want = [
        ("$SYS/broker/publish/messages/received", "5"),
        ("$SYS/broker/publish/bytes/received", "31"),
        ("$SYS/broker/clients/connected", "3"),
        ("$SYS/broker/clients/total", "3"),
        ("$SYS/broker/clients/disconnected", "0"),
        ("$SYS/broker/subscriptions/count", "1"),
        ("$SYS/broker/shards/0/messages/received", "2"),
        ("$SYS/broker/shards/1/messages/received", "3"),
    ];
    // Published after the values above in each round: read on until they
    // came too.
    const OTHERS: [&str; 9] = [
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/retained messages/count",
        "$SYS/broker/clients/maximum",
        "$SYS/broker/load/messages/received/5min",
        "$SYS/broker/load/bytes/sent/15min",
        "$SYS/broker/load/connections/1min",
    ];
    let mut seen: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let done = |seen: &HashMap<String, String>| {
        want.iter()
            .all(|(t, v)| seen.get(*t).map(String::as_str) == Some(*v))
            && seen
                .get("$SYS/broker/load/publish/received/1min")
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
            && OTHERS.iter().all(|t| seen.contains_key(*t))
    };
    while !done(&seen) {
        assert!(
            Instant::now() < deadline,
            "totals not seen within 15 s; last values: {:#?}",
            want.iter()
                .map(|(t, _)| (t, seen.get(*t)))
                .collect::<Vec<_>>()
        );
        let p = watcher.read_packet();
        if let Some((topic, payload)) = topic_and_payload(&p) {
            seen.insert(topic, payload);
        }
    }
    // Mosquitto's other names, published in the same round, are numbers.
    for topic in OTHERS {
        let v = &seen[topic];
        assert!(v.parse::<f64>().is_ok(), "{topic} = {v:?}");
    }
    let (status, _) = broker.stop();
    assert!(status.success(), "{status:?}");
}
