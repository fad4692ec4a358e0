//! What the wasm layer needs from the JavaScript host, in one place: the
//! clock (`performance.now()`), one-shot timers (`setTimeout`), random
//! bytes (`crypto.getRandomValues`), and reading / building plain JS
//! objects (options in, events out). The globals are bound through the
//! global scope, so the same build runs in a page and in a worker.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, delay_ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &Uint8Array);
    #[wasm_bindgen(js_name = queueMicrotask)]
    fn queue_microtask(f: &Function);
    /// `Reflect.set` bound without `catch`: on the plain objects this
    /// layer makes it cannot throw, and the catching wrapper js-sys's
    /// binding goes through cost a tenth of a delivery's time.
    #[wasm_bindgen(js_namespace = Reflect, js_name = set)]
    fn reflect_set(target: &JsValue, key: &JsValue, value: &JsValue) -> bool;
}

/// Runs `f` once the current task's synchronous code is done (a
/// microtask: before any other event): what lets several commands of one
/// task go out in one write.
pub fn microtask(f: &Function) {
    queue_microtask(f);
}

/// Milliseconds on the host's monotonic clock (`performance.now()`): the
/// `now_ms` of every engine call.
pub fn now_ms() -> u64 {
    let t = performance_now();
    if t.is_finite() && t > 0.0 {
        t as u64
    } else {
        0
    }
}

/// `n` bytes from `crypto.getRandomValues` (SCRAM nonces, BroadcastChannel
/// connection ids, correlation data).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let buf = Uint8Array::new_with_length(n as u32);
    get_random_values(&buf);
    buf.to_vec()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Longest delay `setTimeout` takes (2^31 - 1 ms); a later deadline is
/// re-armed when this one fires, which is harmless (early calls are fine).
const TIMEOUT_MAX_MS: u64 = i32::MAX as u64;

/// A re-armable one-shot timer: at most one `setTimeout` pending, for the
/// earliest deadline asked. The owner calls [`Timer::arm`] after every
/// engine call with the engine's `poll_timeout()`; the callback runs when
/// it is due, never by polling.
pub struct Timer {
    handle: Option<JsValue>,
    deadline_ms: Option<u64>,
    callback: Closure<dyn FnMut()>,
}

impl Timer {
    pub fn new(callback: Closure<dyn FnMut()>) -> Timer {
        Timer {
            handle: None,
            deadline_ms: None,
            callback,
        }
    }

    /// Arms the timer for `deadline_ms` (`None`: disarm). Nothing happens
    /// when a deadline no later is armed already: that one fires first and
    /// the owner re-arms then (an early engine timeout call is harmless).
    /// A keep-alive deadline moves with every write, so re-arming only for
    /// an earlier one spares a `clearTimeout` + `setTimeout` per write.
    pub fn arm(&mut self, deadline_ms: Option<u64>) {
        let Some(deadline) = deadline_ms else {
            self.disarm();
            return;
        };
        if self.handle.is_some() && self.deadline_ms.is_some_and(|armed| armed <= deadline) {
            return;
        }
        self.disarm();
        let delay = deadline.saturating_sub(now_ms()).min(TIMEOUT_MAX_MS) as i32;
        self.handle = Some(set_timeout(self.callback.as_ref().unchecked_ref(), delay));
        self.deadline_ms = Some(deadline);
    }

    /// Cancels the pending timeout, if any.
    pub fn disarm(&mut self) {
        if let Some(handle) = self.handle.take() {
            clear_timeout(&handle);
        }
        self.deadline_ms = None;
    }

    /// Called first thing in the callback: the timeout has fired.
    pub fn fired(&mut self) {
        self.handle = None;
        self.deadline_ms = None;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// A callback bound to JS.
type Callback = Closure<dyn FnMut()>;

/// Calls `f` once after `delay_ms` (a fire-and-forget `setTimeout`; the
/// closure frees itself after running).
pub fn defer(delay_ms: u64, f: impl FnOnce() + 'static) {
    let slot: Rc<RefCell<Option<Callback>>> = Rc::new(RefCell::new(None));
    let slot2 = slot.clone();
    let mut f = Some(f);
    let closure = Closure::wrap(Box::new(move || {
        if let Some(f) = f.take() {
            f();
        }
        // Freed once this call returns (wasm-bindgen defers the drop).
        drop(slot2.borrow_mut().take());
    }) as Box<dyn FnMut()>);
    set_timeout(
        closure.as_ref().unchecked_ref(),
        delay_ms.min(TIMEOUT_MAX_MS) as i32,
    );
    *slot.borrow_mut() = Some(closure);
}

// ----- reading options ----------------------------------------------------

/// `obj[key]`, or `undefined` when `obj` is not an object.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn absent(v: &JsValue) -> bool {
    v.is_undefined() || v.is_null()
}

/// An optional string option; a non-string is an error naming the key.
pub fn opt_string(obj: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    let v = get(obj, key);
    if absent(&v) {
        return Ok(None);
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| type_error(&format!("option `{key}` must be a string")))
}

/// An optional boolean option.
pub fn opt_bool(obj: &JsValue, key: &str) -> Result<Option<bool>, JsValue> {
    let v = get(obj, key);
    if absent(&v) {
        return Ok(None);
    }
    v.as_bool()
        .map(Some)
        .ok_or_else(|| type_error(&format!("option `{key}` must be a boolean")))
}

/// An optional integer option within `0..=max`.
pub fn opt_uint(obj: &JsValue, key: &str, max: u64) -> Result<Option<u64>, JsValue> {
    let v = get(obj, key);
    if absent(&v) {
        return Ok(None);
    }
    match v.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= max as f64 => Ok(Some(f as u64)),
        _ => Err(range_error(&format!(
            "option `{key}` must be an integer from 0 to {max}"
        ))),
    }
}

