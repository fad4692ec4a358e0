//! The ACL applied by the broker, in v5 and v3.1.1, on two shards (so
//! that deliveries forwarded between shards are checked too): PUBLISH,
//! SUBSCRIBE, the will topic, every delivery (retained included), `%u` /
//! `%c` patterns, and a reload through `set_acl`.

mod sim;

use std::sync::Arc;

use bytes::Bytes;
use ringmq_engine::acl::{parse, Acl};
use ringmq_engine::codec::{Packet, Protocol, PubAck, ReasonCode};
use sim::*;

const ACL: &str = "\
user root
topic readwrite #
user alice
topic readwrite alice/#
topic deny alice/secret/#
user watcher
topic subscribe #
topic read public/#
topic read alice/#
topic deny alice/secret/#
pattern readwrite devices/%c/#
pattern read inbox/%u
";

fn acl(text: &str) -> Arc<Acl> {
    Arc::new(Acl::compile(parse(text).unwrap_or_else(|e| panic!("{e}"))))
}

/// Two shards with `text` as their ACL.
fn sim_with(text: &str) -> Sim {
    sim_shards(2, text)
}

fn sim_shards(shards: u16, text: &str) -> Sim {
    let mut sim = Sim::new(shards);
    let a = acl(text);
    for b in &mut sim.brokers {
        b.set_acl(Some(a.clone()));
    }
    sim
}

fn connect_as(sim: &mut Sim, v: Protocol, client_id: &str, user: &str) -> C {
    let mut c = connect_packet(v, client_id, true);
    c.username = Some(Bytes::copy_from_slice(user.as_bytes()));
    let (conn, ack) = sim.connect_with(c);
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{client_id} as {user}");
    conn
}

fn both() -> [Protocol; 2] {
    [V3, V5]
}

/// A refused SUBACK entry as the client reads it: v5 0x87, v3.1.1 0x80.
fn sub_refused(v: Protocol) -> ReasonCode {
    if v == V5 {
        ReasonCode::NOT_AUTHORIZED
    } else {
        ReasonCode::UNSPECIFIED_ERROR
    }
}

/// The acknowledgement of a QoS 1 or 2 PUBLISH (PUBACK or PUBREC); a
/// successful QoS 2 flow is completed (PUBREL, PUBCOMP).
fn publish_ack(sim: &mut Sim, c: C, topic: &str, qos: u8) -> ReasonCode {
    let mut p = publish(topic, "x", qos);
    p.packet_id = sim.pid();
    let pid = p.packet_id;
    sim.send(c, Packet::Publish(p));
    let reason = match sim.expect(
        c,
        |x| matches!(x, Packet::PubAck(a) | Packet::PubRec(a) if a.packet_id == pid),
    ) {
        Packet::PubAck(a) | Packet::PubRec(a) => a.reason,
        _ => unreachable!(),
    };
    if qos == 2 && !reason.is_error() {
        sim.send(c, Packet::PubRel(PubAck::new(pid)));
        sim.expect(c, |x| matches!(x, Packet::PubComp(a) if a.packet_id == pid));
    }
    reason
}

/// 5.0: a PUBLISH the ACL denies is answered PUBACK / PUBREC 0x87 and not
/// routed. 3.1.1 has no such code: the message is dropped, still
/// acknowledged, and the connection stays (Mosquitto's behaviour).
#[test]
fn publish_denied_is_not_routed() {
    for v in both() {
        let mut sim = sim_with(ACL);
        let root = connect_as(&mut sim, V5, "root-sub", "root");
        assert_eq!(sim.subscribe(root, "alice/#", 1), ReasonCode::GRANTED_QOS_1);
        let alice = connect_as(&mut sim, v, "alice-1", "alice");

        for qos in [1, 2] {
            assert_eq!(
                publish_ack(&mut sim, alice, "alice/ok", qos),
                ReasonCode::SUCCESS
            );
            let denied = publish_ack(&mut sim, alice, "alice/secret/x", qos);
            let expected = if v == V5 {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::SUCCESS
            };
            assert_eq!(denied, expected, "{v:?} QoS {qos}");
        }
        // QoS 0 denied: nothing to answer; outside alice's rules entirely.
        sim.send(alice, Packet::Publish(publish("bob/x", "x", 0)));
        assert!(!sim.is_closed(alice), "{v:?}: the connection is kept");
        assert!(sim.ping_ok(alice));
        let got: Vec<String> = sim
            .messages(root)
            .iter()
            .map(|p| String::from_utf8_lossy(&p.topic).into_owned())
            .collect();
        assert_eq!(got, ["alice/ok", "alice/ok"], "{v:?}");
    }
}

