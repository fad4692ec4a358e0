//! MQTT 5 PUBLISH properties between JavaScript objects and the engine's
//! [`PublishProperties`], and the message object handed to `message`
//! callbacks (client and broker alike).
//!
//! ```text
//! { responseTopic?: string, correlationData?: Uint8Array | string,
//!   userProperties?: [[name, value], ...] | {name: value},
//!   contentType?: string, messageExpiryInterval?: number (s),
//!   payloadFormatIndicator?: 0 | 1, subscriptionIdentifiers?: number[] (received only) }
//! ```

use bytes::Bytes;
use ringmq_engine::codec::{Publish, PublishProperties};
use wasm_bindgen::JsValue;

use crate::js;

/// PUBLISH (and will) properties from a JS object (`undefined`: none).
pub fn publish_properties_from(obj: &JsValue) -> Result<PublishProperties, JsValue> {
    let mut p = PublishProperties::default();
    if obj.is_undefined() || obj.is_null() {
        return Ok(p);
    }
    p.response_topic = js::opt_string(obj, "responseTopic")?.map(|s| s.into_bytes().into());
    p.correlation_data = js::opt_bytes(obj, "correlationData")?;
    p.user = js::opt_user_properties(obj, "userProperties")?;
    p.content_type = js::opt_string(obj, "contentType")?.map(|s| s.into_bytes().into());
    p.message_expiry_interval_s =
        js::opt_uint(obj, "messageExpiryInterval", u64::from(u32::MAX))?.map(|v| v as u32);
    p.payload_format_indicator = js::opt_uint(obj, "payloadFormatIndicator", 1)?.map(|v| v as u8);
    Ok(p)
}

/// The properties of a received PUBLISH as a JS object (absent ones left out).
pub fn publish_properties_to(p: &PublishProperties) -> JsValue {
    let o = js::object();
    if let Some(t) = &p.response_topic {
        js::set(&o, "responseTopic", js::string(t));
    }
    if let Some(c) = &p.correlation_data {
        js::set(&o, "correlationData", js::uint8array(c));
    }
    if !p.user.is_empty() {
        let pairs: js_sys::Array = p
            .user
            .iter()
            .map(|(k, v)| -> JsValue {
                let pair: js_sys::Array = [js::string(k), js::string(v)].iter().collect();
                pair.into()
            })
            .collect();
        js::set(&o, "userProperties", pairs);
    }
    if let Some(c) = &p.content_type {
        js::set(&o, "contentType", js::string(c));
    }
    if let Some(e) = p.message_expiry_interval_s {
        js::set(&o, "messageExpiryInterval", e);
    }
    if let Some(f) = p.payload_format_indicator {
        js::set(&o, "payloadFormatIndicator", f);
    }
    if !p.subscription_identifiers.is_empty() {
        let ids: js_sys::Array = p
            .subscription_identifiers
            .iter()
            .map(|id| JsValue::from(*id))
            .collect();
        js::set(&o, "subscriptionIdentifiers", ids);
    }
    o
}

/// The JS string of the latest topic handed to a `message` callback: a
/// subscriber usually gets many messages on one topic in a row, and a JS
/// string is immutable, so it is decoded from UTF-8 once per run.
#[derive(Default)]
pub struct TopicCache(Option<(Bytes, JsValue)>);

impl TopicCache {
    pub fn get(&mut self, topic: &Bytes) -> JsValue {
        match &self.0 {
            Some((t, v)) if t == topic => v.clone(),
            _ => {
                let v = js::string(topic);
                self.0 = Some((topic.clone(), v.clone()));
                v
            }
        }
    }
}

/// The `(topic, payload, packet)` arguments of a `message` callback:
/// `packet` is `{ qos, retain, dup, properties }`.
pub fn message_args(publish: &Publish, topics: &mut TopicCache) -> [JsValue; 3] {
    let packet = js::object();
    js::set(&packet, "qos", publish.qos.as_u8());
    js::set(&packet, "retain", publish.retain);
    js::set(&packet, "dup", publish.dup);
    js::set(
        &packet,
        "properties",
        publish_properties_to(&publish.properties),
    );
    [
        topics.get(&publish.topic),
        js::uint8array(&publish.payload).into(),
        packet,
    ]
}
