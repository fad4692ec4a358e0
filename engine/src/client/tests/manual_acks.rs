//! `ClientOptions::manual_acks`: inbound QoS 1/2 messages are acknowledged
//! by `Client::acknowledge`, not when read (what a bridge needs: the
//! external broker's message is acknowledged once the local broker took it).

use super::*;

fn manual(protocol: Protocol) -> Client {
    let mut o = options(protocol);
    o.manual_acks = true;
    connected_with(o, ConnAckProperties::default())
}

#[test]
fn qos1_is_acknowledged_only_by_acknowledge() {
    for protocol in PROTOCOLS {
        let mut c = manual(protocol);
        let p = publish("a/b", QoS::AtLeastOnce, 5, b"x");
        feed(&mut c, &[Packet::Publish(p.clone())], 1).unwrap();
        assert_eq!(events(&mut c), vec![Event::Message(p.clone())]);
        assert!(sent(&mut c).is_empty(), "no PUBACK before acknowledge");
        // A resend while the caller holds the message: nothing new.
        feed(&mut c, &[Packet::Publish(Publish { dup: true, ..p })], 2).unwrap();
        assert!(events(&mut c).is_empty());
        assert!(sent(&mut c).is_empty());
        c.acknowledge(5, ReasonCode::SUCCESS).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubAck(ack(5))]);
        assert_eq!(
            c.acknowledge(5, ReasonCode::SUCCESS),
            Err(ClientError::NotAwaitingAck { packet_id: 5 })
        );
    }
}

#[test]
fn qos2_pubrec_waits_for_acknowledge_then_pubrel_completes() {
    for protocol in PROTOCOLS {
        let mut c = manual(protocol);
        let p = publish("a/b", QoS::ExactlyOnce, 6, b"once");
        feed(&mut c, &[Packet::Publish(p.clone())], 1).unwrap();
        assert_eq!(events(&mut c), vec![Event::Message(p.clone())]);
        assert!(sent(&mut c).is_empty(), "no PUBREC before acknowledge");
        feed(
            &mut c,
            &[Packet::Publish(Publish {
                dup: true,
                ..p.clone()
            })],
            2,
        )
        .unwrap();
        assert!(events(&mut c).is_empty(), "a resend is not delivered twice");
        assert!(sent(&mut c).is_empty());
        c.acknowledge(6, ReasonCode::SUCCESS).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubRec(ack(6))]);
        // After PUBREC, a resend is answered as without manual acks.
        feed(&mut c, &[Packet::Publish(Publish { dup: true, ..p })], 3).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubRec(ack(6))]);
        assert!(events(&mut c).is_empty());
        feed(&mut c, &[Packet::PubRel(ack(6))], 4).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubComp(ack(6))]);
        assert_eq!(c.inbound_qos2_pending(), 0);
    }
}

#[test]
fn a_failure_reason_ends_the_qos2_flow() {
    let mut c = manual(Protocol::V5);
    let p = publish("a/b", QoS::ExactlyOnce, 7, b"no");
    feed(&mut c, &[Packet::Publish(p)], 1).unwrap();
    c.acknowledge(7, ReasonCode::NOT_AUTHORIZED).unwrap();
    let refused = PubAck {
        reason: ReasonCode::NOT_AUTHORIZED,
        ..ack(7)
    };
    assert_eq!(sent(&mut c), vec![Packet::PubRec(refused)]);
    assert_eq!(c.inbound_qos2_pending(), 0, "no PUBREL is awaited");
}

#[test]
fn acknowledge_refuses_unknown_ids_and_automatic_mode() {
    let mut c = connected(Protocol::V5);
    let p = publish("a/b", QoS::AtLeastOnce, 8, b"x");
    feed(&mut c, &[Packet::Publish(p)], 1).unwrap();
    assert_eq!(sent(&mut c), vec![Packet::PubAck(ack(8))]);
    assert_eq!(
        c.acknowledge(8, ReasonCode::SUCCESS),
        Err(ClientError::NotAwaitingAck { packet_id: 8 })
    );
    let mut idle = Client::new(ClientOptions {
        manual_acks: true,
        ..options(Protocol::V5)
    });
    assert_eq!(
        idle.acknowledge(1, ReasonCode::SUCCESS),
        Err(ClientError::NotConnected)
    );
}

#[test]
fn a_lost_connection_forgets_what_was_not_acknowledged() {
    let mut c = manual(Protocol::V5);
    feed(
        &mut c,
        &[Packet::Publish(publish("a/b", QoS::AtLeastOnce, 9, b"x"))],
        1,
    )
    .unwrap();
    c.handle_close(2);
    assert_eq!(
        c.acknowledge(9, ReasonCode::SUCCESS),
        Err(ClientError::NotConnected)
    );
}
