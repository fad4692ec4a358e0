//! Broker scenarios: connect, sessions, keep-alive, will, takeover. Each
//! test cites the normative statements it covers; docs/conformance.md is
//! the index.

mod sim;

use bytes::Bytes;
use ringmq_engine::broker::{owner_shard, route_connect, BrokerConfig, Route};
use ringmq_engine::codec::{Auth, Disconnect, Packet, Protocol, ReasonCode};
use sim::*;

fn both() -> [Protocol; 2] {
    [V3, V5]
}

/// 5.0 [MQTT-3.1.4-5] 5.0 [MQTT-3.2.2-2] 5.0 [MQTT-3.12.4-1]
/// 3.1.1 [MQTT-3.1.4-4] 3.1.1 [MQTT-3.2.2-1] 3.1.1 [MQTT-3.12.4-1]: a clean-start CONNECT is
/// accepted with CONNACK 0x00 and Session Present 0; PINGREQ is answered with PINGRESP.
#[test]
fn connect_then_connack_success_and_ping() {
    for v in both() {
        let mut sim = Sim::new(1);
        let (c, ack) = sim.connect_with(connect_packet(v, "a", true));
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        assert!(!ack.session_present, "clean start: session present 0");
        assert!(sim.ping_ok(c));
    }
}

/// 5.0 [MQTT-3.1.0-1] 3.1.1 [MQTT-3.1.0-1]: the first packet must be CONNECT; anything else
/// closes, and nothing is sent back.
#[test]
fn first_packet_not_connect_closes() {
    for v in both() {
        let mut sim = Sim::new(1);
        let c = sim.open(0, v);
        sim.send(c, Packet::PingReq);
        assert!(sim.is_closed(c));
        assert!(sim.recv(c).is_empty(), "nothing is sent before CONNECT");
    }
}

/// 5.0 [MQTT-3.1.0-2] 3.1.1 [MQTT-3.1.0-2]: a second CONNECT is a protocol violation: close
/// (v5: DISCONNECT 0x82).
#[test]
fn second_connect_closes() {
    for v in both() {
        let mut sim = Sim::new(1);
        let c = sim.connect(v, "a", true);
        sim.send(c, Packet::Connect(Box::new(connect_packet(v, "a", true))));
        assert!(sim.is_closed(c));
        if v == V5 {
            assert_eq!(sim.disconnect_reason(c), Some(ReasonCode::PROTOCOL_ERROR));
        }
    }
}

/// 3.1.1 [MQTT-3.1.2-2]: an unsupported protocol level gets CONNACK 0x01 and a close.
#[test]
fn unsupported_protocol_level() {
    let mut sim = Sim::new(1);
    let c = sim.open(0, V3);
    // CONNECT "MQTT" level 9
    sim.send_raw(
        c,
        &[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 60, 0, 1, b'x',
        ],
    );
    let ack = sim.expect(c, |p| matches!(p, Packet::ConnAck(_)));
    let Packet::ConnAck(ack) = ack else {
        unreachable!()
    };
    assert_eq!(ack.reason.v3_connack_code(), 1);
    assert!(sim.is_closed(c));
}

/// 3.1.1 [MQTT-3.1.2-1]: a wrong protocol name closes the connection.
#[test]
fn wrong_protocol_name_closes() {
    let mut sim = Sim::new(1);
    let c = sim.open(0, V3);
    sim.send_raw(
        c,
        &[
            0x10, 13, 0, 4, b'M', b'Q', b'X', b'X', 4, 2, 0, 60, 0, 1, b'x',
        ],
    );
    assert!(sim.is_closed(c));
}

