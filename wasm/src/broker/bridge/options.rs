//! `addBridge`'s options: the external broker (`url`) and the connection,
//! read by the client's own option parser (`client::options`, the same
//! keys as `MqttClient.connect`), plus `topics`, the mappings. Every key is
//! checked; a bad one throws naming it.

use js_sys::Array;
use ringmq_engine::codec::QoS;
use wasm_bindgen::JsValue;

use super::topics::{Direction, Mapping, TOPICS_MAX};
use crate::client::options::{self as client_options, Settings};
use crate::client::transport::Target;
use crate::js;

pub struct BridgeOptions {
    pub target: Target,
    pub settings: Settings,
    pub mappings: Vec<Mapping>,
}

pub fn parse(o: &JsValue) -> Result<BridgeOptions, JsValue> {
    if !o.is_object() {
        return Err(js::type_error("addBridge: an options object is required"));
    }
    let url = js::opt_string(o, "url")?
        .ok_or_else(|| js::type_error("addBridge: url (ws:// or wss://) is required"))?;
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(js::type_error(
            "addBridge: url must start with ws:// or wss://",
        ));
    }
    let mut settings = client_options::parse(o)?;
    // The external broker's messages are acknowledged once the in-tab
    // broker took them (`Local::publish`).
    settings.engine.manual_acks = true;
    if settings.engine.client_id.is_empty() {
        if !settings.engine.clean_start {
            return Err(js::type_error(
                "addBridge: a persistent session (cleanStart: false) needs a clientId",
            ));
        }
        let id = format!("ringmq-bridge-{}", js::hex(&js::random_bytes(6)));
        settings.engine.client_id = id.into_bytes().into();
    }
    let v5 = settings.engine.protocol.is_v5();
    let topics = js::get(o, "topics");
    if !Array::is_array(&topics) {
        return Err(js::type_error(
            "addBridge: topics must be an array of mappings",
        ));
    }
    let topics = Array::from(&topics);
    if topics.length() == 0 || topics.length() as usize > TOPICS_MAX {
        return Err(js::range_error(&format!(
            "addBridge: topics must have 1 to {TOPICS_MAX} mappings"
        )));
    }
    let mut mappings = Vec::new();
    for (i, t) in topics.iter().enumerate() {
        let bad = |m: &str| js::type_error(&format!("addBridge: topics[{i}]: {m}"));
        let pattern = js::opt_string(&t, "pattern")?.ok_or_else(|| bad("pattern is required"))?;
        let direction = match js::opt_string(&t, "direction")? {
            None => Direction::Out,
            Some(d) => Direction::parse(&d).ok_or_else(|| bad("direction: in, out or both"))?,
        };
        if direction == Direction::Both && !v5 {
            // Without no-local the external broker would send the bridge's
            // own messages back, and they would loop.
            return Err(bad("direction both needs protocolVersion 5 (no-local)"));
        }
        let qos = client_options::qos_of(&t)?;
        let local = js::opt_string(&t, "localPrefix")?.unwrap_or_default();
        let remote = js::opt_string(&t, "remotePrefix")?.unwrap_or_default();
        mappings
            .push(Mapping::new(&pattern, direction, qos, &local, &remote).map_err(|e| bad(&e))?);
    }
    Ok(BridgeOptions {
        target: Target::WebSocket(url),
        settings,
        mappings,
    })
}

/// The `subscribe` options of an inbound mapping on the external broker:
/// its QoS, retain-as-published, and no-local (v5) so that what the bridge
/// publishes there does not come back.
pub fn remote_subscribe_options(qos: QoS, v5: bool) -> JsValue {
    let o = js::object();
    js::set(&o, "qos", qos.as_u8());
    js::set(&o, "retainAsPublished", true);
    js::set(&o, "noLocal", v5);
    o
}
