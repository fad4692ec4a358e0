//! `MqttClient`, the JavaScript API of the client: Promises for every
//! acknowledged operation, callbacks for messages and connection events.
//! The state machine is the engine's [`Client`](ringmq_engine::client::Client);
//! `driver` runs it, `transport` carries its bytes, `options` reads
//! `connect`'s options, `backoff` spaces reconnection attempts.

pub mod backoff;
mod driver;
pub(crate) mod options;
mod reason;
mod resend;
pub(crate) mod state;
pub mod transport;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use js_sys::{Array, Function, Promise};
use ringmq_engine::codec::{
    PublishProperties, QoS, ReasonCode, RetainHandling, SubscribeFilter, SubscribeProperties,
    SubscriptionOptions,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::{js, props};
use state::{Calls, Inner, Pending, Shared, Subscription, Waiter};
use transport::Target;

/// Longest a `request` waits for its response by default.
const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// An MQTT 5 / 3.1.1 client (see docs/wasm.md for the whole API).
#[wasm_bindgen]
pub struct MqttClient {
    pub(crate) shared: Shared,
}

impl Default for MqttClient {
    fn default() -> Self {
        MqttClient::new()
    }
}

/// A promise whose settle functions are handed to `keep`.
fn promise(keep: impl FnOnce(Waiter)) -> Promise {
    let mut keep = Some(keep);
    Promise::new(&mut |resolve, reject| {
        if let Some(k) = keep.take() {
            k(Waiter { resolve, reject });
        }
    })
}

fn rejected(e: JsValue) -> Promise {
    Promise::reject(&e)
}

#[wasm_bindgen]
impl MqttClient {
    #[wasm_bindgen(constructor)]
    pub fn new() -> MqttClient {
        MqttClient {
            shared: Rc::new(RefCell::new(Inner::default())),
        }
    }

    /// Registers `handler` for `event`: `message(topic, payload, packet)`,
    /// `connect(info)`, `disconnect(info)`, `error(error)`,
    /// `reconnecting(info)`. One handler per event; a new one replaces it.
    pub fn on(
        &self,
        event: &str,
        #[wasm_bindgen(unchecked_param_type = "MessageHandler | ((info: any) => void) | null")]
        handler: Option<Function>,
    ) -> Result<(), JsValue> {
        let mut inner = self.shared.borrow_mut();
        let h = &mut inner.handlers;
        let slot = match event {
            "message" => &mut h.message,
            "connect" => &mut h.connect,
            "disconnect" => &mut h.disconnect,
            "error" => &mut h.error,
            "reconnecting" => &mut h.reconnecting,
            _ => return Err(js::type_error(&format!("unknown event `{event}`"))),
        };
        *slot = handler;
        Ok(())
    }

    /// Connects to `target` (a `ws://`/`wss://` URL, a `MessagePort`, a
    /// function returning a `MessagePort`, or `{ broadcastChannel: name }`).
    /// Resolves with `{ sessionPresent, reconnected, assignedClientIdentifier? }`
    /// at the CONNACK; rejects when refused (`reasonCode`) or unreachable.
    #[wasm_bindgen(unchecked_return_type = "Promise<ConnectInfo>")]
    pub fn connect(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ConnectTarget")] target: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ConnectOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed =
            Target::from_js(&target).and_then(|t| options::parse(&options).map(|s| (t, s)));
        let (target, settings) = match parsed {
            Ok(v) => v,
            Err(e) => return rejected(e),
        };
        self.connect_with(target, settings)
    }

    /// `connect` with parsed settings (the bridge sets `manual_acks`).
    pub(crate) fn connect_with(&self, target: Target, settings: options::Settings) -> Promise {
        {
            let mut inner = self.shared.borrow_mut();
            if inner.settings.is_some() {
                return rejected(js::error(
                    "already connected or connecting: disconnect first",
                    None,
                ));
            }
            inner.settings = Some(settings);
            inner.target = Some(target);
            inner.closing = false;
        }
        let shared = self.shared.clone();
        let p = promise(|w| shared.borrow_mut().connect_waiter = Some(w));
        driver::start_attempt(&self.shared);
        p
    }

    /// Whether a CONNACK accepted the current connection.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.shared.borrow().is_connected()
    }

    /// Publishes; resolves with the acknowledgement's reason code (QoS 1:
    /// PUBACK, QoS 2: PUBREC failure or PUBCOMP; QoS 0: 0 once written).
    /// `options`: `{ qos, retain, properties }` (see `props`). While the
    /// window is full, or while reconnecting, QoS 1/2 messages wait in a
    /// queue of `queueMaxMessages`.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn publish(
        &self,
        topic: String,
        #[wasm_bindgen(unchecked_param_type = "Payload")] payload: JsValue,
        #[wasm_bindgen(unchecked_param_type = "PublishOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed = (|| -> Result<_, JsValue> {
            let payload = js::bytes_of(&payload, "payload")?;
            let qos = options::qos_of(&options)?;
            let retain = js::opt_bool(&options, "retain")?.unwrap_or(false);
            let properties = props::publish_properties_from(&js::get(&options, "properties"))?;
            Ok((payload, qos, retain, properties))
        })();
        let (payload, qos, retain, properties) = match parsed {
            Ok(v) => v,
            Err(e) => return rejected(e),
        };
        let shared = self.shared.clone();
        promise(move |waiter| {
            let message = Message {
                topic: Bytes::from(topic.into_bytes()),
                payload,
                qos,
                retain,
                properties,
            };
            enqueue(&shared, message, waiter);
        })
    }

    /// Subscribes to `filters` (a string or an array of strings) with
    /// `options` `{ qos, noLocal, retainAsPublished, retainHandling,
    /// subscriptionIdentifier, userProperties }`; resolves with the SUBACK
    /// reason codes (granted QoS, or a failure code >= 0x80), one per filter.
    #[wasm_bindgen(unchecked_return_type = "Promise<number[]>")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | string[]")] filters: JsValue,
        #[wasm_bindgen(unchecked_param_type = "SubscribeOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed = (|| -> Result<Vec<Subscription>, JsValue> {
            let so = SubscriptionOptions {
                qos: options::qos_of(&options)?,
                no_local: js::opt_bool(&options, "noLocal")?.unwrap_or(false),
                retain_as_published: js::opt_bool(&options, "retainAsPublished")?.unwrap_or(false),
                retain_handling: match js::opt_uint(&options, "retainHandling", 2)?.unwrap_or(0) {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            };
            let properties = SubscribeProperties {
                subscription_identifier: js::opt_uint(
                    &options,
                    "subscriptionIdentifier",
                    268_435_455,
                )?
                .filter(|v| *v > 0)
                .map(|v| v as u32),
                user: js::opt_user_properties(&options, "userProperties")?,
            };
            Ok(filter_list(&filters)?
                .into_iter()
                .map(|filter| Subscription {
                    filter: SubscribeFilter {
                        filter,
                        options: so,
                    },
                    properties: properties.clone(),
                })
                .collect())
        })();
        let subs = match parsed {
            Ok(v) => v,
            Err(e) => return rejected(e),
        };
        let shared = self.shared.clone();
        promise(move |waiter| {
            let properties = subs
                .first()
                .map(|s| s.properties.clone())
                .unwrap_or_default();
            let filters = subs.iter().map(|s| s.filter.clone()).collect();
            start_request(
                &shared,
                waiter,
                "subscribe",
                |engine| engine.subscribe_with_properties(filters, properties),
                |inner, id, waiter| {
                    inner.subacks.insert(id, (waiter, subs));
                },
            );
        })
    }

    /// Unsubscribes from `filters` (a string or an array); resolves with the
    /// UNSUBACK reason codes (v3.1.1: `[0, ...]`).
    #[wasm_bindgen(unchecked_return_type = "Promise<number[]>")]
    pub fn unsubscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | string[]")] filters: JsValue,
    ) -> Promise {
        let filters = match filter_list(&filters) {
            Ok(f) => f,
            Err(e) => return rejected(e),
        };
        let shared = self.shared.clone();
        promise(move |waiter| {
            let sent = filters.clone();
            start_request(
                &shared,
                waiter,
                "unsubscribe",
                |engine| engine.unsubscribe(sent),
                |inner, id, waiter| {
                    inner.unsubacks.insert(id, (waiter, filters));
                },
            );
        })
    }

    /// Sends DISCONNECT with `reasonCode` (default 0; 0x04 asks the broker
    /// to publish the will) and closes; no reconnection follows. Resolves
    /// once closed; waiting operations are rejected.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn disconnect(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ reasonCode?: number } | undefined")]
        options: JsValue,
    ) -> Promise {
        let code = match js::opt_uint(&options, "reasonCode", 255) {
            Ok(c) => c.unwrap_or(0) as u8,
            Err(e) => return rejected(e),
        };
        let shared = self.shared.clone();
        let p = promise(|w| shared.borrow_mut().disconnect_waiter = Some(w));
        if self.shared.borrow().settings.is_none() {
            let w = self.shared.borrow_mut().disconnect_waiter.take();
            if let Some(w) = w {
                js::call(&w.resolve, &[]);
            }
            return p;
        }
        driver::close(&self.shared, ReasonCode(code));
        p
    }

    /// MQTT 5 request/response: subscribes to a fresh response topic
    /// (`options.responseTopic`, default `ringmq/response/{random}`),
    /// publishes with Response Topic and Correlation Data, and resolves with
    /// the first message carrying that correlation data:
    /// `{ topic, payload, packet }`. Rejects after `timeoutMs` (10 s).
    #[wasm_bindgen(unchecked_return_type = "Promise<Message>")]
    pub fn request(
        &self,
        topic: String,
        #[wasm_bindgen(unchecked_param_type = "Payload")] payload: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RequestOptions | undefined")] options: JsValue,
    ) -> Promise {
        let parsed = (|| -> Result<_, JsValue> {
            let qos = options::qos_of(&options)?.as_u8();
            let timeout = js::opt_uint(&options, "timeoutMs", 3_600_000)?
                .unwrap_or(REQUEST_TIMEOUT_MS_DEFAULT);
            let response_topic = js::opt_string(&options, "responseTopic")?
                .unwrap_or_else(|| format!("ringmq/response/{}", js::hex(&js::random_bytes(12))));
            Ok((qos, timeout, response_topic))
        })();
        let (qos, timeout_ms, response_topic) = match parsed {
            Ok(v) => v,
            Err(e) => return rejected(e),
        };
        let v5 = self
            .shared
            .borrow()
            .settings
            .as_ref()
            .is_some_and(|s| s.engine.protocol.is_v5());
        if !v5 {
            return rejected(js::error("request needs an MQTT 5 connection", None));
        }
        let this = MqttClient {
            shared: self.shared.clone(),
        };
        future_to_promise(async move {
            let sub_opts = js::object();
            js::set(&sub_opts, "qos", qos);
            let codes =
                JsFuture::from(this.subscribe(JsValue::from_str(&response_topic), sub_opts))
                    .await?;
            if Array::from(&codes).get(0).as_f64().unwrap_or(255.0) >= 128.0 {
                return Err(js::error(
                    "request: the response topic subscription was refused",
                    None,
                ));
            }
            let correlation = Bytes::from(js::random_bytes(16));
            let shared = this.shared.clone();
            let key = correlation.clone();
            let answer = promise(|w| {
                shared.borrow_mut().requests.insert(key.clone(), w);
                let weak = Rc::downgrade(&shared);
                js::defer(timeout_ms, move || {
                    let waiter = weak
                        .upgrade()
                        .and_then(|s| s.borrow_mut().requests.remove(&key));
                    if let Some(w) = waiter {
                        js::call(&w.reject, &[js::error("request timed out", None)]);
                    }
                });
            });
            let pub_props = js::object();
            js::set(&pub_props, "responseTopic", response_topic.as_str());
            js::set(&pub_props, "correlationData", js::uint8array(&correlation));
            let pub_opts = js::object();
            js::set(&pub_opts, "qos", qos);
            js::set(&pub_opts, "properties", pub_props);
            let published = JsFuture::from(this.publish(topic, payload, pub_opts)).await;
            let result = match published {
                Ok(_) => JsFuture::from(answer).await,
                Err(e) => {
                    this.shared.borrow_mut().requests.remove(&correlation);
                    Err(e)
                }
            };
            // The response topic is single-use: drop the subscription (an
            // error here, e.g. the connection went away, changes nothing).
            if JsFuture::from(this.unsubscribe(JsValue::from_str(&response_topic)))
                .await
                .is_err()
            {
                // Not connected any more: there is no subscription to drop.
            }
            result
        })
    }
}

