//! Bursts to one subscriber (issue 9 item 9): retained messages sent on
//! SUBSCRIBE stream as the subscriber's socket drains and are never dropped
//! for a full buffer; QoS 0 messages behind a full outgoing buffer wait in
//! the connection's backlog, and only a subscriber that is really behind
//! (backlog at its message or byte bound) loses them, counted per reason.

mod sim;

use ringmq_engine::broker::BrokerConfig;
use ringmq_engine::codec::{Packet, QoS};
use sim::*;

const KIB: usize = 1024;

fn payload(i: usize, len: usize) -> String {
    let mut s = format!("{i:06}-");
    let pad = len.saturating_sub(s.len());
    s.push_str(&"x".repeat(pad));
    s
}

/// Publish `n` retained messages of `len` bytes on `t/{i}` (QoS `qos`).
fn retain_many(sim: &mut Sim, n: usize, len: usize, qos: u8) {
    let p = sim.connect(V5, "retainer", true);
    for i in 0..n {
        let mut m = publish(&format!("t/{i}"), &payload(i, len), qos);
        m.retain = true;
        sim.publish(p, m);
    }
    assert_eq!(sim.brokers[0].retained_count(), n);
}

#[test]
fn ten_thousand_retained_reach_a_prompt_qos0_subscriber_after_the_suback() {
    let mut sim = Sim::new(1);
    retain_many(&mut sim, 10_000, KIB, 0);
    for protocol in [V3, V5] {
        let s = sim.connect(protocol, &format!("sub-{protocol:?}"), true);
        let pid = sim.pid();
        let sub = ringmq_engine::codec::Subscribe {
            packet_id: pid,
            filters: vec![ringmq_engine::codec::SubscribeFilter {
                filter: bytes::Bytes::from_static(b"#"),
                options: opts(0),
            }],
            properties: Default::default(),
        };
        sim.send(s, Packet::Subscribe(sub));
        let got = sim.recv(s);
        // [MQTT-3.3.1-9] retained messages follow the SUBACK, with RETAIN 1.
        assert!(
            matches!(got.first(), Some(Packet::SubAck(_))),
            "{protocol:?}"
        );
        let publishes: Vec<_> = got
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(publishes.len(), 10_000, "{protocol:?}");
        assert!(publishes
            .iter()
            .all(|p| p.retain && p.qos == QoS::AtMostOnce));
        let mut topics: Vec<_> = publishes.iter().map(|p| p.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        assert_eq!(topics.len(), 10_000, "{protocol:?}: each once");
    }
    let stats = sim.brokers[0].stats();
    assert_eq!(stats.dropped_qos0_queue_messages, 0);
    assert_eq!(stats.dropped_qos0_queue_bytes, 0);
}

#[test]
fn retained_stream_waits_for_a_stalled_subscriber_and_loses_nothing() {
    let mut sim = Sim::new(1);
    retain_many(&mut sim, 3_000, KIB, 0);
    let s = sim.connect(V5, "sub", true);
    sim.stall(s, true);
    let pid = sim.pid();
    let sub = ringmq_engine::codec::Subscribe {
        packet_id: pid,
        filters: vec![ringmq_engine::codec::SubscribeFilter {
            filter: bytes::Bytes::from_static(b"t/#"),
            options: opts(0),
        }],
        properties: Default::default(),
    };
    sim.send(s, Packet::Subscribe(sub));
    // A live message published while the stream waits comes after it.
    let p = sim.connect(V5, "live", true);
    sim.pub_simple(p, "t/live", "late", 0);
    assert!(sim.recv(s).is_empty(), "a stalled client reads nothing");
    sim.stall(s, false);
    let got = sim.recv(s);
    assert!(matches!(got.first(), Some(Packet::SubAck(_))));
    let payloads: Vec<String> = got
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(payloads.len(), 3_001);
    assert_eq!(payloads.last().map(String::as_str), Some("late"));
}

#[test]
fn retained_qos1_beyond_the_session_queue_are_streamed_as_acknowledged() {
    // More retained QoS 1 messages than the session queue holds: they enter
    // it as acknowledgements free it, none is dropped.
    let config = BrokerConfig {
        session_queue_max_messages: 50,
        inflight_max: 10,
        ..base()
    };
    let mut sim = Sim::with_config(1, config);
    retain_many(&mut sim, 500, 100, 1);
    let s = sim.connect(V5, "sub", true);
    assert_eq!(sim.subscribe(s, "t/#", 1).0, 1);
    let mut got = Vec::new();
    for _ in 0..1_000 {
        let batch = sim.messages(s); // acknowledges each
        if batch.is_empty() {
            break;
        }
        got.extend(batch);
    }
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|p| p.qos == QoS::AtLeastOnce && p.retain));
    assert_eq!(sim.brokers[0].stats().dropped_queue_full, 0);
}

