//! The engine's client carrying unacknowledged publishes to a new
//! connection (`Client::outbound_step`, `resend_publish`, `resend_pubrel`)
//! against the engine's broker on the simulator's virtual clock: the
//! connection drops at each step of a QoS 2 (and QoS 1) flow, the client
//! comes back with Clean Start 0 and the subscriber's count is checked.
//! The WASM client's driver does the same over real transports
//! (`wasm/tests/scenarios.js`, `inTabExactlyOnce`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim;

use bytes::{Bytes, BytesMut};
use ringmq_engine::client::{Client, ClientOptions, Event, OutboundStep};
use ringmq_engine::codec::{self, Protocol, PublishProperties, QoS, ReasonCode};
use sim::*;

/// Which packet the cut connection loses.
#[derive(Clone, Copy, Debug)]
enum Lost {
    /// The broker never sees the PUBLISH.
    Publish,
    /// The broker got the PUBLISH (and delivered it); its PUBREC / PUBACK is lost.
    Ack,
    /// PUBREC arrived; the client's PUBREL is lost.
    PubRel,
    /// PUBREL arrived; the broker's PUBCOMP is lost.
    PubComp,
}

struct Publisher {
    client: Client,
    c: C,
}

fn options(protocol: Protocol) -> ClientOptions {
    let mut o = ClientOptions::new(protocol, Bytes::from_static(b"pub"));
    o.clean_start = false;
    if protocol.is_v5() {
        o.session_expiry_s = Some(300);
    }
    o
}

/// Opens a connection for a new engine client and completes CONNECT.
fn connect(sim: &mut Sim, protocol: Protocol) -> (Publisher, bool) {
    let mut client = Client::new(options(protocol));
    let c = sim.open(0, protocol);
    client.connect(sim.now_ms).unwrap();
    let mut p = Publisher { client, c };
    to_broker(sim, &mut p);
    let events = to_client(sim, &mut p);
    let session_present = events
        .iter()
        .find_map(|e| match e {
            Event::Connected {
                session_present, ..
            } => Some(*session_present),
            _ => None,
        })
        .expect("CONNACK");
    (p, session_present)
}

/// Everything the client wrote, to the broker.
fn to_broker(sim: &mut Sim, p: &mut Publisher) {
    let out = p.client.outgoing().split();
    sim.send_raw(p.c, &out);
}

/// Everything the broker wrote, to the client; the client's events.
fn to_client(sim: &mut Sim, p: &mut Publisher) -> Vec<Event> {
    let mut buf = BytesMut::new();
    for packet in sim.recv(p.c) {
        codec::encode(&packet, p.c.protocol, &mut buf).unwrap();
    }
    let progress = p.client.handle_read(&mut buf, sim.now_ms).unwrap();
    assert!(buf.is_empty(), "a partial packet after {progress:?}");
    std::iter::from_fn(|| p.client.poll_event()).collect()
}

fn acked(events: &[Event]) -> Vec<(u16, ReasonCode)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PubAcked { packet_id, reason } => Some((*packet_id, *reason)),
            _ => None,
        })
        .collect()
}

/// Publishes "m" at `qos` on "t", cuts the connection at `cut`, reconnects
/// with the session and resends; returns (the subscriber's messages, the
/// reason the publish completed with, the step it was resent from).
fn drop_and_resume(
    protocol: Protocol,
    qos: QoS,
    cut: Lost,
) -> (Vec<String>, ReasonCode, Option<OutboundStep>) {
    let mut sim = Sim::new(1);
    let sub = sim.connect(V5, "sub", true);
    sim.subscribe(sub, "t", 2);
    let (mut p, present) = connect(&mut sim, protocol);
    assert!(!present, "first connection: no session yet");
    let topic = Bytes::from_static(b"t");
    let payload = Bytes::from_static(b"m");
    let id = p
        .client
        .publish(
            topic.clone(),
            payload.clone(),
            qos,
            false,
            PublishProperties::default(),
        )
        .unwrap()
        .expect("QoS 1/2 packet id");
    match cut {
        Lost::Publish => {
            p.client.outgoing().clear();
        }
        Lost::Ack => {
            to_broker(&mut sim, &mut p);
            sim.recv(p.c); // PUBREC / PUBACK, never read
        }
        Lost::PubRel | Lost::PubComp => {
            to_broker(&mut sim, &mut p);
            assert!(acked(&to_client(&mut sim, &mut p)).is_empty());
            if matches!(cut, Lost::PubRel) {
                p.client.outgoing().clear();
            } else {
                to_broker(&mut sim, &mut p);
                sim.recv(p.c); // PUBCOMP, never read
            }
        }
    }
    sim.drop_conn(p.c);
    p.client.handle_close(sim.now_ms);
    let step = p.client.outbound_step(id);
    let (mut q, present) = connect(&mut sim, protocol);
    assert!(present, "Clean Start 0: the broker kept the session");
    match step {
        Some(OutboundStep::AwaitPubComp) => q.client.resend_pubrel(id).unwrap(),
        Some(_) => q
            .client
            .resend_publish(id, topic, payload, qos, false, PublishProperties::default())
            .unwrap(),
        None => panic!("{cut:?}: the publish was not in flight"),
    }
    to_broker(&mut sim, &mut q);
    let mut done = acked(&to_client(&mut sim, &mut q));
    to_broker(&mut sim, &mut q); // PUBREL after a PUBREC on the new connection
    done.extend(acked(&to_client(&mut sim, &mut q)));
    assert_eq!(done.len(), 1, "{cut:?}: one completion, got {done:?}");
    assert_eq!(done[0].0, id, "completed under the original packet id");
    assert_eq!(q.client.inflight(), 0);
    (sim.payloads(sub), done[0].1, step)
}