/// What `publish` sends.
#[derive(Clone)]
pub(crate) struct Message {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: PublishProperties,
}

/// Publishes `m` now, or queues it (QoS 1/2: window full or reconnecting);
/// `waiter` is settled with the acknowledgement's reason code, or rejected
/// when not connected (QoS 0) or when the queue is full (`queueMaxMessages`).
pub(crate) fn enqueue(shared: &Shared, m: Message, waiter: Waiter) {
    let calls = {
        let mut inner = shared.borrow_mut();
        let can_queue = inner.is_connected() || (inner.is_reconnecting() && m.qos.as_u8() > 0);
        if !can_queue {
            vec![(waiter.reject, vec![js::error("not connected", None)])]
        } else if inner.queue.len() >= inner.queue_max_messages() {
            vec![(
                waiter.reject,
                vec![js::error("publish queue full (queueMaxMessages)", None)],
            )]
        } else {
            inner.seq += 1;
            let seq = inner.seq;
            inner.queue.push_back(Pending {
                seq,
                topic: m.topic,
                payload: m.payload,
                qos: m.qos,
                retain: m.retain,
                properties: m.properties,
                waiter,
                resume: None,
            });
            let mut calls = Calls::new();
            resend::drain_queue(&mut inner, &mut calls);
            calls.extend(driver::pump(&mut inner, &Rc::downgrade(shared)));
            calls
        }
    };
    driver::run(calls);
}

