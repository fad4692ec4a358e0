//! Bridges from the in-tab broker to external brokers over WebSocket
//! (`InTabBroker.addBridge`), as Mosquitto's bridges: topic mappings in,
//! out or both, with prefixes (`topics`).
//!
//! Two sides, each existing code driving the engine:
//! - external: an [`MqttClient`] (the client's own driver: reconnection
//!   with backoff, resubscription, the bounded publish queue while
//!   disconnected, resending unacknowledged QoS 1/2) in `manual_acks`
//!   mode: the external broker's QoS 1/2 messages are acknowledged only
//!   once the in-tab broker acknowledged them;
//! - local: an internal client of the in-tab broker (`local`).
//!
//! Both sides wake the bridge by one JS function ([`Core::wake`]), called
//! after their state is released: the bridge then moves messages across
//! (borrowing one side at a time). Loops are prevented by no-local
//! subscriptions on both sides (external: MQTT 5 only, so `both` needs v5).

pub mod local;
mod options;
pub mod topics;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Promise};
use ringmq_engine::codec::QoS;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use super::driver::{self, Shared};
use super::internal::Internal;
use crate::client::options::Settings;
use crate::client::state::Waiter;
use crate::client::transport::Target;
use crate::client::{acknowledge, enqueue, Message, MqttClient};
use crate::js;
use local::{bump, Local, RemoteId, Stats};
use topics::Mapping;

/// The user's handlers (`bridge.on`).
#[derive(Default)]
struct Handlers {
    connect: Option<Function>,
    disconnect: Option<Function>,
    reconnecting: Option<Function>,
    error: Option<Function>,
}

/// A JS function bound to a Rust closure that may be re-entered.
type Callback = Closure<dyn Fn(JsValue)>;

pub struct Core {
    id: u64,
    broker: Weak<RefCell<driver::State>>,
    remote: MqttClient,
    target: Target,
    settings: Settings,
    mappings: Rc<[Mapping]>,
    stats: Rc<Stats>,
    handlers: RefCell<Handlers>,
    /// Called by either side when it has something for the bridge.
    wake: Function,
    /// Settle functions of the outbound publishes (counters only).
    out_waiter: (Function, Function),
    closures: RefCell<Vec<Callback>>,
    busy: Cell<bool>,
    again: Cell<bool>,
    /// `connect_loop` is running.
    connecting: Cell<bool>,
    closed: Cell<bool>,
}

/// A bridge (`InTabBroker.addBridge`); see docs/wasm.md.
#[wasm_bindgen]
pub struct Bridge {
    core: Rc<Core>,
}

fn callback(weak: &Weak<Core>, f: fn(&Rc<Core>, JsValue)) -> Callback {
    let weak = weak.clone();
    Closure::wrap(Box::new(move |v: JsValue| {
        if let Some(core) = weak.upgrade() {
            f(&core, v);
        }
    }) as Box<dyn Fn(JsValue)>)
}

fn function(c: &Callback) -> Function {
    c.as_ref().unchecked_ref::<Function>().clone()
}

