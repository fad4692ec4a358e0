//! The client's driver: one engine [`Client`] per connection, fed by the
//! transport's event handlers and the keep-alive timer, and what lives
//! across connections (subscriptions to restore, unacknowledged publishes
//! to resend, promises waiting for acknowledgements, reconnection).
//!
//! Every input ends in [`pump`]: write what the engine produced, act on its
//! events, re-arm the timer. JS callbacks and promise settlements are
//! collected while the state is borrowed and made after it is released
//! ([`Calls`]), so an application callback may call back into the client.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use ringmq_engine::client::{Client, DisconnectReason, Event, State};
use ringmq_engine::codec::ReasonCode;
use wasm_bindgen::prelude::*;

use super::reason::{describe, refusal_is_final};
use super::resend;
use super::state::{Calls, Handlers, Inner, Pending, Shared};
use super::transport::Transport;
use crate::framing::Input;
use crate::{js, props};

/// Starts one connection attempt to the stored target.
pub fn start_attempt(shared: &Shared) {
    let weak = Rc::downgrade(shared);
    let mut calls = Calls::new();
    {
        let mut inner = shared.borrow_mut();
        let (Some(settings), Some(target)) = (&inner.settings, inner.target.clone()) else {
            return;
        };
        let mut options = settings.engine.clone();
        // A reconnection asks for the session back when the broker may
        // keep one (v5: a Session Expiry Interval; v3: Clean Session 0
        // already), so that unacknowledged publishes can be resent under
        // their packet ids (exactly once for QoS 2).
        if inner.connected_once && options.session_expiry_s.unwrap_or(0) > 0 {
            options.clean_start = false;
        }
        let open_deadline_ms = js::now_ms().saturating_add(options.connect_timeout_ms);
        if options.client_id != inner.inbound_qos2_client_id {
            inner.inbound_qos2.clear();
        }
        let mut engine = Client::new(options);
        if let Err(e) = engine.resume_inbound_qos2(&inner.inbound_qos2) {
            error_event(&inner.handlers, &format!("resume: {e}"), &mut calls);
        }
        let sink_weak = weak.clone();
        let opened = Transport::open(&target, move |input| on_input(&sink_weak, input));
        match opened {
            Ok(t) => {
                inner.generation += 1;
                inner.engine = Some(engine);
                inner.transport = Some(t);
                inner.read_buf.clear();
                inner.open_deadline_ms = open_deadline_ms;
                inner
                    .timer
                    .get_or_insert_with(|| new_timer(weak.clone(), on_timer))
                    .arm(Some(open_deadline_ms));
            }
            Err(e) => {
                let detail = e.as_string().unwrap_or_else(|| format!("{e:?}"));
                attempt_failed(&mut inner, &weak, &detail, &mut calls);
            }
        }
    }
    run(calls);
}

fn new_timer(weak: Weak<RefCell<Inner>>, f: fn(&Shared)) -> js::Timer {
    js::Timer::new(Closure::wrap(Box::new(move || {
        if let Some(shared) = weak.upgrade() {
            f(&shared);
        }
    }) as Box<dyn FnMut()>))
}

fn on_timer(shared: &Shared) {
    let calls = {
        let mut guard = shared.borrow_mut();
        let inner = &mut *guard;
        if let Some(t) = inner.timer.as_mut() {
            t.fired();
        }
        let now = js::now_ms();
        let deadline = inner.open_deadline_ms;
        let mut calls = Calls::new();
        if let Some(engine) = inner.engine.as_mut() {
            if engine.state() == State::Idle && now >= deadline {
                error_event(
                    &inner.handlers,
                    "the transport did not open within connectTimeoutMs",
                    &mut calls,
                );
                engine.handle_close(now);
            } else {
                engine.handle_timeout(now);
            }
        }
        calls.extend(pump(inner, &Rc::downgrade(shared)));
        calls
    };
    run(calls);
}

