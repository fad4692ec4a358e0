//! `connect`'s options object -> the engine's [`ClientOptions`] and the
//! wasm layer's own settings (reconnection, queue limits). Every key is
//! checked: a wrong type or an out-of-range value rejects `connect` with a
//! `TypeError` / `RangeError` naming the key.

use bytes::Bytes;
use ringmq_engine::client::ClientOptions;
use ringmq_engine::codec::{Protocol, QoS, Will, WillProperties};
use wasm_bindgen::JsValue;

use super::backoff::Backoff;
use crate::{js, props};

/// Default cap on publishes waiting for room in the inflight window.
pub const QUEUE_MAX_MESSAGES_DEFAULT: u64 = 10_000;

/// Everything `connect` was given.
#[derive(Clone)]
pub struct Settings {
    pub engine: ClientOptions,
    pub backoff: Backoff,
    /// Publishes waiting for the inflight window; more => rejected.
    pub queue_max_messages: usize,
}

/// Parses the options object (`undefined`: all defaults, MQTT 5).
pub fn parse(o: &JsValue) -> Result<Settings, JsValue> {
    let protocol = match js::opt_uint(o, "protocolVersion", 5)? {
        None | Some(5) => Protocol::V5,
        Some(4) => Protocol::V3_1_1,
        Some(3) => Protocol::V3_1,
        Some(v) => {
            return Err(js::range_error(&format!(
                "protocolVersion {v}: use 5, 4 (3.1.1) or 3 (3.1)"
            )))
        }
    };
    let client_id = js::opt_string(o, "clientId")?.unwrap_or_default();
    let mut e = ClientOptions::new(protocol, Bytes::from(client_id.into_bytes()));
    if let Some(v) = js::opt_bool(o, "cleanStart")? {
        e.clean_start = v;
    }
    if let Some(v) = js::opt_uint(o, "keepAlive", u64::from(u16::MAX))? {
        e.keep_alive_s = v as u16;
    }
    e.session_expiry_s =
        js::opt_uint(o, "sessionExpiryInterval", u64::from(u32::MAX))?.map(|v| v as u32);
    e.username = js::opt_string(o, "username")?.map(|s| Bytes::from(s.into_bytes()));
    e.password = js::opt_bytes(o, "password")?;
    if let Some(v) = js::opt_uint(o, "receiveMaximum", u64::from(u16::MAX))? {
        e.receive_maximum = (v as u16).max(1);
    }
    if let Some(v) = js::opt_uint(o, "inflightMax", u64::from(u16::MAX))? {
        e.inflight_max = (v as u16).max(1);
    }
    if let Some(v) = js::opt_uint(o, "maximumPacketSize", u64::from(u32::MAX))? {
        e.packet_size_max_bytes = (v as u32).max(1);
    }
    if let Some(v) = js::opt_uint(o, "topicAliasMaximum", u64::from(u16::MAX))? {
        e.topic_alias_max = v as u16;
    }
    if let Some(v) = js::opt_uint(o, "connectTimeoutMs", 3_600_000)? {
        e.connect_timeout_ms = v.max(1);
    }
    e.user_properties = js::opt_user_properties(o, "userProperties")?;
    let will = js::get(o, "will");
    if !will.is_undefined() && !will.is_null() {
        e.will = Some(parse_will(&will)?);
    }
    let queue_max_messages = js::opt_uint(o, "queueMaxMessages", 1 << 24)?
        .unwrap_or(QUEUE_MAX_MESSAGES_DEFAULT) as usize;
    Ok(Settings {
        engine: e,
        backoff: parse_backoff(&js::get(o, "reconnect"))?,
        queue_max_messages,
    })
}

fn parse_will(w: &JsValue) -> Result<Will, JsValue> {
    let topic =
        js::opt_string(w, "topic")?.ok_or_else(|| js::type_error("will.topic is required"))?;
    let payload = js::opt_bytes(w, "payload")?.unwrap_or_default();
    let qos = qos_of(w)?;
    let retain = js::opt_bool(w, "retain")?.unwrap_or(false);
    let p = props::publish_properties_from(&js::get(w, "properties"))?;
    let delay = js::opt_uint(
        &js::get(w, "properties"),
        "willDelayInterval",
        u64::from(u32::MAX),
    )?;
    let properties = WillProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval_s: p.message_expiry_interval_s,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user: p.user,
        will_delay_interval_s: delay.map(|v| v as u32),
    };
    Ok(Will {
        topic: Bytes::from(topic.into_bytes()),
        payload,
        qos,
        retain,
        properties,
    })
}

/// `reconnect`: `false`, `true` / absent (defaults), or
/// `{ initialDelayMs, maxDelayMs, maxAttempts }`.
fn parse_backoff(r: &JsValue) -> Result<Backoff, JsValue> {
    let mut b = Backoff::default();
    if r.is_undefined() || r.is_null() {
        return Ok(b);
    }
    if let Some(enabled) = r.as_bool() {
        b.enabled = enabled;
        return Ok(b);
    }
    if let Some(v) = js::opt_uint(r, "initialDelayMs", 3_600_000)? {
        b.initial_delay_ms = v.max(1);
    }
    if let Some(v) = js::opt_uint(r, "maxDelayMs", 86_400_000)? {
        b.max_delay_ms = v.max(b.initial_delay_ms);
    }
    if let Some(v) = js::opt_uint(r, "maxAttempts", u64::from(u32::MAX))? {
        b.max_attempts = v as u32;
    }
    Ok(b)
}

/// `qos` of an options object (default 0).
pub fn qos_of(o: &JsValue) -> Result<QoS, JsValue> {
    let v = js::opt_uint(o, "qos", 2)?.unwrap_or(0);
    QoS::from_u8(v as u8).ok_or_else(|| js::range_error("qos must be 0, 1 or 2"))
}
