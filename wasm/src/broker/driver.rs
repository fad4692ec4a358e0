//! The in-tab broker's driver: the engine's [`Broker`] (one shard, memory
//! only), woken by its connections' `onmessage` handlers and by one
//! `setTimeout` for `poll_timeout()` (keep-alives, session expiry, will
//! delays, `$SYS`), never by polling.
//!
//! After every input, [`pump`] drains the broker's events: `Transmit`
//! writes the connection's bytes to its port / channel, `Close` flushes and
//! closes it, `Authenticate` is answered here (plain passwords compared in
//! constant time, or the password file through the engine's
//! `auth::decide`: argon2id, SCRAM-SHA-256), and connection records become
//! `clientConnected` / `clientDisconnected` callbacks. The `observer` is an
//! engine client inside the broker (`internal`: no transport, bytes are
//! handed over in memory) that subscribes to `#` for the `message`
//! callback and publishes for `broker.publish`; each bridge's local side is
//! another (`bridge::local`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};
use js_sys::Function;
use ringmq_engine::auth::{self, AuthRequest, AuthVerdict};
use ringmq_engine::broker::{Broker, ConnId, ConnectionRecord, Event};
use ringmq_engine::client::Event as ClientEvent;
use ringmq_engine::codec::{QoS, ReasonCode, SubscribeFilter, SubscriptionOptions};
use wasm_bindgen::prelude::*;

use super::bridge::local::{self, Local};
use super::endpoint::{Endpoint, Ports};
use super::internal::{Internal, INTERNAL_USERNAME};
use super::options::Users;
use crate::{js, props};

/// JS calls to make once the state is released.
pub type Calls = Vec<(Function, Vec<JsValue>)>;

/// One connection: where its bytes go, and what it sent that the broker
/// has not consumed yet (a partial packet, or input held during a login).
pub struct Link {
    pub endpoint: Endpoint,
    pub read: BytesMut,
}

#[derive(Default)]
pub struct Handlers {
    pub client_connected: Option<Function>,
    pub client_disconnected: Option<Function>,
    pub message: Option<Function>,
}

pub struct State {
    pub broker: Broker,
    pub links: HashMap<ConnId, Link>,
    pub users: Users,
    pub handlers: Handlers,
    pub observer: Option<Internal>,
    /// The local sides of the bridges (`addBridge`).
    pub bridges: Vec<Local>,
    pub timer: Option<js::Timer>,
    /// The ports of `createClientPort`.
    pub ports: Ports,
    /// The `message` event's latest topic string.
    pub topics: props::TopicCache,
    pub closed: bool,
}

impl State {
    /// The internal client on connection `conn` (the observer or a bridge).
    pub fn internal_mut(&mut self, conn: ConnId) -> Option<&mut Internal> {
        let observer = self.observer.as_mut().filter(|o| o.conn == conn);
        observer.or_else(|| {
            self.bridges
                .iter_mut()
                .map(|b| &mut b.internal)
                .find(|i| i.conn == conn)
        })
    }

    pub fn is_internal(&self, conn: ConnId) -> bool {
        self.observer.as_ref().is_some_and(|o| o.conn == conn)
            || self.bridges.iter().any(|b| b.internal.conn == conn)
    }
}

pub type Shared = Rc<RefCell<State>>;

/// Makes the collected calls (outside any borrow).
pub fn run(calls: Calls) {
    for (f, args) in calls {
        js::call(&f, &args);
    }
}

/// A new connection from `endpoint`; `None` when the broker is full or closed.
pub fn accept(state: &mut State, endpoint: Endpoint) -> Option<ConnId> {
    if state.closed {
        return None;
    }
    let conn = state.broker.accept(js::now_ms())?;
    state.links.insert(
        conn,
        Link {
            endpoint,
            read: BytesMut::new(),
        },
    );
    Some(conn)
}

/// Bytes from connection `conn`.
pub fn on_data(shared: &Shared, conn: ConnId, bytes: &[u8]) {
    let calls = {
        let mut s = shared.borrow_mut();
        let s = &mut *s;
        let Some(link) = s.links.get_mut(&conn) else {
            return;
        };
        link.read.extend_from_slice(bytes);
        s.broker.handle_read(conn, &mut link.read, js::now_ms());
        pump(s, &Rc::downgrade(shared))
    };
    run(calls);
}

