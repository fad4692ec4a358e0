//! The framing shared by the client's transports and the in-tab broker's
//! endpoints. On a MessagePort each message is a `Uint8Array` of MQTT
//! bytes (a byte stream, not packet-aligned) or a string:
//! - client to broker: `"close"` ends the connection and the port (the
//!   broker stops listening on it); `"reset"` ends the connection, the
//!   port stays for a reconnection; `"open"` starts a new connection on
//!   the port (ending the current one, if any);
//! - broker to client: `"close"` the broker ended the connection (the port
//!   waits for the client's `"open"` or `"close"`); `"open"` the answer to
//!   the client's `"open"`: what the port carried before it belonged to
//!   the earlier connection, what follows to the new one (a broker that is
//!   full answers `"open"` then `"close"`).
//!
//! A port's first connection needs no `"open"`: it is accepted when the
//! broker makes the port (`createClientPort`), and a client that never
//! reconnects over it (MQTT.js through a port adapter) only ever sends
//! bytes and `"close"`. On a BroadcastChannel, where every tab
//! hears every message, each message is an object
//! `{ ringmq: "c2b" | "b2c", id, type: "open" | "data" | "close", data? }`
//! and `id` (random, per connection) says which connection it belongs to.

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};

/// The control message that closes a MessagePort connection.
pub const PORT_CLOSE: &str = "close";
/// Client to broker: ends the connection, keeps the port.
pub const PORT_RESET: &str = "reset";
/// Client to broker: a new connection on the port; broker to client: it
/// starts here.
pub const PORT_OPEN: &str = "open";
/// `ringmq` field of BroadcastChannel messages from a client to the broker.
pub const CHANNEL_TO_BROKER: &str = "c2b";
/// `ringmq` field of BroadcastChannel messages from the broker to a client.
pub const CHANNEL_TO_CLIENT: &str = "b2c";

/// What a transport reports (client side) or an endpoint receives.
pub enum Input {
    /// Ready for CONNECT (WebSocket open; immediately for the others).
    Open,
    Data(Vec<u8>),
    /// Closed by the peer or failed; `detail` for the `error` event.
    Closed {
        detail: Option<String>,
    },
}

/// One MessagePort message (either direction).
pub enum PortMessage {
    Data(Vec<u8>),
    Open,
    Reset,
    Close,
    /// Anything else: the connection ends.
    Invalid,
}

/// What one MessagePort message is.
pub fn port_message(data: &JsValue) -> PortMessage {
    if let Some(a) = data.dyn_ref::<Uint8Array>() {
        return PortMessage::Data(a.to_vec());
    }
    if data.is_instance_of::<js_sys::ArrayBuffer>() {
        return PortMessage::Data(Uint8Array::new(data).to_vec());
    }
    match data.as_string().as_deref() {
        Some(PORT_CLOSE) => PortMessage::Close,
        Some(PORT_RESET) => PortMessage::Reset,
        Some(PORT_OPEN) => PortMessage::Open,
        _ => PortMessage::Invalid,
    }
}

/// The `error` event's text for [`PortMessage::Invalid`].
pub const PORT_INVALID: &str =
    "unexpected message on the MQTT port (expected a Uint8Array, \"open\", \"reset\" or \"close\")";
