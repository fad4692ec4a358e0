//! Broker scenarios: publish, subscribe, QoS flows, retained messages,
//! v5 publish features and cross-shard routing. Each test cites the
//! normative statements it covers; docs/conformance.md is the index.

mod sim;

use bytes::Bytes;
use ringmq_engine::broker::{owner_shard, BrokerConfig};
use ringmq_engine::codec::{
    Packet, PubAck, Publish, PublishProperties, QoS, ReasonCode, RetainHandling,
    SubscriptionOptions,
};
use sim::*;

/// QoS 0/1/2 end to end, acknowledged as the QoS requires (5.0 [MQTT-3.3.4-1]
/// 3.1.1 [MQTT-3.3.4-1]), with a non-zero packet id for QoS > 0 (3.1.1 [MQTT-2.3.1-1]);
/// SUBACK grants the requested QoS (5.0 [MQTT-3.8.4-1] 5.0 [MQTT-3.8.4-7] 3.1.1 [MQTT-3.8.4-1]
/// 3.1.1 [MQTT-3.8.4-5]); delivery at min(pub, sub) QoS (5.0 [MQTT-3.8.4-8] 3.1.1 [MQTT-3.8.4-6]).
#[test]
fn qos_end_to_end_and_downgrade() {
    for v in [V3, V5] {
        let mut sim = Sim::new(1);
        let s = sim.connect(v, "s", true);
        assert_eq!(sim.subscribe(s, "q/t", 2), ReasonCode::GRANTED_QOS_2);
        let p = sim.connect(v, "p", true);
        for q in 0..=2u8 {
            sim.pub_simple(p, "q/t", &format!("q{q}"), q);
            let m = sim.messages(s);
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].qos.as_u8(), q);
            assert_eq!(&m[0].payload[..], format!("q{q}").as_bytes());
            if q > 0 {
                assert_ne!(m[0].packet_id, 0, "[MQTT-2.2.1-3] non-zero packet id");
            }
        }
        assert_eq!(sim.subscribe(s, "q/down", 0), ReasonCode::GRANTED_QOS_0);
        sim.pub_simple(p, "q/down", "d", 2);
        let m = sim.messages(s);
        assert_eq!(m[0].qos, QoS::AtMostOnce);
    }
}

/// 3.1.1 [MQTT-4.3.3-2] 3.1.1 [MQTT-2.3.1-6] 3.1.1 [MQTT-3.3.4-1]: the server as QoS 2
/// receiver answers PUBREC and PUBCOMP carrying the PUBLISH's packet id; exactly-once: a resent
/// QoS 2 PUBLISH (DUP) before PUBREL gets PUBREC again and is not routed twice.
#[test]
fn qos2_inbound_exactly_once() {
    let mut sim = Sim::new(1);
    let s = sim.connect(V3, "s", true);
    sim.subscribe(s, "x", 2);
    let p = sim.connect(V3, "p", true);
    let mut m = publish("x", "once", 2);
    m.packet_id = 77;
    sim.send(p, Packet::Publish(m.clone()));
    sim.expect(p, |x| matches!(x, Packet::PubRec(a) if a.packet_id == 77));
    m.dup = true;
    sim.send(p, Packet::Publish(m));
    sim.expect(p, |x| matches!(x, Packet::PubRec(a) if a.packet_id == 77));
    sim.send(p, Packet::PubRel(PubAck::new(77)));
    sim.expect(p, |x| matches!(x, Packet::PubComp(a) if a.packet_id == 77));
    assert_eq!(sim.payloads(s), ["once"]);
}

