//! Durable storage, engine side (issue #13): acknowledgements held until
//! the store has written their batch, refusals when it fails, and a
//! restart that restores sessions, queues, inflight QoS 2 state, inbound
//! QoS 2 ids and retained messages from what the store kept. The store is
//! `sim/store.rs` (writes at once, fails, or holds batches).

mod sim;

use bytes::Bytes;
use ringmq_engine::broker::{owner_shard, BrokerConfig};
use ringmq_engine::codec::{Connect, Packet, Protocol, PubAck, QoS, ReasonCode};
use ringmq_engine::persist::{Keyspace, PersistFailure, RestoreError};
use sim::store::Mode;
use sim::*;

fn both() -> [Protocol; 2] {
    [V3, V5]
}

fn durable() -> BrokerConfig {
    BrokerConfig {
        durable: true,
        ..base()
    }
}

/// A CONNECT whose session outlives the connection (v5: one hour).
fn persistent(v: Protocol, id: &str) -> Connect {
    let mut c = connect_packet(v, id, false);
    if v == V5 {
        c.properties.session_expiry_interval_s = Some(3600);
    }
    c
}

/// A client id that `owner_shard` puts on `shard` of `shards`.
fn id_on(shard: u16, shards: u16, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| owner_shard(id.as_bytes(), shards) == shard)
        .unwrap()
}

/// A stored session `id` subscribed to `filter`, then offline.
fn offline_subscriber(sim: &mut Sim, v: Protocol, id: &str, filter: &str, qos: u8) {
    let (c, _) = sim.connect_with(persistent(v, id));
    assert!(!sim.subscribe(c, filter, qos).is_error());
    sim.disconnect(c);
}

fn send_publish(sim: &mut Sim, c: C, topic: &str, payload: &str, qos: u8, pid: u16) {
    let mut p = publish(topic, payload, qos);
    p.packet_id = pid;
    sim.send(c, Packet::Publish(p));
}

fn acks(sim: &mut Sim, c: C) -> Vec<Packet> {
    sim.recv(c)
        .into_iter()
        .filter(|p| {
            matches!(
                p,
                Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)
            )
        })
        .collect()
}

fn ack_of(p: &Packet) -> (u16, ReasonCode) {
    match p {
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) => (a.packet_id, a.reason),
        other => panic!("not an acknowledgement: {other:?}"),
    }
}

#[test]
fn without_durable_nothing_is_recorded_or_held() {
    for v in both() {
        let mut sim = Sim::new(2);
        offline_subscriber(&mut sim, v, "sub", "t/#", 2);
        let (p, _) = sim.connect_with(persistent(v, "pub"));
        for qos in [1, 2] {
            sim.pub_simple(p, "t/a", "x", qos); // acknowledged at once
        }
        let mut retained = publish("t/r", "kept", 1);
        retained.retain = true;
        sim.publish(p, retained);
        for b in &mut sim.brokers {
            assert!(b.take_persist_batch().is_none(), "{v:?}");
        }
        assert_eq!(sim.disk.batches, 0);
    }
}

#[test]
fn puback_and_pubrec_wait_for_the_batch() {
    for v in both() {
        let mut sim = Sim::with_config(1, durable());
        offline_subscriber(&mut sim, v, "sub", "t", 2);
        let p = sim.connect(v, "pub", true);
        sim.disk.mode = Mode::Hold;
        send_publish(&mut sim, p, "t", "one", 1, 7);
        send_publish(&mut sim, p, "t", "two", 2, 8);
        assert!(
            acks(&mut sim, p).is_empty(),
            "{v:?}: acknowledged before the write"
        );
        sim.complete_disk(None, Ok(()));
        let got: Vec<_> = acks(&mut sim, p).iter().map(ack_of).collect();
        assert_eq!(
            got,
            [(7, ReasonCode::SUCCESS), (8, ReasonCode::SUCCESS)],
            "{v:?}"
        );
        // Both are on disk, in the subscriber's session.
        assert_eq!(sim.disk.keys(Keyspace::Messages).len(), 2);
    }
}

