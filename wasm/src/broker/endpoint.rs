//! A connection's endpoint on the broker's side: a `MessagePort` of its
//! own, or an id on a shared `BroadcastChannel` ([`Listener`]), with the
//! framing of `crate::framing`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent, MessagePort};

use crate::framing::{CHANNEL_TO_CLIENT, PORT_CLOSE};
use crate::js;

/// Where a connection's bytes go.
pub enum Endpoint {
    Port {
        port: MessagePort,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
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

    /// Tells the client the connection is over, and stops listening.
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

    /// Stops listening (the client closed, or the broker is closing).
    pub fn detach(self) {
        match self {
            Endpoint::Port { port, .. } => {
                port.set_onmessage(None);
                port.close();
            }
            Endpoint::Channel { channel, id } => {
                channel.conns.borrow_mut().remove(&id);
            }
        }
    }
}

/// A `message` event handler bound to JS.
pub type Handler = Closure<dyn FnMut(MessageEvent)>;

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