fn on_reconnect_timer(shared: &Shared) {
    {
        let mut inner = shared.borrow_mut();
        if let Some(t) = inner.reconnect_timer.as_mut() {
            t.fired();
        }
        if inner.closing || inner.engine.is_some() {
            return;
        }
    }
    start_attempt(shared);
}

fn on_input(weak: &Weak<RefCell<Inner>>, input: Input) {
    let Some(shared) = weak.upgrade() else { return };
    let calls = {
        let mut inner = shared.borrow_mut();
        let now = js::now_ms();
        let mut calls = Calls::new();
        let inner = &mut *inner;
        let Some(engine) = inner.engine.as_mut() else {
            return; // input of a connection already over
        };
        match input {
            Input::Open => {
                if let Err(e) = engine.connect(now) {
                    error_event(&inner.handlers, &format!("connect: {e}"), &mut calls);
                }
            }
            Input::Data(bytes) => {
                inner.read_buf.extend_from_slice(&bytes);
                // A protocol error is also reported as events (below).
                if let Err(e) = engine.handle_read(&mut inner.read_buf, now) {
                    error_event(
                        &inner.handlers,
                        &format!("protocol error from the server: {e}"),
                        &mut calls,
                    );
                }
            }
            Input::Closed { detail } => {
                if let Some(d) = detail.filter(|_| !inner.closing) {
                    error_event(&inner.handlers, &d, &mut calls);
                }
                engine.handle_close(now);
            }
        }
        calls.extend(pump(inner, weak));
        calls
    };
    run(calls);
}

/// Makes the collected calls (outside any borrow).
pub fn run(calls: Calls) {
    for (f, args) in calls {
        js::call(&f, &args);
    }
}

fn error_event(h: &Handlers, message: &str, calls: &mut Calls) {
    if let Some(f) = &h.error {
        calls.push((f.clone(), vec![js::error(message, None)]));
    }
}

/// Acts on events, re-arms the timer, and has what the engine wrote sent
/// at the end of the task (one write for all the commands and answers of
/// one task: [`flush_task`]); returns the JS calls to make.
pub fn pump(inner: &mut Inner, weak: &Weak<RefCell<Inner>>) -> Calls {
    let mut calls = Calls::new();
    loop {
        let Some(event) = inner.engine.as_mut().and_then(Client::poll_event) else {
            break;
        };
        match event {
            Event::Connected {
                session_present,
                properties,
            } => on_connected(inner, session_present, &properties, &mut calls),
            // A bridge: the owner takes the message, and acknowledges it
            // once it took it over; `message` is only its wake-up call.
            Event::Message(p)
                if inner
                    .engine
                    .as_ref()
                    .is_some_and(|e| e.options().manual_acks) =>
            {
                if inner.received.is_empty() {
                    if let Some(f) = &inner.handlers.message {
                        calls.push((f.clone(), Vec::new()));
                    }
                }
                inner.received.push_back((inner.generation, p));
            }
            Event::Message(p) => {
                let waiter = p
                    .properties
                    .correlation_data
                    .as_ref()
                    .and_then(|c| inner.requests.remove(c));
                let args = props::message_args(&p, &mut inner.topics);
                if let Some(w) = waiter {
                    let msg = js::object();
                    js::set(&msg, "topic", args[0].clone());
                    js::set(&msg, "payload", args[1].clone());
                    js::set(&msg, "packet", args[2].clone());
                    calls.push((w.resolve, vec![msg]));
                } else if let Some(f) = &inner.handlers.message {
                    calls.push((f.clone(), args.to_vec()));
                }
            }
            Event::SubAck(ack) => {
                if let Some((w, subs)) = inner.subacks.remove(&ack.packet_id) {
                    for (sub, reason) in subs.into_iter().zip(&ack.reasons) {
                        if reason.0 < 0x80 {
                            inner
                                .subscriptions
                                .retain(|s| s.filter.filter != sub.filter.filter);
                            inner.subscriptions.push(sub);
                        }
                    }
                    calls.push((w.resolve, vec![codes(&ack.reasons)]));
                }
            }
            Event::UnsubAck(ack) => {
                if let Some((w, filters)) = inner.unsubacks.remove(&ack.packet_id) {
                    inner
                        .subscriptions
                        .retain(|s| !filters.contains(&s.filter.filter));
                    calls.push((w.resolve, vec![codes(&ack.reasons)]));
                }
            }
            Event::PubAcked { packet_id, reason } => {
                if let Some(p) = inner.inflight.remove(&packet_id) {
                    calls.push((p.waiter.resolve, vec![reason.0.into()]));
                }
                resend::drain_queue(inner, &mut calls);
            }
            Event::ProtocolError(e) => {
                error_event(&inner.handlers, &format!("protocol error: {e}"), &mut calls)
            }
            Event::Disconnected(reason) => {
                flush(inner, &mut calls);
                on_lost(inner, weak, reason, &mut calls);
            }
        }
    }
    // Not open yet (Idle): the open deadline.
    let deadline = inner.engine.as_ref().and_then(|e| match e.state() {
        State::Idle => Some(inner.open_deadline_ms),
        _ => e.poll_timeout(),
    });
    if let Some(t) = inner.timer.as_mut() {
        t.arm(deadline);
    }
    schedule_flush(inner, weak);
    calls
}

