//! Shared set-up of the broker zero-allocation tests (`broker_alloc.rs`,
//! `acl_alloc.rs`): encode a packet, connect a client, drain the broker's
//! events and outgoing buffers the way a runtime that wrote them would.
#![allow(dead_code)]

use bytes::BytesMut;
use ringmq_engine::broker::{Broker, ConnId, Event};
use ringmq_engine::codec::{
    self, Connect, Packet, Protocol, QoS, Subscribe, SubscribeFilter, SubscriptionOptions,
};

pub fn frame(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec::encode(packet, protocol, &mut b).unwrap();
    b.to_vec()
}

/// Connects `id` with an optional user name and, for v5, an optional
/// Topic Alias Maximum.
pub fn connect_as(
    broker: &mut Broker,
    id: &str,
    username: Option<&str>,
    protocol: Protocol,
    topic_alias_maximum: Option<u16>,
) -> ConnId {
    let conn = broker.accept(0).unwrap();
    let mut c = Connect {
        protocol,
        clean_start: true,
        keep_alive_s: 0,
        client_id: id.as_bytes().to_vec().into(),
        will: None,
        username: username.map(|u| u.as_bytes().to_vec().into()),
        password: None,
        properties: Default::default(),
    };
    c.properties.topic_alias_maximum = topic_alias_maximum;
    let mut buf = BytesMut::from(&frame(&Packet::Connect(Box::new(c)), protocol)[..]);
    broker.handle_read(conn, &mut buf, 0);
    conn
}

/// Subscribes `conn` to `filter` at `qos` (its SUBACK stays in the
/// outgoing buffer).
pub fn subscribe(broker: &mut Broker, conn: ConnId, filter: &str, qos: QoS, protocol: Protocol) {
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: filter.to_owned().into(),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
        properties: Default::default(),
    };
    let mut buf = BytesMut::from(&frame(&Packet::Subscribe(sub), protocol)[..]);
    broker.handle_read(conn, &mut buf, 0);
}

/// Takes every event and clears the outgoing buffers of `conns` (keeping
/// their capacity, as a runtime that wrote them out would). Returns how
/// many `Transmit` events there were.
pub fn drain(broker: &mut Broker, conns: &[ConnId]) -> usize {
    let mut transmits = 0;
    while let Some(ev) = broker.poll_event() {
        if let Event::Transmit(_) = ev {
            transmits += 1;
        }
    }
    for c in conns {
        if let Some(out) = broker.outgoing(*c) {
            out.clear();
        }
    }
    transmits
}
