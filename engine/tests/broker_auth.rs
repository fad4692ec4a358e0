//! Authentication against a user store through the asynchronous flow: the
//! broker hands credentials out (`Event::Authenticate`), the simulated
//! runtime answers (`handle_auth_result`), at once or later. Passwords
//! (v3.1.1 and v5), SCRAM-SHA-256 enhanced authentication and
//! re-authentication (v5), stale verdicts, what happens meanwhile.

mod sim;

use bytes::Bytes;
use ringmq_engine::auth::password::{format_line, hash_password, UserEntry};
use ringmq_engine::auth::scram::{self, ScramCredentials};
use ringmq_engine::auth::{AuthVerdict, UserStore};
use ringmq_engine::broker::BrokerConfig;
use ringmq_engine::codec::{Auth, AuthProperties, Packet, Protocol, ReasonCode};
use sim::*;

const METHOD: &[u8] = b"SCRAM-SHA-256";

fn both() -> [Protocol; 2] {
    [V3, V5]
}

/// alice / "secret" with SCRAM credentials; bob / "hunter2" without.
fn store() -> UserStore {
    let alice = UserEntry {
        phc: hash_password(b"secret", &[1; 16]).unwrap(),
        scram: Some(ScramCredentials::derive(b"secret", &[2; 16], 4096)),
    };
    let bob = UserEntry {
        phc: hash_password(b"hunter2", &[3; 16]).unwrap(),
        scram: None,
    };
    let text = format!(
        "{}\n{}\n",
        format_line("alice", &alice),
        format_line("bob", &bob)
    );
    UserStore::parse(text.as_bytes()).unwrap()
}

fn closed_config() -> BrokerConfig {
    BrokerConfig {
        allow_anonymous: false,
        ..base()
    }
}

fn login(
    v: Protocol,
    id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> ringmq_engine::codec::Connect {
    let mut c = connect_packet(v, id, true);
    c.username = user.map(|u| Bytes::copy_from_slice(u.as_bytes()));
    c.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    c
}

/// 5.0 [MQTT-3.1.4-5] 3.1.1 [MQTT-3.1.4-4]: the right password is accepted
/// (CONNACK 0), in v3.1.1 and v5.
#[test]
fn right_password_is_accepted() {
    for v in both() {
        let mut sim = Sim::with_store(1, closed_config(), store());
        let (c, ack) = sim.connect_with(login(v, "a", Some("alice"), Some("secret")));
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "{v:?}");
        assert!(sim.ping_ok(c));
    }
}

/// 5.0 [MQTT-3.1.4-2] 5.0 [MQTT-3.2.2-7] 3.1.1 [MQTT-3.2.2-5]: a wrong
/// password, an unknown user, or a user name without a password is refused
/// with "bad user name or password" (v3.1.1 return code 4, v5 0x86) and the
/// connection closed.
#[test]
fn wrong_password_and_unknown_user_are_refused_with_4_or_0x86() {
    for v in both() {
        let mut sim = Sim::with_store(1, closed_config(), store());
        for (user, pw) in [
            (Some("alice"), Some("Secret")),
            (Some("alice"), Some("")),
            (Some("mallory"), Some("secret")),
            (Some("alice"), None),
        ] {
            let (c, ack) = sim.connect_with(login(v, "a", user, pw));
            match v {
                V3 => assert_eq!(ack.reason.v3_connack_code(), 4, "{user:?} {pw:?}"),
                _ => assert_eq!(
                    ack.reason,
                    ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                    "{user:?} {pw:?}"
                ),
            }
            assert!(sim.is_closed(c));
        }
        assert_eq!(sim.brokers[0].stats().logins_refused, 4);
    }
}

/// Anonymous clients are refused with "not authorized" (v3.1.1 5, v5 0x87)
/// when allow_anonymous is off, with or without a store; without a store a
/// user name alone no longer gets in.
#[test]
fn anonymous_refused_and_no_store_refuses_every_name() {
    for v in both() {
        let mut sim = Sim::with_store(1, closed_config(), store());
        let (c, ack) = sim.connect_with(login(v, "anon", None, None));
        assert_eq!(ack.reason.v3_connack_code(), 5);
        if v == V5 {
            assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
        }
        assert!(sim.is_closed(c));

        let mut sim = Sim::with_config(1, closed_config());
        let (c, ack) = sim.connect_with(login(v, "x", Some("anyone"), Some("anything")));
        assert_eq!(ack.reason.v3_connack_code(), 5, "{v:?}");
        assert!(sim.is_closed(c));
    }
}