/// Connection `conn` was closed by its client.
pub fn on_closed(shared: &Shared, conn: ConnId) {
    let calls = {
        let mut s = shared.borrow_mut();
        let Some(link) = s.links.remove(&conn) else {
            return;
        };
        link.endpoint.detach();
        s.broker.handle_closed(conn, js::now_ms());
        pump(&mut s, &Rc::downgrade(shared))
    };
    run(calls);
}

fn on_timer(shared: &Shared) {
    let calls = {
        let mut s = shared.borrow_mut();
        if let Some(t) = s.timer.as_mut() {
            t.fired();
        }
        let now = js::now_ms();
        s.broker.handle_timeout(now);
        if let Some(o) = s.observer.as_mut() {
            o.client.handle_timeout(now);
        }
        for b in &mut s.bridges {
            b.internal.client.handle_timeout(now);
        }
        pump(&mut s, &Rc::downgrade(shared))
    };
    run(calls);
}

/// Drives the broker until it has nothing left to say; re-arms the timer.
pub fn pump(s: &mut State, weak: &Weak<RefCell<State>>) -> Calls {
    let mut calls = Calls::new();
    loop {
        let mut progressed = observer_to_broker(s);
        while let Some(event) = s.broker.poll_event() {
            progressed = true;
            handle_event(s, event);
        }
        while let Some(record) = s.broker.poll_connection_record() {
            progressed = true;
            record_event(s, record, &mut calls);
        }
        progressed |= observer_events(s, &mut calls);
        let mut wake = Vec::new();
        progressed |= local::poll(&mut s.bridges, &mut wake);
        calls.extend(wake.into_iter().map(|f| (f, Vec::new())));
        if !progressed {
            break;
        }
    }
    if s.timer.is_none() {
        let weak = weak.clone();
        s.timer = Some(js::Timer::new(Closure::wrap(Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                on_timer(&shared);
            }
        })
            as Box<dyn FnMut()>)));
    }
    let internal_deadlines = s
        .observer
        .iter()
        .chain(s.bridges.iter().map(|b| &b.internal))
        .filter_map(|i| i.client.poll_timeout());
    let deadline = s
        .broker
        .poll_timeout()
        .into_iter()
        .chain(internal_deadlines)
        .min();
    let deadline = if s.closed { None } else { deadline };
    if let Some(t) = s.timer.as_mut() {
        t.arm(deadline);
    }
    calls
}

fn handle_event(s: &mut State, event: Event) {
    let now = js::now_ms();
    match event {
        Event::Transmit(conn) => transmit(s, conn),
        Event::Close(conn) => {
            transmit(s, conn);
            if let Some(link) = s.links.remove(&conn) {
                let port = link.endpoint.port_id();
                link.endpoint.close();
                port_ended(s, port);
            }
            if let Some(i) = s.internal_mut(conn) {
                i.client.handle_close(now);
            }
            s.broker.handle_closed(conn, now);
        }
        // One shard: nothing to forward (the engine sends nothing to itself).
        Event::ToShard { .. } => {}
        Event::Authenticate {
            conn,
            token,
            request,
            ..
        } => {
            let verdict = if s.is_internal(conn) {
                AuthVerdict::Accept {
                    username: Bytes::from_static(INTERNAL_USERNAME.as_bytes()),
                    data: None,
                }
            } else {
                verify(&s.users, request)
            };
            s.broker.handle_auth_result(conn, token, verdict, now);
            // Input held while the login was checked is read now.
            if let Some(link) = s.links.get_mut(&conn) {
                s.broker.handle_read(conn, &mut link.read, now);
            }
        }
    }
}

/// Plain passwords first (constant-time comparison), then the password file.
fn verify(users: &Users, request: AuthRequest) -> AuthVerdict {
    if let AuthRequest::Password { username, password } = &request {
        let plain = std::str::from_utf8(username)
            .ok()
            .and_then(|u| users.plain.get(u));
        if let Some(expected) = plain {
            let ok = password
                .as_ref()
                .is_some_and(|p| constant_time_eq(p, expected.as_bytes()));
            return if ok {
                AuthVerdict::Accept {
                    username: username.clone(),
                    data: None,
                }
            } else {
                AuthVerdict::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            };
        }
    }
    match &users.file {
        Some(store) => {
            let nonce = js::random_bytes(auth::scram::NONCE_MIN_BYTES.max(18));
            auth::decide(store, request, &nonce)
        }
        None => match request {
            AuthRequest::Password { .. } => {
                AuthVerdict::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            }
            // SCRAM needs credentials only a password file holds.
            _ => AuthVerdict::Refuse(ReasonCode::BAD_AUTHENTICATION_METHOD),
        },
    }
}