/// Each SUBSCRIBE filter is checked on its own: v5 SUBACK 0x87, v3.1.1
/// 0x80 for a refused filter, the others granted.
#[test]
fn subscribe_denied_per_filter() {
    for v in both() {
        let mut sim = sim_with(ACL);
        let alice = connect_as(&mut sim, v, "alice-1", "alice");
        let reasons = sim.subscribe_with(
            alice,
            &[
                ("alice/+/x", opts(1)),
                ("#", opts(1)),
                ("alice/secret/#", opts(0)),
                ("$share/g/alice/y", opts(0)),
                ("public/#", opts(0)),
            ],
            None,
        );
        let refused = sub_refused(v);
        assert_eq!(
            reasons,
            [
                ReasonCode::GRANTED_QOS_1,
                refused,
                refused,
                ReasonCode::SUCCESS,
                refused
            ],
            "{v:?}"
        );
    }
}

/// A subscriber to `#` gets only the topics it may read: live messages
/// (from its own shard and the other one) and retained ones.
#[test]
fn hash_subscriber_never_receives_a_denied_topic() {
    for v in both() {
        let mut sim = sim_with(ACL);
        let root = connect_as(&mut sim, V5, "root-pub", "root");
        for topic in ["public/r", "alice/secret/r", "other/r"] {
            let mut p = publish(topic, "retained", 1);
            p.retain = true;
            sim.publish(root, p);
        }
        // Watchers on both shards (client ids that hash to each).
        let mut watchers = Vec::new();
        for id in ["w-a", "w-b", "w-c", "w-d"] {
            let w = connect_as(&mut sim, v, id, "watcher");
            assert_eq!(sim.subscribe(w, "#", 1), ReasonCode::GRANTED_QOS_1);
            watchers.push(w);
        }
        let shards: std::collections::HashSet<usize> = watchers.iter().map(|w| w.shard).collect();
        assert_eq!(shards.len(), 2, "watchers on both shards");
        for topic in ["public/x", "alice/secret/x", "alice/x", "other/x"] {
            sim.pub_simple(root, topic, "live", 1);
        }
        for w in watchers {
            let mut got: Vec<String> = sim
                .messages(w)
                .iter()
                .map(|p| String::from_utf8_lossy(&p.topic).into_owned())
                .collect();
            got.sort();
            assert_eq!(got, ["alice/x", "public/r", "public/x"], "{v:?} {w:?}");
        }
        let dropped: u64 = sim
            .brokers
            .iter()
            .map(|b| b.stats().dropped_not_authorized)
            .sum();
        // Per watcher: two retained, two live.
        assert_eq!(dropped, 4 * 4);
    }
}

/// 5.0 CONNACK 0x87 / 3.1.1 return code 5 for a will topic the client may
/// not publish to.
#[test]
fn will_topic_denied_at_connect() {
    for v in both() {
        let mut sim = sim_with(ACL);
        let mut c = connect_packet(v, "alice-1", true);
        c.username = Some(Bytes::from_static(b"alice"));
        c.will = Some(will("alice/secret/gone", "bye", 0, None));
        let (conn, ack) = sim.connect_with(c);
        assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
        if v == V3 {
            assert_eq!(ack.reason.v3_connack_code(), 5);
        }
        assert!(sim.is_closed(conn));

        let mut c = connect_packet(v, "alice-2", true);
        c.username = Some(Bytes::from_static(b"alice"));
        c.will = Some(will("alice/gone", "bye", 0, None));
        let (_, ack) = sim.connect_with(c);
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
    }
}

/// The will is checked again when it is published: an ACL reloaded in
/// between that denies its topic stops it.
#[test]
fn will_checked_again_at_publication() {
    for v in both() {
        let mut sim = sim_with(ACL);
        let root = connect_as(&mut sim, V5, "root-sub", "root");
        sim.subscribe(root, "alice/#", 0);
        let mut wills = Vec::new();
        for id in ["alice-1", "alice-2"] {
            let mut c = connect_packet(v, id, true);
            c.username = Some(Bytes::from_static(b"alice"));
            c.will = Some(will("alice/gone", id, 0, None));
            let (conn, ack) = sim.connect_with(c);
            assert_eq!(ack.reason, ReasonCode::SUCCESS);
            wills.push(conn);
        }
        sim.drop_conn(wills[0]);
        assert_eq!(sim.payloads(root), ["alice-1"], "{v:?}");
        let stricter = format!("{ACL}user alice\ntopic deny alice/gone\n");
        let a = acl(&stricter);
        for b in &mut sim.brokers {
            b.set_acl(Some(a.clone()));
        }
        sim.drop_conn(wills[1]);
        assert!(
            sim.payloads(root).is_empty(),
            "{v:?}: denied will published"
        );
    }
}