/// 5.0 [MQTT-4.3.3-4] 5.0 [MQTT-2.2.1-5]: outbound QoS 2: PUBREC from the client gets PUBREL
/// with the same packet id; a PUBREL for an unknown id gets PUBCOMP 0x92.
#[test]
fn qos2_outbound_flow() {
    let mut sim = Sim::new(1);
    let s = sim.connect(V5, "s", true);
    sim.subscribe(s, "x", 2);
    let p = sim.connect(V5, "p", true);
    sim.pub_simple(p, "x", "two", 2);
    let Packet::Publish(m) = sim.expect(s, |x| matches!(x, Packet::Publish(_))) else {
        unreachable!()
    };
    sim.send(s, Packet::PubRec(PubAck::new(m.packet_id)));
    let Packet::PubRel(rel) = sim.expect(s, |x| matches!(x, Packet::PubRel(_))) else {
        unreachable!()
    };
    assert_eq!(rel.packet_id, m.packet_id);
    sim.send(s, Packet::PubComp(PubAck::new(m.packet_id)));
    // unknown PUBREL id: PUBCOMP 0x92 (v5)
    sim.send(s, Packet::PubRel(PubAck::new(999)));
    let Packet::PubComp(c) = sim.expect(s, |x| matches!(x, Packet::PubComp(_))) else {
        unreachable!()
    };
    assert_eq!(c.reason, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
}

/// 5.0 [MQTT-4.4.0-1] 5.0 [MQTT-3.3.1-1] 5.0 [MQTT-4.3.2-3] 5.0 [MQTT-4.3.3-5]
/// 5.0 [MQTT-4.3.3-6] 5.0 [MQTT-3.2.2-3]
/// 3.1.1 [MQTT-4.4.0-1] 3.1.1 [MQTT-3.3.1-1] 3.1.1 [MQTT-4.6.0-1] 3.1.1 [MQTT-4.3.3-1]
/// 3.1.1 [MQTT-3.2.2-2]: on resume (session present) the server resends unacknowledged PUBLISH
/// with DUP=1 and their original ids, in order, then the PUBREL (not the PUBLISH) of the
/// message whose PUBREC it had.
#[test]
fn resend_unacknowledged_on_resume() {
    for v in [V3, V5] {
        let mut sim = Sim::new(1);
        let mut c = connect_packet(v, "r", false);
        c.properties.session_expiry_interval_s = Some(100);
        let (s, _) = sim.connect_with(c.clone());
        sim.subscribe(s, "r/#", 2);
        let p = sim.connect(v, "p", true);
        sim.pub_simple(p, "r/1", "a", 1);
        sim.pub_simple(p, "r/2", "b", 2);
        sim.pub_simple(p, "r/3", "c", 2);
        let got = sim.recv(s);
        let pubs: Vec<Publish> = got
            .into_iter()
            .filter_map(|x| {
                if let Packet::Publish(p) = x {
                    Some(p)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(pubs.len(), 3);
        // acknowledge the third one's PUBREC only
        sim.send(s, Packet::PubRec(PubAck::new(pubs[2].packet_id)));
        sim.drop_conn(s);
        let (s, ack) = sim.connect_with(c);
        assert!(ack.session_present);
        let again = sim.recv(s);
        assert_eq!(again.len(), 3, "{again:?}");
        match (&again[0], &again[1], &again[2]) {
            (Packet::Publish(a), Packet::Publish(b), Packet::PubRel(r)) => {
                assert!(a.dup && b.dup, "[MQTT-3.3.1-1] DUP on resend");
                assert_eq!(
                    (a.packet_id, b.packet_id, r.packet_id),
                    (pubs[0].packet_id, pubs[1].packet_id, pubs[2].packet_id)
                );
            }
            other => panic!("unexpected resend order {other:?}"),
        }
    }
}

/// 5.0 [MQTT-3.3.1-5] 5.0 [MQTT-3.3.1-6] 5.0 [MQTT-3.3.1-7] 5.0 [MQTT-3.3.1-9]
/// 5.0 [MQTT-3.3.1-12]
/// 3.1.1 [MQTT-3.3.1-5] 3.1.1 [MQTT-3.3.1-6] 3.1.1 [MQTT-3.3.1-8] 3.1.1 [MQTT-3.3.1-9]
/// 3.1.1 [MQTT-3.3.1-10] 3.1.1 [MQTT-3.3.1-11]: retained messages: stored, replaced, cleared by
/// an empty payload (which is forwarded as normal and not stored), sent on subscribe with
/// RETAIN=1, live copies with RETAIN=0.
#[test]
fn retained_set_replace_clear() {
    for v in [V3, V5] {
        let mut sim = Sim::new(1);
        let p = sim.connect(v, "p", true);
        let mut m = publish("r/t", "one", 1);
        m.retain = true;
        sim.publish(p, m.clone());
        m.payload = Bytes::from_static(b"two");
        sim.publish(p, m.clone());
        let s = sim.connect(v, "s", true);
        sim.subscribe(s, "r/+", 1);
        let got = sim.messages(s);
        assert_eq!(got.len(), 1);
        assert!(got[0].retain, "retained copy has RETAIN=1");
        assert_eq!(&got[0].payload[..], b"two");
        sim.publish(p, m.clone());
        let live = sim.messages(s);
        assert!(!live[0].retain, "live copy has RETAIN=0");
        m.payload = Bytes::new();
        sim.publish(p, m);
        let cleared = sim.messages(s);
        assert_eq!(
            cleared.len(),
            1,
            "the empty retained message is forwarded as normal"
        );
        let s2 = sim.connect(v, "s2", true);
        sim.subscribe(s2, "r/#", 1);
        assert!(sim.messages(s2).is_empty(), "cleared");
        assert_eq!(sim.brokers[0].retained_count(), 0);
    }
}

/// 3.1.1 [MQTT-3.3.2-3] 3.1.1 [MQTT-4.7.2-1]: wildcard matching, '#' matches the parent,
/// '$' topics are not matched by a leading wildcard.
#[test]
fn wildcards_and_dollar_topics() {
    let mut sim = Sim::new(1);
    let a = sim.connect(V3, "a", true);
    sim.subscribe(a, "w/+/c", 0);
    let b = sim.connect(V3, "b", true);
    sim.subscribe(b, "w/#", 0);
    let h = sim.connect(V3, "h", true);
    sim.subscribe(h, "#", 0);
    sim.subscribe(h, "+/x", 0);
    let d = sim.connect(V3, "d", true);
    sim.subscribe(d, "$data/x", 0);
    let p = sim.connect(V3, "p", true);
    for t in ["w/b/c", "w/b/c/d", "w", "w/x", "$data/x"] {
        sim.pub_simple(p, t, t, 0);
    }
    assert_eq!(sim.payloads(a), ["w/b/c"]);
    assert_eq!(sim.payloads(b), ["w/b/c", "w/b/c/d", "w", "w/x"]);
    let hs = sim.payloads(h);
    assert!(!hs.iter().any(|t| t.starts_with('$')), "{hs:?}");
    assert_eq!(sim.payloads(d), ["$data/x"]);
}

/// A filter the broker refuses (a bad `$share/` form, more levels than `topic_levels_max`) gets
/// SUBACK 0x8F (v5) / 0x80 (v3.1.1); valid filters in the same SUBSCRIBE are still granted, one
/// code per filter in order (5.0 [MQTT-3.8.4-5] 5.0 [MQTT-3.8.4-6] 5.0 [MQTT-3.9.3-1]
/// 3.1.1 [MQTT-3.8.4-4] 3.1.1 [MQTT-3.8.4-5] 3.1.1 [MQTT-3.9.3-1]). (Filter *syntax* errors
/// are malformed packets: see `topic_filter_validity` in the conformance tests.)
#[test]
fn invalid_filter_reason_per_filter() {
    for v in [V3, V5] {
        let cfg = BrokerConfig {
            topic_levels_max: 3,
            ..base()
        };
        let mut sim = Sim::with_config(1, cfg);
        let s = sim.connect(v, "s", true);
        let codes = sim.subscribe_with(
            s,
            &[
                ("$share//x", opts(1)),
                ("ok/+", opts(1)),
                ("a/b/c/d", opts(0)),
            ],
            None,
        );
        let bad = if v == V5 {
            ReasonCode::TOPIC_FILTER_INVALID
        } else {
            ReasonCode::UNSPECIFIED_ERROR
        };
        assert_eq!(codes, [bad, ReasonCode::GRANTED_QOS_1, bad]);
    }
}

/// 3.1.1 [MQTT-3.8.4-3]: a subscription with the same filter replaces the old one (new QoS
/// applies).
#[test]
fn resubscribe_replaces() {
    let mut sim = Sim::new(1);
    let s = sim.connect(V3, "s", true);
    sim.subscribe(s, "x", 0);
    sim.subscribe(s, "x", 1);
    let p = sim.connect(V3, "p", true);
    sim.pub_simple(p, "x", "m", 1);
    let m = sim.messages(s);
    assert_eq!(m.len(), 1, "one subscription, not two");
    assert_eq!(m[0].qos, QoS::AtLeastOnce);
}

/// 5.0 [MQTT-3.10.4-1] 5.0 [MQTT-3.10.4-2] 5.0 [MQTT-3.10.4-4] 5.0 [MQTT-3.10.4-5]
/// 5.0 [MQTT-3.11.3-2]: UNSUBSCRIBE stops delivery; UNSUBACK (same packet id) 0x00, or 0x11
/// when there was no subscription.
#[test]
fn unsubscribe() {
    let mut sim = Sim::new(1);
    let s = sim.connect(V5, "s", true);
    sim.subscribe(s, "u", 1);
    assert_eq!(sim.unsubscribe(s, "u"), [ReasonCode::SUCCESS]);
    assert_eq!(
        sim.unsubscribe(s, "u"),
        [ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
    let p = sim.connect(V5, "p", true);
    sim.pub_simple(p, "u", "m", 1);
    assert!(sim.messages(s).is_empty());
}

/// 5.0 [MQTT-3.3.4-2] 5.0 [MQTT-3.3.4-3] 5.0 [MQTT-3.3.4-4] 3.1.1 [MQTT-3.3.5-1]: overlapping
/// subscriptions: one copy at the highest QoS with every subscription identifier (v3.1.1: one
/// copy at the highest QoS).
#[test]
fn overlapping_subscriptions_and_identifiers() {
    let mut sim = Sim::new(1);
    let s = sim.connect(V5, "s", true);
    sim.subscribe_with(s, &[("o/#", opts(2))], Some(7));
    sim.subscribe_with(s, &[("o/a", opts(1))], Some(300));
    sim.subscribe_with(s, &[("o/+", opts(0))], None);
    let p = sim.connect(V5, "p", true);
    sim.pub_simple(p, "o/a", "x", 2);
    sim.pub_simple(p, "o/b", "y", 2);
    let m = sim.messages(s);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].qos, QoS::ExactlyOnce);
    let mut ids = m[0].properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [7, 300]);
    assert_eq!(m[1].properties.subscription_identifiers, [7]);
    // v3.1.1: once, highest QoS
    let s3 = sim.connect(V3, "s3", true);
    sim.subscribe(s3, "o/#", 1);
    sim.subscribe(s3, "o/+", 2);
    sim.pub_simple(p, "o/c", "z", 2);
    let m = sim.messages(s3);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].qos, QoS::ExactlyOnce);
}

/// 5.0 [MQTT-3.8.3-3]: No Local: a client's own publishes are not sent back on that subscription.
#[test]
fn no_local() {
    let mut sim = Sim::new(1);
    let c = sim.connect(V5, "c", true);
    let nl = SubscriptionOptions {
        no_local: true,
        ..opts(1)
    };
    sim.subscribe_with(c, &[("n/1", nl), ("n/2", opts(1))], None);
    sim.pub_simple(c, "n/1", "mine", 1);
    sim.pub_simple(c, "n/2", "mine2", 1);
    assert_eq!(sim.payloads(c), ["mine2"]);
}

/// 5.0 [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
#[test]
fn no_local_on_shared_is_protocol_error() {
    let mut sim = Sim::new(1);
    let c = sim.connect(V5, "c", true);
    let nl = SubscriptionOptions {
        no_local: true,
        ..opts(1)
    };
    let pid = sim.pid();
    let sub = ringmq_engine::codec::Subscribe {
        packet_id: pid,
        filters: vec![ringmq_engine::codec::SubscribeFilter {
            filter: Bytes::from_static(b"$share/g/t"),
            options: nl,
        }],
        properties: Default::default(),
    };
    sim.send(c, Packet::Subscribe(sub));
    assert_eq!(sim.disconnect_reason(c), Some(ReasonCode::PROTOCOL_ERROR));
}

/// 5.0 [MQTT-3.3.1-12] 5.0 [MQTT-3.3.1-13]: Retain As Published.
#[test]
fn retain_as_published() {
    let mut sim = Sim::new(1);
    let a = sim.connect(V5, "a", true);
    let b = sim.connect(V5, "b", true);
    sim.subscribe(a, "rap", 1);
    sim.subscribe_with(
        b,
        &[(
            "rap",
            SubscriptionOptions {
                retain_as_published: true,
                ..opts(1)
            },
        )],
        None,
    );
    let p = sim.connect(V5, "p", true);
    let mut m = publish("rap", "r", 1);
    m.retain = true;
    sim.publish(p, m);
    assert!(!sim.messages(a)[0].retain);
    assert!(sim.messages(b)[0].retain);
}

/// 5.0 [MQTT-3.3.1-9] 5.0 [MQTT-3.3.1-10] 5.0 [MQTT-3.3.1-11]: Retain Handling 0, 1, 2;
/// 5.0 [MQTT-3.8.4-4]: re-subscribing with Retain Handling 0 sends the retained message again.
#[test]
fn retain_handling() {
    let mut sim = Sim::new(1);
    let p = sim.connect(V5, "p", true);
    let mut m = publish("rh", "kept", 1);
    m.retain = true;
    sim.publish(p, m);
    let c = sim.connect(V5, "c", true);
    let rh1 = SubscriptionOptions {
        retain_handling: RetainHandling::SendIfNew,
        ..opts(1)
    };
    sim.subscribe_with(c, &[("rh", rh1)], None);
    assert_eq!(sim.payloads(c), ["kept"]);
    sim.subscribe_with(c, &[("rh", rh1)], None);
    assert!(sim.payloads(c).is_empty(), "RH=1 existing subscription");
    let rh2 = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..opts(1)
    };
    let d = sim.connect(V5, "d", true);
    sim.subscribe_with(d, &[("rh", rh2)], None);
    assert!(sim.payloads(d).is_empty(), "RH=2");
    let e = sim.connect(V5, "e", true);
    sim.subscribe(e, "rh", 1);
    sim.subscribe(e, "rh", 1);
    assert_eq!(sim.payloads(e), ["kept", "kept"], "RH=0 on every subscribe");
}