#[test]
fn a_publish_nobody_stores_is_acknowledged_at_once() {
    let mut sim = Sim::with_config(1, durable());
    let p = sim.connect(V5, "pub", true);
    sim.disk.mode = Mode::Hold;
    send_publish(&mut sim, p, "nobody", "x", 1, 3);
    let got: Vec<_> = acks(&mut sim, p).iter().map(ack_of).collect();
    assert_eq!(got, [(3, ReasonCode::NO_MATCHING_SUBSCRIBERS)]);
    assert!(sim.disk.held.is_empty());
}

#[test]
fn v5_refusals_say_why_the_write_failed() {
    for (failure, code) in [
        (PersistFailure::DiskFull, ReasonCode::QUOTA_EXCEEDED),
        (PersistFailure::Io, ReasonCode::UNSPECIFIED_ERROR),
    ] {
        let mut sim = Sim::with_config(1, durable());
        offline_subscriber(&mut sim, V5, "sub", "t", 2);
        let (p, _) = sim.connect_with(persistent(V5, "pub"));
        sim.disk.mode = Mode::Fail(failure);
        send_publish(&mut sim, p, "t", "one", 1, 1);
        send_publish(&mut sim, p, "t", "two", 2, 2);
        let got: Vec<_> = acks(&mut sim, p).iter().map(ack_of).collect();
        assert_eq!(got, [(1, code), (2, code)], "{failure:?}");
        // SUBACK: every filter refused with the same code.
        let reasons = sim.subscribe_with(p, &[("a", opts(1)), ("b", opts(2))], None);
        assert_eq!(reasons, [code, code], "{failure:?}");
        // The refused QoS 2 id is forgotten: sent again, it is a new message.
        sim.disk.mode = Mode::Write;
        send_publish(&mut sim, p, "t", "two", 2, 2);
        let got: Vec<_> = acks(&mut sim, p).iter().map(ack_of).collect();
        assert_eq!(got, [(2, ReasonCode::SUCCESS)]);
        assert!(!sim.is_closed(p));
    }
}

#[test]
fn v311_has_no_refusal_code_so_the_connection_closes_unacknowledged() {
    for qos in [1, 2] {
        let mut sim = Sim::with_config(1, durable());
        offline_subscriber(&mut sim, V3, "sub", "t", 2);
        let p = sim.connect(V3, "pub", true);
        sim.disk.mode = Mode::Fail(PersistFailure::DiskFull);
        send_publish(&mut sim, p, "t", "x", qos, 5);
        assert!(acks(&mut sim, p).is_empty(), "QoS {qos}");
        assert!(sim.is_closed(p), "QoS {qos}");
    }
    // A refused SUBACK is v3.1.1's 0x80 per filter.
    let mut sim = Sim::with_config(1, durable());
    let (c, _) = sim.connect_with(persistent(V3, "s"));
    sim.disk.mode = Mode::Fail(PersistFailure::Io);
    assert_eq!(sim.subscribe(c, "t", 1), ReasonCode::UNSPECIFIED_ERROR);
}

#[test]
fn suback_waits_for_the_session_record() {
    for v in both() {
        let mut sim = Sim::with_config(1, durable());
        let (c, _) = sim.connect_with(persistent(v, "s"));
        sim.disk.mode = Mode::Hold;
        let sub = Packet::Subscribe(ringmq_engine::codec::Subscribe {
            packet_id: 4,
            filters: vec![ringmq_engine::codec::SubscribeFilter {
                filter: Bytes::from_static(b"t/+"),
                options: opts(1),
            }],
            properties: Default::default(),
        });
        sim.send(c, sub);
        assert!(sim.recv(c).is_empty(), "{v:?}: SUBACK before the write");
        sim.complete_disk(None, Ok(()));
        assert!(matches!(
            sim.expect(c, |p| matches!(p, Packet::SubAck(_))),
            Packet::SubAck(_)
        ));
    }
}

fn unsubscribe_packet(packet_id: u16, filter: &'static str) -> Packet {
    Packet::Unsubscribe(ringmq_engine::codec::Unsubscribe {
        packet_id,
        filters: vec![Bytes::from_static(filter.as_bytes())],
        properties: Default::default(),
    })
}

