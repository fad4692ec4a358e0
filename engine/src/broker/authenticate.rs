//! Authentication of a connection against the runtime's user store: the
//! decision at CONNECT, the wait for the runtime's verdict (verification is
//! slow and runs off the shard), MQTT 5.0 enhanced authentication with
//! AUTH packets (section 4.12) and re-authentication (section 4.12.1).
//!
//! ```text
//!   CONNECT ──▶ first_auth_step ──Accept──▶ complete_connect (CONNACK 0x00)
//!                  │ Refuse ──▶ CONNACK 4/5 (v3.1.1), 0x86/0x87/0x8C (v5), close
//!                  └ Ask ──▶ Event::Authenticate{conn, token, ..}; state Authenticating
//!                              (input after the CONNECT is left unread, and
//!                               `auth_pending` tells the runtime to pause reads)
//!   handle_auth_result(conn, token, verdict)
//!        Accept ──▶ complete_connect;   Refuse ──▶ CONNACK refusal, close
//!        Continue ──▶ AUTH 0x18 (SCRAM server-first); wait for the client's AUTH
//!   AUTH 0x18 from the client ──▶ Event::Authenticate again (SCRAM client-final)
//!
//!   Live v5 connection: AUTH 0x19 ──▶ the same exchange while traffic goes
//!   on; Accept ──▶ AUTH 0x00; Refuse ──▶ DISCONNECT 0x87, close ([MQTT-4.12.1-2]).
//! ```
//!
//! A verdict carries the token of the request it answers: one for a
//! connection that closed meanwhile, whose id may be reused, matches no
//! pending request and is ignored.

use bytes::Bytes;

use super::conn::ConnState;
use super::pending_auth::{Admitted, PendingAuth, Phase};
use super::violation::Violation;
use super::{Broker, ConnId, Event};
use crate::auth::scram::METHOD as SCRAM_METHOD;
use crate::auth::{AuthRequest, AuthVerdict};
use crate::codec::{Auth, AuthProperties, Packet, ReasonCode};

/// What to do with a CONNECT's credentials.
pub(super) enum FirstStep {
    Accept,
    Refuse(ReasonCode),
    /// Ask the runtime (user store) and wait for the verdict.
    Ask(AuthRequest),
}

impl Broker {
    /// Decides what a CONNECT's credentials need (module docs).
    pub(super) fn first_auth_step(&self, admitted: &Admitted) -> FirstStep {
        let c = &admitted.connect;
        let store = self.config.user_store;
        if let Some(method) = &c.properties.authentication_method {
            // Enhanced authentication (v5 only: the codec decodes the property
            // for v5 alone). Only SCRAM-SHA-256, and only with a user store
            // ([MQTT-4.12.0-1]: an unsupported method is refused, 0x8C).
            if !store || method.as_ref() != SCRAM_METHOD.as_bytes() {
                return FirstStep::Refuse(ReasonCode::BAD_AUTHENTICATION_METHOD);
            }
            let data = c.properties.authentication_data.clone().unwrap_or_default();
            return FirstStep::Ask(AuthRequest::ScramStart { data });
        }
        match (&c.username, &c.password) {
            (Some(username), password) if store => FirstStep::Ask(AuthRequest::Password {
                username: username.clone(),
                password: password.clone(),
            }),
            // A password without a user name (v5 allows it) names nobody.
            (None, Some(_)) if store => FirstStep::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            (None, _) if !self.config.allow_anonymous => {
                FirstStep::Refuse(ReasonCode::NOT_AUTHORIZED)
            }
            // No store and anonymous refused: nobody can be authenticated,
            // so nobody gets in (the runtime refuses to start like this; an
            // embedder that does it gets a closed broker, not an open one).
            (Some(_), _) if !self.config.allow_anonymous => {
                FirstStep::Refuse(ReasonCode::NOT_AUTHORIZED)
            }
            // Anonymous allowed and no store: names are not checked.
            _ => FirstStep::Accept,
        }
    }

    /// Hands a CONNECT's credentials to the runtime and waits.
    pub(super) fn start_connect_auth(
        &mut self,
        conn: ConnId,
        admitted: Admitted,
        request: AuthRequest,
    ) {
        let token = self.generation();
        let client_id = admitted.client_id.clone();
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.state = ConnState::Authenticating;
        c.set_auth(Box::new(PendingAuth {
            token,
            phase: Phase::Verifying,
            admitted: Some(Box::new(admitted)),
        }));
        self.events.push_back(Event::Authenticate {
            conn,
            token,
            client_id,
            request,
        });
    }