/// Bytes from a `Uint8Array`, an `ArrayBuffer` or a string (UTF-8).
pub fn bytes_of(v: &JsValue, what: &str) -> Result<Bytes, JsValue> {
    if let Some(s) = v.as_string() {
        return Ok(Bytes::from(s.into_bytes()));
    }
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(Bytes::from(a.to_vec()));
    }
    if v.is_instance_of::<js_sys::ArrayBuffer>() {
        return Ok(Bytes::from(Uint8Array::new(v).to_vec()));
    }
    Err(type_error(&format!(
        "{what} must be a string, a Uint8Array or an ArrayBuffer"
    )))
}

/// An optional bytes option (see [`bytes_of`]).
pub fn opt_bytes(obj: &JsValue, key: &str) -> Result<Option<Bytes>, JsValue> {
    let v = get(obj, key);
    if absent(&v) {
        return Ok(None);
    }
    bytes_of(&v, &format!("option `{key}`")).map(Some)
}

/// User properties from `[[name, value], ...]` or `{name: value}`.
pub fn opt_user_properties(obj: &JsValue, key: &str) -> Result<Vec<(Bytes, Bytes)>, JsValue> {
    let v = get(obj, key);
    if absent(&v) {
        return Ok(Vec::new());
    }
    let bad = || {
        type_error(&format!(
            "option `{key}` must be [[name, value], ...] of strings"
        ))
    };
    let pairs = if Array::is_array(&v) {
        Array::from(&v)
    } else if v.is_object() {
        Object::entries(v.unchecked_ref())
    } else {
        return Err(bad());
    };
    let mut out = Vec::with_capacity(pairs.length() as usize);
    for pair in pairs.iter() {
        let pair = Array::from(&pair);
        let (Some(k), Some(val)) = (pair.get(0).as_string(), pair.get(1).as_string()) else {
            return Err(bad());
        };
        out.push((Bytes::from(k.into_bytes()), Bytes::from(val.into_bytes())));
    }
    Ok(out)
}

/// An optional function option.
pub fn opt_function(obj: &JsValue, key: &str) -> Result<Option<Function>, JsValue> {
    let v = get(obj, key);
    if absent(&v) {
        return Ok(None);
    }
    v.dyn_into::<Function>()
        .map(Some)
        .map_err(|_| type_error(&format!("option `{key}` must be a function")))
}

// ----- building values ------------------------------------------------------

/// A `TypeError` with `message`.
pub fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(message).into()
}

/// A `RangeError` with `message`.
pub fn range_error(message: &str) -> JsValue {
    js_sys::RangeError::new(message).into()
}

/// An `Error` with `message` and, when given, a numeric `reasonCode`.
pub fn error(message: &str, reason_code: Option<u8>) -> JsValue {
    let e: JsValue = js_sys::Error::new(message).into();
    if let Some(code) = reason_code {
        set(&e, "reasonCode", code);
    }
    e
}

/// `obj[key] = value` (on an object this layer created: cannot fail).
pub fn set(obj: &JsValue, key: &'static str, value: impl Into<JsValue>) {
    // Reflect.set only fails on a non-object target or a frozen object;
    // every object passed here was created by this layer.
    if !reflect_set(obj, &key_string(key), &value.into()) {
        debug_assert!(false, "Reflect.set on a fresh object");
    }
}

thread_local! {
    /// The JS strings of the property names `set` uses, made once: a
    /// message's `packet` object would otherwise decode its four names
    /// from UTF-8 for every message.
    static KEYS: RefCell<std::collections::HashMap<&'static str, JsValue>> = RefCell::default();
}

fn key_string(key: &'static str) -> JsValue {
    KEYS.with(|keys| {
        keys.borrow_mut()
            .entry(key)
            .or_insert_with(|| JsValue::from_str(key))
            .clone()
    })
}

/// A fresh empty object.
pub fn object() -> JsValue {
    Object::new().into()
}

/// Lossy UTF-8 string of `bytes` (topics and client ids are UTF-8 on the wire).
pub fn string(bytes: &[u8]) -> JsValue {
    JsValue::from_str(&String::from_utf8_lossy(bytes))
}

/// A copy of `bytes` as a `Uint8Array`.
pub fn uint8array(bytes: &[u8]) -> Uint8Array {
    Uint8Array::from(bytes)
}

/// Calls `f(args...)`, reporting an exception thrown by the application's
/// callback on the console instead of unwinding through the engine loop.
pub fn call(f: &Function, args: &[JsValue]) {
    let this = JsValue::NULL;
    // Up to three arguments without building an array (a message callback
    // takes three, once per message).
    let result = match args {
        [] => f.call0(&this),
        [a] => f.call1(&this, a),
        [a, b] => f.call2(&this, a, b),
        [a, b, c] => f.call3(&this, a, b, c),
        _ => f.apply(&this, &args.iter().collect::<Array>()),
    };
    if let Err(e) = result {
        web_sys_console_error(&e);
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &JsValue, detail: &JsValue);
}

fn web_sys_console_error(e: &JsValue) {
    console_error(&JsValue::from_str("ringmq: an event handler threw"), e);
}