/// The UNSUBACK waits, like SUBACK, for the session record without the
/// subscription, and holds the acknowledgements written after it: the
/// client sees UNSUBACK, then the PUBACK of a PUBLISH it sent later.
#[test]
fn unsuback_waits_for_the_session_record_and_keeps_the_order() {
    for v in both() {
        let mut sim = Sim::with_config(1, durable());
        let (c, _) = sim.connect_with(persistent(v, "s"));
        assert_eq!(sim.subscribe(c, "t/+", 1), ReasonCode(1));
        sim.disk.mode = Mode::Hold;
        sim.send(c, unsubscribe_packet(9, "t/+"));
        // Stored by nobody: acknowledged at once were it not behind.
        send_publish(&mut sim, c, "nobody", "x", 1, 10);
        assert!(
            sim.recv(c).is_empty(),
            "{v:?}: UNSUBACK or PUBACK before the write"
        );
        assert!(
            sim.disk.keys(Keyspace::Sessions).len() == 1 && !sim.disk.held.is_empty(),
            "{v:?}: the removal is in a held batch"
        );
        sim.disk.mode = Mode::Write;
        sim.complete_disk(None, Ok(()));
        let got = sim.recv(c);
        assert!(
            matches!(
                got.as_slice(),
                [Packet::UnsubAck(u), Packet::PubAck(a)]
                    if u.packet_id == 9 && a.packet_id == 10
            ),
            "{v:?}: {got:?}"
        );
        // Acknowledged, so gone after a restart.
        sim.disconnect(c);
        assert!(sim.restart(1_000).is_empty());
        let (c, ack) = sim.connect_with(persistent(v, "s"));
        assert!(ack.session_present, "{v:?}");
        let p = sim.connect(v, "pub", true);
        sim.pub_simple(p, "t/a", "after", 1);
        assert!(
            sim.messages(c).is_empty(),
            "{v:?}: an acknowledged UNSUBSCRIBE came back after the restart"
        );
    }
}

/// An UNSUBSCRIBE of a session that is not stored (no Session Expiry)
/// waits for nothing.
#[test]
fn unsuback_of_an_unstored_session_is_sent_at_once() {
    let mut sim = Sim::with_config(1, durable());
    let c = sim.connect(V5, "s", true);
    assert_eq!(sim.subscribe(c, "t", 1), ReasonCode(1));
    sim.disk.mode = Mode::Hold;
    assert_eq!(sim.unsubscribe(c, "t"), [ReasonCode::SUCCESS]);
    assert!(sim.disk.held.is_empty());
}

/// An UNSUBACK whose record could not be written is refused (v5: 0x80
/// for the removed filter, 0x11 stays: Unsubscribe Reason Codes only,
/// 5.0 [MQTT-3.11.3-2]; v3.1.1 has no code: the connection closes without
/// it) and the subscription stays, in memory and on disk.
#[test]
fn a_refused_unsuback_keeps_the_subscription() {
    for v in both() {
        let mut sim = Sim::with_config(2, durable());
        let sub_id = id_on(0, 2, "sub");
        let (s, _) = sim.connect_with(persistent(v, &sub_id));
        assert_eq!(sim.subscribe(s, "t/#", 1), ReasonCode(1));
        let p = sim.connect(V5, &id_on(1, 2, "pub"), true);
        sim.disk.mode = Mode::Fail(PersistFailure::DiskFull);
        let pid = sim.pid();
        sim.send(
            s,
            Packet::Unsubscribe(ringmq_engine::codec::Unsubscribe {
                packet_id: pid,
                filters: vec![Bytes::from_static(b"t/#"), Bytes::from_static(b"none")],
                properties: Default::default(),
            }),
        );
        let got = sim.recv(s);
        let s = if v == V5 {
            assert!(
                matches!(
                    got.as_slice(),
                    [Packet::UnsubAck(u)] if u.packet_id == pid
                        && u.reasons == [ReasonCode::UNSPECIFIED_ERROR, ReasonCode::NO_SUBSCRIPTION_EXISTED]
                ),
                "{v:?}: {got:?}"
            );
            assert!(!sim.is_closed(s));
            s
        } else {
            assert!(got.is_empty(), "{v:?}: {got:?}");
            assert!(sim.is_closed(s), "{v:?}: closed without UNSUBACK");
            sim.disk.mode = Mode::Write;
            let (s, ack) = sim.connect_with(persistent(v, &sub_id));
            assert!(ack.session_present);
            s
        };
        sim.disk.mode = Mode::Write;
        sim.pub_simple(p, "t/a", "kept", 1);
        assert_eq!(sim.payloads(s), ["kept"], "{v:?}");
        // On disk too.
        sim.disconnect(s);
        assert!(sim.restart(1_000).is_empty());
        let (s, ack) = sim.connect_with(persistent(v, &sub_id));
        assert!(ack.session_present);
        let p = sim.connect(V5, &id_on(1, 2, "pub"), true);
        sim.pub_simple(p, "t/b", "restored", 1);
        assert_eq!(sim.payloads(s), ["restored"], "{v:?}");
    }
}

