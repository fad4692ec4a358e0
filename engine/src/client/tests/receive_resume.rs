//! The receiver side of QoS 2 across a reconnection
//! (`Client::inbound_qos2_ids` / `Client::resume_inbound_qos2`): a message
//! delivered whose PUBREC the server never got is sent again (DUP) on the
//! next connection of the session; it must be acknowledged, not delivered
//! a second time. A new session (no Session Present) forgets the ids.

use super::*;

fn session_options(protocol: Protocol) -> ClientOptions {
    let mut o = options(protocol);
    o.clean_start = false;
    if protocol.is_v5() {
        o.session_expiry_s = Some(300);
    }
    o
}

/// A first connection that delivered QoS 2 message `id` (PUBREC queued,
/// never read by the server) and then lost its transport.
fn lost_after_delivery(protocol: Protocol, p: &Publish) -> Client {
    let mut c = connected_with(session_options(protocol), ConnAckProperties::default());
    feed(&mut c, &[Packet::Publish(p.clone())], 1).unwrap();
    assert_eq!(events(&mut c), vec![Event::Message(p.clone())]);
    // The PUBREC is written but the connection breaks before the server
    // reads it.
    assert_eq!(sent(&mut c), vec![Packet::PubRec(ack(p.packet_id))]);
    c.handle_close(2);
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Disconnected(DisconnectReason::TransportClosed)]
    ));
    c
}

/// The next connection: `ids` carried over, CONNACK with `session_present`.
fn reconnect(protocol: Protocol, ids: &[u16], session_present: bool) -> Client {
    let mut c = Client::new(session_options(protocol));
    c.resume_inbound_qos2(ids).unwrap();
    c.connect(10).unwrap();
    let _ = sent(&mut c);
    let connack = Packet::ConnAck(ConnAck {
        session_present,
        reason: ReasonCode::SUCCESS,
        properties: ConnAckProperties::default(),
    });
    feed(&mut c, &[connack], 10).unwrap();
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Connected { session_present: s, .. }] if *s == session_present
    ));
    c
}

#[test]
fn session_kept_a_resent_qos2_message_is_acknowledged_not_delivered() {
    for protocol in PROTOCOLS {
        let p = publish("a/b", QoS::ExactlyOnce, 9, b"once");
        let old = lost_after_delivery(protocol, &p);
        assert_eq!(old.inbound_qos2_ids(), vec![9], "kept after the end");
        let mut c = reconnect(protocol, &old.inbound_qos2_ids(), true);
        assert_eq!(c.inbound_qos2_pending(), 1);
        // The server did not get the PUBREC: PUBLISH again with DUP.
        let dup = Publish {
            dup: true,
            ..p.clone()
        };
        feed(&mut c, &[Packet::Publish(dup)], 11).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubRec(ack(9))]);
        assert!(events(&mut c).is_empty(), "delivered once only");
        feed(&mut c, &[Packet::PubRel(ack(9))], 12).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubComp(ack(9))]);
        assert_eq!(c.inbound_qos2_pending(), 0);
        // The id is free again: a new message under it is delivered.
        feed(&mut c, &[Packet::Publish(p.clone())], 13).unwrap();
        assert_eq!(events(&mut c), vec![Event::Message(p)]);
    }
}

#[test]
fn session_kept_a_pubrel_after_reconnection_completes_with_success() {
    for protocol in PROTOCOLS {
        let p = publish("a/b", QoS::ExactlyOnce, 4, b"x");
        let old = lost_after_delivery(protocol, &p);
        let mut c = reconnect(protocol, &old.inbound_qos2_ids(), true);
        // The server got the PUBREC: it sends PUBREL; the id is known, so
        // PUBCOMP carries success (not 0x92).
        feed(&mut c, &[Packet::PubRel(ack(4))], 11).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubComp(ack(4))]);
        assert!(events(&mut c).is_empty());
    }
}

#[test]
fn new_session_forgets_the_carried_ids() {
    for protocol in PROTOCOLS {
        let p = publish("a/b", QoS::ExactlyOnce, 9, b"new");
        let old = lost_after_delivery(protocol, &p);
        let mut c = reconnect(protocol, &old.inbound_qos2_ids(), false);
        assert_eq!(c.inbound_qos2_pending(), 0);
        // No session: the server's message under id 9 is a new one.
        feed(&mut c, &[Packet::Publish(p.clone())], 11).unwrap();
        assert_eq!(events(&mut c), vec![Event::Message(p)]);
        assert_eq!(sent(&mut c), vec![Packet::PubRec(ack(9))]);
    }
}

#[test]
fn resume_only_before_connect_and_never_id_zero() {
    let mut c = Client::new(session_options(Protocol::V5));
    assert_eq!(
        c.resume_inbound_qos2(&[3, 0]),
        Err(ClientError::ResendInvalid { packet_id: 0 })
    );
    assert_eq!(
        c.inbound_qos2_pending(),
        0,
        "nothing taken from a refused list"
    );
    c.connect(0).unwrap();
    assert_eq!(
        c.resume_inbound_qos2(&[3]),
        Err(ClientError::AlreadyStarted)
    );
}