    /// A refused login: CONNACK with `reason` (v3.1.1 maps 0x86 -> 4,
    /// 0x87 -> 5, 0x89 -> 3), then close ([MQTT-3.1.4-2], [MQTT-4.12.0-4]);
    /// nothing the client sent after the CONNECT is processed ([MQTT-3.1.4-6]).
    pub(super) fn refuse_login(&mut self, conn: ConnId, reason: ReasonCode, now_ms: u64) {
        self.stats.logins_refused += 1;
        if let Some(c) = self.conns.get_mut(conn) {
            c.take_auth();
        }
        self.write_refusal(conn, reason);
        self.set_close_cause(conn, super::CloseCause::ConnectRefused(reason));
        self.close(conn, now_ms);
    }

    /// Whether `conn` waits for a verdict on its CONNECT: the runtime should
    /// stop reading it until `handle_auth_result` (the broker leaves what
    /// arrives meanwhile unread in the read buffer, and reads it after).
    pub fn auth_pending(&self, conn: ConnId) -> bool {
        self.conns.get(conn).is_some_and(|c| {
            c.state == ConnState::Authenticating
                && c.auth()
                    .is_some_and(|p| matches!(p.phase, Phase::Verifying))
        })
    }

    /// The runtime's answer to `Event::Authenticate { conn, token, .. }`.
    /// A stale answer (connection closed, id reused, another request since)
    /// is ignored. After it, feed the connection's unread input again
    /// (`handle_read`), which the broker left alone while it waited.
    pub fn handle_auth_result(
        &mut self,
        conn: ConnId,
        token: u64,
        verdict: AuthVerdict,
        now_ms: u64,
    ) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let current = c
            .auth()
            .is_some_and(|p| p.token == token && matches!(p.phase, Phase::Verifying));
        if !current || c.state == ConnState::Closing {
            return;
        }
        let Some(mut pending) = c.take_auth() else {
            return;
        };
        let reauth = pending.admitted.is_none();
        match verdict {
            AuthVerdict::Accept { username, data } => match pending.admitted.take() {
                Some(admitted) => {
                    self.complete_connect(conn, *admitted, Some(username), data, now_ms)
                }
                None => self.reauth_succeeded(conn, username, data),
            },
            AuthVerdict::Continue { data, state } => {
                pending.phase = Phase::AwaitClient(state);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.set_auth(pending);
                }
                // [MQTT-4.12.0-2]: the server's AUTH during authentication is 0x18.
                self.write_auth(conn, ReasonCode::CONTINUE_AUTHENTICATION, Some(data));
            }
            AuthVerdict::Refuse(_) if reauth => {
                // A DISCONNECT has no 0x86: a failed re-authentication is
                // "not authorized" ([MQTT-4.12.1-2]: then close).
                self.stats.logins_refused += 1;
                self.disconnect_with(conn, ReasonCode::NOT_AUTHORIZED, now_ms);
            }
            AuthVerdict::Refuse(reason) => self.refuse_login(conn, reason, now_ms),
        }
    }

    /// An AUTH packet while a CONNECT waits for enhanced authentication.
    pub(super) fn handle_auth_connecting(&mut self, conn: ConnId, auth: Auth, now_ms: u64) {
        match self.next_scram_request(conn, &auth) {
            Ok(request) => self.ask_again(conn, request),
            Err(reason) => self.refuse_login(conn, reason, now_ms),
        }
    }

    /// An AUTH packet on a live connection: start or continue a
    /// re-authentication (section 4.12.1).
    pub(super) fn handle_auth_active(
        &mut self,
        conn: ConnId,
        auth: Auth,
        now_ms: u64,
    ) -> Result<(), Violation> {
        let Some(c) = self.conns.get(conn) else {
            return Ok(());
        };
        let same_method =
            auth.properties.authentication_method.as_deref() == Some(SCRAM_METHOD.as_bytes());
        // [MQTT-4.12.0-7]: no AUTH from a client that did not use enhanced
        // authentication; [MQTT-4.12.1-1]: re-authentication uses the CONNECT's method.
        if !c.enhanced_auth || !same_method {
            return Err(Violation::UnexpectedPacket);
        }
        match (c.auth(), auth.reason) {
            (None, ReasonCode::REAUTHENTICATE) => {
                let token = self.generation();
                let data = auth.properties.authentication_data.unwrap_or_default();
                let client_id = self.client_id_of(conn);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.set_auth(Box::new(PendingAuth {
                        token,
                        phase: Phase::Verifying,
                        admitted: None,
                    }));
                }
                self.events.push_back(Event::Authenticate {
                    conn,
                    token,
                    client_id,
                    request: AuthRequest::ScramStart { data },
                });
            }
            (Some(p), ReasonCode::CONTINUE_AUTHENTICATION)
                if matches!(p.phase, Phase::AwaitClient(_)) =>
            {
                match self.next_scram_request(conn, &auth) {
                    Ok(request) => self.ask_again(conn, request),
                    Err(_) => {
                        self.stats.logins_refused += 1;
                        self.disconnect_with(conn, ReasonCode::NOT_AUTHORIZED, now_ms)
                    }
                }
            }
            _ => return Err(Violation::UnexpectedPacket),
        }
        Ok(())
    }

    /// The client-final request from a client's AUTH 0x18, if it is one.
    fn next_scram_request(&mut self, conn: ConnId, auth: &Auth) -> Result<AuthRequest, ReasonCode> {
        let Some(c) = self.conns.get_mut(conn) else {
            return Err(ReasonCode::PROTOCOL_ERROR);
        };
        if auth.properties.authentication_method.as_deref() != Some(SCRAM_METHOD.as_bytes()) {
            return Err(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        if auth.reason != ReasonCode::CONTINUE_AUTHENTICATION {
            return Err(ReasonCode::PROTOCOL_ERROR);
        }
        let Some(pending) = c.auth_mut() else {
            return Err(ReasonCode::PROTOCOL_ERROR);
        };
        let Phase::AwaitClient(state) = std::mem::replace(&mut pending.phase, Phase::Verifying)
        else {
            return Err(ReasonCode::PROTOCOL_ERROR);
        };
        Ok(AuthRequest::ScramFinish {
            data: auth
                .properties
                .authentication_data
                .clone()
                .unwrap_or_default(),
            state,
        })
    }

    /// Sends the next request of an exchange already pending (new token).
    fn ask_again(&mut self, conn: ConnId, request: AuthRequest) {
        let token = self.generation();
        let client_id = self.client_id_of(conn);
        if let Some(p) = self.conns.get_mut(conn).and_then(|c| c.auth_mut()) {
            p.token = token;
            p.phase = Phase::Verifying;
            self.events.push_back(Event::Authenticate {
                conn,
                token,
                client_id,
                request,
            });
        }
    }

    fn reauth_succeeded(&mut self, conn: ConnId, username: Bytes, data: Option<Bytes>) {
        if let Some(session) = self.conns.get(conn).and_then(|c| c.state.session()) {
            if let Some(s) = self.sessions.get_mut(session) {
                s.username = Some(Box::from(&username[..]));
            }
        }
        self.write_auth(conn, ReasonCode::SUCCESS, data);
    }

    fn write_auth(&mut self, conn: ConnId, reason: ReasonCode, data: Option<Bytes>) {
        let auth = Auth {
            reason,
            properties: AuthProperties {
                // [MQTT-4.12.0-5]: the AUTH carries the CONNECT's method.
                authentication_method: Some(Bytes::from_static(SCRAM_METHOD.as_bytes())),
                authentication_data: data,
                ..AuthProperties::default()
            },
        };
        self.write_packet(conn, &Packet::Auth(auth));
    }

    /// The client id of a connection (pending CONNECT or live session), for
    /// the runtime's logs.
    fn client_id_of(&self, conn: ConnId) -> Bytes {
        let Some(c) = self.conns.get(conn) else {
            return Bytes::new();
        };
        if let Some(a) = c.auth().and_then(|p| p.admitted.as_ref()) {
            return a.client_id.clone();
        }
        match c.state.session() {
            Some(session) => self
                .sessions
                .get(session)
                .map(|s| Bytes::copy_from_slice(&s.client_id))
                .unwrap_or_default(),
            None => Bytes::new(),
        }
    }
}
