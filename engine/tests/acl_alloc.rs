//! Zero heap allocations on the publish path with an ACL installed: the
//! write check on PUBLISH and the read check per delivery are trie walks
//! over the session's compiled rules. After warm-up, a QoS 0 PUBLISH
//! routed to 100 `#` subscribers, half of whom may not read the topic,
//! allocates nothing. Also checks the per-delivery check directly.

mod alloc_broker;
mod counting_alloc;

use std::sync::Arc;

use alloc_broker::{connect_as, drain, frame};
use bytes::BytesMut;
use counting_alloc::allocations_in;
use ringmq_engine::acl::{parse, Acl, Action};
use ringmq_engine::broker::{Broker, BrokerConfig, Event};
use ringmq_engine::codec::{Packet, Protocol, Publish, QoS, Subscribe, SubscribeFilter};

const ACL: &str = "\
user reader
topic subscribe #
topic read sensors/+/temp
topic deny sensors/secret/#
user blind
topic subscribe #
topic read other/#
user pub
topic write sensors/#
pattern read clients/%c/#
";

fn run(protocol: Protocol) {
    let config = BrokerConfig {
        sys_interval_s: 0,
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config, 0, 1);
    let acl = Arc::new(Acl::compile(parse(ACL).unwrap()));
    broker.set_acl(Some(acl));
    let mut subscribers = Vec::new();
    for i in 0..100 {
        let user = if i % 2 == 0 { "reader" } else { "blind" };
        let conn = connect_as(&mut broker, &format!("sub-{i}"), Some(user), protocol, None);
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: "#".into(),
                options: Default::default(),
            }],
            properties: Default::default(),
        };
        let mut buf = BytesMut::from(&frame(&Packet::Subscribe(sub), protocol)[..]);
        broker.handle_read(conn, &mut buf, 0);
        subscribers.push(conn);
    }
    let publisher = connect_as(&mut broker, "pub", Some("pub"), protocol, None);
    let mut all = subscribers.clone();
    all.push(publisher);
    drain(&mut broker, &all);
    let publish = Publish {
        qos: QoS::AtMostOnce,
        topic: "sensors/kitchen/temp".into(),
        payload: vec![7u8; 64].into(),
        ..Default::default()
    };
    let bytes = frame(&Packet::Publish(publish), protocol);
    let mut read_buf = BytesMut::with_capacity(64 * 1024);
    for _ in 0..10 {
        read_buf.extend_from_slice(&bytes);
        broker.handle_read(publisher, &mut read_buf, 1);
        assert_eq!(drain(&mut broker, &all), 50, "only the readers get it");
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
        assert_eq!(transmits, 50, "the 50 readers got the message");
        assert_eq!(
            n, 0,
            "{protocol:?} round {round}: {n} allocations routing one QoS 0 publish through the ACL"
        );
        drain(&mut broker, &all);
    }
    let stats = broker.stats();
    assert_eq!(stats.messages_sent.iter().sum::<u64>(), 110 * 50);
    assert_eq!(stats.dropped_not_authorized, 110 * 50);
}

#[test]
fn routing_through_the_acl_allocates_nothing() {
    run(Protocol::V3_1_1);
    run(Protocol::V5);
}

#[test]
fn the_check_itself_allocates_nothing() {
    let acl = Acl::compile(parse(ACL).unwrap());
    let reader = acl.session(Some(b"reader"), b"c1");
    let anyone = acl.session(Some(b"x"), b"c1");
    let mut allowed = 0;
    let n = allocations_in(|| {
        for _ in 0..1000 {
            allowed += usize::from(reader.allows(Action::Read, b"sensors/kitchen/temp"));
            allowed += usize::from(reader.allows(Action::Read, b"sensors/secret/temp"));
            allowed += usize::from(anyone.allows(Action::Read, b"clients/c1/inbox"));
            allowed += usize::from(anyone.allows(Action::Write, b"clients/c1/inbox"));
        }
    });
    assert_eq!(n, 0, "{n} allocations in 4000 checks");
    assert_eq!(allowed, 2000);
}