/// `InTabBroker.addBridge(options)`.
pub fn add(shared: &Shared, options: &JsValue) -> Result<Bridge, JsValue> {
    let parsed = options::parse(options)?;
    let id = {
        let s = shared.borrow();
        if s.closed {
            return Err(js::error("the broker is closed", None));
        }
        s.bridges.iter().map(|b| b.id).max().unwrap_or(0) + 1
    };
    let core = Rc::new_cyclic(|weak: &Weak<Core>| {
        let wake = callback(weak, |core, _| core.wake());
        let ok = callback(weak, |core, code| {
            let refused = code.as_f64().is_some_and(|c| c >= 128.0);
            bump(if refused {
                &core.stats.refused_out
            } else {
                &core.stats.forwarded_out
            });
        });
        let dropped = callback(weak, |core, _| bump(&core.stats.dropped_out));
        let core_fns = (function(&wake), function(&ok), function(&dropped));
        Core {
            id,
            broker: Rc::downgrade(shared),
            remote: MqttClient::new(),
            target: parsed.target,
            settings: parsed.settings,
            mappings: parsed.mappings.into(),
            stats: Rc::default(),
            handlers: RefCell::default(),
            wake: core_fns.0,
            out_waiter: (core_fns.1, core_fns.2),
            closures: RefCell::new(vec![wake, ok, dropped]),
            busy: Cell::new(false),
            again: Cell::new(false),
            connecting: Cell::new(false),
            closed: Cell::new(false),
        }
    });
    core.install_remote_handlers()?;
    let calls = {
        let mut s = shared.borrow_mut();
        let client_id = format!("$in-tab-bridge-{id}-{}", js::hex(&js::random_bytes(4)));
        let internal = Internal::start(&mut s.broker, client_id)?;
        s.bridges.push(Local::new(
            id,
            internal,
            core.clone(),
            core.wake.clone(),
            core.mappings.clone(),
            core.stats.clone(),
        ));
        driver::pump(&mut s, &Rc::downgrade(shared))
    };
    driver::run(calls);
    connect_loop(core.clone(), 0);
    Ok(Bridge { core })
}

impl Core {
    fn emit(&self, pick: fn(&Handlers) -> &Option<Function>, arg: JsValue) {
        let f = pick(&self.handlers.borrow()).clone();
        if let Some(f) = f {
            js::call(&f, &[arg]);
        }
    }

    fn error(&self, message: &str) {
        self.emit(|h| &h.error, js::error(message, None));
    }

    /// The external client's events become the bridge's; on each
    /// connection the inbound mappings not subscribed yet are subscribed.
    fn install_remote_handlers(self: &Rc<Self>) -> Result<(), JsValue> {
        let weak = Rc::downgrade(self);
        let on_connect = callback(&weak, |core, info| {
            core.subscribe_missing();
            core.emit(|h| &h.connect, info);
        });
        let on_disconnect = callback(&weak, |core, info| {
            core.emit(|h| &h.disconnect, info);
            core.restart_if_given_up();
        });
        let on_reconnecting = callback(&weak, |core, info| core.emit(|h| &h.reconnecting, info));
        let on_error = callback(&weak, |core, e| {
            core.emit(|h| &h.error, e);
            core.restart_if_given_up();
        });
        let on = |event: &str, c: &Callback| self.remote.on(event, Some(function(c)));
        on("message", &self.closures.borrow()[0])?;
        on("connect", &on_connect)?;
        on("disconnect", &on_disconnect)?;
        on("reconnecting", &on_reconnecting)?;
        on("error", &on_error)?;
        self.closures
            .borrow_mut()
            .extend([on_connect, on_disconnect, on_reconnecting, on_error]);
        Ok(())
    }

    /// The client stopped reconnecting (a refusal it does not retry, e.g.
    /// bad credentials after a restart of the external broker): a bridge
    /// keeps trying, with the backoff.
    fn restart_if_given_up(self: &Rc<Self>) {
        let gave_up = self.remote.shared.borrow().settings.is_none();
        if gave_up && !self.closed.get() && !self.connecting.get() {
            connect_loop(self.clone(), 1);
        }
    }