/// Equal bytes, in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn transmit(s: &mut State, conn: ConnId) {
    let Some(out) = s.broker.outgoing(conn) else {
        return;
    };
    if out.is_empty() {
        return;
    }
    let bytes = out.split();
    if let Some(i) = s.internal_mut(conn) {
        i.receive(&bytes);
        s.broker.handle_writable(conn, js::now_ms());
        return;
    }
    let failed = s
        .links
        .get(&conn)
        .is_some_and(|l| l.endpoint.send(&bytes).is_err());
    if failed {
        if let Some(link) = s.links.remove(&conn) {
            let port = link.endpoint.port_id();
            link.endpoint.detach();
            port_ended(s, port);
        }
        s.broker.handle_closed(conn, js::now_ms());
        return;
    }
    // The host took the bytes: the buffer has room again.
    s.broker.handle_writable(conn, js::now_ms());
}

fn record_event(s: &State, record: ConnectionRecord, calls: &mut Calls) {
    let observer = |conn: ConnId| s.is_internal(conn);
    match record {
        ConnectionRecord::Connected {
            conn,
            client_id,
            protocol,
            keep_alive_s,
            clean_start,
            session_present,
            username,
        } if !observer(conn) => {
            if let Some(f) = &s.handlers.client_connected {
                let info = js::object();
                js::set(&info, "clientId", js::string(&client_id));
                js::set(&info, "protocolVersion", protocol.level());
                js::set(&info, "keepAlive", keep_alive_s);
                js::set(&info, "cleanStart", clean_start);
                js::set(&info, "sessionPresent", session_present);
                if let Some(u) = username {
                    js::set(&info, "username", js::string(&u));
                }
                calls.push((f.clone(), vec![info]));
            }
        }
        ConnectionRecord::Closed {
            conn,
            client_id: Some(client_id),
            cause,
        } if !observer(conn) => {
            if let Some(f) = &s.handlers.client_disconnected {
                let info = js::object();
                js::set(&info, "clientId", js::string(&client_id));
                let reason = match cause {
                    None => "connection closed".to_string(),
                    Some(c) => format!("{c:?}"),
                };
                js::set(&info, "reason", reason);
                calls.push((f.clone(), vec![info]));
            }
        }
        _ => {}
    }
}

/// Hands the internal clients' outgoing bytes to the broker; true if any.
fn observer_to_broker(s: &mut State) -> bool {
    let mut any = false;
    for i in s
        .observer
        .iter_mut()
        .chain(s.bridges.iter_mut().map(|b| &mut b.internal))
    {
        any |= i.hand_to(&mut s.broker);
    }
    any
}

/// The observer's events: messages for the `message` callback.
fn observer_events(s: &mut State, calls: &mut Calls) -> bool {
    let mut any = false;
    let Some(o) = s.observer.as_mut() else {
        return false;
    };
    while let Some(event) = o.client.poll_event() {
        any = true;
        match event {
            ClientEvent::Message(p) => {
                if let Some(f) = &s.handlers.message {
                    calls.push((f.clone(), props::message_args(&p, &mut s.topics).to_vec()));
                }
            }
            ClientEvent::Connected { .. } => {
                // QoS 2: each message is seen at the QoS it was published with.
                let all = SubscribeFilter {
                    filter: Bytes::from_static(b"#"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..SubscriptionOptions::default()
                    },
                };
                if o.client.subscribe(vec![all]).is_err() {
                    // Only "not connected" or a full table: neither after CONNACK.
                    debug_assert!(false, "observer SUBSCRIBE refused");
                }
            }
            ClientEvent::Disconnected(_) => {
                // Ended (broker closed): a new one is made on demand.
                s.observer = None;
                return true;
            }
            _ => {}
        }
    }
    any
}

/// The port carrying a connection the broker ended (`Endpoint::close`),
/// or whose port failed: it waits for a reconnection.
fn port_ended(s: &mut State, port: Option<u64>) {
    if let Some(id) = port {
        let idle_max = s.broker.config().connections_max;
        s.ports.ended(id, idle_max);
    }
}

/// Starts the observer (idempotent): a v5 session subscribed to `#`.
pub fn start_observer(s: &mut State) -> Result<(), JsValue> {
    if s.observer.is_some() {
        return Ok(());
    }
    let id = format!("$in-tab-{}", js::hex(&js::random_bytes(8)));
    s.observer = Some(Internal::start(&mut s.broker, id, false)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn passwords_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