#[test]
fn a_burst_of_64k_wills_at_once_reaches_a_prompt_subscriber() {
    let mut sim = Sim::new(1);
    // Just under 64 KiB: a will payload is a two-byte-length field.
    let big = payload(0, 64 * KIB - 100);
    // As many as the subscriber's backlog bound holds (topic + payload
    // bytes; its socket buffer takes more on top): 500 with the native
    // defaults (64 MiB, the burst `BrokerConfig::default` is sized for),
    // 256 with the in-tab profile (16 MiB).
    let n = (sim.config.outgoing_queue_max_bytes / (64 * KIB)).min(500);
    if sim.config.outgoing_queue_max_bytes >= 500 * 64 * KIB {
        assert_eq!(n, 500);
    }
    // The burst dwarfs what the socket buffer alone could take.
    assert!(n * big.len() >= 8 * sim.config.outgoing_buffer_max_bytes);
    let s = sim.connect(V5, "watcher", true);
    assert_eq!(sim.subscribe(s, "wills/#", 0).0, 0);
    let mut clients = Vec::new();
    for i in 0..n {
        let mut c = connect_packet(V5, &format!("w{i}"), true);
        c.will = Some(will(&format!("wills/{i}"), &big, 0, None));
        let (c, _) = sim.connect_with(c);
        clients.push(c);
    }
    // All drop in one pass of the event loop: the watcher's socket takes
    // nothing until they are all routed (32 MiB natively, 16 MiB in a tab,
    // against a 1 MiB buffer).
    sim.stall(s, true);
    for c in clients {
        sim.drop_conn(c);
    }
    sim.stall(s, false);
    assert_eq!(sim.messages(s).len(), n);
    assert_eq!(sim.brokers[0].stats().dropped_qos0_queue_bytes, 0);
}

#[test]
fn a_subscriber_that_does_not_keep_up_loses_qos0_per_bound_counted() {
    // Message bound.
    let config = BrokerConfig {
        outgoing_buffer_max_bytes: 4 * KIB,
        outgoing_queue_max_messages: 10,
        ..base()
    };
    let mut sim = Sim::with_config(1, config);
    let s = sim.connect(V5, "slow", true);
    sim.subscribe(s, "t", 0);
    let p = sim.connect(V5, "pub", true);
    sim.stall(s, true);
    for i in 0..100 {
        sim.pub_simple(p, "t", &payload(i, KIB), 0);
    }
    sim.stall(s, false);
    let got = sim.payloads(s);
    // 4 fill the buffer (the 4th crosses it), 10 wait, the rest are dropped.
    assert_eq!(got.len(), 14);
    // The kept ones are the oldest, in order.
    let expect: Vec<String> = (0..14).map(|i| payload(i, KIB)).collect();
    assert_eq!(got, expect);
    let stats = sim.brokers[0].stats();
    assert_eq!(stats.dropped_qos0_queue_messages, 86);
    assert_eq!(stats.dropped_qos0_queue_bytes, 0);
    // It caught up: the next one goes straight through.
    sim.pub_simple(p, "t", "after", 0);
    assert_eq!(sim.payloads(s), ["after"]);

    // Byte bound (topic + payload bytes of what waits).
    let config = BrokerConfig {
        outgoing_buffer_max_bytes: 4 * KIB,
        outgoing_queue_max_bytes: 5 * (KIB + 1),
        ..base()
    };
    let mut sim = Sim::with_config(1, config);
    let s = sim.connect(V3, "slow", true);
    sim.subscribe(s, "t", 0);
    let p = sim.connect(V3, "pub", true);
    sim.stall(s, true);
    for i in 0..20 {
        sim.pub_simple(p, "t", &payload(i, KIB), 0);
    }
    sim.stall(s, false);
    assert_eq!(sim.payloads(s).len(), 4 + 5);
    let stats = sim.brokers[0].stats();
    assert_eq!(stats.dropped_qos0_queue_bytes, 11);
    assert_eq!(stats.dropped_qos0_queue_messages, 0);
}

#[test]
fn sys_counts_drops_per_reason() {
    let config = BrokerConfig {
        outgoing_buffer_max_bytes: KIB,
        outgoing_queue_max_messages: 1,
        sys_interval_s: 1,
        ..base()
    };
    let mut sim = Sim::with_config(1, config);
    let s = sim.connect(V5, "slow", true);
    sim.subscribe(s, "t", 0);
    let p = sim.connect(V5, "pub", true);
    sim.stall(s, true);
    for i in 0..5 {
        sim.pub_simple(p, "t", &payload(i, KIB), 0);
    }
    sim.stall(s, false);
    let w = sim.connect(V5, "watch", true);
    sim.subscribe(w, "$SYS/broker/shards/0/messages/dropped/#", 0);
    sim.advance(1_500);
    let got = sim.messages(w);
    let value = |t: &str| {
        got.iter()
            .rev()
            .find(|m| m.topic.as_ref() == t.as_bytes())
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
    };
    assert_eq!(
        value("$SYS/broker/shards/0/messages/dropped/qos0_queue_messages").as_deref(),
        Some("3")
    );
    assert_eq!(
        value("$SYS/broker/shards/0/messages/dropped/qos0_queue_bytes").as_deref(),
        Some("0")
    );
    assert_eq!(
        value("$SYS/broker/shards/0/messages/dropped").as_deref(),
        Some("3")
    );
}