    /// Subscribes, on the external broker, to the inbound mappings that
    /// are neither acknowledged (kept by the client, restored by it after
    /// a reconnection without session) nor waiting for their SUBACK.
    fn subscribe_missing(self: &Rc<Self>) {
        let v5 = self.settings.engine.protocol.is_v5();
        let missing: Vec<(Vec<u8>, QoS)> = {
            let inner = self.remote.shared.borrow();
            let known = |f: &[u8]| {
                inner.subscriptions.iter().any(|s| s.filter.filter == f)
                    || inner
                        .subacks
                        .values()
                        .any(|(_, subs)| subs.iter().any(|s| s.filter.filter == f))
            };
            self.mappings
                .iter()
                .filter(|m| m.direction.inbound() && !known(m.remote_filter()))
                .map(|m| (m.remote_filter().to_vec(), m.qos))
                .collect()
        };
        for (filter, qos) in missing {
            let name = String::from_utf8_lossy(&filter).into_owned();
            let p = self.remote.subscribe(
                JsValue::from_str(&name),
                options::remote_subscribe_options(qos, v5),
            );
            let weak = Rc::downgrade(self);
            spawn_local(async move {
                let result = JsFuture::from(p).await;
                let Some(core) = weak.upgrade() else { return };
                // Err: the connection went away before SUBACK; the next
                // connection subscribes again.
                if let Ok(codes) = result {
                    let code = Array::from(&codes).get(0).as_f64().unwrap_or(255.0);
                    if code >= 128.0 {
                        core.error(&format!(
                            "the external broker refused the subscription to `{name}` (reason 0x{:02X})",
                            code as u8
                        ));
                    }
                }
            });
        }
    }

    /// Moves what either side has for the other; re-entered calls (a side
    /// waking the bridge while it works) make it go round once more.
    fn wake(self: &Rc<Self>) {
        if self.busy.replace(true) {
            self.again.set(true);
            return;
        }
        loop {
            self.again.set(false);
            self.step();
            if !self.again.get() {
                break;
            }
        }
        self.busy.set(false);
    }

    fn step(self: &Rc<Self>) {
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        let received: Vec<_> = self.remote.shared.borrow_mut().received.drain(..).collect();
        let outputs = {
            let mut s = broker.borrow_mut();
            let mut calls = driver::Calls::new();
            for (generation, p) in received {
                let remote = RemoteId {
                    generation,
                    packet_id: p.packet_id,
                };
                if let Some(b) = s.bridges.iter_mut().find(|b| b.id == self.id) {
                    b.publish(remote, p);
                }
                // The broker takes each publish at once (in memory), so the
                // in-tab window never fills.
                calls.extend(driver::pump(&mut s, &Rc::downgrade(&broker)));
            }
            let outputs = local::take(&mut s.bridges, self.id);
            (outputs, calls)
        };
        let (outputs, calls) = outputs;
        driver::run(calls);
        for e in &outputs.errors {
            self.error(e);
        }
        for (remote, reason) in outputs.acks {
            acknowledge(
                &self.remote.shared,
                remote.generation,
                remote.packet_id,
                reason,
            );
        }
        for (topic, p) in outputs.outbox {
            let waiter = Waiter {
                resolve: self.out_waiter.0.clone(),
                reject: self.out_waiter.1.clone(),
            };
            let properties = ringmq_engine::codec::PublishProperties {
                topic_alias: None,
                subscription_identifiers: Vec::new(),
                ..p.properties
            };
            let message = Message {
                topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties,
            };
            enqueue(&self.remote.shared, message, waiter);
        }
    }

    /// Ends both sides: the local client leaves the in-tab broker, the
    /// external connection is closed with DISCONNECT. Queued outbound
    /// messages are dropped (counted).
    fn close(self: &Rc<Self>) -> Promise {
        if self.closed.replace(true) {
            return Promise::resolve(&JsValue::UNDEFINED);
        }
        if let Some(broker) = self.broker.upgrade() {
            let calls = {
                let mut s = broker.borrow_mut();
                if let Some(b) = s.bridges.iter_mut().find(|b| b.id == self.id) {
                    b.internal
                        .client
                        .disconnect(ringmq_engine::codec::ReasonCode::SUCCESS);
                }
                let calls = driver::pump(&mut s, &Rc::downgrade(&broker));
                let now = js::now_ms();
                if let Some(pos) = s.bridges.iter().position(|b| b.id == self.id) {
                    let b = s.bridges.swap_remove(pos);
                    s.broker.handle_closed(b.internal.conn, now);
                }
                calls
            };
            driver::run(calls);
        }
        self.remote.disconnect(JsValue::UNDEFINED)
    }
}