/// Whether `enqueue` would take a QoS 1/2 message now (connected or
/// reconnecting, and room in the queue) instead of rejecting it.
#[cfg(feature = "broker")]
pub(crate) fn can_take(shared: &Shared) -> bool {
    let inner = shared.borrow();
    (inner.is_connected() || inner.is_reconnecting())
        && inner.queue.len() < inner.queue_max_messages()
}

/// `manual_acks` (a bridge, hence the broker feature): acknowledges
/// message `packet_id` of connection `generation` with `reason`, unless
/// that connection is over (the broker then sends the message again if it
/// kept the session).
#[cfg(feature = "broker")]
pub(crate) fn acknowledge(shared: &Shared, generation: u64, packet_id: u16, reason: ReasonCode) {
    let calls = {
        let mut inner = shared.borrow_mut();
        let current = inner.generation == generation;
        match inner.engine.as_mut().filter(|_| current) {
            Some(engine) => {
                if engine.acknowledge(packet_id, reason).is_err() {
                    // Not connected any more, or acknowledged already:
                    // nothing is owed on this connection.
                }
                driver::pump(&mut inner, &Rc::downgrade(shared))
            }
            None => Calls::new(),
        }
    };
    driver::run(calls);
}

/// Filters from a string or an array of strings (at least one).
fn filter_list(v: &JsValue) -> Result<Vec<Bytes>, JsValue> {
    let bad = || js::type_error("filters: a string or a non-empty array of strings");
    if let Some(s) = v.as_string() {
        return Ok(vec![Bytes::from(s.into_bytes())]);
    }
    if !Array::is_array(v) {
        return Err(bad());
    }
    let list: Result<Vec<Bytes>, JsValue> = Array::from(v)
        .iter()
        .map(|f| {
            f.as_string()
                .map(|s| Bytes::from(s.into_bytes()))
                .ok_or_else(bad)
        })
        .collect();
    let list = list?;
    if list.is_empty() {
        return Err(bad());
    }
    Ok(list)
}

/// Sends a request the broker acknowledges by packet id (SUBSCRIBE,
/// UNSUBSCRIBE): rejects `waiter` when not connected or when the engine
/// refuses the request (`what: error`), else files it with `file` under the
/// packet id, to be settled by the acknowledgement, and sends.
fn start_request<E: std::fmt::Display>(
    shared: &Shared,
    waiter: Waiter,
    what: &str,
    send: impl FnOnce(&mut ringmq_engine::client::Client) -> Result<u16, E>,
    file: impl FnOnce(&mut Inner, u16, Waiter),
) {
    let calls = {
        let mut inner = shared.borrow_mut();
        let sent = match inner.engine.as_mut().filter(|e| e.is_connected()) {
            None => Err("not connected".to_string()),
            Some(engine) => send(engine).map_err(|e| format!("{what}: {e}")),
        };
        match sent {
            Ok(id) => {
                file(&mut inner, id, waiter);
                driver::pump(&mut inner, &Rc::downgrade(shared))
            }
            Err(message) => vec![(waiter.reject, vec![js::error(&message, None)])],
        }
    };
    driver::run(calls);
}