/// With a store and anonymous allowed, a client without a user name gets
/// in; one with a user name must still give its password.
#[test]
fn anonymous_allowed_still_checks_given_names() {
    let mut sim = Sim::with_store(1, base(), store());
    let (_, ack) = sim.connect_with(login(V5, "anon", None, None));
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let (_, ack) = sim.connect_with(login(V5, "b", Some("bob"), Some("wrong")));
    assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
}

/// 5.0 [MQTT-3.1.4-6]: while a verification is pending nothing the client
/// sent after its CONNECT is processed, and other clients go on; once
/// accepted, the pipelined SUBSCRIBE is answered.
#[test]
fn pending_verification_holds_only_that_client() {
    let mut sim = Sim::with_store(1, closed_config(), store());
    let sub = {
        let (c, ack) = sim.connect_with(login(V5, "sub", Some("alice"), Some("secret")));
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        c
    };
    assert_eq!(sim.subscribe(sub, "t", 0), ReasonCode::GRANTED_QOS_0);
    sim.defer_auth = true;
    let slow = sim.open(0, V5);
    sim.send(
        slow,
        Packet::Connect(Box::new(login(V5, "slow", Some("bob"), Some("hunter2")))),
    );
    assert!(sim.brokers[0].auth_pending(slow.conn));
    let pid = sim.pid();
    let s = ringmq_engine::codec::Subscribe {
        packet_id: pid,
        filters: vec![ringmq_engine::codec::SubscribeFilter {
            filter: Bytes::from_static(b"t"),
            options: opts(0),
        }],
        properties: Default::default(),
    };
    sim.send(slow, Packet::Subscribe(s));
    assert!(sim.recv(slow).is_empty(), "nothing before the verdict");
    // Everyone else is served meanwhile.
    let publisher = {
        sim.defer_auth = false;
        let (c, _) = sim.connect_with(login(V5, "pub", Some("alice"), Some("secret")));
        sim.defer_auth = true;
        c
    };
    sim.pub_simple(publisher, "t", "during", 0);
    assert_eq!(sim.payloads(sub), vec!["during"]);
    assert_eq!(sim.auth_asks.len(), 1);
    sim.answer_auth();
    let got = sim.recv(slow);
    assert!(
        matches!(got.first(), Some(Packet::ConnAck(a)) if a.reason == ReasonCode::SUCCESS),
        "{got:?}"
    );
    assert!(
        matches!(got.get(1), Some(Packet::SubAck(a)) if a.packet_id == pid),
        "{got:?}"
    );
    sim.pub_simple(publisher, "t", "after", 0);
    assert_eq!(sim.payloads(slow), vec!["after"]);
}

/// A verdict for a connection that closed while it was pending is ignored,
/// also when a new connection got the same id (the token differs): the new
/// one is judged on its own credentials.
#[test]
fn stale_verdict_never_applies_to_a_reused_connection_id() {
    let mut sim = Sim::with_store(1, closed_config(), store());
    sim.defer_auth = true;
    let first = sim.open(0, V3);
    sim.send(
        first,
        Packet::Connect(Box::new(login(V3, "x", Some("alice"), Some("secret")))),
    );
    sim.drop_conn(first);
    let second = sim.open(0, V3);
    assert_eq!(second.conn, first.conn, "the slab reuses the id");
    sim.send(
        second,
        Packet::Connect(Box::new(login(V3, "x", Some("alice"), Some("wrong")))),
    );
    assert_eq!(sim.auth_asks.len(), 2);
    // The first (correct password) verdict comes back: it must not let the
    // second connection in.
    let first_ask = sim.auth_asks.remove(0);
    sim.brokers[0].handle_auth_result(
        first_ask.conn,
        first_ask.token,
        AuthVerdict::Accept {
            username: Bytes::from_static(b"alice"),
            data: None,
        },
        sim.now_ms,
    );
    sim.pump();
    assert!(sim.recv(second).is_empty());
    assert!(sim.brokers[0].auth_pending(second.conn));
    sim.answer_auth();
    let got = sim.recv(second);
    assert!(
        matches!(got.first(), Some(Packet::ConnAck(a)) if a.reason.v3_connack_code() == 4),
        "{got:?}"
    );
    assert!(sim.is_closed(second));
}