#[test]
fn cross_shard_ack_waits_for_the_other_shards_batch() {
    for (result, code) in [
        (Ok(()), ReasonCode::SUCCESS),
        (Err(PersistFailure::DiskFull), ReasonCode::QUOTA_EXCEEDED),
    ] {
        let mut sim = Sim::with_config(2, durable());
        let sub = id_on(1, 2, "sub");
        let publisher = id_on(0, 2, "pub");
        offline_subscriber(&mut sim, V5, &sub, "t", 1);
        let p = sim.connect(V5, &publisher, true);
        sim.disk.mode = Mode::Hold;
        send_publish(&mut sim, p, "t", "x", 1, 9);
        // Only the subscriber's shard stored something.
        assert!(sim.disk.held.iter().all(|(shard, _)| *shard == 1));
        sim.complete_disk(Some(0), Ok(()));
        assert!(
            acks(&mut sim, p).is_empty(),
            "acknowledged before shard 1 wrote"
        );
        sim.complete_disk(Some(1), result);
        let got: Vec<_> = acks(&mut sim, p).iter().map(ack_of).collect();
        assert_eq!(got, [(9, code)]);
    }
}

#[test]
fn outbound_qos2_is_sent_once_its_packet_id_is_stored() {
    let mut sim = Sim::with_config(1, durable());
    let (s, _) = sim.connect_with(persistent(V5, "sub"));
    sim.subscribe(s, "t", 2);
    let p = sim.connect(V5, "pub", true);
    sim.disk.mode = Mode::Hold;
    send_publish(&mut sim, p, "t", "x", 2, 1);
    assert!(
        sim.recv(s).is_empty(),
        "QoS 2 PUBLISH before its record was written"
    );
    sim.complete_disk(None, Ok(()));
    assert_eq!(sim.payloads(s), ["x"]);
}

/// A restart restores a stored session with its subscription, its queue,
/// its inflight QoS 2 message (resent with DUP and the same packet id),
/// and retained messages; acknowledged messages stay gone.
#[test]
fn restart_restores_sessions_queues_inflight_and_retained() {
    for v in both() {
        let mut sim = Sim::with_config(2, durable());
        let sub = id_on(1, 2, "sub");
        offline_subscriber(&mut sim, v, &sub, "q/#", 2);
        let (p, _) = sim.connect_with(persistent(v, &id_on(0, 2, "pub")));
        sim.pub_simple(p, "q/1", "one", 1);
        sim.pub_simple(p, "q/2", "two", 2);
        sim.pub_simple(p, "q/3", "three", 1);
        let mut retained = publish("r", "kept", 1);
        retained.retain = true;
        sim.publish(p, retained);
        // The subscriber takes the three, acknowledges "one" only.
        let (s, ack) = sim.connect_with(persistent(v, &sub));
        assert!(ack.session_present);
        let got = sim.recv(s);
        let pubs: Vec<_> = got
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(pubs.len(), 3, "{v:?}: {got:?}");
        let pid_of = |payload: &[u8]| {
            let found = pubs.iter().find(|p| &p.payload[..] == payload);
            found.map(|p| p.packet_id).unwrap()
        };
        sim.send(s, Packet::PubAck(PubAck::new(pid_of(b"one"))));
        let two_pid = pid_of(b"two");

        assert!(sim.restart(5_000).is_empty());
        let (s, ack) = sim.connect_with(persistent(v, &sub));
        assert!(ack.session_present, "{v:?}: session back after the restart");
        let again: Vec<_> = sim
            .recv(s)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect();
        let seen: Vec<_> = again
            .iter()
            .map(|p| (String::from_utf8_lossy(&p.payload).into_owned(), p.dup))
            .collect();
        assert_eq!(
            seen,
            [("two".to_string(), true), ("three".to_string(), true)],
            "{v:?}"
        );
        assert_eq!(
            again[0].packet_id, two_pid,
            "QoS 2 resent with its packet id"
        );
        // Completing it ends it: nothing comes back after another restart.
        sim.send(s, Packet::PubRec(PubAck::new(two_pid)));
        sim.expect(s, |p| matches!(p, Packet::PubRel(_)));
        sim.send(s, Packet::PubComp(PubAck::new(two_pid)));
        sim.send(s, Packet::PubAck(PubAck::new(again[1].packet_id)));
        assert!(sim.restart(1_000).is_empty());
        let (s, ack) = sim.connect_with(persistent(v, &sub));
        assert!(ack.session_present);
        assert!(
            sim.recv(s).is_empty(),
            "{v:?}: completed messages came back"
        );
        // The subscription works from the other shard, and the retained
        // message is back.
        let p2 = sim.connect(v, &id_on(0, 2, "p2-"), true);
        sim.pub_simple(p2, "q/4", "four", 1);
        assert_eq!(sim.payloads(s), ["four"]);
        let late = sim.connect(v, &id_on(0, 2, "late"), true);
        sim.subscribe(late, "r", 1);
        assert_eq!(sim.payloads(late), ["kept"]);
    }
}

