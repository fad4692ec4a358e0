//! `InTabBroker`, the JavaScript API of the in-tab broker: the engine's
//! broker state machine (the native broker's code, one shard, memory only)
//! serving clients of the same tab, of workers and frames (MessagePort)
//! and of other tabs of the origin (BroadcastChannel). `driver` runs it,
//! `links` are its connections, `options` reads the constructor's options.

pub mod bridge;
mod driver;
mod endpoint;
mod internal;
mod links;
mod options;
mod ports;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use js_sys::Function;
use ringmq_engine::broker::Broker;
use wasm_bindgen::prelude::*;
use web_sys::MessagePort;

use crate::js;
use driver::{Handlers, Shared, State};
use endpoint::Listener;

pub use driver::constant_time_eq;

/// An MQTT broker inside the page (see docs/wasm.md).
#[wasm_bindgen]
pub struct InTabBroker {
    shared: Shared,
    listeners: Vec<Rc<Listener>>,
}

#[wasm_bindgen]
impl InTabBroker {
    /// `options`: limits (`maxConnections`, `maxPacketSize`, ...),
    /// `allowAnonymous`, `users` (`{ name: password }`), `passwordFile`
    /// (argon2id lines), `acl` (ACL file text), `sysInterval` (s, 0 = no
    /// `$SYS`), `sharedPolicy`. Throws on a bad option.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "BrokerOptions | undefined")] options: JsValue,
    ) -> Result<InTabBroker, JsValue> {
        let parsed = options::parse(&options)?;
        let log_connections = true;
        let config = ringmq_engine::broker::BrokerConfig {
            log_connections,
            ..parsed.config
        };
        let mut broker = Broker::new(config, 0, 1);
        broker.set_acl(parsed.acl);
        let shared = Rc::new(RefCell::new(State {
            broker,
            links: HashMap::new(),
            users: parsed.users,
            handlers: Handlers::default(),
            observer: None,
            bridges: Vec::new(),
            timer: None,
            ports: Default::default(),
            topics: Default::default(),
            closed: false,
        }));
        // Arms the first timer ($SYS, if on).
        let calls = driver::pump(&mut shared.borrow_mut(), &Rc::downgrade(&shared));
        driver::run(calls);
        Ok(InTabBroker {
            shared,
            listeners: Vec::new(),
        })
    }

    /// A new connection: returns the `MessagePort` to hand to a client
    /// (`MqttClient.connect(port)`), here, in a worker or another frame
    /// (it is transferable). The client's reconnections go over the same
    /// port (one connection at a time); `disconnect()` ends the port.
    /// Throws when `maxConnections` are open.
    #[wasm_bindgen(js_name = createClientPort)]
    pub fn create_client_port(&self) -> Result<MessagePort, JsValue> {
        ports::client_port(&self.shared)
    }

    /// Accepts clients of any tab of this origin that connect with
    /// `{ broadcastChannel: name }`. One broker per channel name.
    #[wasm_bindgen(js_name = listenBroadcastChannel)]
    pub fn listen_broadcast_channel(&mut self, name: &str) -> Result<(), JsValue> {
        if self.shared.borrow().closed {
            return Err(js::error("the broker is closed", None));
        }
        self.listeners
            .push(links::listen_channel(&self.shared, name)?);
        Ok(())
    }

    /// Registers `handler` for `event`: `clientConnected(info)`,
    /// `clientDisconnected(info)`, `message(topic, payload, packet)` (every
    /// message published to a topic not starting with `$`).
    pub fn on(
        &self,
        event: &str,
        #[wasm_bindgen(
            unchecked_param_type = "MessageHandler | ((info: ClientInfo) => void) | null"
        )]
        handler: Option<Function>,
    ) -> Result<(), JsValue> {
        let calls = {
            let mut s = self.shared.borrow_mut();
            match event {
                "clientConnected" => s.handlers.client_connected = handler,
                "clientDisconnected" => s.handlers.client_disconnected = handler,
                "message" => {
                    if handler.is_some() && !s.closed {
                        driver::start_observer(&mut s)?;
                    }
                    s.handlers.message = handler;
                }
                _ => return Err(js::type_error(&format!("unknown event `{event}`"))),
            }
            driver::pump(&mut s, &Rc::downgrade(&self.shared))
        };
        driver::run(calls);
        Ok(())
    }

    /// Publishes from the page itself (QoS 0 or 1, `retain`), as the
    /// broker's internal client `$in-tab` (subject to the ACL like anyone).
    pub fn publish(
        &self,
        topic: String,
        #[wasm_bindgen(unchecked_param_type = "Payload")] payload: JsValue,
        #[wasm_bindgen(unchecked_param_type = "PublishOptions | undefined")] options: JsValue,
    ) -> Result<(), JsValue> {
        let payload = js::bytes_of(&payload, "payload")?;
        let qos = js::opt_uint(&options, "qos", 1)?.unwrap_or(0) as u8;
        let retain = js::opt_bool(&options, "retain")?.unwrap_or(false);
        let properties = crate::props::publish_properties_from(&js::get(&options, "properties"))?;
        let calls = {
            let mut s = self.shared.borrow_mut();
            if s.closed {
                return Err(js::error("the broker is closed", None));
            }
            driver::start_observer(&mut s)?;
            driver::pump(&mut s, &Rc::downgrade(&self.shared));
            let Some(o) = s.observer.as_mut() else {
                return Err(js::error("the broker's own client could not connect", None));
            };
            let qos = ringmq_engine::codec::QoS::from_u8(qos).unwrap_or_default();
            o.client
                .publish(
                    Bytes::from(topic.into_bytes()),
                    payload,
                    qos,
                    retain,
                    properties,
                )
                .map_err(|e| js::error(&format!("publish: {e}"), None))?;
            driver::pump(&mut s, &Rc::downgrade(&self.shared))
        };
        driver::run(calls);
        Ok(())
    }

    /// Bridges this broker to an external broker over WebSocket: `options`
    /// are `MqttClient.connect`'s (`clientId`, `username`, `password`,
    /// `keepAlive`, `cleanStart`, `sessionExpiryInterval`, `reconnect`,
    /// `queueMaxMessages`, ...) plus `url` and `topics`
    /// (`[{ pattern, direction, qos, localPrefix, remotePrefix }]`).
    /// Returns the bridge's handle; throws on a bad option.
    #[wasm_bindgen(js_name = addBridge)]
    pub fn add_bridge(
        &self,
        #[wasm_bindgen(unchecked_param_type = "BridgeOptions")] options: JsValue,
    ) -> Result<bridge::Bridge, JsValue> {
        bridge::add(&self.shared, &options)
    }

    /// Counters and sizes: `{ connections, sessions, retained,
    /// messagesReceived, messagesSent, dropped..., protocolErrors, loginsRefused }`.
    #[wasm_bindgen(unchecked_return_type = "BrokerStats")]
    pub fn stats(&self) -> JsValue {
        let s = self.shared.borrow();
        let st = s.broker.stats();
        let o = js::object();
        let observer = u64::from(s.observer.is_some());
        js::set(&o, "connections", s.links.len() as f64);
        js::set(
            &o,
            "sessions",
            s.broker.session_count().saturating_sub(observer as usize) as f64,
        );
        js::set(&o, "retained", s.broker.retained_count() as f64);
        js::set(
            &o,
            "messagesReceived",
            st.messages_received.iter().sum::<u64>() as f64,
        );
        js::set(
            &o,
            "messagesSent",
            st.messages_sent.iter().sum::<u64>() as f64,
        );
        js::set(&o, "droppedQueueFull", st.dropped_queue_full as f64);
        js::set(&o, "droppedExpired", st.dropped_expired as f64);
        js::set(&o, "droppedNotAuthorized", st.dropped_not_authorized as f64);
        js::set(
            &o,
            "publishesNotAuthorized",
            st.publishes_not_authorized as f64,
        );
        js::set(&o, "protocolErrors", st.protocol_errors as f64);
        js::set(&o, "loginsRefused", st.logins_refused as f64);
        o
    }

    /// Shuts down: v5 clients get DISCONNECT 0x8B (server shutting down),
    /// every connection is closed, listeners stop. Idempotent.
    pub fn close(&mut self) {
        if self.shared.borrow().closed {
            return;
        }
        bridge::close_all(&self.shared);
        let calls = {
            let mut s = self.shared.borrow_mut();
            if s.closed {
                return;
            }
            s.closed = true;
            let now = js::now_ms();
            s.broker.shutdown(now);
            let mut calls = driver::pump(&mut s, &Rc::downgrade(&self.shared));
            close_all(&mut s, &self.listeners);
            s.observer = None;
            calls.extend(driver::pump(&mut s, &Rc::downgrade(&self.shared)));
            calls
        };
        self.listeners.clear();
        driver::run(calls);
    }
}

/// Closes every connection and listener (broker shutdown).
fn close_all(s: &mut State, listeners: &[Rc<Listener>]) {
    let links: Vec<_> = s.links.drain().collect();
    let now = js::now_ms();
    for (conn, link) in links {
        link.endpoint.close();
        s.broker.handle_closed(conn, now);
    }
    s.ports.close_all();
    for l in listeners {
        l.close();
    }
}