/// Connects the external side, retrying with the client's backoff
/// (`reconnect`) when an attempt fails: unlike an application's client, a
/// bridge keeps trying even if it never connected. `attempt`: attempts
/// already failed.
fn connect_loop(core: Rc<Core>, attempt: u32) {
    core.connecting.set(true);
    spawn_local(async move {
        connect_attempts(&core, attempt).await;
        core.connecting.set(false);
    });
}

/// Connection attempts until one succeeds (`connect` resolves: the
/// connect handler does the rest), the backoff gives up, or the bridge
/// closes. `attempt`: attempts already failed.
async fn connect_attempts(core: &Rc<Core>, mut attempt: u32) {
    loop {
        if attempt > 0 {
            let Some(delay) = core.settings.backoff.delay_ms(attempt) else {
                core.error("bridge: reconnection attempts exhausted");
                return;
            };
            let sleep = Promise::new(&mut |resolve, _| {
                js::defer(delay, move || js::call(&resolve, &[]));
            });
            if JsFuture::from(sleep).await.is_err() {
                return;
            }
        }
        if core.closed.get() {
            return;
        }
        let p = core
            .remote
            .connect_with(core.target.clone(), core.settings.clone());
        match JsFuture::from(p).await {
            Ok(_) => return,
            Err(_) if core.closed.get() => return,
            Err(e) => {
                core.emit(|h| &h.error, e);
                attempt += 1;
            }
        }
    }
}

#[wasm_bindgen]
impl Bridge {
    /// Registers `handler` for `event`: `connect(info)`,
    /// `disconnect(info)`, `reconnecting(info)`, `error(error)` (the
    /// external connection's). One handler per event.
    pub fn on(
        &self,
        event: &str,
        #[wasm_bindgen(unchecked_param_type = "((info: any) => void) | null")] handler: Option<
            Function,
        >,
    ) -> Result<(), JsValue> {
        let mut h = self.core.handlers.borrow_mut();
        let slot = match event {
            "connect" => &mut h.connect,
            "disconnect" => &mut h.disconnect,
            "reconnecting" => &mut h.reconnecting,
            "error" => &mut h.error,
            _ => return Err(js::type_error(&format!("unknown event `{event}`"))),
        };
        *slot = handler;
        Ok(())
    }

    /// Whether the external connection is up (CONNACK accepted).
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.core.remote.connected()
    }

    /// `{ connected, forwardedIn, droppedIn, forwardedOut, refusedOut,
    /// droppedOut, queued }`.
    #[wasm_bindgen(unchecked_return_type = "BridgeStats")]
    pub fn stats(&self) -> JsValue {
        let st = &self.core.stats;
        let o = js::object();
        js::set(&o, "connected", self.connected());
        for (k, v) in [
            ("forwardedIn", &st.forwarded_in),
            ("droppedIn", &st.dropped_in),
            ("forwardedOut", &st.forwarded_out),
            ("refusedOut", &st.refused_out),
            ("droppedOut", &st.dropped_out),
        ] {
            js::set(&o, k, v.get() as f64);
        }
        let queued = {
            let inner = self.core.remote.shared.borrow();
            inner.queue.len() + inner.inflight.len()
        };
        js::set(&o, "queued", queued as f64);
        o
    }

    /// Closes the bridge (both sides); resolves once the external
    /// connection is closed. Idempotent.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        self.core.close()
    }
}

/// Closes every bridge of the broker (the broker is closing). Called with
/// the broker's state released.
pub fn close_all(shared: &Shared) {
    let cores: Vec<Rc<Core>> = shared
        .borrow()
        .bridges
        .iter()
        .filter_map(|b| b.owner.clone().downcast::<Core>().ok())
        .collect();
    for c in cores {
        // The returned promise settles by itself; nothing waits for it.
        drop(c.close());
    }
}