/// A QoS 2 PUBLISH re-sent with DUP after a restart is recognised by its
/// stored packet id: acknowledged, not delivered twice.
#[test]
fn inbound_qos2_survives_a_restart() {
    for v in both() {
        let mut sim = Sim::with_config(1, durable());
        offline_subscriber(&mut sim, v, "sub", "x", 2);
        let (p, _) = sim.connect_with(persistent(v, "pub"));
        send_publish(&mut sim, p, "x", "once", 2, 9);
        sim.expect(p, |x| matches!(x, Packet::PubRec(a) if a.packet_id == 9));
        assert!(sim.restart(1_000).is_empty());
        let (p, _) = sim.connect_with(persistent(v, "pub"));
        let mut again = publish("x", "once", 2);
        again.packet_id = 9;
        again.dup = true;
        sim.send(p, Packet::Publish(again));
        sim.expect(p, |x| matches!(x, Packet::PubRec(a) if a.packet_id == 9));
        sim.send(p, Packet::PubRel(PubAck::new(9)));
        let comp = sim.expect(p, |x| matches!(x, Packet::PubComp(_)));
        assert_eq!(ack_of(&comp), (9, ReasonCode::SUCCESS));
        assert!(sim.disk.keys(Keyspace::InboundQos2).is_empty());
        let (s, _) = sim.connect_with(persistent(v, "sub"));
        assert_eq!(sim.payloads(s), ["once"], "{v:?}");
    }
}

/// Message expiry counts the downtime, also when the new process's
/// engine clock starts again near 0 (`Broker::set_wall_clock`).
#[test]
fn message_expiry_counts_the_downtime() {
    for fresh_epoch in [false, true] {
        let mut sim = Sim::with_config(1, durable());
        offline_subscriber(&mut sim, V5, "sub", "e", 1);
        let p = sim.connect(V5, "pub", true);
        for (payload, expiry_s) in [("short", 10), ("long", 100)] {
            let mut m = publish("e", payload, 1);
            m.properties = props_expiry(expiry_s);
            sim.publish(p, m);
        }
        if fresh_epoch {
            assert!(sim.restart_fresh_epoch(20_000).is_empty());
        } else {
            assert!(sim.restart(20_000).is_empty());
        }
        let (s, _) = sim.connect_with(persistent(V5, "sub"));
        let got = sim.messages(s);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(&got[0].payload[..], b"long");
        assert_eq!(got[0].properties.message_expiry_interval_s, Some(80));
    }
}

#[test]
fn session_expiry_counts_the_downtime() {
    for (downtime_ms, present) in [(5_000, true), (30_000, false)] {
        let mut sim = Sim::with_config(1, durable());
        let mut c = persistent(V5, "s");
        c.properties.session_expiry_interval_s = Some(10);
        let (s, _) = sim.connect_with(c.clone());
        sim.subscribe(s, "t", 1);
        sim.disconnect(s);
        assert!(sim.restart(downtime_ms).is_empty());
        let (_, ack) = sim.connect_with(c);
        assert_eq!(ack.session_present, present, "after {downtime_ms} ms");
    }
}

