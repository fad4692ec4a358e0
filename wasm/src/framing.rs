//! The framing shared by the client's transports and the in-tab broker's
//! endpoints. On a MessagePort each message is a `Uint8Array` of MQTT
//! bytes (a byte stream, not packet-aligned) and the string `"close"` ends
//! the connection from either side. On a BroadcastChannel, where every tab
//! hears every message, each message is an object
//! `{ ringmq: "c2b" | "b2c", id, type: "open" | "data" | "close", data? }`
//! and `id` (random, per connection) says which connection it belongs to.

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};

/// The control message that closes a MessagePort connection.
pub const PORT_CLOSE: &str = "close";
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

/// What one MessagePort message means (both directions use this framing).
pub fn port_input(data: &JsValue) -> Input {
    if let Some(a) = data.dyn_ref::<Uint8Array>() {
        return Input::Data(a.to_vec());
    }
    if data.is_instance_of::<js_sys::ArrayBuffer>() {
        return Input::Data(Uint8Array::new(data).to_vec());
    }
    if data.as_string().as_deref() == Some(PORT_CLOSE) {
        return Input::Closed { detail: None };
    }
    Input::Closed {
        detail: Some(
            "unexpected message on the MQTT port (expected a Uint8Array or \"close\")".into(),
        ),
    }
}