/// 5.0 [MQTT-3.1.2-4] 5.0 [MQTT-3.1.2-5] 5.0 [MQTT-3.1.2-6] 5.0 [MQTT-3.1.2-23]
/// 5.0 [MQTT-3.1.3-2] 5.0 [MQTT-3.2.2-3]
/// 3.1.1 [MQTT-3.1.2-4] 3.1.1 [MQTT-3.1.2-5] 3.1.1 [MQTT-3.1.2-6] 3.1.1 [MQTT-3.1.3-2]
/// 3.1.1 [MQTT-3.2.2-2] 3.1.1 [MQTT-3.2.2-3] 3.1.1 [MQTT-4.1.0-1]:
/// a persistent session survives the connection; CONNACK says session present; its
/// subscriptions and queued QoS 1 messages are kept; clean start discards them.
#[test]
fn persistent_session_resume_and_clean_start() {
    for v in both() {
        let mut sim = Sim::new(1);
        let mut connect = connect_packet(v, "p", false);
        connect.properties.session_expiry_interval_s = Some(300);
        let (a, ack) = sim.connect_with(connect.clone());
        assert!(!ack.session_present);
        sim.subscribe(a, "t/1", 1);
        sim.disconnect(a);
        let p = sim.connect(v, "pub", true);
        sim.pub_simple(p, "t/1", "queued", 1);
        sim.pub_simple(p, "t/1", "q0-not-queued", 0);
        let (a, ack) = sim.connect_with(connect);
        assert!(ack.session_present, "session present on resume");
        assert_eq!(
            sim.payloads(a),
            ["queued"],
            "QoS 1 queued, QoS 0 not queued offline"
        );
        sim.pub_simple(p, "t/1", "live", 1);
        assert_eq!(sim.payloads(a), ["live"], "subscription kept");
        sim.disconnect(a);
        let (a, ack) = sim.connect_with(connect_packet(v, "p", true));
        assert!(!ack.session_present, "clean start discards the session");
        sim.pub_simple(p, "t/1", "after-clean", 1);
        assert!(
            sim.payloads(a).is_empty(),
            "subscriptions discarded by clean start"
        );
    }
}

/// 5.0 [MQTT-3.1.3-6] 5.0 [MQTT-3.2.2-16]: a zero-length client id gets a unique Assigned
/// Client Identifier (v5 property); v3.1.1 with clean session accepts it too.
#[test]
fn zero_length_client_id_assigned() {
    let mut sim = Sim::new(2);
    let (c, ack) = sim.connect_with(connect_packet(V5, "", true));
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let id = ack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("assigned id");
    assert!(!id.is_empty());
    assert_eq!(
        ringmq_engine::broker::owner_shard(&id, 2) as usize,
        c.shard,
        "assigned id is owned by this shard"
    );
    let (_, ack2) = sim.connect_with(connect_packet(V5, "", true));
    assert_ne!(ack2.properties.assigned_client_identifier, Some(id));
    // v3.1.1 with clean session: accepted, no property
    let (c3, ack3) = sim.connect_with(connect_packet(V3, "", true));
    assert_eq!(ack3.reason, ReasonCode::SUCCESS);
    assert!(sim.ping_ok(c3));
}

/// 3.1.1 [MQTT-3.1.3-8] 3.1.1 [MQTT-3.2.2-4] 3.1.1 [MQTT-3.2.2-5]: v3.1.1 empty client id with
/// clean session 0 -> 0x02, session present 0, close.
#[test]
fn zero_length_client_id_persistent_refused_v311() {
    let mut sim = Sim::new(1);
    let (c, ack) = sim.connect_with(connect_packet(V3, "", false));
    assert_eq!(ack.reason.v3_connack_code(), 2);
    assert!(!ack.session_present);
    assert!(sim.is_closed(c));
}