/// A runtime whose verification queue is full answers "server busy":
/// v5 0x89, v3.1.1 return code 3.
#[test]
fn server_busy_verdict_is_0x89_or_3() {
    for v in both() {
        let mut sim = Sim::with_store(1, closed_config(), store());
        sim.defer_auth = true;
        let c = sim.open(0, v);
        sim.send(
            c,
            Packet::Connect(Box::new(login(v, "x", Some("alice"), Some("secret")))),
        );
        let ask = sim.auth_asks.remove(0);
        sim.brokers[0].handle_auth_result(
            ask.conn,
            ask.token,
            AuthVerdict::Refuse(ReasonCode::SERVER_BUSY),
            sim.now_ms,
        );
        sim.pump();
        let got = sim.recv(c);
        let Some(Packet::ConnAck(ack)) = got.first() else {
            panic!("{got:?}")
        };
        match v {
            V3 => assert_eq!(ack.reason.v3_connack_code(), 3),
            _ => assert_eq!(ack.reason, ReasonCode::SERVER_BUSY),
        }
        assert!(sim.is_closed(c));
    }
}

/// A verification that never comes back is bounded by the CONNECT timeout.
#[test]
fn unanswered_verification_is_closed_by_the_connect_timeout() {
    let mut sim = Sim::with_store(1, closed_config(), store());
    sim.defer_auth = true;
    let c = sim.open(0, V5);
    sim.send(
        c,
        Packet::Connect(Box::new(login(V5, "x", Some("alice"), Some("secret")))),
    );
    let timeout = sim.brokers[0].config().connect_timeout_ms;
    sim.advance(timeout + 1);
    assert!(sim.is_closed(c));
}

fn auth_packet(reason: ReasonCode, method: &[u8], data: &[u8]) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: AuthProperties {
            authentication_method: Some(Bytes::copy_from_slice(method)),
            authentication_data: Some(Bytes::copy_from_slice(data)),
            ..Default::default()
        },
    })
}

/// Runs a SCRAM exchange from `first` (CONNECT or AUTH 0x19 already sent)
/// on `c`: answers server-first with `password`; returns the server's last
/// packet and the server signature the client expects.
fn scram_continue(sim: &mut Sim, c: C, bare: &str, password: &str) -> (Packet, Vec<u8>) {
    let server_first = sim.expect(c, |p| matches!(p, Packet::Auth(_)));
    let Packet::Auth(a) = server_first else {
        unreachable!()
    };
    // [MQTT-4.12.0-2] [MQTT-4.12.0-5]: AUTH 0x18 with the CONNECT's method.
    assert_eq!(a.reason, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
    let data = a.properties.authentication_data.unwrap_or_default();
    let (client_final, expect) =
        scram::client_final(password.as_bytes(), bare.as_bytes(), &data).unwrap();
    sim.send(
        c,
        auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, METHOD, &client_final),
    );
    let last = sim
        .recv(c)
        .into_iter()
        .find(|p| {
            matches!(
                p,
                Packet::ConnAck(_) | Packet::Auth(_) | Packet::Disconnect(_)
            )
        })
        .unwrap_or(Packet::PingResp);
    (last, expect)
}

fn scram_connect(sim: &mut Sim, id: &str, user: &str, password: &str) -> (C, Packet, Vec<u8>) {
    let bare = format!("n={user},r=clientnonce{id}");
    let mut connect = connect_packet(V5, id, true);
    connect.properties.authentication_method = Some(Bytes::from_static(METHOD));
    connect.properties.authentication_data = Some(Bytes::from(format!("n,,{bare}")));
    let c = sim.open(0, V5);
    sim.send(c, Packet::Connect(Box::new(connect)));
    let (last, expect) = scram_continue(sim, c, &bare, password);
    (c, last, expect)
}

