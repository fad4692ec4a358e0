//! A connection's endpoint on the broker's side: a `MessagePort` (one of
//! the broker's [`Ports`]), or an id on a shared `BroadcastChannel`
//! ([`Listener`]), with the framing of `crate::framing`.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use ringmq_engine::broker::ConnId;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent, MessagePort};

use crate::framing::{CHANNEL_TO_CLIENT, PORT_CLOSE};
use crate::js;

/// Where a connection's bytes go.
pub enum Endpoint {
    /// Port `id` of the broker's `Ports`, which owns its handler.
    Port {
        id: u64,
        port: MessagePort,
    },
    Channel {
        channel: Rc<Listener>,
        id: String,
    },
}

impl Endpoint {
    pub fn send(&self, bytes: &[u8]) -> Result<(), JsValue> {
        match self {
            Endpoint::Port { port, .. } => port.post_message(&js::uint8array(bytes)),
            Endpoint::Channel { channel, id } => {
                channel
                    .channel
                    .post_message(&to_client(id, "data", Some(bytes)))
            }
        }
    }

    /// The broker's port this connection is on.
    pub fn port_id(&self) -> Option<u64> {
        match self {
            Endpoint::Port { id, .. } => Some(*id),
            Endpoint::Channel { .. } => None,
        }
    }

    /// Tells the client the connection is over, and stops listening (a
    /// port stays open for a reconnection: `ports::ended`).
    pub fn close(self) {
        match &self {
            Endpoint::Port { port, .. } => {
                if port.post_message(&JsValue::from_str(PORT_CLOSE)).is_err() {
                    // The other side is gone already.
                }
            }
            Endpoint::Channel { channel, id } => {
                if channel
                    .channel
                    .post_message(&to_client(id, "close", None))
                    .is_err()
                {
                    // The channel was closed (broker closing).
                }
            }
        }
        self.detach();
    }

    /// Stops listening (the client closed, or the broker is closing). A
    /// port's fate is decided by `ports`.
    pub fn detach(self) {
        match self {
            Endpoint::Port { .. } => {}
            Endpoint::Channel { channel, id } => {
                channel.conns.borrow_mut().remove(&id);
            }
        }
    }
}

/// A `message` event handler bound to JS.
pub type Handler = Closure<dyn FnMut(MessageEvent)>;

/// A port of `createClientPort` (`ports`).
struct Port {
    port: MessagePort,
    /// The connection it carries now (none while idle).
    conn: Option<ConnId>,
    _on_message: Handler,
}

/// The broker's ports, each serving one connection after the other; see
/// `ports`. Idle ones (no connection) are bounded by `maxConnections`.
#[derive(Default)]
pub struct Ports {
    ports: HashMap<u64, Port>,
    /// Ports without a connection, oldest first.
    idle: VecDeque<u64>,
    next_id: u64,
}

impl Ports {
    /// The connection on port `id` ended (by the broker, or the client's
    /// `"reset"`): the port waits for an `"open"`, within the bound on
    /// idle ports (`idle_max`, the broker's `maxConnections`).
    pub fn ended(&mut self, id: u64, idle_max: usize) {
        let Some(p) = self.ports.get_mut(&id) else {
            return;
        };
        p.conn = None;
        if !self.idle.contains(&id) {
            self.idle.push_back(id);
        }
        while self.idle.len() > idle_max.max(1) {
            if let Some(oldest) = self.idle.pop_front() {
                self.remove(oldest);
            }
        }
    }

    /// A new port's id.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers port `id` carrying connection `conn`; `on_message` is its
    /// handler, kept as long as the port.
    pub fn insert(&mut self, id: u64, port: MessagePort, conn: ConnId, on_message: Handler) {
        self.ports.insert(
            id,
            Port {
                port,
                conn: Some(conn),
                _on_message: on_message,
            },
        );
    }

    /// The connection port `id` carries (`Some(None)`: idle; `None`: no
    /// such port).
    pub fn conn(&self, id: u64) -> Option<Option<ConnId>> {
        self.ports.get(&id).map(|p| p.conn)
    }

    pub fn port(&self, id: u64) -> Option<MessagePort> {
        self.ports.get(&id).map(|p| p.port.clone())
    }

    /// Port `id` carries connection `conn` now.
    pub fn connected(&mut self, id: u64, conn: ConnId) {
        self.idle.retain(|&i| i != id);
        if let Some(p) = self.ports.get_mut(&id) {
            p.conn = Some(conn);
        }
    }

    /// Stops listening on port `id` and closes it.
    pub fn remove(&mut self, id: u64) {
        self.idle.retain(|&i| i != id);
        if let Some(p) = self.ports.remove(&id) {
            p.port.set_onmessage(None);
            p.port.close();
        }
    }

    /// Broker shutdown: every port is told and closed (their connections
    /// were closed already).
    pub fn close_all(&mut self) {
        for (_, p) in self.ports.drain() {
            if p.conn.is_none() && p.port.post_message(&JsValue::from_str(PORT_CLOSE)).is_err() {
                // The other side is gone already.
            }
            p.port.set_onmessage(None);
            p.port.close();
        }
        self.idle.clear();
    }
}

/// One BroadcastChannel the broker listens on, and its connections by id.
pub struct Listener {
    pub channel: BroadcastChannel,
    pub conns: RefCell<HashMap<String, usize>>,
    pub on_message: RefCell<Option<Handler>>,
}

impl Listener {
    /// Stops listening and closes the channel.
    pub fn close(&self) {
        self.channel.set_onmessage(None);
        self.channel.close();
        drop(self.on_message.borrow_mut().take());
    }
}

/// A broker-to-client BroadcastChannel message.
pub fn to_client(id: &str, kind: &str, data: Option<&[u8]>) -> JsValue {
    let m = js::object();
    js::set(&m, "ringmq", CHANNEL_TO_CLIENT);
    js::set(&m, "id", id);
    js::set(&m, "type", kind);
    if let Some(d) = data {
        js::set(&m, "data", js::uint8array(d));
    }
    m
}
