//! The client's byte pipes: a WebSocket (`ws://` / `wss://`, subprotocol
//! `mqtt`, binary frames), a `MessagePort` (to an in-tab broker, a worker
//! or another frame), or a `BroadcastChannel` (to an in-tab broker in any
//! tab of the same origin). Each wakes the client from its own event
//! handler (`onopen`, `onmessage`, `onclose`): nothing polls.
//!
//! The framing on ports and channels is in `framing`.

use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, BroadcastChannel, MessageEvent, MessagePort, WebSocket};

use std::cell::Cell;
use std::rc::Rc;

use crate::framing::{
    port_message, Input, PortMessage, CHANNEL_TO_BROKER, CHANNEL_TO_CLIENT, PORT_CLOSE,
    PORT_INVALID, PORT_OPEN, PORT_RESET,
};
use crate::js;

/// Where to connect, as the application gave it.
#[derive(Clone)]
pub enum Target {
    /// `ws://` or `wss://` URL.
    WebSocket(String),
    /// A port (the in-tab broker's `createClientPort`), with the number of
    /// connections made over it: the first starts at once, each later one
    /// (a reconnection) with `"open"` (`framing`).
    Port(MessagePort, Rc<Cell<u32>>),
    /// A function returning a fresh `MessagePort` per connection attempt
    /// (what makes reconnection possible over ports).
    PortFactory(js_sys::Function),
    /// A BroadcastChannel name.
    Channel(String),
}

impl Target {
    /// From `connect`'s first argument: a URL string, a MessagePort, a
    /// function returning one, or `{ broadcastChannel: name }`.
    pub fn from_js(v: &JsValue) -> Result<Target, JsValue> {
        if let Some(url) = v.as_string() {
            if url.starts_with("ws://") || url.starts_with("wss://") {
                return Ok(Target::WebSocket(url));
            }
            return Err(js::type_error(
                "a URL target must start with ws:// or wss://",
            ));
        }
        if let Some(port) = v.dyn_ref::<MessagePort>() {
            return Ok(Target::Port(port.clone(), Rc::default()));
        }
        if let Some(f) = v.dyn_ref::<js_sys::Function>() {
            return Ok(Target::PortFactory(f.clone()));
        }
        if let Some(name) = js::opt_string(v, "broadcastChannel")? {
            return Ok(Target::Channel(name));
        }
        Err(js::type_error(
            "connect target: a ws:// or wss:// URL, a MessagePort, a function returning a MessagePort, or { broadcastChannel: name }",
        ))
    }
}

/// An open (or opening) transport and the handlers bound to it.
pub struct Transport {
    kind: Kind,
    // Kept alive as long as the transport; detached on drop.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_open: Option<Closure<dyn FnMut(JsValue)>>,
    _on_close: Option<Closure<dyn FnMut(JsValue)>>,
}

enum Kind {
    WebSocket(WebSocket),
    /// `reusable`: the application's port (not one from a port function),
    /// kept for the next connection when this one ends.
    Port {
        port: MessagePort,
        reusable: bool,
    },
    Channel {
        channel: BroadcastChannel,
        id: String,
    },
}

impl Transport {
    /// Opens `target`; `sink` receives every [`Input`] from the host's
    /// event handlers. `Open` comes from `onopen` for a WebSocket, and
    /// from a zero-delay timer for the others (never synchronously).
    pub fn open(
        target: &Target,
        sink: impl FnMut(Input) + Clone + 'static,
    ) -> Result<Transport, JsValue> {
        match target {
            Target::WebSocket(url) => open_websocket(url, sink),
            Target::Port(port, uses) => {
                let reopen = uses.get() > 0;
                uses.set(uses.get().saturating_add(1));
                open_port(port.clone(), sink, reopen, true)
            }
            Target::PortFactory(f) => {
                let port = f
                    .call0(&JsValue::NULL)?
                    .dyn_into::<MessagePort>()
                    .map_err(|_| js::type_error("the port function must return a MessagePort"))?;
                open_port(port, sink, false, false)
            }
            Target::Channel(name) => open_channel(name, sink),
        }
    }

    /// Writes `bytes` (a copy is made by the host).
    pub fn send(&self, bytes: &[u8]) -> Result<(), JsValue> {
        match &self.kind {
            Kind::WebSocket(ws) => ws.send_with_u8_array(bytes),
            Kind::Port { port, .. } => port.post_message(&js::uint8array(bytes)),
            Kind::Channel { channel, id } => {
                channel.post_message(&channel_message(id, "data", Some(bytes)))
            }
        }
    }

    /// Ends the connection (after what was sent so far) and detaches the
    /// handlers, keeping the application's port for the next connection
    /// (`"reset"`); the others close as with [`Transport::close`].
    pub fn end_for_reconnect(&self) {
        if let Kind::Port {
            port,
            reusable: true,
        } = &self.kind
        {
            port.set_onmessage(None);
            if port.post_message(&JsValue::from_str(PORT_RESET)).is_err() {
                // The port is unusable: the next attempt times out.
            }
            return;
        }
        self.close();
    }