/// 5.0 [MQTT-3.3.2-5] 5.0 [MQTT-3.3.2-6] (v5 3.3.2.3.3): expired messages are not delivered; the
/// forwarded Message Expiry Interval is reduced by the time waited; expired retained dropped.
#[test]
fn message_expiry() {
    let mut sim = Sim::new(1);
    let mut c = connect_packet(V5, "me", false);
    c.properties.session_expiry_interval_s = Some(60);
    let (s, _) = sim.connect_with(c.clone());
    sim.subscribe(s, "e", 1);
    sim.disconnect(s);
    let p = sim.connect(V5, "p", true);
    let mut short = publish("e", "short", 1);
    short.properties = props_expiry(1);
    sim.publish(p, short);
    let mut long = publish("e", "long", 1);
    long.properties = props_expiry(60);
    sim.publish(p, long);
    let mut r = publish("e/r", "retained-short", 1);
    r.retain = true;
    r.properties = props_expiry(1);
    sim.publish(p, r);
    sim.advance(2_200);
    let (s, _) = sim.connect_with(c);
    let m = sim.messages(s);
    assert_eq!(m.len(), 1);
    assert_eq!(&m[0].payload[..], b"long");
    assert!(m[0].properties.message_expiry_interval_s.unwrap() <= 58);
    let s2 = sim.connect(V5, "s2", true);
    sim.subscribe(s2, "e/r", 1);
    assert!(sim.messages(s2).is_empty());
}