/// Queues [`flush_task`] if the engine has bytes to write and none is
/// queued.
fn schedule_flush(inner: &mut Inner, weak: &Weak<RefCell<Inner>>) {
    let pending = inner
        .engine
        .as_mut()
        .is_some_and(|e| !e.outgoing().is_empty());
    if !pending || inner.flush_scheduled || inner.transport.is_none() {
        return;
    }
    let f = inner
        .flush_fn
        .get_or_insert_with(|| {
            let weak = weak.clone();
            Closure::wrap(Box::new(move || {
                if let Some(shared) = weak.upgrade() {
                    flush_task(&shared);
                }
            }) as Box<dyn FnMut()>)
        })
        .as_ref()
        .unchecked_ref::<js_sys::Function>()
        .clone();
    inner.flush_scheduled = true;
    js::microtask(&f);
}

/// The microtask: writes what the engine produced during the task (a
/// burst of publishes goes out as one transport message, which the
/// in-tab broker then reads and routes in one go), moves queued publishes
/// into the room made, and pumps again.
fn flush_task(shared: &Shared) {
    let weak = Rc::downgrade(shared);
    let calls = {
        let mut guard = shared.borrow_mut();
        let inner = &mut *guard;
        inner.flush_scheduled = false;
        let mut calls = Calls::new();
        flush(inner, &mut calls);
        resend::drain_queue(inner, &mut calls);
        calls.extend(pump(inner, &weak));
        calls
    };
    run(calls);
}

fn codes(reasons: &[ReasonCode]) -> JsValue {
    let a: js_sys::Array = reasons.iter().map(|r| JsValue::from(r.0)).collect();
    a.into()
}

fn flush(inner: &mut Inner, calls: &mut Calls) {
    let (Some(engine), Some(t)) = (inner.engine.as_mut(), inner.transport.as_ref()) else {
        return;
    };
    let out = engine.outgoing();
    if out.is_empty() {
        return;
    }
    let bytes = out.split();
    if let Err(e) = t.send(&bytes) {
        let detail = e.as_string().unwrap_or_else(|| format!("{e:?}"));
        error_event(&inner.handlers, &format!("write failed: {detail}"), calls);
        if let Some(engine) = inner.engine.as_mut() {
            engine.handle_close(js::now_ms());
        }
    }
}