    /// Closes the connection (after what was sent so far) and detaches the
    /// handlers: no input arrives after this.
    pub fn close(&self) {
        match &self.kind {
            Kind::WebSocket(ws) => {
                ws.set_onopen(None);
                ws.set_onmessage(None);
                ws.set_onclose(None);
                // close() only throws for a bad code or reason; none is given.
                if ws.close().is_err() {
                    debug_assert!(false, "WebSocket.close() without arguments");
                }
            }
            Kind::Port { port, .. } => {
                port.set_onmessage(None);
                if port.post_message(&JsValue::from_str(PORT_CLOSE)).is_err() {
                    // The port is already unusable: nothing left to tell.
                }
                port.close();
            }
            Kind::Channel { channel, id } => {
                channel.set_onmessage(None);
                if channel
                    .post_message(&channel_message(id, "close", None))
                    .is_err()
                {
                    // The channel is closed already.
                }
                channel.close();
            }
        }
    }
}

fn open_websocket(
    url: &str,
    sink: impl FnMut(Input) + Clone + 'static,
) -> Result<Transport, JsValue> {
    let ws = WebSocket::new_with_str(url, "mqtt")?;
    ws.set_binary_type(BinaryType::Arraybuffer);
    let mut s = sink.clone();
    let on_message = Closure::wrap(Box::new(move |e: MessageEvent| {
        let data = e.data();
        if data.is_instance_of::<js_sys::ArrayBuffer>() {
            s(Input::Data(Uint8Array::new(&data).to_vec()));
        } else {
            // Text frames are not MQTT ([MQTT-6.0.0-1]): close.
            s(Input::Closed {
                detail: Some("the server sent a text WebSocket frame".into()),
            });
        }
    }) as Box<dyn FnMut(MessageEvent)>);
    let mut s = sink.clone();
    let on_open =
        Closure::wrap(Box::new(move |_: JsValue| s(Input::Open)) as Box<dyn FnMut(JsValue)>);
    let mut s = sink;
    let on_close = Closure::wrap(Box::new(move |e: JsValue| {
        let code = js::get(&e, "code").as_f64().unwrap_or(0.0);
        let reason = js::get(&e, "reason").as_string().unwrap_or_default();
        s(Input::Closed {
            detail: Some(format!(
                "WebSocket closed (code {code}{}{reason})",
                if reason.is_empty() { "" } else { ": " }
            )),
        });
    }) as Box<dyn FnMut(JsValue)>);
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    // `error` is always followed by `close`: one handler is enough.
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    Ok(Transport {
        kind: Kind::WebSocket(ws),
        _on_message: on_message,
        _on_open: Some(on_open),
        _on_close: Some(on_close),
    })
}

/// `reopen`: a later connection over the same port: it starts with
/// `"open"`, and what arrives before the broker's `"open"` belongs to the
/// earlier connection (dropped).
fn open_port(
    port: MessagePort,
    sink: impl FnMut(Input) + Clone + 'static,
    reopen: bool,
    reusable: bool,
) -> Result<Transport, JsValue> {
    let mut s = sink.clone();
    let mut started = !reopen;
    let on_message = Closure::wrap(Box::new(move |e: MessageEvent| {
        match port_message(&e.data()) {
            PortMessage::Open if !started => {
                started = true;
                s(Input::Open);
            }
            _ if !started => {} // the earlier connection's
            PortMessage::Data(bytes) => s(Input::Data(bytes)),
            PortMessage::Close => s(Input::Closed { detail: None }),
            PortMessage::Open | PortMessage::Reset | PortMessage::Invalid => s(Input::Closed {
                detail: Some(PORT_INVALID.into()),
            }),
        }
    }) as Box<dyn FnMut(MessageEvent)>);
    // Setting onmessage starts the port.
    port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    if reopen {
        port.post_message(&JsValue::from_str(PORT_OPEN))?;
    } else {
        let mut s = sink;
        js::defer(0, move || s(Input::Open));
    }
    Ok(Transport {
        kind: Kind::Port { port, reusable },
        _on_message: on_message,
        _on_open: None,
        _on_close: None,
    })
}

fn open_channel(
    name: &str,
    sink: impl FnMut(Input) + Clone + 'static,
) -> Result<Transport, JsValue> {
    let channel = BroadcastChannel::new(name)?;
    let id = js::hex(&js::random_bytes(16));
    let mine = id.clone();
    let mut s = sink.clone();
    let on_message = Closure::wrap(Box::new(move |e: MessageEvent| {
        let m = e.data();
        if js::get(&m, "ringmq").as_string().as_deref() != Some(CHANNEL_TO_CLIENT)
            || js::get(&m, "id").as_string().as_deref() != Some(mine.as_str())
        {
            return; // another connection's message
        }
        match js::get(&m, "type").as_string().as_deref() {
            Some("data") => match js::get(&m, "data").dyn_into::<Uint8Array>() {
                Ok(a) => s(Input::Data(a.to_vec())),
                Err(_) => s(Input::Closed {
                    detail: Some("BroadcastChannel data without bytes".into()),
                }),
            },
            _ => s(Input::Closed { detail: None }),
        }
    }) as Box<dyn FnMut(MessageEvent)>);
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    channel.post_message(&channel_message(&id, "open", None))?;
    let mut s = sink;
    js::defer(0, move || s(Input::Open));
    Ok(Transport {
        kind: Kind::Channel { channel, id },
        _on_message: on_message,
        _on_open: None,
        _on_close: None,
    })
}

/// A client-to-broker BroadcastChannel message.
fn channel_message(id: &str, kind: &str, data: Option<&[u8]>) -> JsValue {
    let m = js::object();
    js::set(&m, "ringmq", CHANNEL_TO_BROKER);
    js::set(&m, "id", id);
    js::set(&m, "type", kind);
    if let Some(d) = data {
        js::set(&m, "data", js::uint8array(d));
    }
    m
}
