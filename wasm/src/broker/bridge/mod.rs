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
mod outbound;
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
use crate::client::{acknowledge, can_take, enqueue, Message, MqttClient};
use crate::js;
use local::{bump, Local, RemoteId, Stats};
use outbound::Outbound;
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

/// The same with two arguments: a local packet id (bound) and a value.
type Callback2 = Closure<dyn Fn(JsValue, JsValue)>;

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
    /// Settle functions of the outbound QoS 0 publishes (counters only).
    out_waiter: (Function, Function),
    /// Settle functions of the outbound QoS 1/2 publishes, called with the
    /// local packet id bound first (`Function::bind1`).
    out_acked: (Function, Function),
    /// Outbound QoS 1/2 messages until the external broker acknowledged
    /// them (`outbound`).
    outbound: RefCell<Outbound>,
    closures: RefCell<Vec<Callback>>,
    /// Kept alive as long as the bridge (`out_acked`).
    _closures2: Vec<Callback2>,
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

fn callback2(weak: &Weak<Core>, f: fn(&Rc<Core>, JsValue, JsValue)) -> Callback2 {
    let weak = weak.clone();
    Closure::wrap(Box::new(move |a: JsValue, b: JsValue| {
        if let Some(core) = weak.upgrade() {
            f(&core, a, b);
        }
    }) as Box<dyn Fn(JsValue, JsValue)>)
}

fn function2(c: &Callback2) -> Function {
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
        let acked = callback2(weak, Core::out_acked);
        let rejected = callback2(weak, Core::out_rejected);
        let acked_fns = (function2(&acked), function2(&rejected));
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
            out_acked: acked_fns,
            outbound: RefCell::default(),
            closures: RefCell::new(vec![wake, ok, dropped]),
            _closures2: vec![acked, rejected],
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
        // Manual acknowledgements: an outbound message stays unacknowledged
        // in the in-tab broker until the external broker took it.
        let internal = Internal::start(&mut s.broker, client_id, true)?;
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
            // Outbound messages waiting for the connection go now.
            core.wake();
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
            if p.qos == QoS::AtMostOnce {
                let waiter = Waiter {
                    resolve: self.out_waiter.0.clone(),
                    reject: self.out_waiter.1.clone(),
                };
                enqueue(&self.remote.shared, message, waiter);
            } else {
                self.outbound.borrow_mut().push(p.packet_id, message);
            }
        }
        self.send_waiting();
    }

    /// Hands waiting outbound QoS 1/2 messages to the external client,
    /// oldest first, as long as it takes them (no borrow of `outbound` is
    /// held while it runs: a rejection comes back at once).
    fn send_waiting(&self) {
        while !self.closed.get() && can_take(&self.remote.shared) {
            let Some((id, message)) = self.outbound.borrow_mut().next() else {
                break;
            };
            let id = JsValue::from(id);
            let waiter = Waiter {
                resolve: self.out_acked.0.bind1(&JsValue::NULL, &id).unchecked_into(),
                reject: self.out_acked.1.bind1(&JsValue::NULL, &id).unchecked_into(),
            };
            enqueue(&self.remote.shared, message, waiter);
        }
    }

    /// The external broker acknowledged outbound message `id` (local
    /// packet id) with `code`: count it, acknowledge it in the tab (the
    /// in-tab broker may then send the next), send what waits.
    fn out_acked(self: &Rc<Self>, id: JsValue, code: JsValue) {
        let Some(id) = id.as_f64().and_then(|v| u16::try_from(v as u32).ok()) else {
            return;
        };
        if !self.outbound.borrow_mut().acknowledged(id) {
            return;
        }
        let refused = code.as_f64().is_some_and(|c| c >= 128.0);
        bump(if refused {
            &self.stats.refused_out
        } else {
            &self.stats.forwarded_out
        });
        if let Some(broker) = self.broker.upgrade() {
            let calls = {
                let mut s = broker.borrow_mut();
                if let Some(b) = s.bridges.iter_mut().find(|b| b.id == self.id) {
                    b.acknowledge(id);
                }
                driver::pump(&mut s, &Rc::downgrade(&broker))
            };
            driver::run(calls);
        }
        self.wake();
    }

    /// The external client dropped outbound message `id` (it gave up
    /// reconnecting, or the bridge is closing): kept to be sent again,
    /// unless the bridge is closed.
    fn out_rejected(self: &Rc<Self>, id: JsValue, _error: JsValue) {
        let Some(id) = id.as_f64().and_then(|v| u16::try_from(v as u32).ok()) else {
            return;
        };
        if self.closed.get() {
            if self.outbound.borrow_mut().acknowledged(id) {
                bump(&self.stats.dropped_out);
            }
            return;
        }
        self.outbound.borrow_mut().rejected(id);
    }

    /// Ends both sides: the local client leaves the in-tab broker, the
    /// external connection is closed with DISCONNECT. Queued outbound
    /// messages are dropped (counted).
    fn close(self: &Rc<Self>) -> Promise {
        if self.closed.replace(true) {
            return Promise::resolve(&JsValue::UNDEFINED);
        }
        // Not handed to the external client: dropped (what it holds is
        // counted as its rejections arrive).
        let waiting = self.outbound.borrow_mut().drop_waiting();
        for _ in 0..waiting {
            bump(&self.stats.dropped_out);
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
            inner.queue.len() + inner.inflight.len() + self.core.outbound.borrow().waiting()
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