/// 5.0 [MQTT-3.3.2-12] 5.0 [MQTT-3.3.2-9] 5.0 [MQTT-3.2.2-17]: inbound topic aliases: set, use,
/// above the Topic Alias Maximum -> DISCONNECT 0x94; an alias never set -> 0x82.
#[test]
fn topic_alias_inbound() {
    let mut sim = Sim::new(1);
    let s = sim.connect(V5, "s", true);
    sim.subscribe(s, "alias/t", 1);
    let p = sim.connect(V5, "p", true);
    let mut m = publish("alias/t", "one", 1);
    m.properties.topic_alias = Some(1);
    sim.publish(p, m);
    let mut m = publish("", "two", 1);
    m.properties.topic_alias = Some(1);
    sim.publish(p, m);
    let got = sim.messages(s);
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .all(|m| &m.topic[..] == b"alias/t" && m.properties.topic_alias.is_none()));
    let max = base().topic_alias_max;
    let mut bad = publish("", "bad", 0);
    bad.properties.topic_alias = Some(max + 1);
    sim.send(p, Packet::Publish(bad));
    assert_eq!(
        sim.disconnect_reason(p),
        Some(ReasonCode::TOPIC_ALIAS_INVALID)
    );
    let q = sim.connect(V5, "q", true);
    let mut unknown = publish("", "x", 0);
    unknown.properties.topic_alias = Some(2);
    sim.send(q, Packet::Publish(unknown));
    assert_eq!(sim.disconnect_reason(q), Some(ReasonCode::PROTOCOL_ERROR));
}

