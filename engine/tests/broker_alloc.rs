//! Zero heap allocations on the routed QoS 0 publish path (DESIGN.md
//! section 4): after warm-up, a PUBLISH read from a connection and routed
//! to 100 matching subscribers allocates nothing.

mod counting_alloc;

use bytes::BytesMut;
use counting_alloc::allocations_in;
use ringmq_engine::broker::{Broker, BrokerConfig, ConnId, Event};
use ringmq_engine::codec::{
    self, Connect, Packet, Protocol, Publish, QoS, Subscribe, SubscribeFilter,
};

fn frame(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec::encode(packet, protocol, &mut b).unwrap();
    b.to_vec()
}

fn connect(broker: &mut Broker, id: &str, protocol: Protocol) -> ConnId {
    let conn = broker.accept(0).unwrap();
    let c = Connect {
        protocol,
        clean_start: true,
        keep_alive_s: 0,
        client_id: id.as_bytes().to_vec().into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    };
    let mut buf = BytesMut::from(&frame(&Packet::Connect(Box::new(c)), protocol)[..]);
    broker.handle_read(conn, &mut buf, 0);
    conn
}

fn drain(broker: &mut Broker, subscribers: &[ConnId]) -> usize {
    let mut transmits = 0;
    while let Some(ev) = broker.poll_event() {
        if let Event::Transmit(_) = ev {
            transmits += 1;
        }
    }
    for c in subscribers {
        if let Some(out) = broker.outgoing(*c) {
            out.clear(); // keeps the capacity, as a runtime that wrote it out would
        }
    }
    transmits
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
    assert_eq!(broker.stats().messages_sent, 110 * 100);
}

#[test]
fn routing_qos0_to_100_subscribers_allocates_nothing() {
    run(Protocol::V3_1_1);
    run(Protocol::V5);
}