fn on_connected(
    inner: &mut Inner,
    session_present: bool,
    p: &ringmq_engine::codec::ConnAckProperties,
    calls: &mut Calls,
) {
    let reconnected = inner.connected_once;
    inner.connected_once = true;
    inner.up = true;
    inner.attempt = 0;
    let info = js::object();
    js::set(&info, "sessionPresent", session_present);
    js::set(&info, "reconnected", reconnected);
    if let Some(id) = &p.assigned_client_identifier {
        js::set(&info, "assignedClientIdentifier", js::string(id));
        // Reconnections present the assigned id (to find the session).
        if let Some(s) = inner.settings.as_mut() {
            s.engine.client_id = id.clone();
        }
    }
    if let Some(w) = inner.connect_waiter.take() {
        calls.push((w.resolve, vec![info.clone()]));
    }
    if let Some(f) = &inner.handlers.connect {
        calls.push((f.clone(), vec![info]));
    }
    if reconnected && !session_present {
        // The broker kept nothing: subscribe again, one SUBSCRIBE per filter
        // (each may carry its own subscription identifier).
        let subs = inner.subscriptions.clone();
        for s in subs {
            let Some(engine) = inner.engine.as_mut() else {
                return;
            };
            if let Err(e) =
                engine.subscribe_with_properties(vec![s.filter.clone()], s.properties.clone())
            {
                error_event(&inner.handlers, &format!("resubscribe: {e}"), calls);
            }
        }
    }
    resend::resume(inner, session_present, calls);
    // Unacknowledged publishes of the lost connection go first (they were
    // moved to the front of the queue), then those queued meanwhile.
    resend::drain_queue(inner, calls);
}

/// Rejects every waiting promise with `message`.
pub fn reject_all(inner: &mut Inner, message: &str, calls: &mut Calls) {
    let err = || vec![js::error(message, None)];
    let mut pending: Vec<Pending> = inner.inflight.drain().map(|(_, p)| p).collect();
    pending.extend(inner.queue.drain(..));
    for p in pending {
        calls.push((p.waiter.reject, err()));
    }
    for (_, (w, _)) in inner.subacks.drain() {
        calls.push((w.reject, err()));
    }
    for (_, (w, _)) in inner.unsubacks.drain() {
        calls.push((w.reject, err()));
    }
    for (_, w) in inner.requests.drain() {
        calls.push((w.reject, err()));
    }
    if let Some(w) = inner.connect_waiter.take() {
        calls.push((w.reject, err()));
    }
}

