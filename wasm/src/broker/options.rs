//! `new InTabBroker(options)`: limits into the engine's [`BrokerConfig`],
//! users (plain passwords, or a password file of argon2id hashes), the ACL
//! (the engine's ACL file parser). Every key is checked; a bad value throws
//! a `TypeError` / `RangeError` naming it, a bad ACL or password file an
//! `Error` with the line.

use std::collections::HashMap;
use std::sync::Arc;

use ringmq_engine::acl::{self, Acl};
use ringmq_engine::auth::UserStore;
use ringmq_engine::broker::{BrokerConfig, SharedPolicy};
use wasm_bindgen::JsValue;

use crate::js;

/// Who may log in: plain passwords given by the page, and/or a password
/// file (argon2id, as `ringmq passwd` writes it; SCRAM-SHA-256 too when
/// the file has SCRAM credentials).
#[derive(Default)]
pub struct Users {
    pub plain: HashMap<String, String>,
    pub file: Option<UserStore>,
}

impl Users {
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.file.is_none()
    }
}

/// Everything the constructor was given.
pub struct Parsed {
    pub config: BrokerConfig,
    pub users: Users,
    pub acl: Option<Arc<Acl>>,
}

/// `(option key, how to set it)` for the integer limits.
type Setter = fn(&mut BrokerConfig, u64);

const LIMITS: &[(&str, u64, Setter)] = &[
    ("maxConnections", 1 << 20, |c, v| {
        c.connections_max = v as usize
    }),
    ("maxPacketSize", 268_435_455, |c, v| {
        c.packet_size_max_bytes = v as u32
    }),
    ("receiveMaximum", 65_535, |c, v| {
        c.receive_maximum = v as u16
    }),
    ("inflightMax", 65_535, |c, v| c.inflight_max = v as u16),
    ("sessionQueueMaxMessages", 1 << 24, |c, v| {
        c.session_queue_max_messages = v as usize
    }),
    ("outgoingBufferMaxBytes", 1 << 30, |c, v| {
        c.outgoing_buffer_max_bytes = v as usize
    }),
    ("subscriptionsPerSessionMax", 1 << 20, |c, v| {
        c.subscriptions_per_session_max = v as usize
    }),
    ("retainedMessagesMax", 1 << 24, |c, v| {
        c.retained_messages_max = v as usize
    }),
    ("retainedBytesMax", 1 << 32, |c, v| {
        c.retained_bytes_max = v as usize
    }),
    ("topicAliasMax", 65_535, |c, v| c.topic_alias_max = v as u16),
    ("keepAliveMax", 65_535, |c, v| c.keep_alive_max_s = v as u16),
    ("sessionExpiryMax", u32::MAX as u64, |c, v| {
        c.session_expiry_max_s = v as u32
    }),
    ("clientIdMaxBytes", 65_535, |c, v| {
        c.client_id_max_bytes = v as usize
    }),
    ("connectTimeoutMs", 3_600_000, |c, v| {
        c.connect_timeout_ms = v
    }),
    ("sysInterval", 86_400, |c, v| c.sys_interval_s = v as u32),
];

/// Limits for a tab: a browser tab is not a server, so fewer connections
/// and smaller queues than the native defaults; everything else as native
/// ([`BrokerConfig::in_tab`], which the engine's scenario tests also run
/// with).
pub fn tab_defaults() -> BrokerConfig {
    BrokerConfig::in_tab()
}

pub fn parse(o: &JsValue) -> Result<Parsed, JsValue> {
    let mut config = tab_defaults();
    for (key, max, set) in LIMITS {
        if let Some(v) = js::opt_uint(o, key, *max)? {
            set(&mut config, v);
        }
    }
    if config.receive_maximum == 0 || config.inflight_max == 0 || config.packet_size_max_bytes == 0
    {
        return Err(js::range_error(
            "receiveMaximum, inflightMax and maxPacketSize must be at least 1",
        ));
    }
    if let Some(name) = js::opt_string(o, "sharedPolicy")? {
        config.shared_policy = SharedPolicy::from_name(&name).ok_or_else(|| {
            js::range_error(&format!("sharedPolicy `{name}`: round_robin, random, sticky, hash_clientid, hash_topic or least_inflight"))
        })?;
    }
    config.allow_anonymous = js::opt_bool(o, "allowAnonymous")?.unwrap_or(true);
    let users = parse_users(o)?;
    config.user_store = !users.is_empty();
    if !config.allow_anonymous && users.is_empty() {
        return Err(js::type_error(
            "allowAnonymous: false needs `users` or `passwordFile` (nobody could log in)",
        ));
    }
    let acl = match js::opt_string(o, "acl")? {
        None => None,
        Some(text) => {
            let file = acl::parse(&text).map_err(|e| js::error(&format!("acl: {e}"), None))?;
            Some(Arc::new(Acl::compile(file)))
        }
    };
    Ok(Parsed { config, users, acl })
}

fn parse_users(o: &JsValue) -> Result<Users, JsValue> {
    let mut users = Users::default();
    let plain = js::get(o, "users");
    if !plain.is_undefined() && !plain.is_null() {
        if !plain.is_object() {
            return Err(js::type_error("users must be an object { name: password }"));
        }
        for entry in js_sys::Object::entries(&js_sys::Object::from(plain)).iter() {
            let pair = js_sys::Array::from(&entry);
            let (Some(name), Some(password)) = (pair.get(0).as_string(), pair.get(1).as_string())
            else {
                return Err(js::type_error("users must map names to password strings"));
            };
            if let Some(problem) = ringmq_engine::auth::password::username_problem(&name) {
                return Err(js::type_error(&format!(
                    "users: user name `{name}`: {problem}"
                )));
            }
            users.plain.insert(name, password);
        }
    }
    if let Some(text) = js::opt_string(o, "passwordFile")? {
        let store = UserStore::parse(text.as_bytes())
            .map_err(|e| js::error(&format!("passwordFile: {e}"), None))?;
        users.file = Some(store);
    }
    Ok(users)
}
