//! Zero heap allocations on the routed QoS 0 publish path (DESIGN.md
//! section 4): after warm-up, a PUBLISH read from a connection and routed
//! to 100 matching subscribers allocates nothing; a QoS 1 message with its
//! acknowledgements both ways, its batches taken as the runtimes take
//! them (`take_outgoing`), allocates nothing either.

mod alloc_broker;
mod counting_alloc;

use alloc_broker::{connect_as, drain, frame, subscribe};
use bytes::BytesMut;
use counting_alloc::allocations_in;
use ringmq_engine::broker::{Broker, BrokerConfig, ConnId, Event};
use ringmq_engine::codec::{Packet, Protocol, PubAck, Publish, QoS, Subscribe, SubscribeFilter};

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
        let filter = if i % 2 == 0 {
            "sensors/+/temp"
        } else {
            "sensors/#"
        };
        subscribe(&mut broker, conn, filter, QoS::AtMostOnce, protocol);
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

/// Heap allocations per QoS 1 message through the whole exchange, the way
/// the runtimes drive it: the publisher's PUBLISH read, the runtime taking
/// every outgoing batch (the publisher's PUBACK, each subscriber's
/// PUBLISH) and dropping it once written, the subscribers' PUBACKs read.
/// Returns the allocations of the 100 measured rounds (one message each).
fn qos1_allocations_per_message(protocol: Protocol, subscribers: usize) -> usize {
    let no_sys = BrokerConfig {
        sys_interval_s: 0,
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(no_sys, 0, 1);
    let subs: Vec<ConnId> = (0..subscribers)
        .map(|i| {
            let conn = connect(&mut broker, &format!("sub-{i}"), protocol);
            subscribe(&mut broker, conn, "sensors/#", QoS::AtLeastOnce, protocol);
            conn
        })
        .collect();
    let publisher = connect(&mut broker, "pub", protocol);
    drain(&mut broker, &subs);
    drain(&mut broker, &[publisher]);
    // Each subscriber's PUBACKs in order: packet ids 1, 2, ... (one
    // message in flight at a time, so the broker hands them out in turn).
    let acks: Vec<Vec<u8>> = (1..=200u16)
        .map(|id| frame(&Packet::PubAck(PubAck::new(id)), protocol))
        .collect();
    let publishes: Vec<Vec<u8>> = (1..=200u16)
        .map(|id| {
            let publish = Publish {
                qos: QoS::AtLeastOnce,
                topic: "sensors/kitchen/temp".into(),
                packet_id: id,
                payload: vec![7u8; 64].into(),
                ..Default::default()
            };
            frame(&Packet::Publish(publish), protocol)
        })
        .collect();
    let mut read_buf = BytesMut::with_capacity(64 * 1024);
    let mut ack_bufs: Vec<BytesMut> = subs.iter().map(|_| BytesMut::with_capacity(64)).collect();
    let mut measured = 0;
    for round in 0..200usize {
        read_buf.extend_from_slice(&publishes[round]);
        for b in &mut ack_bufs {
            b.extend_from_slice(&acks[round]);
        }
        let mut batches = 0;
        let n = allocations_in(|| {
            broker.handle_read(publisher, &mut read_buf, 2);
            while broker.poll_event().is_some() {}
            for &c in subs.iter().chain([&publisher]) {
                broker.handle_writable(c, 2);
                if broker.take_outgoing(c).is_some() {
                    batches += 1;
                }
            }
            for (&c, b) in subs.iter().zip(&mut ack_bufs) {
                broker.handle_read(c, b, 2);
            }
            while broker.poll_event().is_some() {}
        });
        assert_eq!(
            batches,
            subscribers + 1,
            "round {round}: a PUBLISH to each subscriber and a PUBACK"
        );
        // The first half warms up (buffers, inflight tables, the event queue).
        if round >= 100 {
            measured += n;
        }
    }
    measured
}

/// Zero heap allocations per QoS 1 message once warm, to one subscriber
/// and to 100, acknowledgements both ways included: the outgoing buffers
/// are kept while a connection is busy (`Broker::take_outgoing`), so a
/// PUBACK batch of a few bytes does not allocate a buffer of its own.
#[test]
fn qos1_exchange_allocates_nothing() {
    for protocol in [Protocol::V3_1_1, Protocol::V5] {
        let one = qos1_allocations_per_message(protocol, 1);
        let hundred = qos1_allocations_per_message(protocol, 100);
        assert_eq!(
            one, 0,
            "{protocol:?}: {one} allocations in 100 QoS 1 messages to 1 subscriber"
        );
        assert_eq!(
            hundred, 0,
            "{protocol:?}: {hundred} allocations in 100 QoS 1 messages to 100 subscribers"
        );
    }
}
