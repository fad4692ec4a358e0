//! Accepting connections from many clients multiplexed on one
//! `BroadcastChannel` (`listenBroadcastChannel`); ports
//! (`createClientPort`) are in `ports`.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

use super::driver::{self, Shared};
use super::endpoint::{to_client, Endpoint, Listener};
use crate::framing::CHANNEL_TO_BROKER;
use crate::js;

/// Starts accepting clients on the BroadcastChannel `name`.
pub fn listen_channel(shared: &Shared, name: &str) -> Result<Rc<Listener>, JsValue> {
    let listener = Rc::new(Listener {
        channel: BroadcastChannel::new(name)?,
        conns: RefCell::default(),
        on_message: RefCell::default(),
    });
    let weak_state = Rc::downgrade(shared);
    let weak_listener = Rc::downgrade(&listener);
    let on_message = Closure::wrap(Box::new(move |e: MessageEvent| {
        if let (Some(shared), Some(listener)) = (weak_state.upgrade(), weak_listener.upgrade()) {
            on_channel_message(&shared, &listener, &e.data());
        }
    }) as Box<dyn FnMut(MessageEvent)>);
    listener
        .channel
        .set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    *listener.on_message.borrow_mut() = Some(on_message);
    Ok(listener)
}

fn on_channel_message(shared: &Shared, listener: &Rc<Listener>, m: &JsValue) {
    if js::get(m, "ringmq").as_string().as_deref() != Some(CHANNEL_TO_BROKER) {
        return;
    }
    let Some(id) = js::get(m, "id").as_string() else {
        return;
    };
    let known = listener.conns.borrow().get(&id).copied();
    match (js::get(m, "type").as_string().as_deref(), known) {
        (Some("open"), None) => {
            let endpoint = Endpoint::Channel {
                channel: listener.clone(),
                id: id.clone(),
            };
            let accepted = driver::accept(&mut shared.borrow_mut(), endpoint);
            match accepted {
                Some(conn) => {
                    listener.conns.borrow_mut().insert(id, conn);
                    let calls = driver::pump(&mut shared.borrow_mut(), &Rc::downgrade(shared));
                    driver::run(calls);
                }
                None => {
                    if listener
                        .channel
                        .post_message(&to_client(&id, "close", None))
                        .is_err()
                    {
                        // Channel closed: the client finds out by its timeout.
                    }
                }
            }
        }
        (Some("data"), Some(conn)) => match js::get(m, "data").dyn_into::<js_sys::Uint8Array>() {
            Ok(a) => driver::on_data(shared, conn, &a.to_vec()),
            Err(_) => driver::on_closed(shared, conn),
        },
        (Some("close"), Some(conn)) => driver::on_closed(shared, conn),
        _ => {}
    }
}