fn on_lost(
    inner: &mut Inner,
    weak: &Weak<RefCell<Inner>>,
    reason: DisconnectReason,
    calls: &mut Calls,
) {
    // Closed below: kept for the next connection if there is one (a port).
    let mut transport = inner.transport.take();
    let engine = inner.engine.take();
    let (text, code) = describe(reason);
    if std::mem::take(&mut inner.up) {
        if let Some(f) = &inner.handlers.disconnect {
            let info = js::object();
            js::set(&info, "reason", text.as_str());
            if let Some(c) = code {
                js::set(&info, "reasonCode", c);
            }
            calls.push((f.clone(), vec![info]));
        }
    }
    let retry = !inner.closing && inner.connected_once && !refusal_is_final(reason);
    // Exactly-once on receive across the reconnection (the engine drops
    // them if the next CONNACK says the session is new), also into a later
    // `connect` under the same client id (a bridge starting again after its
    // client gave up); `disconnect()` ends them.
    if inner.closing {
        inner.inbound_qos2.clear();
    } else if let Some(e) = &engine {
        inner.inbound_qos2 = e.inbound_qos2_ids();
        inner.inbound_qos2_client_id = inner.settings.as_ref().map_or_else(
            || e.options().client_id.clone(),
            |s| s.engine.client_id.clone(),
        );
    }
    if retry {
        // Unacknowledged QoS 1/2 publishes go out again after reconnecting,
        // before anything queued since (oldest first).
        let mut resend: Vec<Pending> = inner
            .inflight
            .drain()
            .map(|(id, mut p)| {
                p.resume = engine
                    .as_ref()
                    .and_then(|e| e.outbound_step(id))
                    .map(|step| (id, step));
                p
            })
            .collect();
        resend.sort_by_key(|p| p.seq);
        for p in resend.into_iter().rev() {
            inner.queue.push_front(p);
        }
        for (_, (w, _)) in inner.subacks.drain() {
            calls.push((
                w.reject,
                vec![js::error("connection lost before SUBACK", None)],
            ));
        }
        for (_, (w, _)) in inner.unsubacks.drain() {
            calls.push((
                w.reject,
                vec![js::error("connection lost before UNSUBACK", None)],
            ));
        }
        inner.attempt += 1;
        let delay = inner
            .settings
            .as_ref()
            .and_then(|s| s.backoff.delay_ms(inner.attempt));
        if let Some(delay) = delay {
            if let Some(f) = &inner.handlers.reconnecting {
                let info = js::object();
                js::set(&info, "attempt", inner.attempt);
                js::set(&info, "delayMs", delay as f64);
                calls.push((f.clone(), vec![info]));
            }
            if inner.reconnect_timer.is_none() {
                inner.reconnect_timer = Some(new_timer(weak.clone(), on_reconnect_timer));
            }
            let now = js::now_ms();
            if let Some(t) = inner.reconnect_timer.as_mut() {
                t.arm(Some(now + delay));
            }
            if let Some(t) = transport.take() {
                t.end_for_reconnect();
            }
            return;
        }
        error_event(&inner.handlers, "reconnection attempts exhausted", calls);
    } else if !inner.closing && inner.connected_once && refusal_is_final(reason) {
        // Not retried (a refusal that retrying cannot fix): say so, or the
        // application would not know that reconnection stopped.
        error_event(&inner.handlers, &format!("not reconnecting: {text}"), calls);
    }
    if let Some(t) = transport.take() {
        t.close();
    }
    if let Some(t) = inner.timer.as_mut() {
        t.disarm();
    }
    let message = if inner.closing {
        "disconnected".to_string()
    } else {
        text
    };
    if let Some(w) = inner.connect_waiter.take() {
        let err = js::error(&message, code);
        calls.push((w.reject, vec![err]));
    }
    reject_all(inner, &message, calls);
    // The application may connect again.
    inner.settings = None;
    inner.connected_once = false;
    inner.attempt = 0;
    if let Some(w) = inner.disconnect_waiter.take() {
        calls.push((w.resolve, vec![JsValue::UNDEFINED]));
    }
}

/// An attempt could not even start (bad URL, port function threw).
fn attempt_failed(inner: &mut Inner, weak: &Weak<RefCell<Inner>>, detail: &str, calls: &mut Calls) {
    error_event(&inner.handlers, detail, calls);
    on_lost(inner, weak, DisconnectReason::TransportClosed, calls);
}

/// `disconnect()`: DISCONNECT with `reason` on a live connection, or stop
/// an attempt / a pending reconnection. Settles `disconnect_waiter`.
pub fn close(shared: &Shared, reason: ReasonCode) {
    let weak = Rc::downgrade(shared);
    let calls = {
        let mut inner = shared.borrow_mut();
        inner.closing = true;
        if let Some(t) = inner.reconnect_timer.as_mut() {
            t.disarm();
        }
        let live = inner
            .engine
            .as_ref()
            .is_some_and(|e| !matches!(e.state(), State::Idle));
        if live {
            if let Some(engine) = inner.engine.as_mut() {
                engine.disconnect(reason);
            }
            pump(&mut inner, &weak)
        } else {
            let mut calls = Calls::new();
            on_lost(
                &mut inner,
                &weak,
                DisconnectReason::Client(reason),
                &mut calls,
            );
            calls
        }
    };
    run(calls);
}
