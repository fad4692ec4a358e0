//! Zero heap allocations on the routed QoS 0 publish path (DESIGN.md
//! section 4): after warm-up, a PUBLISH read from a connection and routed
//! to 100 matching subscribers allocates nothing.

mod alloc_broker;
mod counting_alloc;

use alloc_broker::{connect_as, drain, frame};
use bytes::BytesMut;
use counting_alloc::allocations_in;
use ringmq_engine::broker::{Broker, BrokerConfig, ConnId, Event};
use ringmq_engine::codec::{Packet, Protocol, Publish, QoS, Subscribe, SubscribeFilter};

fn connect(broker: &mut Broker, id: &str, protocol: Protocol) -> ConnId {
    connect_as(broker, id, None, protocol, None)
}

fn run(protocol: Protocol) {
    let config = BrokerConfig {
        sys_interval_s: 0,
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config, 0, 1);
    let mut subscribers = Vec::new();
    for i in 0..100 {
        let conn = connect(&mut broker, &format!("sub-{i}"), protocol);
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: if i % 2 == 0 {
                    "sensors/+/temp".into()
                } else {
                    "sensors/#".into()
                },
                options: Default::default(),
            }],
            properties: Default::default(),
        };
        let mut buf = BytesMut::from(&frame(&Packet::Subscribe(sub), protocol)[..]);
        broker.handle_read(conn, &mut buf, 0);
        subscribers.push(conn);
    }
    let publisher = connect(&mut broker, "pub", protocol);
    drain(&mut broker, &subscribers);
    let publish = Publish {
        qos: QoS::AtMostOnce,
        topic: "sensors/kitchen/temp".into(),
        payload: vec![7u8; 64].into(),
        ..Default::default()
    };
    let bytes = frame(&Packet::Publish(publish), protocol);
    let mut read_buf = BytesMut::with_capacity(64 * 1024);
    // Warm-up: grows scratch vectors, outgoing buffers and the event queue.
    for _ in 0..10 {
        read_buf.extend_from_slice(&bytes);
        broker.handle_read(publisher, &mut read_buf, 1);
        assert_eq!(drain(&mut broker, &subscribers), 100);
    }
    for round in 0..100 {
        read_buf.extend_from_slice(&bytes);
        let mut transmits = 0;
        let n = allocations_in(|| {
            broker.handle_read(publisher, &mut read_buf, 2);
            while let Some(ev) = broker.poll_event() {
                if let Event::Transmit(_) = ev {
                    transmits += 1;
                }
            }
        });
        assert_eq!(transmits, 100, "every subscriber got the message");
        assert_eq!(n, 0, "{protocol:?} round {round}: {n} allocations routing one QoS 0 publish to 100 subscribers");
        drain(&mut broker, &subscribers);
    }
    assert_eq!(broker.stats().messages_sent.iter().sum::<u64>(), 110 * 100);
    // Every delivery was timed (read at 1 or 2 ms, written at once: the
    // first bucket), inside the measured calls: the histogram allocates nothing.
    let latency = broker.stats().latency;
    assert_eq!(latency.count(), 110 * 100);
    assert_eq!(latency.counts[0], 110 * 100);
}

#[test]
fn routing_qos0_to_100_subscribers_allocates_nothing() {
    run(Protocol::V3_1_1);
    run(Protocol::V5);
}

/// Outbound topic aliases (on by default for v5 clients that allow them)
/// allocate nothing per publish once the table is full: hits, and
/// least-recently-used replacement when the topics cycle through more than
/// the table holds (every publish then replaces an alias).
#[test]
fn routing_with_outbound_topic_aliases_allocates_nothing() {
    let config = BrokerConfig {
        sys_interval_s: 0,
        ..BrokerConfig::default()
    };
    let table = usize::from(config.topic_alias_outbound_max);
    assert!(table > 0, "outbound aliases are on by default");
    for topic_count in [table / 2, table + 8] {
        let mut broker = Broker::new(config.clone(), 0, 1);
        let mut subscribers = Vec::new();
        for i in 0..100 {
            let conn = connect_as(
                &mut broker,
                &format!("sub-{i}"),
                None,
                Protocol::V5,
                Some(u16::MAX),
            );
            let sub = Subscribe {
                packet_id: 1,
                filters: vec![SubscribeFilter {
                    filter: "sensors/#".into(),
                    options: Default::default(),
                }],
                properties: Default::default(),
            };
            let mut buf = BytesMut::from(&frame(&Packet::Subscribe(sub), Protocol::V5)[..]);
            broker.handle_read(conn, &mut buf, 0);
            subscribers.push(conn);
        }
        let publisher = connect(&mut broker, "pub", Protocol::V5);
        drain(&mut broker, &subscribers);
        // Topics of growing length, so a replaced slot must sometimes hold
        // a longer topic than before (its buffer has grown in the warm-up).
        let frames: Vec<Vec<u8>> = (0..topic_count)
            .map(|k| {
                let publish = Publish {
                    qos: QoS::AtMostOnce,
                    topic: format!("sensors/{}/temp", "r".repeat(k % 5 + 1) + &k.to_string())
                        .into(),
                    payload: vec![7u8; 64].into(),
                    ..Default::default()
                };
                frame(&Packet::Publish(publish), Protocol::V5)
            })
            .collect();
        let mut read_buf = BytesMut::with_capacity(64 * 1024);
        for round in 0..(4 * topic_count) {
            read_buf.extend_from_slice(&frames[round % topic_count]);
            broker.handle_read(publisher, &mut read_buf, 1);
            assert_eq!(drain(&mut broker, &subscribers), 100);
        }
        for round in 0..(3 * topic_count) {
            read_buf.extend_from_slice(&frames[round % topic_count]);
            let n = allocations_in(|| {
                broker.handle_read(publisher, &mut read_buf, 2);
                while broker.poll_event().is_some() {}
            });
            assert_eq!(
                n, 0,
                "{topic_count} topics, round {round}: {n} allocations with outbound aliases"
            );
            drain(&mut broker, &subscribers);
        }
    }
}
