//! The broker's `MessagePort`s (`createClientPort`): each serves one
//! connection at a time, and any number one after the other (a client
//! reconnecting over the port it was given), with the port framing of
//! `crate::framing` (`"open"`, `"reset"`, `"close"`).
//!
//! A port lives in [`Ports`] from `createClientPort` until the client sends
//! `"close"` or the broker closes. Between connections (the broker ended
//! one, or the client reset it) it is idle, waiting for the client's
//! `"open"`; a client that went away without a word (a worker terminated)
//! leaves its port idle, so idle ports are bounded: beyond
//! `maxConnections` of them the oldest is closed. The registry is
//! `endpoint::Ports`; here are the port's handler and `createClientPort`.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageChannel, MessageEvent, MessagePort};

use super::driver::{self, Shared};
use super::endpoint::Endpoint;
use crate::framing::{port_message, PortMessage, PORT_CLOSE, PORT_OPEN};
use crate::js;

/// `createClientPort()`: a new port with its first connection accepted;
/// returns the client's end.
pub fn client_port(shared: &Shared) -> Result<MessagePort, JsValue> {
    let pair = MessageChannel::new()?;
    let mine = pair.port1();
    let calls = {
        let mut s = shared.borrow_mut();
        let id = s.ports.next_id();
        let endpoint = Endpoint::Port {
            id,
            port: mine.clone(),
        };
        let conn = driver::accept(&mut s, endpoint)
            .ok_or_else(|| js::error("the broker is full or closed (maxConnections)", None))?;
        let weak = Rc::downgrade(shared);
        let on_message = Closure::wrap(Box::new(move |e: MessageEvent| {
            if let Some(shared) = weak.upgrade() {
                on_message(&shared, id, &e.data());
            }
        }) as Box<dyn FnMut(MessageEvent)>);
        // Setting onmessage starts the port.
        mine.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        s.ports.insert(id, mine, conn, on_message);
        driver::pump(&mut s, &Rc::downgrade(shared))
    };
    driver::run(calls);
    Ok(pair.port2())
}

fn on_message(shared: &Shared, id: u64, data: &JsValue) {
    let Some(conn) = shared.borrow().ports.conn(id) else {
        return;
    };
    match port_message(data) {
        // Bytes of a connection already ended are dropped.
        PortMessage::Data(bytes) => {
            if let Some(c) = conn {
                driver::on_data(shared, c, &bytes);
            }
        }
        PortMessage::Reset => {
            if let Some(c) = conn {
                driver::on_closed(shared, c);
            }
            let mut s = shared.borrow_mut();
            let idle_max = s.broker.config().connections_max;
            s.ports.ended(id, idle_max);
        }
        PortMessage::Close | PortMessage::Invalid => {
            if let Some(c) = conn {
                driver::on_closed(shared, c);
            }
            shared.borrow_mut().ports.remove(id);
        }
        PortMessage::Open => {
            if let Some(c) = conn {
                driver::on_closed(shared, c);
            }
            reopen(shared, id);
        }
    }
}

/// The client's `"open"`: a new connection on port `id`, answered with
/// `"open"` (and `"close"` when the broker is full).
fn reopen(shared: &Shared, id: u64) {
    let calls = {
        let mut s = shared.borrow_mut();
        let s = &mut *s;
        let Some(port) = s.ports.port(id) else {
            return;
        };
        if port.post_message(&JsValue::from_str(PORT_OPEN)).is_err() {
            s.ports.remove(id);
            return;
        }
        let endpoint = Endpoint::Port {
            id,
            port: port.clone(),
        };
        match driver::accept(s, endpoint) {
            Some(conn) => s.ports.connected(id, conn),
            None => {
                if port.post_message(&JsValue::from_str(PORT_CLOSE)).is_err() {
                    // Gone: the bound on idle ports reclaims it.
                }
                let idle_max = s.broker.config().connections_max;
                s.ports.ended(id, idle_max);
            }
        }
        driver::pump(s, &Rc::downgrade(shared))
    };
    driver::run(calls);
}
