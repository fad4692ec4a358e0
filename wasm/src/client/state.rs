//! What one `MqttClient` holds ([`Inner`]): the settings and target, the
//! engine client of the current connection and its transport, what lives
//! across connections (subscriptions, unacknowledged publishes, waiting
//! promises) and the reconnection state. `driver` changes it; `resend`
//! moves publishes between the queue and the window.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use js_sys::Function;
use ringmq_engine::client::{Client, OutboundStep};
use ringmq_engine::codec::{Publish, PublishProperties, QoS, SubscribeFilter, SubscribeProperties};
use wasm_bindgen::JsValue;

use super::options::Settings;
use super::transport::{Target, Transport};
use crate::js;

/// A promise's settle functions.
pub struct Waiter {
    pub resolve: Function,
    pub reject: Function,
}

/// JS calls to make once the state is released: `(function, arguments)`.
pub type Calls = Vec<(Function, Vec<JsValue>)>;

/// A QoS 1/2 publish not yet acknowledged (or waiting for the window).
pub struct Pending {
    pub seq: u64,
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: PublishProperties,
    pub waiter: Waiter,
    /// Sent on a connection that was lost before it completed: its packet
    /// id there and how far it got; resent under that id when the next
    /// connection finds the session kept (`resume`).
    pub resume: Option<(u16, OutboundStep)>,
}

/// A subscription to restore when a reconnection finds no session.
#[derive(Clone)]
pub struct Subscription {
    pub filter: SubscribeFilter,
    pub properties: SubscribeProperties,
}

/// Application callbacks (`on(name, fn)`).
#[derive(Default)]
pub struct Handlers {
    pub message: Option<Function>,
    pub connect: Option<Function>,
    pub disconnect: Option<Function>,
    pub error: Option<Function>,
    pub reconnecting: Option<Function>,
}

/// Everything one `MqttClient` holds.
#[derive(Default)]
pub struct Inner {
    pub settings: Option<Settings>,
    pub target: Option<Target>,
    pub engine: Option<Client>,
    pub(super) transport: Option<Transport>,
    pub(super) read_buf: BytesMut,
    pub(super) timer: Option<js::Timer>,
    /// `queueMicrotask` of [`Inner::flush_fn`] is pending: what the engine
    /// writes until then goes out in one transport write.
    pub(super) flush_scheduled: bool,
    pub(super) flush_fn: Option<wasm_bindgen::closure::Closure<dyn FnMut()>>,
    /// The `message` callback's latest topic string.
    pub(super) topics: crate::props::TopicCache,
    pub(super) reconnect_timer: Option<js::Timer>,
    pub handlers: Handlers,
    pub connect_waiter: Option<Waiter>,
    pub disconnect_waiter: Option<Waiter>,
    /// Outbound QoS 1/2 by packet id on the current connection.
    pub inflight: HashMap<u16, Pending>,
    /// Publishes waiting for room in the window (or for a reconnection).
    pub queue: VecDeque<Pending>,
    pub subacks: HashMap<u16, (Waiter, Vec<Subscription>)>,
    pub unsubacks: HashMap<u16, (Waiter, Vec<Bytes>)>,
    pub subscriptions: Vec<Subscription>,
    /// Open `request`s by correlation data.
    pub requests: HashMap<Bytes, Waiter>,
    /// Reconnection attempts since the last CONNACK.
    pub(super) attempt: u32,
    /// When the current transport must have opened (`connectTimeoutMs`
    /// from the attempt's start): a WebSocket whose handshake hangs ends
    /// the attempt instead of waiting for the browser's own timeout.
    pub(super) open_deadline_ms: u64,
    /// `disconnect()` was called: no reconnection.
    pub closing: bool,
    /// A CONNACK was received on some connection of this client.
    pub connected_once: bool,
    /// The current connection got its CONNACK (a `disconnect` event is due
    /// when it ends).
    pub(super) up: bool,
    pub seq: u64,
    /// Connection attempts made (tells a late acknowledgement from the
    /// connection its message came on).
    pub generation: u64,
    /// `manual_acks` (a bridge): messages received, with the generation of
    /// their connection, for the owner to take and acknowledge.
    pub received: VecDeque<(u64, Publish)>,
    /// Inbound QoS 2 messages of the lost connection delivered but not
    /// released (no PUBREL yet): handed to the next connection's engine,
    /// which keeps them if the broker kept the session, so that a resend
    /// (DUP) is acknowledged and not delivered again.
    pub(super) inbound_qos2: Vec<u16>,
    /// The client id whose session those ids belong to: a later `connect`
    /// under another id starts without them.
    pub(super) inbound_qos2_client_id: Bytes,
}

pub type Shared = Rc<RefCell<Inner>>;

impl Inner {
    pub fn is_connected(&self) -> bool {
        self.engine.as_ref().is_some_and(Client::is_connected)
    }

    /// Lost the connection and trying again (publishes may be queued):
    /// between attempts, or during one.
    pub fn is_reconnecting(&self) -> bool {
        self.connected_once && !self.closing && self.settings.is_some() && !self.is_connected()
    }

    pub fn queue_max_messages(&self) -> usize {
        self.settings.as_ref().map_or(0, |s| s.queue_max_messages)
    }
}