/// 5.0 [MQTT-3.1.3-8] 5.0 [MQTT-3.2.2-7]: client ids longer than the configured limit are
/// refused with CONNACK 0x85 and a close.
#[test]
fn client_id_length_limit() {
    let cfg = BrokerConfig {
        client_id_max_bytes: 8,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let (_, ok) = sim.connect_with(connect_packet(V5, "12345678", true));
    assert_eq!(ok.reason, ReasonCode::SUCCESS);
    let (c, ack) = sim.connect_with(connect_packet(V5, "123456789", true));
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(sim.is_closed(c));
}

/// 5.0 [MQTT-3.1.4-3] 3.1.1 [MQTT-3.1.4-2]: takeover closes the old connection; v5 gets
/// DISCONNECT 0x8E.
#[test]
fn session_takeover() {
    for v in both() {
        let mut sim = Sim::new(1);
        let a = sim.connect(v, "same", true);
        let b = sim.connect(v, "same", true);
        assert!(sim.is_closed(a));
        if v == V5 {
            assert_eq!(
                sim.disconnect_reason(a),
                Some(ReasonCode::SESSION_TAKEN_OVER)
            );
        }
        assert!(sim.ping_ok(b));
    }
}

fn publish_with_id(
    topic: &str,
    payload: &str,
    qos: u8,
    packet_id: u16,
) -> ringmq_engine::codec::Publish {
    let mut p = publish(topic, payload, qos);
    p.packet_id = packet_id;
    p
}

/// A client id owned by a shard other than the owner of `id` (2 shards).
fn id_on_other_shard(id: &str) -> String {
    let owner = owner_shard(id.as_bytes(), 2);
    (0..)
        .map(|i| format!("other-{i}"))
        .find(|o| owner_shard(o.as_bytes(), 2) != owner)
        .expect("some id hashes to the other shard")
}

/// 5.0 [MQTT-3.1.2-6] 5.0 [MQTT-3.2.2-3] 3.1.1 [MQTT-3.1.2-6] 3.1.1 [MQTT-3.2.2-3]: taking
/// over a live connection whose session is not kept (3.1.1 CleanSession 1, v5 Session Expiry 0)
/// with Clean Start 0 finds no session: Session Present 0, none of the old subscriptions (on
/// any shard: v5 PUBACK 0x10 from the other shard), the old connection's will published; the
/// new session is kept as asked.
#[test]
fn takeover_of_a_session_not_kept_starts_a_new_one() {
    for v in both() {
        let mut sim = Sim::new(2);
        let watcher = sim.connect(v, "watcher", true);
        sim.subscribe(watcher, "will/t", 1);
        let publisher = sim.connect(v, &id_on_other_shard("same"), true);
        let mut first = connect_packet(v, "same", true);
        first.will = Some(will("will/t", "gone", 1, None));
        let (old, ack) = sim.connect_with(first);
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        sim.subscribe(old, "t", 1);

        let mut second = connect_packet(v, "same", false);
        second.properties.session_expiry_interval_s = (v == V5).then_some(60);
        let (new, ack) = sim.connect_with(second.clone());
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        assert!(
            !ack.session_present,
            "{v:?}: the old session ended with its connection"
        );
        assert!(sim.is_closed(old));
        assert_eq!(sim.payloads(watcher), ["gone"], "{v:?}: the old will");

        sim.send(
            publisher,
            Packet::Publish(publish_with_id("t", "after", 1, 7)),
        );
        let ack = sim.expect(publisher, |p| matches!(p, Packet::PubAck(_)));
        if v == V5 {
            // The other shard no longer counts a subscriber for "t".
            assert!(
                matches!(&ack, Packet::PubAck(a) if a.reason == ReasonCode::NO_MATCHING_SUBSCRIBERS),
                "{ack:?}"
            );
        }
        assert!(
            sim.messages(new).is_empty(),
            "{v:?}: old subscription inherited"
        );

        // The new session is a kept one: it resumes.
        sim.subscribe(new, "t", 1);
        sim.disconnect(new);
        let (again, ack) = sim.connect_with(second);
        assert!(ack.session_present, "{v:?}: the new session was kept");
        sim.pub_simple(publisher, "t", "kept", 1);
        assert_eq!(sim.payloads(again), ["kept"]);
    }
}

/// 5.0 [MQTT-3.1.2-8] 5.0 [MQTT-3.1.2-10] 5.0 [MQTT-3.14.4-3]
/// 3.1.1 [MQTT-3.1.2-8] 3.1.1 [MQTT-3.1.2-10] 3.1.1 [MQTT-3.14.4-3]: the will is published on
/// an abrupt close and deleted by a normal DISCONNECT; v5 DISCONNECT 0x04 publishes it.
#[test]
fn will_on_abrupt_close_not_on_disconnect() {
    for v in both() {
        let mut sim = Sim::new(1);
        let w = sim.connect(v, "watcher", true);
        sim.subscribe(w, "will/t", 1);
        let mut c = connect_packet(v, "dies", true);
        c.will = Some(will("will/t", "gone", 1, None));
        let (a, _) = sim.connect_with(c.clone());
        sim.drop_conn(a);
        assert_eq!(sim.payloads(w), ["gone"]);
        let (b, _) = sim.connect_with(c.clone());
        sim.disconnect(b);
        assert!(sim.payloads(w).is_empty(), "no will after DISCONNECT 0x00");
        if v == V5 {
            let (d, _) = sim.connect_with(c);
            let disc = Disconnect {
                reason: ReasonCode::DISCONNECT_WITH_WILL,
                ..Default::default()
            };
            sim.send(d, Packet::Disconnect(disc));
            assert_eq!(
                sim.payloads(w),
                ["gone"],
                "DISCONNECT 0x04 publishes the will"
            );
        }
    }
}

/// 3.1.1 [MQTT-3.1.2-8] 3.1.1 [MQTT-3.3.1-4]: a PUBLISH with QoS 3 closes the connection, and
/// the will is published when the server closes it.
#[test]
fn will_on_protocol_error() {
    let mut sim = Sim::new(1);
    let w = sim.connect(V3, "watcher", true);
    sim.subscribe(w, "will/e", 0);
    let mut c = connect_packet(V3, "bad", true);
    c.will = Some(will("will/e", "err", 0, None));
    let (a, _) = sim.connect_with(c);
    sim.send_raw(a, &[0x36, 0x00]); // QoS 3
    assert!(sim.is_closed(a));
    assert_eq!(sim.payloads(w), ["err"]);
}

/// 5.0 [MQTT-3.1.3-9] 5.0 [MQTT-3.1.2-8]: v5 Will Delay Interval: the will waits for its delay
/// and is dropped when the session resumes within it.
#[test]
fn will_delay_and_resume_cancels() {
    let mut sim = Sim::new(1);
    let w = sim.connect(V5, "watcher", true);
    sim.subscribe(w, "will/d", 1);
    let mut c = connect_packet(V5, "delayed", false);
    c.properties.session_expiry_interval_s = Some(60);
    c.will = Some(will("will/d", "late", 1, Some(5)));
    let (a, _) = sim.connect_with(c.clone());
    sim.drop_conn(a);
    sim.advance(4_000);
    assert!(sim.payloads(w).is_empty(), "not before the delay");
    sim.advance(1_500);
    assert_eq!(sim.payloads(w), ["late"]);
    // resume within the delay: no will
    let (a, _) = sim.connect_with(c.clone());
    sim.drop_conn(a);
    sim.advance(2_000);
    let (_a2, ack) = sim.connect_with(c);
    assert!(ack.session_present);
    sim.advance(10_000);
    assert!(
        sim.payloads(w).is_empty(),
        "will dropped: session resumed within the delay"
    );
}

/// 5.0 [MQTT-3.1.2-8] (v5 3.1.3.2.2): the will goes at the earlier of will delay and session
/// expiry.
#[test]
fn will_published_when_session_ends_before_delay() {
    let mut sim = Sim::new(1);
    let w = sim.connect(V5, "watcher", true);
    sim.subscribe(w, "will/x", 0);
    let mut c = connect_packet(V5, "short", false);
    c.properties.session_expiry_interval_s = Some(2);
    c.will = Some(will("will/x", "end", 0, Some(100)));
    let (a, _) = sim.connect_with(c);
    sim.drop_conn(a);
    sim.advance(2_100);
    assert_eq!(sim.payloads(w), ["end"]);
}

/// 5.0 [MQTT-3.1.2-22] 3.1.1 [MQTT-3.1.2-24]: no packet for 1.5 x keep-alive closes the
/// connection (v5: DISCONNECT 0x8D); 5.0 [MQTT-3.12.4-1] 3.1.1 [MQTT-3.12.4-1] PINGREQ gets
/// PINGRESP and resets the timer.
#[test]
fn keep_alive_timeout() {
    for v in both() {
        let mut sim = Sim::new(1);
        let mut c = connect_packet(v, "ka", true);
        c.keep_alive_s = 2;
        let (a, _) = sim.connect_with(c);
        sim.advance(2_900);
        assert!(!sim.is_closed(a), "not before 1.5 x keep-alive");
        assert!(sim.ping_ok(a));
        sim.advance(2_900);
        assert!(!sim.is_closed(a), "PINGREQ reset the timer");
        sim.advance(200);
        assert!(sim.is_closed(a));
        if v == V5 {
            assert_eq!(
                sim.disconnect_reason(a),
                Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
            );
        }
    }
}

/// Keep-alive 0 turns the mechanism off (v3.1.1 section 3.1.2.10, no id).
#[test]
fn keep_alive_zero_is_off() {
    let mut sim = Sim::new(1);
    let mut c = connect_packet(V3, "ka0", true);
    c.keep_alive_s = 0;
    let (a, _) = sim.connect_with(c);
    sim.advance(3_600_000);
    assert!(!sim.is_closed(a));
}

/// v5 3.2.2.3.14 (no server-side id): Server Keep Alive tells the client the bound in force,
/// and the server enforces 1.5 x that value.
#[test]
fn server_keep_alive() {
    let cfg = BrokerConfig {
        keep_alive_max_s: 30,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let mut c = connect_packet(V5, "ska", true);
    c.keep_alive_s = 0;
    let (a, ack) = sim.connect_with(c);
    assert_eq!(ack.properties.server_keep_alive_s, Some(30));
    sim.advance(44_000);
    assert!(!sim.is_closed(a));
    sim.advance(2_000);
    assert!(sim.is_closed(a), "server keep alive enforced");
}

/// A socket that never sends CONNECT is closed after connect_timeout_ms.
#[test]
fn connect_timeout() {
    let mut sim = Sim::new(1);
    let c = sim.open(0, V3);
    sim.advance(9_000);
    assert!(!sim.is_closed(c));
    sim.advance(1_100);
    assert!(sim.is_closed(c));
}

/// 5.0 [MQTT-4.1.0-2] (v5 3.1.2.11.2): an absent Session Expiry Interval (0) ends the session
/// with the connection.
#[test]
fn session_expiry_zero_ends_session() {
    let mut sim = Sim::new(1);
    let a = sim.connect(V5, "se0", false);
    sim.subscribe(a, "x", 1);
    sim.disconnect(a);
    let (_, ack) = sim.connect_with(connect_packet(V5, "se0", false));
    assert!(!ack.session_present);
}

/// 5.0 [MQTT-3.1.2-23] 5.0 [MQTT-4.1.0-2]: the session is kept within its interval and
/// discarded after it; DISCONNECT may change it, but not from 0 to non-zero (v5 3.14.2.2.2,
/// no id: Protocol Error).
#[test]
fn session_expiry_interval_and_disconnect_update() {
    let mut sim = Sim::new(1);
    let mut c = connect_packet(V5, "se", false);
    c.properties.session_expiry_interval_s = Some(10);
    let (a, _) = sim.connect_with(c.clone());
    sim.disconnect(a);
    sim.advance(9_000);
    let (a, ack) = sim.connect_with(c.clone());
    assert!(ack.session_present, "still there within the interval");
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(1);
    sim.send(a, Packet::Disconnect(d));
    sim.advance(1_100);
    let (a, ack) = sim.connect_with(c);
    assert!(
        !ack.session_present,
        "expired after the interval set on DISCONNECT"
    );
    // 0 in CONNECT cannot become non-zero on DISCONNECT: protocol error
    sim.disconnect(a);
    let b = sim.connect(V5, "zero", true);
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(5);
    sim.send(b, Packet::Disconnect(d));
    assert_eq!(sim.disconnect_reason(b), Some(ReasonCode::PROTOCOL_ERROR));
}

/// v5 CONNACK properties: Receive Maximum, Maximum Packet Size, Topic Alias Maximum.
#[test]
fn connack_v5_properties() {
    let cfg = base();
    let mut sim = Sim::with_config(1, cfg.clone());
    let (_, ack) = sim.connect_with(connect_packet(V5, "props", true));
    assert_eq!(ack.properties.receive_maximum, Some(cfg.receive_maximum));
    assert_eq!(
        ack.properties.maximum_packet_size_bytes,
        Some(cfg.packet_size_max_bytes)
    );
    assert_eq!(
        ack.properties.topic_alias_maximum,
        Some(cfg.topic_alias_max)
    );
}

/// 5.0 [MQTT-4.12.0-1] 5.0 [MQTT-3.2.2-7]: an unknown authentication method is refused with
/// CONNACK 0x8C and a close; 5.0 [MQTT-4.12.0-7]: AUTH without a method in CONNECT closes.
#[test]
fn enhanced_auth_unknown_method() {
    let mut sim = Sim::new(1);
    let mut c = connect_packet(V5, "auth", true);
    c.properties.authentication_method = Some(Bytes::from_static(b"SCRAM-SHA-1"));
    let (a, ack) = sim.connect_with(c);
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(sim.is_closed(a));
    let b = sim.connect(V5, "auth2", true);
    sim.send(b, Packet::Auth(Auth::default()));
    assert!(sim.is_closed(b));
}

/// allow_anonymous = false refuses a client without a user name (0x87 / return code 5).
#[test]
fn anonymous_refused_when_disabled() {
    let cfg = BrokerConfig {
        allow_anonymous: false,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let (_, ack) = sim.connect_with(connect_packet(V5, "anon", true));
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    let (_, ack) = sim.connect_with(connect_packet(V3, "anon3", true));
    assert_eq!(ack.reason.v3_connack_code(), 5);
}

/// The scenario tests' profile variable (`RINGMQ_SIM_PROFILE`, sim/mod.rs)
/// accepts only the names it lists: a typo fails the run, naming them,
/// instead of quietly running the native profile again.
#[test]
fn an_unknown_sim_profile_fails_loudly() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args(["--exact", "connect_then_connack_success_and_ping"])
        .env(PROFILE_VAR, "in_tab")
        .output()
        .expect("run the test binary");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unknown RINGMQ_SIM_PROFILE=\"in_tab\"; accepted values: native, in-tab"),
        "{text}"
    );
}