/// 5.0 [MQTT-4.12.0-2] 5.0 [MQTT-4.12.0-5]: SCRAM-SHA-256 through AUTH: the
/// server continues with AUTH 0x18 and accepts with a CONNACK carrying the
/// method and the server signature the client expects.
#[test]
fn scram_sha_256_success() {
    let mut sim = Sim::with_store(1, closed_config(), store());
    let (c, last, expect) = scram_connect(&mut sim, "s", "alice", "secret");
    let Packet::ConnAck(ack) = last else {
        panic!("{last:?}")
    };
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&expect[..])
    );
    assert!(sim.ping_ok(c));
}

/// 5.0 [MQTT-4.12.0-4]: a wrong SCRAM proof (or a user without SCRAM
/// credentials, or an unknown user) is refused with 0x86 and closed.
#[test]
fn scram_wrong_password_unknown_user_refused() {
    let mut sim = Sim::with_store(1, closed_config(), store());
    for (user, pw) in [("alice", "wrong"), ("bob", "hunter2"), ("nobody", "x")] {
        let (c, last, _) = scram_connect(&mut sim, user, user, pw);
        assert!(
            matches!(&last, Packet::ConnAck(a) if a.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            "{user}: {last:?}"
        );
        assert!(sim.is_closed(c));
    }
}

/// 5.0 [MQTT-4.12.0-1]: an unknown method gets 0x8C, also with a store.
#[test]
fn unknown_method_with_a_store_is_0x8c() {
    let mut sim = Sim::with_store(1, closed_config(), store());
    let mut connect = connect_packet(V5, "m", true);
    connect.properties.authentication_method = Some(Bytes::from_static(b"SCRAM-SHA-1"));
    let (c, ack) = sim.connect_with(connect);
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(sim.is_closed(c));
}

/// 5.0 [MQTT-4.12.1-2]: re-authentication on a live connection: AUTH 0x19
/// ... AUTH 0x00 while traffic goes on; a failed one closes with
/// DISCONNECT 0x87.
#[test]
fn scram_reauthentication_success_then_failure() {
    let mut sim = Sim::with_store(1, closed_config(), store());
    let (c, last, _) = scram_connect(&mut sim, "r", "alice", "secret");
    assert!(matches!(last, Packet::ConnAck(ref a) if a.reason == ReasonCode::SUCCESS));
    assert_eq!(sim.subscribe(c, "t", 0), ReasonCode::GRANTED_QOS_0);

    let bare = "n=alice,r=again1";
    sim.send(
        c,
        auth_packet(
            ReasonCode::REAUTHENTICATE,
            METHOD,
            format!("n,,{bare}").as_bytes(),
        ),
    );
    let (last, expect) = scram_continue(&mut sim, c, bare, "secret");
    let Packet::Auth(done) = last else {
        panic!("{last:?}")
    };
    assert_eq!(done.reason, ReasonCode::SUCCESS);
    assert_eq!(
        done.properties.authentication_data.as_deref(),
        Some(&expect[..])
    );
    assert!(sim.ping_ok(c));

    let bare = "n=alice,r=again2";
    sim.send(
        c,
        auth_packet(
            ReasonCode::REAUTHENTICATE,
            METHOD,
            format!("n,,{bare}").as_bytes(),
        ),
    );
    let (last, _) = scram_continue(&mut sim, c, bare, "not-the-password");
    assert!(
        matches!(&last, Packet::Disconnect(d) if d.reason == ReasonCode::NOT_AUTHORIZED),
        "{last:?}"
    );
    assert!(sim.is_closed(c));
}

/// 5.0 [MQTT-4.12.0-7]: a client that did not use enhanced authentication
/// may not send AUTH (protocol error), with a store too.
#[test]
fn auth_without_enhanced_authentication_is_a_protocol_error() {
    let mut sim = Sim::with_store(1, closed_config(), store());
    let (c, _) = sim.connect_with(login(V5, "p", Some("alice"), Some("secret")));
    sim.send(
        c,
        auth_packet(ReasonCode::REAUTHENTICATE, METHOD, b"n,,n=alice,r=x"),
    );
    assert_eq!(sim.disconnect_reason(c), Some(ReasonCode::PROTOCOL_ERROR));
    assert!(sim.is_closed(c));
}