/// A torn last record (a value cut short) is reported; the rest restores.
#[test]
fn a_torn_record_is_reported_and_the_others_restore() {
    let mut sim = Sim::with_config(1, durable());
    offline_subscriber(&mut sim, V5, "sub", "t", 1);
    let p = sim.connect(V5, "pub", true);
    sim.pub_simple(p, "t", "queued", 1);
    let mut retained = publish("r", "kept", 1);
    retained.retain = true;
    sim.publish(p, retained);
    let key = (Keyspace::Retained, Bytes::from_static(b"r"));
    let value = sim.disk.records[&key].clone();
    sim.disk.records.insert(key, value.slice(..value.len() - 3));
    let errors = sim.restart(1_000);
    assert_eq!(errors, [RestoreError::Truncated("publish")]);
    let (s, ack) = sim.connect_with(persistent(V5, "sub"));
    assert!(ack.session_present);
    assert_eq!(sim.payloads(s), ["queued"]);
    assert_eq!(sim.brokers[0].retained_count(), 0);
}

#[test]
fn ended_sessions_and_cleared_retained_messages_leave_no_records() {
    for v in both() {
        let mut sim = Sim::with_config(1, durable());
        offline_subscriber(&mut sim, v, "sub", "t", 2);
        let (p, _) = sim.connect_with(persistent(v, "pub"));
        sim.pub_simple(p, "t", "x", 1);
        let mut retained = publish("r", "kept", 1);
        retained.retain = true;
        sim.publish(p, retained);
        let mut clear = publish("r", "", 1);
        clear.retain = true;
        sim.publish(p, clear);
        assert!(sim.disk.keys(Keyspace::Retained).is_empty());
        // Clean start ends the stored session and its queue.
        let (s, _) = sim.connect_with(connect_packet(v, "sub", true));
        sim.disconnect(s);
        sim.disconnect(p);
        let (p, _) = sim.connect_with(connect_packet(v, "pub", true));
        sim.disconnect(p);
        assert!(
            sim.disk.records.is_empty(),
            "{v:?}: {:?}",
            sim.disk.records.keys()
        );
    }
}

/// A CONNACK that created, resumed or ended a stored session waits for
/// that write; refused (and the connection closed) when it fails.
#[test]
fn connack_waits_for_the_session_record() {
    for v in both() {
        let mut sim = Sim::with_config(1, durable());
        sim.disk.mode = Mode::Hold;
        // A session not kept beyond its connection: nothing to wait for.
        let (c, ack) = sim.connect_with(connect_packet(v, "clean", true));
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        sim.disconnect(c);
        let c = sim.open(0, v);
        sim.send(c, Packet::Connect(Box::new(persistent(v, "s"))));
        assert!(sim.recv(c).is_empty(), "{v:?}: CONNACK before the write");
        sim.complete_disk(None, Ok(()));
        let ack = sim.expect(c, |p| matches!(p, Packet::ConnAck(_)));
        assert!(matches!(ack, Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS));
        sim.disk.mode = Mode::Write;
        sim.disconnect(c);
        sim.disk.mode = Mode::Fail(PersistFailure::DiskFull);
        let (c, ack) = sim.connect_with(persistent(v, "s"));
        let refused = if v == V5 {
            ReasonCode::QUOTA_EXCEEDED
        } else {
            ReasonCode::SERVER_UNAVAILABLE
        };
        assert_eq!(ack.reason, refused, "{v:?}");
        assert!(!ack.session_present);
        assert!(sim.is_closed(c));
    }
}