/// connections_max is enforced at accept.
#[test]
fn connection_limit() {
    let cfg = BrokerConfig {
        connections_max: 2,
        ..base()
    };
    let mut sim = Sim::with_config(1, cfg);
    let _a = sim.open(0, V3);
    let _b = sim.open(0, V3);
    assert!(sim.brokers[0].accept(sim.now_ms).is_none());
}

/// Shutdown: v5 clients get DISCONNECT 0x8B, all connections close.
#[test]
fn shutdown_disconnects_everyone() {
    let mut sim = Sim::new(1);
    let a = sim.connect(V5, "s5", true);
    let b = sim.connect(V3, "s3", true);
    let now = sim.now_ms;
    sim.brokers[0].shutdown(now);
    sim.pump();
    assert_eq!(
        sim.disconnect_reason(a),
        Some(ReasonCode::SERVER_SHUTTING_DOWN)
    );
    assert!(sim.is_closed(a) && sim.is_closed(b));
}

/// A verified client certificate's identity (`use_identity_as_username`)
/// stands for the credentials: with allow_anonymous = false, a CONNECT
/// without user name is accepted on that connection only.
#[test]
fn certificate_identity_authenticates_the_connect() {
    let cfg = BrokerConfig {
        allow_anonymous: false,
        ..base()
    };
    for v in both() {
        let mut sim = Sim::with_config(1, cfg.clone());
        let c = sim.open(0, v);
        sim.brokers[0].set_certificate_identity(c.conn, "device-7");
        sim.send(
            c,
            Packet::Connect(Box::new(connect_packet(v, "cert", true))),
        );
        let Packet::ConnAck(ack) = sim.expect(c, |p| matches!(p, Packet::ConnAck(_))) else {
            unreachable!()
        };
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        // Without an identity the same CONNECT is still refused.
        let (_, ack) = sim.connect_with(connect_packet(v, "nocert", true));
        assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    }
}