/// 5.0 [MQTT-3.1.2-24] 5.0 [MQTT-3.1.2-25]: a message larger than the client's Maximum Packet
/// Size is dropped for that client; the server's own limit closes with 0x95 (5.0 [MQTT-3.2.2-15]).
#[test]
fn maximum_packet_size_both_directions() {
    let cfg = BrokerConfig {
        packet_size_max_bytes: 1000,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let mut c = connect_packet(V5, "small", true);
    c.properties.maximum_packet_size_bytes = Some(128);
    let (s, _) = sim.connect_with(c);
    sim.subscribe(s, "m", 1);
    let p = sim.connect(V5, "p", true);
    sim.pub_simple(p, "m", &"B".repeat(400), 1);
    sim.pub_simple(p, "m", "small", 1);
    assert_eq!(sim.payloads(s), ["small"]);
    sim.send(p, Packet::Publish(publish("m", &"X".repeat(1010), 0)));
    assert_eq!(sim.disconnect_reason(p), Some(ReasonCode::PACKET_TOO_LARGE));
    assert!(sim.is_closed(p));
}

/// 5.0 [MQTT-3.3.4-9] 5.0 [MQTT-4.9.0-1] 5.0 [MQTT-4.9.0-2]: never more unacknowledged QoS 1/2
/// than the client's Receive Maximum; one more after each PUBACK.
#[test]
fn client_receive_maximum() {
    let mut sim = Sim::new(1);
    let mut c = connect_packet(V5, "rm", true);
    c.properties.receive_maximum = Some(2);
    let (s, _) = sim.connect_with(c);
    sim.subscribe(s, "rm", 1);
    let p = sim.connect(V5, "p", true);
    for i in 0..5 {
        sim.pub_simple(p, "rm", &i.to_string(), 1);
    }
    let first: Vec<Publish> = sim
        .recv(s)
        .into_iter()
        .filter_map(|x| {
            if let Packet::Publish(p) = x {
                Some(p)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(first.len(), 2);
    sim.send(s, Packet::PubAck(PubAck::new(first[0].packet_id)));
    let next: Vec<Packet> = sim.recv(s);
    assert_eq!(next.len(), 1, "one more after one PUBACK");
}

/// 5.0 [MQTT-3.3.4-7]: more unacknowledged inbound QoS 2 than our Receive Maximum -> 0x93.
#[test]
fn server_receive_maximum() {
    let cfg = BrokerConfig {
        receive_maximum: 3,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let p = sim.connect(V5, "p", true);
    for pid in 1..=3u16 {
        let mut m = publish("x", "q2", 2);
        m.packet_id = pid;
        sim.send(p, Packet::Publish(m));
    }
    assert!(!sim.is_closed(p));
    let mut m = publish("x", "q2", 2);
    m.packet_id = 4;
    sim.send(p, Packet::Publish(m));
    assert_eq!(
        sim.disconnect_reason(p),
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
}

/// User properties (in order), response topic, correlation data, payload format and content
/// type pass through untouched (5.0 [MQTT-3.3.2-4] 5.0 [MQTT-3.3.2-15] 5.0 [MQTT-3.3.2-16]
/// 5.0 [MQTT-3.3.2-17] 5.0 [MQTT-3.3.2-18] 5.0 [MQTT-3.3.2-20]).
#[test]
fn request_response_properties_pass_through() {
    let mut sim = Sim::new(1);
    let s = sim.connect(V5, "s", true);
    sim.subscribe(s, "rr", 0);
    let p = sim.connect(V5, "p", true);
    let mut m = publish("rr", "body", 0);
    m.properties = PublishProperties {
        payload_format_indicator: Some(1),
        response_topic: Some(Bytes::from_static(b"reply/here")),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        content_type: Some(Bytes::from_static(b"text/plain")),
        user: vec![
            (Bytes::from_static(b"k"), Bytes::from_static(b"v")),
            (Bytes::from_static(b"k"), Bytes::from_static(b"v2")),
        ],
        ..Default::default()
    };
    let expected = m.properties.clone();
    sim.publish(p, m);
    let got = sim.messages(s);
    assert_eq!(got[0].properties, expected);
}

/// v5 4.8.2 (no id): shared subscriptions: each message to exactly one member, spread across
/// members; a plain subscriber gets all.
#[test]
fn shared_subscription_round_robin() {
    for shards in [1u16, 3] {
        let mut sim = Sim::new(shards);
        let ids = ["g-a", "g-b", "g-c", "g-d", "g-e", "g-f"];
        let members: Vec<C> = ids.iter().map(|id| sim.connect(V5, id, true)).collect();
        for m in &members {
            sim.subscribe(*m, "$share/grp/sh/t", 1);
        }
        let plain = sim.connect(V3, "plain", true);
        sim.subscribe(plain, "sh/t", 1);
        let p = sim.connect(V5, "pub", true);
        for i in 0..60 {
            sim.pub_simple(p, "sh/t", &i.to_string(), 1);
        }
        let mut all: Vec<u32> = Vec::new();
        let mut per: Vec<usize> = Vec::new();
        for m in &members {
            let got = sim.payloads(*m);
            per.push(got.len());
            all.extend(got.iter().map(|x| x.parse::<u32>().unwrap()));
        }
        all.sort();
        assert_eq!(
            all,
            (0..60).collect::<Vec<_>>(),
            "each exactly once ({shards} shards)"
        );
        assert!(
            per.iter().all(|n| *n > 0),
            "spread over all members: {per:?}"
        );
        assert_eq!(sim.payloads(plain).len(), 60);
    }
}

/// v5 4.8.2: a QoS 1 message to a shared member that disconnects unacknowledged goes to another member.
#[test]
fn shared_subscription_redispatch_on_disconnect() {
    let mut sim = Sim::new(1);
    let a = sim.connect(V5, "a", true);
    let b = sim.connect(V5, "b", true);
    sim.subscribe(a, "$share/g/r", 1);
    sim.subscribe(b, "$share/g/r", 1);
    let p = sim.connect(V5, "p", true);
    sim.pub_simple(p, "r", "m0", 1);
    // whoever got it drops without acknowledging
    let got_a: Vec<Packet> = sim.recv(a);
    let (gone, other) = if got_a.is_empty() { (b, a) } else { (a, b) };
    sim.drop_conn(gone);
    assert_eq!(sim.payloads(other), ["m0"]);
}

/// Shared members whose inflight window is full are skipped.
#[test]
fn shared_subscription_skips_full_members() {
    let mut sim = Sim::new(1);
    let mut c = connect_packet(V5, "slow", true);
    c.properties.receive_maximum = Some(1);
    let (slow, _) = sim.connect_with(c);
    let fast = sim.connect(V5, "fast", true);
    sim.subscribe(slow, "$share/g/f", 1);
    sim.subscribe(fast, "$share/g/f", 1);
    let p = sim.connect(V5, "p", true);
    for i in 0..10 {
        sim.pub_simple(p, "f", &i.to_string(), 1);
    }
    let slow_got: Vec<Packet> = sim.recv(slow);
    assert_eq!(
        slow_got.len(),
        1,
        "the slow member holds one unacknowledged message"
    );
    assert_eq!(sim.payloads(fast).len(), 9);
}

/// Cross-shard: subscribers on every shard get one copy each; retained replicate; ordering kept
/// (the subscribers speak v3.1.1: 3.1.1 [MQTT-4.6.0-5] 3.1.1 [MQTT-4.6.0-6]).
#[test]
fn cross_shard_fan_out_retained_and_order() {
    let mut sim = Sim::new(4);
    // find client ids landing on each shard
    let mut ids = Vec::new();
    for s in 0..4u16 {
        let id = (0..)
            .map(|i| format!("c{i}"))
            .find(|id| owner_shard(id.as_bytes(), 4) == s)
            .unwrap();
        ids.push(id);
    }
    let subs: Vec<C> = ids.iter().map(|id| sim.connect(V3, id, true)).collect();
    for (i, s) in subs.iter().enumerate() {
        assert_eq!(s.shard, i);
        sim.subscribe(*s, "fan/#", 1);
    }
    let p = sim.connect(V5, "publisher-x", true);
    for i in 0..20 {
        sim.pub_simple(p, "fan/t", &i.to_string(), 1);
    }
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    for s in &subs {
        assert_eq!(
            sim.payloads(*s),
            expected,
            "in order, exactly once, on shard {}",
            s.shard
        );
    }
    let mut r = publish("fan/retained", "kept", 1);
    r.retain = true;
    sim.publish(p, r);
    for s in &subs {
        sim.payloads(*s);
    }
    for b in &sim.brokers {
        assert_eq!(b.retained_count(), 1, "retained replicated to every shard");
    }
    // unsubscribe on one shard stops forwarding there
    sim.unsubscribe(subs[1], "fan/#");
    sim.pub_simple(p, "fan/t", "after", 1);
    assert!(sim.payloads(subs[1]).is_empty());
    assert_eq!(sim.payloads(subs[2]), ["after"]);
}

/// A malformed packet closes only its own connection (5.0 [MQTT-4.13.1-1], DISCONNECT 0x81);
/// others carry on.
#[test]
fn malformed_packet_isolated() {
    let mut sim = Sim::new(1);
    let good = sim.connect(V3, "good", true);
    sim.subscribe(good, "iso", 0);
    let bad = sim.connect(V5, "bad", true);
    sim.send_raw(bad, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    assert!(sim.is_closed(bad));
    assert_eq!(
        sim.disconnect_reason(bad),
        Some(ReasonCode::MALFORMED_PACKET)
    );
    let p = sim.connect(V3, "p", true);
    sim.pub_simple(p, "iso", "still", 0);
    assert_eq!(sim.payloads(good), ["still"]);
}

/// An offline session queue is bounded: beyond session_queue_max_messages new messages are dropped.
#[test]
fn offline_queue_limit() {
    let cfg = BrokerConfig {
        session_queue_max_messages: 5,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let s = sim.connect(V3, "q", false);
    sim.subscribe(s, "q", 1);
    sim.drop_conn(s);
    let p = sim.connect(V3, "p", true);
    for i in 0..8 {
        sim.pub_simple(p, "q", &i.to_string(), 1);
    }
    let s = sim.connect(V3, "q", false);
    assert_eq!(
        sim.payloads(s),
        ["0", "1", "2", "3", "4"],
        "oldest kept, newest dropped"
    );
    assert_eq!(sim.brokers[0].stats().dropped_queue_full, 3);
}

/// Subscriptions per session are limited: SUBACK 0x97 beyond the limit.
#[test]
fn subscription_limit() {
    let cfg = BrokerConfig {
        subscriptions_per_session_max: 2,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let s = sim.connect(V5, "s", true);
    let codes = sim.subscribe_with(
        s,
        &[
            ("a", opts(0)),
            ("b", opts(0)),
            ("c", opts(0)),
            ("a", opts(1)),
        ],
        None,
    );
    assert_eq!(
        codes,
        [
            ReasonCode(0),
            ReasonCode(0),
            ReasonCode::QUOTA_EXCEEDED,
            ReasonCode(1)
        ]
    );
}

/// Topic level limit: a PUBLISH with too many levels is refused with 0x90.
#[test]
fn topic_levels_limit() {
    let cfg = BrokerConfig {
        topic_levels_max: 3,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let s = sim.connect(V5, "s", true);
    assert_eq!(
        sim.subscribe(s, "a/b/c/d", 0),
        ReasonCode::TOPIC_FILTER_INVALID
    );
    let p = sim.connect(V5, "p", true);
    sim.send(p, Packet::Publish(publish("a/b/c/d", "x", 0)));
    assert_eq!(
        sim.disconnect_reason(p),
        Some(ReasonCode::TOPIC_NAME_INVALID)
    );
}

/// The default topic level limit (256, above Mosquitto's 200) accepts a topic name and a
/// filter of 256 levels, a shared filter of 256 levels after `$share/{group}/`, and refuses
/// 257: SUBACK failure, and a PUBLISH closes the connection (v5: DISCONNECT 0x90).
#[test]
fn topic_levels_default_limit_at_n_and_n_plus_1() {
    let n = base().topic_levels_max;
    assert_eq!(n, 256);
    let levels = |k: usize| vec!["l"; k].join("/");
    for v in [V3, V5] {
        let mut sim = Sim::new(1);
        let s = sim.connect(v, "s", true);
        assert_eq!(sim.subscribe(s, &levels(n), 0), ReasonCode::GRANTED_QOS_0);
        let failure = sim.subscribe(s, &levels(n + 1), 0);
        assert!(failure.is_error(), "{v:?}: {failure:?}");
        if v == V5 {
            assert_eq!(failure, ReasonCode::TOPIC_FILTER_INVALID);
            let shared = format!("$share/g/{}", levels(n));
            assert_eq!(sim.subscribe(s, &shared, 0), ReasonCode::GRANTED_QOS_0);
            let shared = format!("$share/g/{}", levels(n + 1));
            assert_eq!(
                sim.subscribe(s, &shared, 0),
                ReasonCode::TOPIC_FILTER_INVALID
            );
        }
        let p = sim.connect(v, "p", true);
        sim.pub_simple(p, &levels(n), "deep", 0);
        assert_eq!(sim.payloads(s), ["deep"; 2][..usize::from(v == V5) + 1]);
        sim.send(p, Packet::Publish(publish(&levels(n + 1), "x", 0)));
        assert!(sim.is_closed(p), "{v:?}: {} levels accepted", n + 1);
        if v == V5 {
            assert_eq!(
                sim.disconnect_reason(p),
                Some(ReasonCode::TOPIC_NAME_INVALID)
            );
        }
        assert!(sim.messages(s).is_empty());
    }
}

/// $SYS statistics are published (retained) and not matched by '#'.
#[test]
fn sys_topics() {
    let mut sim = Sim::new(1);
    let h = sim.connect(V3, "h", true);
    sim.subscribe(h, "#", 0);
    sim.advance(11_000);
    assert!(sim.payloads(h).is_empty());
    let s = sim.connect(V3, "s", true);
    sim.subscribe(s, "$SYS/broker/version", 0);
    let got = sim.payloads(s);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("ringmq"));
}

/// Send a PUBLISH at QoS 1 or 2 and return the reason of its PUBACK / PUBREC.
fn publish_ack_reason(sim: &mut Sim, c: C, mut p: Publish) -> ReasonCode {
    p.packet_id = sim.pid();
    let (qos, pid) = (p.qos, p.packet_id);
    sim.send(c, Packet::Publish(p));
    match sim.expect(c, |x| match x {
        Packet::PubAck(a) | Packet::PubRec(a) => a.packet_id == pid,
        _ => false,
    }) {
        Packet::PubAck(a) if qos == QoS::AtLeastOnce => a.reason,
        Packet::PubRec(a) if qos == QoS::ExactlyOnce => {
            if !a.reason.is_error() {
                sim.send(c, Packet::PubRel(PubAck::new(pid)));
                sim.expect(c, |x| matches!(x, Packet::PubComp(_)));
            }
            a.reason
        }
        other => panic!("wrong acknowledgement for QoS {qos:?}: {other:?}"),
    }
}

/// 5.0 section 4.7.2, 3.1.1 [MQTT-3.3.5-2]: a client may not publish under `$SYS` (it would
/// forge the broker's statistics) nor to a `$share/` name (no subscription can match it): v5
/// PUBACK / PUBREC 0x87 for `$SYS`, 0x90 Topic Name invalid for `$share/`; v3.1.1 acknowledges
/// as usual and drops the message. The connection is kept, and the broker's own `$SYS` values
/// still reach subscribers, unforged.
#[test]
fn client_publishes_to_reserved_topics_are_refused() {
    for v in [V3, V5] {
        let mut sim = Sim::new(2);
        let s = sim.connect(v, "s", true);
        sim.subscribe(s, "$SYS/#", 0);
        sim.subscribe(s, "$share/g/t", 0);
        sim.subscribe(s, "t", 0);
        sim.advance(11_000); // the broker publishes $SYS once
        assert!(sim
            .messages(s)
            .iter()
            .any(|m| &m.topic[..] == b"$SYS/broker/version"));
        let p = sim.connect(v, "p", true);
        for (topic, v5_reason) in [
            ("$SYS/broker/version", ReasonCode::NOT_AUTHORIZED),
            ("$SYS", ReasonCode::NOT_AUTHORIZED),
            ("$share/g/t", ReasonCode::TOPIC_NAME_INVALID),
        ] {
            for qos in [1u8, 2] {
                let mut forged = publish(topic, "forged", qos);
                forged.retain = true;
                let reason = publish_ack_reason(&mut sim, p, forged);
                let expected = if v == V5 {
                    v5_reason
                } else {
                    ReasonCode::SUCCESS
                };
                assert_eq!(reason, expected, "{v:?} QoS {qos} to {topic}");
            }
            sim.send(p, Packet::Publish(publish(topic, "forged", 0)));
            assert!(sim.ping_ok(p), "{v:?}: connection kept after {topic}");
        }
        assert!(
            sim.messages(s).is_empty(),
            "{v:?}: a refused message was delivered"
        );

        // The broker's own $SYS publishing is unaffected, and the stored
        // value is the broker's.
        sim.advance(10_000);
        let got = sim.messages(s);
        let version: Vec<_> = got
            .iter()
            .filter(|m| &m.topic[..] == b"$SYS/broker/version")
            .collect();
        assert_eq!(version.len(), 1, "{v:?}: {got:?}");
        assert!(version[0].payload.starts_with(b"ringmq"));
        let late = sim.connect(v, "late", true);
        sim.subscribe(late, "$SYS/broker/version", 0);
        let retained = sim.payloads(late);
        assert_eq!(retained.len(), 1);
        assert!(retained[0].starts_with("ringmq"), "{v:?}: {retained:?}");
    }
}

/// `barrier_held_max_entries`: acknowledgements held behind a pending cross-shard barrier are
/// bounded. A SUBSCRIBE that changes interest (2 shards) holds its mark, its SUBACK and its
/// retained send (3 entries); each pipelined QoS 1 PUBLISH adds its PUBACK. At the limit every
/// acknowledgement arrives, in order, once the barrier clears; one more closes the connection
/// (v5: DISCONNECT 0x97 Quota exceeded) before anything held is sent.
#[test]
fn held_acknowledgements_are_bounded_at_n_and_n_plus_1() {
    let max = 5;
    let cfg = BrokerConfig {
        barrier_held_max_entries: max,
        ..base()
    };
    for v in [V3, V5] {
        for publishes in [max - 3, max - 2] {
            let mut sim = Sim::with_config(2, cfg.clone());
            let c = sim.connect(v, "c", true);
            let mut bytes = sim
                .encode(
                    c,
                    &Packet::Subscribe(ringmq_engine::codec::Subscribe {
                        packet_id: 1,
                        filters: vec![ringmq_engine::codec::SubscribeFilter {
                            filter: Bytes::from_static(b"h/a"),
                            options: opts(1),
                        }],
                        properties: Default::default(),
                    }),
                )
                .to_vec();
            for i in 0..publishes {
                let mut p = publish("h/b", "x", 1);
                p.packet_id = 10 + i as u16;
                bytes.extend_from_slice(&sim.encode(c, &Packet::Publish(p)));
            }
            // One read: every frame is handled before the other shard answers.
            sim.send_raw(c, &bytes);
            let got = sim.recv(c);
            if publishes + 3 <= max {
                assert!(!sim.is_closed(c), "{v:?}: closed at the limit");
                assert!(matches!(got.first(), Some(Packet::SubAck(_))), "{got:?}");
                let acked: Vec<u16> = got
                    .iter()
                    .filter_map(|p| match p {
                        Packet::PubAck(a) => Some(a.packet_id),
                        _ => None,
                    })
                    .collect();
                assert_eq!(acked, (10..10 + publishes as u16).collect::<Vec<_>>());
            } else {
                assert!(sim.is_closed(c), "{v:?}: not closed over the limit");
                let expected: &[Packet] = if v == V5 {
                    &[Packet::Disconnect(ringmq_engine::codec::Disconnect {
                        reason: ReasonCode::QUOTA_EXCEEDED,
                        ..Default::default()
                    })]
                } else {
                    &[]
                };
                assert_eq!(got, expected, "{v:?}");
            }
        }
    }
}

/// A client id owned by shard 0 and one owned by shard 1 (2 shards).
fn one_id_per_shard(prefix: &str) -> [String; 2] {
    let id_on = |shard: u16| {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|id| owner_shard(id.as_bytes(), 2) == shard)
            .expect("some id hashes to each shard")
    };
    [id_on(0), id_on(1)]
}

/// 5.0 [MQTT-3.4.2-1] 5.0 [MQTT-3.5.2-1]: a v5 QoS 1/2 PUBLISH that no subscription matches,
/// on this shard or any other, is acknowledged with 0x10 No matching subscribers; 0x00 when a
/// subscriber exists anywhere (a plain or shared one, local or on another shard, known from
/// that shard's interest). A no-local subscription of the publisher itself does not count.
/// v3.1.1 acknowledgements carry no reason and are unchanged.
#[test]
fn no_matching_subscribers_is_reason_0x10() {
    for v in [V3, V5] {
        let mut sim = Sim::new(2);
        let [here, there] = one_id_per_shard("c");
        let [here_too, _] = one_id_per_shard("l");
        let p = sim.connect(v, &here, true);
        let remote = sim.connect(v, &there, true);
        let local = sim.connect(v, &here_too, true);
        let none = if v == V5 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        for qos in [1u8, 2] {
            let reason = publish_ack_reason(&mut sim, p, publish("n/t", "x", qos));
            assert_eq!(reason, none, "{v:?} QoS {qos}: no subscriber");
        }
        // A subscriber on the other shard only: its interest counts.
        sim.subscribe(remote, "n/+", 1);
        for qos in [1u8, 2] {
            let reason = publish_ack_reason(&mut sim, p, publish("n/t", "x", qos));
            assert_eq!(
                reason,
                ReasonCode::SUCCESS,
                "{v:?} QoS {qos}: remote subscriber"
            );
        }
        assert_eq!(sim.messages(remote).len(), 2);
        // Gone again: the other shard's interest is withdrawn.
        sim.unsubscribe(remote, "n/+");
        assert_eq!(
            publish_ack_reason(&mut sim, p, publish("n/t", "x", 1)),
            none
        );
        // A shared subscription, and a local plain one.
        sim.subscribe(remote, "$share/g/n/#", 1);
        assert_eq!(
            publish_ack_reason(&mut sim, p, publish("n/t", "x", 1)),
            ReasonCode::SUCCESS,
            "{v:?}: shared subscriber"
        );
        sim.unsubscribe(remote, "$share/g/n/#");
        sim.subscribe(local, "n/t", 0);
        assert_eq!(
            publish_ack_reason(&mut sim, p, publish("n/t", "x", 1)),
            ReasonCode::SUCCESS,
            "{v:?}: local subscriber"
        );
        sim.unsubscribe(local, "n/t");
        if v == V5 {
            // The publisher's own no-local subscription delivers nothing.
            let no_local = SubscriptionOptions {
                no_local: true,
                ..opts(1)
            };
            sim.subscribe_with(p, &[("n/t", no_local)], None);
            assert_eq!(
                publish_ack_reason(&mut sim, p, publish("n/t", "x", 1)),
                none
            );
        }
    }
}

/// 5.0 [MQTT-3.2.2-7]: a will under `$SYS` or on a `$share/` name is refused at CONNECT, like
/// a will the ACL denies (a will dropped silently would fail only when needed): v5 CONNACK 0x87
/// / 0x90, v3.1.1 return code 5 (not authorized); the connection is closed.
#[test]
fn wills_on_reserved_topics_are_refused_at_connect() {
    for v in [V3, V5] {
        for (topic, v5_reason) in [
            ("$SYS/broker/version", ReasonCode::NOT_AUTHORIZED),
            ("$share/g/t", ReasonCode::TOPIC_NAME_INVALID),
        ] {
            let mut sim = Sim::new(1);
            let mut c = connect_packet(v, "w", true);
            c.will = Some(will(topic, "forged", 0, None));
            let (conn, ack) = sim.connect_with(c);
            let expected = if v == V5 {
                v5_reason
            } else {
                ReasonCode::NOT_AUTHORIZED
            };
            assert_eq!(ack.reason, expected, "{v:?} will on {topic}");
            assert!(!ack.session_present);
            assert!(sim.is_closed(conn));
        }
    }
}

/// v5 3.3.2.3.4 outbound topic aliases, on by default for clients that allow them: the first
/// PUBLISH of a topic sets an alias, later ones use it with an empty topic; past the client's
/// maximum the least recently used alias is replaced (sent with its new topic); never above the
/// client's maximum (5.0 [MQTT-3.3.2-11] 5.0 [MQTT-3.1.2-26]).
#[test]
fn topic_alias_outbound() {
    let mut sim = Sim::new(1);
    let mut c = connect_packet(V5, "s", true);
    c.properties.topic_alias_maximum = Some(2);
    let (s, _) = sim.connect_with(c);
    sim.subscribe(s, "al/#", 0);
    let p = sim.connect(V5, "p", true);
    // a b a c b: c replaces b (least recently used: a was used after b),
    // then b replaces a.
    for (i, t) in ["al/a", "al/b", "al/a", "al/c", "al/b", "al/c"]
        .iter()
        .enumerate()
    {
        sim.pub_simple(p, t, &i.to_string(), 0);
    }
    let got: Vec<(String, Option<u16>)> = sim
        .messages(s)
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(&m.topic).into_owned(),
                m.properties.topic_alias,
            )
        })
        .collect();
    let expect: Vec<(String, Option<u16>)> = [
        ("al/a", Some(1)),
        ("al/b", Some(2)),
        ("", Some(1)),
        ("al/c", Some(2)),
        ("al/b", Some(1)),
        ("", Some(2)),
    ]
    .iter()
    .map(|(t, a)| (t.to_string(), *a))
    .collect();
    assert_eq!(got, expect);
    // A client that allows no aliases (absent or 0) gets none.
    for max in [None, Some(0)] {
        let mut sim = Sim::new(1);
        let mut c = connect_packet(V5, "s", true);
        c.properties.topic_alias_maximum = max;
        let (s, _) = sim.connect_with(c);
        sim.subscribe(s, "x", 0);
        let p = sim.connect(V5, "p", true);
        sim.pub_simple(p, "x", "1", 0);
        sim.pub_simple(p, "x", "2", 0);
        let m = sim.messages(s);
        assert_eq!(m.len(), 2);
        assert!(
            m.iter()
                .all(|m| m.properties.topic_alias.is_none() && &m.topic[..] == b"x"),
            "{max:?}"
        );
    }
    // Off when the broker's own limit is 0.
    let cfg = BrokerConfig {
        topic_alias_outbound_max: 0,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let mut c = connect_packet(V5, "s", true);
    c.properties.topic_alias_maximum = Some(5);
    let (s, _) = sim.connect_with(c);
    sim.subscribe(s, "x", 0);
    let p = sim.connect(V5, "p", true);
    sim.pub_simple(p, "x", "1", 0);
    sim.pub_simple(p, "x", "2", 0);
    assert!(sim
        .messages(s)
        .iter()
        .all(|m| m.properties.topic_alias.is_none() && &m.topic[..] == b"x"));
}

/// The broker's own limit caps the table whatever the client allows: with
/// `topic_alias_outbound_max = 3` and a client maximum of 100, aliases stay
/// in 1..=3, replaced in least-recently-used order, and every PUBLISH
/// decodes to the right topic on the client's side.
#[test]
fn topic_alias_outbound_table_is_bounded_and_replaced_lru() {
    let cfg = BrokerConfig {
        topic_alias_outbound_max: 3,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let mut c = connect_packet(V5, "s", true);
    c.properties.topic_alias_maximum = Some(100);
    let (s, _) = sim.connect_with(c);
    sim.subscribe(s, "lru/#", 0);
    let p = sim.connect(V5, "p", true);
    // Two hot topics and a cold one now and then, from five: the hot ones
    // keep their aliases, the cold ones take the least recently used.
    let topics: Vec<String> = (0..200)
        .map(|i| match i % 4 {
            3 => format!("lru/cold{}", (i / 4) % 5),
            k => format!("lru/hot{}", k % 2),
        })
        .collect();
    for t in &topics {
        sim.pub_simple(p, t, t, 0);
    }
    // Replay the client's alias table to resolve every PUBLISH.
    let mut table: std::collections::HashMap<u16, String> = Default::default();
    let got = sim.messages(s);
    assert_eq!(got.len(), topics.len());
    for m in &got {
        let alias = m.properties.topic_alias;
        assert!(alias.is_none_or(|a| (1..=3).contains(&a)), "{alias:?}");
        let topic = if m.topic.is_empty() {
            let a = alias.unwrap_or_default();
            table
                .get(&a)
                .cloned()
                .unwrap_or_else(|| panic!("unknown alias {a}"))
        } else {
            let t = String::from_utf8_lossy(&m.topic).into_owned();
            if let Some(a) = alias {
                table.insert(a, t.clone());
            }
            t
        };
        assert_eq!(
            topic.as_bytes(),
            &m.payload[..],
            "alias resolved to the wrong topic"
        );
    }
    // After the first round, every hot publish uses its alias.
    let hot_plain = got
        .iter()
        .skip(4)
        .filter(|m| m.payload.starts_with(b"lru/hot") && !m.topic.is_empty())
        .count();
    assert_eq!(hot_plain, 0, "hot topics keep their aliases");
    assert!(got.iter().skip(4).filter(|m| !m.topic.is_empty()).count() >= 49);
}

/// Cross-shard barrier: the SUBACK of a subscription that changes interest waits until every
/// other shard applied it; a retained QoS 1 PUBACK waits until every shard stored the message.
/// So a client that saw the acknowledgement can rely on it from any shard.
#[test]
fn acknowledgements_wait_for_other_shards() {
    use bytes::BytesMut;
    use ringmq_engine::broker::{Broker, Event, ShardMessage};
    use ringmq_engine::codec::{self, Connect, Subscribe, SubscribeFilter};

    fn frame(p: &Packet) -> BytesMut {
        let mut b = BytesMut::new();
        codec::encode(p, V3, &mut b).unwrap();
        b
    }
    /// (acks/other packets written to conn, ring messages) from draining events.
    fn drain(b: &mut Broker) -> (Vec<u8>, Vec<(u16, ShardMessage)>) {
        let (mut out, mut ring) = (Vec::new(), Vec::new());
        while let Some(ev) = b.poll_event() {
            match ev {
                Event::Transmit(c) => out.extend_from_slice(&b.outgoing(c).unwrap().split()),
                Event::ToShard { shard, msg } => ring.push((shard, msg)),
                Event::Close(_) => panic!("closed"),
                Event::Authenticate { .. } => panic!("no user store configured"),
            }
        }
        (out, ring)
    }
    let mut a = Broker::new(base(), 0, 2);
    let mut b = Broker::new(base(), 1, 2);
    let conn = a.accept(0).unwrap();
    let connect = Connect {
        client_id: Bytes::from_static(b"x"),
        ..connect_packet(V3, "x", true)
    };
    a.handle_read(conn, &mut frame(&Packet::Connect(Box::new(connect))), 0);
    drain(&mut a);
    let sub = Subscribe {
        packet_id: 9,
        filters: vec![SubscribeFilter {
            filter: Bytes::from_static(b"b/t"),
            options: opts(1),
        }],
        properties: Default::default(),
    };
    a.handle_read(conn, &mut frame(&Packet::Subscribe(sub)), 0);
    let (out, ring) = drain(&mut a);
    assert!(
        out.is_empty(),
        "SUBACK held until shard 1 applied the interest"
    );
    assert_eq!(ring.len(), 1);
    for (_, msg) in ring {
        b.handle_shard_message(msg, 0);
    }
    let (_, back) = drain(&mut b);
    assert!(matches!(back[..], [(0, ShardMessage::Ack { .. })]));
    for (_, msg) in back {
        a.handle_shard_message(msg, 0);
    }
    let (out, _) = drain(&mut a);
    assert_eq!(out, [0x90, 3, 0, 9, 1], "SUBACK after the ack");

    // Retained QoS 1: PUBACK after shard 1 stored it.
    let mut p = publish("r/t", "kept", 1);
    p.retain = true;
    p.packet_id = 5;
    a.handle_read(conn, &mut frame(&Packet::Publish(p)), 0);
    let (out, ring) = drain(&mut a);
    assert!(out.is_empty(), "PUBACK held");
    for (_, msg) in ring {
        b.handle_shard_message(msg, 0);
    }
    assert_eq!(b.retained_count(), 1);
    let (_, back) = drain(&mut b);
    for (_, msg) in back {
        a.handle_shard_message(msg, 0);
    }
    let (out, _) = drain(&mut a);
    assert_eq!(out, [0x40, 2, 0, 5], "PUBACK after the ack");
}