/// A SUBSCRIBE whose SUBACK is refused (the session record could not be
/// written) leaves nothing behind: no message for the new filter, the
/// replaced subscription keeps its old options, no retained message after
/// the refusal, and the stored session has only what was acknowledged.
#[test]
fn a_refused_suback_leaves_no_subscription_behind() {
    for v in both() {
        let mut sim = Sim::with_config(2, durable());
        let sub_id = id_on(0, 2, "sub");
        let (s, _) = sim.connect_with(persistent(v, &sub_id));
        assert_eq!(sim.subscribe(s, "kept", 1), ReasonCode(1));
        let p = sim.connect(V5, &id_on(1, 2, "pub"), true);
        let mut retained = publish("t/r", "retained", 1);
        retained.retain = true;
        sim.publish(p, retained);
        sim.disk.mode = Mode::Fail(PersistFailure::DiskFull);
        let reasons = sim.subscribe_with(s, &[("t/#", opts(1)), ("kept", opts(2))], None);
        assert!(reasons.iter().all(|r| r.is_error()), "{v:?}: {reasons:?}");
        assert!(
            sim.messages(s).is_empty(),
            "{v:?}: retained message sent for a refused subscription"
        );
        sim.disk.mode = Mode::Write;
        sim.pub_simple(p, "t/a", "refused", 1);
        sim.pub_simple(p, "kept", "still", 2);
        let got = sim.messages(s);
        let got: Vec<_> = got.iter().map(|m| (&m.payload[..], m.qos)).collect();
        assert_eq!(got, [(&b"still"[..], QoS::AtLeastOnce)], "{v:?}");
        // What is stored is what was acknowledged.
        sim.disconnect(s);
        assert!(sim.restart(1_000).is_empty());
        let (s, ack) = sim.connect_with(persistent(v, &sub_id));
        assert!(ack.session_present);
        let p = sim.connect(V5, &id_on(1, 2, "pub"), true);
        sim.pub_simple(p, "t/b", "refused", 1);
        sim.pub_simple(p, "kept", "after", 2);
        let got: Vec<_> = sim.messages(s).iter().map(|m| m.qos).collect();
        assert_eq!(got, [QoS::AtLeastOnce], "{v:?}");
    }
}

/// A will due at the restart (its delay passed while the broker was down)
/// reaches a restored persistent subscriber on another shard: timers of
/// restored sessions wait until every shard has restored.
#[test]
fn a_will_due_at_the_restart_reaches_restored_subscribers_on_every_shard() {
    for (will_shard, sub_shard) in [(0, 1), (1, 0)] {
        let mut sim = Sim::with_config(2, durable());
        let sub_id = id_on(sub_shard, 2, "sub");
        offline_subscriber(&mut sim, V5, &sub_id, "wills/#", 1);
        let mut c = persistent(V5, &id_on(will_shard, 2, "dying"));
        c.will = Some(will("wills/dying", "gone", 1, Some(60)));
        let (w, _) = sim.connect_with(c);
        sim.drop_conn(w);
        assert!(sim.restart(120_000).is_empty());
        let (s, ack) = sim.connect_with(persistent(V5, &sub_id));
        assert!(ack.session_present);
        assert_eq!(sim.payloads(s), ["gone"], "will on shard {will_shard}");
    }
}

/// Until every other shard has restored, the restored sessions' timers
/// wait; a client that takes its session back meanwhile keeps its will.
#[test]
fn restored_timers_wait_for_every_shard_and_skip_a_resumed_session() {
    let mut sim = Sim::with_config(2, durable());
    let id = id_on(0, 2, "dying");
    let mut c = persistent(V5, &id);
    c.will = Some(will("wills/dying", "gone", 1, Some(60)));
    let (w, _) = sim.connect_with(c.clone());
    sim.drop_conn(w);
    sim.now_ms += 120_000;
    let shards = sim.brokers.len() as u16;
    sim.brokers = (0..shards)
        .map(|s| ringmq_engine::broker::Broker::new(durable(), s, shards))
        .collect();
    let wall = sim.wall_base_ms + sim.now_ms;
    for b in &mut sim.brokers {
        b.set_wall_clock(sim.now_ms, wall);
    }
    // A live subscriber on the same shard, before anything is restored.
    let watcher = sim.connect(V5, &id_on(0, 2, "watch"), true);
    assert_eq!(sim.subscribe(watcher, "wills/#", 1), ReasonCode(1));
    let records: Vec<_> = sim.disk.records.clone().into_iter().collect();
    let now = sim.now_ms;
    for ((space, key), value) in &records {
        sim.brokers[0].restore(*space, key, value, now).unwrap();
    }
    sim.brokers[0].finish_restore(now);
    sim.pump();
    // Shard 1 has not restored yet: the due will is not published.
    assert!(
        sim.messages(watcher).is_empty(),
        "will before every shard restored"
    );
    // The client comes back first: its session is resumed, no will.
    let (back, ack) = sim.connect_with(c);
    assert!(ack.session_present);
    sim.brokers[1].finish_restore(now);
    sim.pump();
    assert!(
        sim.messages(watcher).is_empty(),
        "will of a resumed session"
    );
    assert!(!sim.is_closed(back));
}