/// A CONNECT routed to another shard that the runtime could not hand over
/// (`Broker::refuse_unrouted`, the native loop without a process
/// descriptor): CONNACK 0x89 Server busy in v5, return code 3 in v3.1.1,
/// no session made, and the connection closes; a v5 CONNACK that would
/// exceed the client's Maximum Packet Size is not sent (5 bytes fit, 4 do
/// not).
#[test]
fn an_unrouted_connect_is_refused_server_busy() {
    let id = (0..)
        .map(|i| format!("c{i}"))
        .find(|id| owner_shard(id.as_bytes(), 2) == 1)
        .unwrap();
    for (v, max, expected) in [
        (V3, None, Some(ReasonCode::SERVER_UNAVAILABLE)),
        (V5, None, Some(ReasonCode::SERVER_BUSY)),
        (V5, Some(5), Some(ReasonCode::SERVER_BUSY)),
        (V5, Some(4), None),
    ] {
        let mut sim = Sim::new(2);
        let c = sim.open(0, v);
        let mut connect = connect_packet(v, &id, false);
        connect.properties.maximum_packet_size_bytes = max;
        let bytes = sim.encode(c, &Packet::Connect(Box::new(connect)));
        assert_eq!(
            route_connect(&bytes, 0, 2, u32::MAX),
            Route::Shard(1),
            "routed away"
        );
        let now = sim.now_ms;
        sim.brokers[0].refuse_unrouted(c.conn, &bytes, ReasonCode::SERVER_BUSY, now);
        sim.pump();
        let got = sim.recv(c);
        match expected {
            Some(reason) => assert!(
                matches!(got.as_slice(), [Packet::ConnAck(a)] if a.reason == reason && !a.session_present),
                "{v:?} {max:?}: {got:?}"
            ),
            None => assert!(got.is_empty(), "{v:?} {max:?}: {got:?}"),
        }
        assert!(sim.is_closed(c), "{v:?} {max:?}: closed");
        // No session was made on either shard.
        let (_, ack) = sim.connect_with(connect_packet(v, &id, false));
        assert!(!ack.session_present, "{v:?} {max:?}");
    }
}