/// 5.0 [MQTT-4.4.0-1] 3.1.1 [MQTT-4.4.0-1] (client side), 5.0 [MQTT-4.3.3-10] (broker side):
/// a QoS 2 publish whose connection is lost before the PUBREC, or between
/// PUBREC and PUBCOMP, is resent on the resumed session under its packet id
/// (PUBLISH with DUP, or PUBREL) and reaches the subscriber exactly once.
#[test]
fn qos2_exactly_once_across_a_reconnection() {
    for v in [V3, V5] {
        for cut in [Lost::Publish, Lost::Ack, Lost::PubRel, Lost::PubComp] {
            let (got, reason, step) = drop_and_resume(v, QoS::ExactlyOnce, cut);
            assert_eq!(got, ["m"], "{v:?} {cut:?}: exactly once");
            let want_step = match cut {
                Lost::Publish | Lost::Ack => OutboundStep::AwaitPubRec,
                Lost::PubRel | Lost::PubComp => OutboundStep::AwaitPubComp,
            };
            assert_eq!(step, Some(want_step), "{v:?} {cut:?}");
            // The broker had completed the flow when only its PUBCOMP was
            // lost: v5 PUBCOMP 0x92 ("not an error during recovery").
            let want = if matches!(cut, Lost::PubComp) && v.is_v5() {
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
            } else {
                ReasonCode::SUCCESS
            };
            assert_eq!(reason, want, "{v:?} {cut:?}");
        }
    }
}

/// A QoS 1 publish lost before the broker saw it is resent and delivered
/// once; one whose PUBACK was lost is resent with DUP and acknowledged
/// (the subscriber may see it again: at least once).
#[test]
fn qos1_resent_across_a_reconnection() {
    for v in [V3, V5] {
        let (got, reason, step) = drop_and_resume(v, QoS::AtLeastOnce, Lost::Publish);
        assert_eq!((got, reason), (vec!["m".to_string()], ReasonCode::SUCCESS));
        assert_eq!(step, Some(OutboundStep::AwaitPubAck));
        let (got, reason, _) = drop_and_resume(v, QoS::AtLeastOnce, Lost::Ack);
        assert!(!got.is_empty() && got.iter().all(|m| m == "m"), "{got:?}");
        assert_eq!(reason, ReasonCode::SUCCESS);
    }
}

/// The resend commands refuse what cannot be a resend: no connection, id 0,
/// an id in use on the new connection, QoS 0.
#[test]
fn resend_refuses_bad_ids() {
    let mut sim = Sim::new(1);
    let mut idle = Client::new(options(V5));
    assert!(idle.resend_pubrel(1).is_err(), "not connected");
    let (mut p, _) = connect(&mut sim, V5);
    let t = || Bytes::from_static(b"t");
    let m = || Bytes::from_static(b"m");
    let props = PublishProperties::default;
    assert!(p.client.resend_pubrel(0).is_err());
    let id = p
        .client
        .publish(t(), m(), QoS::AtLeastOnce, false, props())
        .unwrap()
        .unwrap();
    assert!(p.client.resend_pubrel(id).is_err(), "id in use");
    assert!(p
        .client
        .resend_publish(id, t(), m(), QoS::AtLeastOnce, false, props())
        .is_err());
    assert!(p
        .client
        .resend_publish(id + 1, t(), m(), QoS::AtMostOnce, false, props())
        .is_err());
    assert_eq!(p.client.inflight(), 1, "nothing else was taken");
    assert!(matches!(
        p.client.outbound_step(id),
        Some(OutboundStep::AwaitPubAck)
    ));
    assert_eq!(p.client.outbound_step(id + 1), None);
}