/// `%c` and `%u` patterns: each client gets its own subtree.
#[test]
fn patterns_give_each_client_its_own_topics() {
    for v in both() {
        let mut sim = sim_with(ACL);
        let d1 = connect_as(&mut sim, v, "dev1", "nobody");
        let d2 = connect_as(&mut sim, v, "dev2", "nobody");
        assert_eq!(sim.subscribe(d1, "devices/dev1/#", 0), ReasonCode::SUCCESS);
        assert_eq!(sim.subscribe(d1, "devices/dev2/#", 0), sub_refused(v));
        // Allowed; nobody subscribes to it (v5: 0x10 No matching subscribers).
        let accepted = if v == V5 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        assert_eq!(publish_ack(&mut sim, d2, "devices/dev2/t", 1), accepted);
        let expected = if v == V5 {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::SUCCESS
        };
        assert_eq!(publish_ack(&mut sim, d2, "devices/dev1/t", 1), expected);
        sim.pub_simple(d1, "devices/dev1/self", "mine", 0);
        assert_eq!(sim.payloads(d1), ["mine"], "{v:?}");

        let carol = connect_as(&mut sim, v, "c-1", "carol");
        assert_eq!(sim.subscribe(carol, "inbox/carol", 0), ReasonCode::SUCCESS);
        assert_eq!(sim.subscribe(carol, "inbox/dave", 0), sub_refused(v));
        // An anonymous client: %u patterns do not apply.
        let (anon, ack) = sim.connect_with(connect_packet(v, "anon", true));
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        assert_eq!(sim.subscribe(anon, "inbox/%u", 0), sub_refused(v));
    }
}

/// `set_acl` applies to connected sessions at once; `None` allows all.
#[test]
fn reload_applies_to_live_sessions() {
    for v in both() {
        let mut sim = sim_with(ACL);
        let root = connect_as(&mut sim, V5, "root-pub", "root");
        let w = connect_as(&mut sim, v, "w-1", "watcher");
        sim.subscribe(w, "#", 0);
        sim.pub_simple(root, "other/1", "a", 0);
        assert!(sim.payloads(w).is_empty());
        let opened = acl(&format!("{ACL}user watcher\ntopic read other/#\n"));
        for b in &mut sim.brokers {
            b.set_acl(Some(opened.clone()));
        }
        sim.pub_simple(root, "other/2", "b", 0);
        sim.pub_simple(root, "alice/secret/2", "c", 0);
        assert_eq!(sim.payloads(w), ["b"], "{v:?}");
        for b in &mut sim.brokers {
            b.set_acl(None);
        }
        sim.pub_simple(root, "alice/secret/3", "d", 0);
        assert_eq!(sim.payloads(w), ["d"], "{v:?}");
    }
}

/// A shared group never gives a message to a member that may not read it
/// (which would drop it): the member that may read gets every message.
#[test]
fn shared_group_skips_members_that_may_not_read() {
    for v in both() {
        let mut sim = sim_shards(1, &format!("{ACL}user blind\ntopic subscribe #\n"));
        let root = connect_as(&mut sim, V5, "root-pub", "root");
        let reader = connect_as(&mut sim, v, "w-1", "watcher");
        let blind = connect_as(&mut sim, v, "b-1", "blind");
        for c in [reader, blind] {
            let granted = sim.subscribe(c, "$share/g/alice/#", 0);
            assert_eq!(granted, ReasonCode::SUCCESS, "{v:?}");
        }
        for i in 0..4 {
            sim.pub_simple(root, "alice/x", &i.to_string(), 0);
        }
        assert_eq!(sim.payloads(reader), ["0", "1", "2", "3"], "{v:?}");
        assert!(sim.payloads(blind).is_empty(), "{v:?}");
        assert_eq!(sim.brokers[0].stats().dropped_not_authorized, 0);
    }
}
