//! `[[listener]]`: where clients connect, one table per listening address,
//! each with its own protocol, socket options and optional `tls` table.
//!
//! ```toml
//! [[listener]]
//! bind = "0.0.0.0:8883"
//! [listener.tls]
//! cert_file = "/etc/ringmq/server.pem"
//! key_file = "/etc/ringmq/server.key"
//! ```
//!
//! `protocol` is `mqtt` (TCP, TLS with a `tls` table), `ws` (WebSocket,
//! wss with a `tls` table) or `http` (the `/metrics`, `/health` and
//! `/ready` endpoints, module `http`; plain HTTP only).
//!
//! A file that sets `listener` replaces the built-in listener list as a
//! whole; a key a `[[listener]]` table omits takes the value of the first
//! built-in listener (`config/ringmq.toml`). The old single `[listener]`
//! table (`listen = [...]`, `backlog_connections`, `nodelay`) is still
//! read: it becomes one plain listener per address.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use ringmq_net::listener::ListenerOptions;
use ringmq_net::tls::{SniCertificate, TlsSettings, TlsVersion, ALPN_HTTP_1_1, ALPN_MQTT};
use ringmq_net::ws::WsSettings;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::error::ConfigError;

/// What a listener speaks; any other value is refused with the accepted
/// list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// MQTT over TCP (or over TLS with a `tls` table).
    Mqtt,
    /// MQTT over WebSocket (wss with a `tls` table).
    Ws,
    /// The operator's HTTP endpoints: `/metrics`, `/health`, `/ready`
    /// (served by the `ringmq-http` thread, not by the shards).
    Http,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Ws => "ws",
            Protocol::Http => "http",
        })
    }
}

/// One validated listener.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// `listen(2)` backlog per shard socket, in connections.
    pub backlog_connections: u32,
    /// `TCP_NODELAY` on client sockets.
    pub nodelay: bool,
    pub tls: Option<TlsListener>,
    /// `protocol = "ws"`: the WebSocket settings (`path`,
    /// `allowed_origins`, `ws_handshake_max_bytes`, `ws_frame_max_bytes`).
    pub ws: Option<WsSettings>,
}

/// A listener's `tls` table, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsListener {
    pub settings: TlsSettings,
    /// Use the client certificate's subject CN (or first SAN) as the MQTT
    /// user name; the certificate then stands for the password.
    pub use_identity_as_username: bool,
}

impl Listener {
    /// How each shard's socket for this listener is made.
    pub fn options(&self) -> ListenerOptions {
        ListenerOptions {
            backlog_connections: self.backlog_connections,
            reuse_port: true,
            reuse_address: true,
        }
    }

    /// This listener as a `[[listener]]` table (`check-config`).
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("bind".into(), self.bind.to_string().into());
        t.insert("protocol".into(), self.protocol.to_string().into());
        t.insert(
            "backlog_connections".into(),
            i64::from(self.backlog_connections).into(),
        );
        t.insert("nodelay".into(), self.nodelay.into());
        if let Some(ws) = &self.ws {
            t.insert("path".into(), ws.path.clone().into());
            let origins: Vec<toml::Value> = ws
                .allowed_origins
                .iter()
                .map(|o| o.clone().into())
                .collect();
            t.insert("allowed_origins".into(), origins.into());
            t.insert(
                "ws_handshake_max_bytes".into(),
                i64::try_from(ws.handshake_max_bytes)
                    .unwrap_or(i64::MAX)
                    .into(),
            );
            t.insert(
                "ws_frame_max_bytes".into(),
                i64::try_from(ws.frame_max_bytes).unwrap_or(i64::MAX).into(),
            );
        }
        if let Some(tls) = &self.tls {
            let s = &tls.settings;
            let path = |p: &std::path::Path| toml::Value::from(p.display().to_string());
            let mut x = toml::Table::new();
            x.insert("cert_file".into(), path(&s.cert_file));
            x.insert("key_file".into(), path(&s.key_file));
            if let Some(ca) = &s.client_ca_file {
                x.insert("client_ca_file".into(), path(ca));
            }
            x.insert("require_client_cert".into(), s.require_client_cert.into());
            x.insert(
                "use_identity_as_username".into(),
                tls.use_identity_as_username.into(),
            );
            let versions: Vec<toml::Value> =
                s.versions.iter().map(|v| v.to_string().into()).collect();
            x.insert("versions".into(), versions.into());
            let sni: Vec<toml::Value> = s
                .sni
                .iter()
                .map(|c| {
                    let mut e = toml::Table::new();
                    let names: Vec<toml::Value> =
                        c.server_names.iter().map(|n| n.clone().into()).collect();
                    e.insert("server_names".into(), names.into());
                    e.insert("cert_file".into(), path(&c.cert_file));
                    e.insert("key_file".into(), path(&c.key_file));
                    toml::Value::Table(e)
                })
                .collect();
            if !sni.is_empty() {
                x.insert("sni".into(), sni.into());
            }
            t.insert("tls".into(), x.into());
        }
        t
    }

    /// `mqtt`, `mqtts`, `ws` or `wss` and the address, for logs.
    pub fn describe(&self) -> String {
        let scheme = match (self.protocol, self.tls.is_some()) {
            (Protocol::Mqtt, false) => "mqtt",
            (Protocol::Mqtt, true) => "mqtts",
            (Protocol::Ws, false) => "ws",
            (Protocol::Ws, true) => "wss",
            (Protocol::Http, _) => "http",
        };
        format!("{scheme}://{}", self.bind)
    }
}

/// One `[[listener]]` table as written (every key optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerPartial {
    bind: Option<String>,
    protocol: Option<Protocol>,
    backlog_connections: Option<u32>,
    nodelay: Option<bool>,
    tls: Option<TlsPartial>,
    path: Option<String>,
    allowed_origins: Option<Vec<String>>,
    ws_handshake_max_bytes: Option<usize>,
    ws_frame_max_bytes: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsPartial {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    require_client_cert: bool,
    #[serde(default)]
    use_identity_as_username: bool,
    versions: Option<Vec<VersionName>>,
    #[serde(default)]
    sni: Vec<SniPartial>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
enum VersionName {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SniPartial {
    server_names: Vec<String>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// The old `[listener]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LegacyPartial {
    listen: Option<Vec<String>>,
    backlog_connections: Option<u32>,
    nodelay: Option<bool>,
}

/// The `listener` key of one file: an array of tables, or the old table.
#[derive(Clone, Debug)]
pub(super) enum ListenersPartial {
    List(Vec<ListenerPartial>),
    Legacy(LegacyPartial),
}

impl<'de> Deserialize<'de> for ListenersPartial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = ListenersPartial;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[[listener]] tables (or the old [listener] table)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(ListenersPartial::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                LegacyPartial::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ListenersPartial::Legacy)
            }
        }
        deserializer.deserialize_any(Either)
    }
}

impl ListenersPartial {
    /// The list this layer stands for, `base` being the layer below (the
    /// built-in list, already resolved).
    pub(super) fn over(self, base: Vec<ListenerPartial>) -> Vec<ListenerPartial> {
        match self {
            ListenersPartial::List(list) => list,
            ListenersPartial::Legacy(old) => {
                let template = base.first().cloned().unwrap_or_default();
                let entry = |bind: Option<String>, from: &ListenerPartial| ListenerPartial {
                    bind: bind.or_else(|| from.bind.clone()),
                    protocol: Some(Protocol::Mqtt),
                    backlog_connections: old.backlog_connections.or(from.backlog_connections),
                    nodelay: old.nodelay.or(from.nodelay),
                    ..ListenerPartial::default()
                };
                match &old.listen {
                    Some(addrs) => addrs
                        .iter()
                        .map(|a| entry(Some(a.clone()), &template))
                        .collect(),
                    None => base.iter().map(|b| entry(None, b)).collect(),
                }
            }
        }
    }
}

/// `--listen ADDR` entries: plain listeners, other keys from the template.
pub(super) fn plain(addrs: &[String]) -> Vec<ListenerPartial> {
    addrs
        .iter()
        .map(|a| ListenerPartial {
            bind: Some(a.clone()),
            ..ListenerPartial::default()
        })
        .collect()
}

fn invalid(key: String, value: impl fmt::Display, expected: impl Into<String>) -> ConfigError {
    ConfigError::InvalidAt {
        key,
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// Validates the merged list; `template` is the first built-in listener
/// (the defaults of omitted keys).
pub(super) fn complete(
    list: Vec<ListenerPartial>,
    template: &ListenerPartial,
) -> Result<Vec<Listener>, ConfigError> {
    if list.is_empty() {
        return Err(invalid(
            "listener".into(),
            "[]",
            "at least one [[listener]] table with a `bind` address",
        ));
    }
    let missing = |key: &'static str| ConfigError::MissingDefault { key };
    let mut listeners = Vec::with_capacity(list.len());
    for (i, entry) in list.into_iter().enumerate() {
        let at = |key: &str| format!("listener[{i}].{key}");
        let Some(bind_text) = entry.bind else {
            return Err(invalid(
                at("bind"),
                "(missing)",
                "\"IP:PORT\", e.g. \"127.0.0.1:1883\"",
            ));
        };
        let bind = bind_text.trim().parse::<SocketAddr>().map_err(|_| {
            invalid(
                at("bind"),
                format!("{bind_text:?}"),
                "\"IP:PORT\", e.g. \"127.0.0.1:1883\" or \"[::]:1883\"",
            )
        })?;
        let backlog_connections = entry
            .backlog_connections
            .or(template.backlog_connections)
            .ok_or(missing("listener.backlog_connections"))?;
        if backlog_connections == 0 {
            return Err(invalid(at("backlog_connections"), 0, "at least 1"));
        }
        let protocol = entry
            .protocol
            .or(template.protocol)
            .ok_or(missing("listener.protocol"))?;
        let tls = match entry.tls {
            None => None,
            Some(t) => Some(complete_tls(t, protocol, &at)?),
        };
        if protocol == Protocol::Http && tls.is_some() {
            return Err(invalid(
                at("tls"),
                "(set)",
                "no tls table on an http listener (HTTPS is not supported; bind it to \
                 127.0.0.1 or put a TLS proxy in front)",
            ));
        }
        let ws = match protocol {
            Protocol::Mqtt | Protocol::Http => {
                for (key, set) in [
                    ("path", entry.path.is_some()),
                    ("allowed_origins", entry.allowed_origins.is_some()),
                    (
                        "ws_handshake_max_bytes",
                        entry.ws_handshake_max_bytes.is_some(),
                    ),
                    ("ws_frame_max_bytes", entry.ws_frame_max_bytes.is_some()),
                ] {
                    if set {
                        return Err(invalid(at(key), "(set)", "only with protocol = \"ws\""));
                    }
                }
                None
            }
            Protocol::Ws => {
                let d = WsSettings::default();
                let path = entry.path.unwrap_or(d.path);
                if !path.starts_with('/') {
                    return Err(invalid(
                        at("path"),
                        format!("{path:?}"),
                        "a path starting with /",
                    ));
                }
                let handshake_max_bytes = entry
                    .ws_handshake_max_bytes
                    .unwrap_or(d.handshake_max_bytes);
                if handshake_max_bytes < 256 {
                    return Err(invalid(
                        at("ws_handshake_max_bytes"),
                        handshake_max_bytes,
                        "at least 256",
                    ));
                }
                let frame_max_bytes = entry.ws_frame_max_bytes.unwrap_or(d.frame_max_bytes);
                if frame_max_bytes < 2 {
                    return Err(invalid(
                        at("ws_frame_max_bytes"),
                        frame_max_bytes,
                        "at least 2",
                    ));
                }
                Some(WsSettings {
                    path,
                    allowed_origins: entry.allowed_origins.unwrap_or_default(),
                    handshake_max_bytes,
                    frame_max_bytes,
                })
            }
        };
        listeners.push(Listener {
            bind,
            protocol,
            ws,
            backlog_connections,
            nodelay: entry
                .nodelay
                .or(template.nodelay)
                .ok_or(missing("listener.nodelay"))?,
            tls,
        });
    }
    for (i, a) in listeners.iter().enumerate() {
        if let Some(j) = listeners[..i]
            .iter()
            .position(|b| b.bind == a.bind && a.bind.port() != 0)
        {
            return Err(invalid(
                format!("listener[{i}].bind"),
                a.bind,
                format!("an address not already used by listener[{j}]"),
            ));
        }
    }
    Ok(listeners)
}

fn complete_tls(
    t: TlsPartial,
    protocol: Protocol,
    at: &dyn Fn(&str) -> String,
) -> Result<TlsListener, ConfigError> {
    if t.require_client_cert && t.client_ca_file.is_none() {
        return Err(invalid(
            at("tls.require_client_cert"),
            true,
            "a `client_ca_file` to check client certificates against",
        ));
    }
    if t.use_identity_as_username && !t.require_client_cert {
        return Err(invalid(
            at("tls.use_identity_as_username"),
            true,
            "`require_client_cert = true` (the user name comes from the client certificate)",
        ));
    }
    let versions = match t.versions {
        None => vec![TlsVersion::Tls12, TlsVersion::Tls13],
        Some(v) if v.is_empty() => {
            return Err(invalid(at("tls.versions"), "[]", "\"1.2\" and/or \"1.3\""))
        }
        Some(v) => v
            .into_iter()
            .map(|v| match v {
                VersionName::Tls12 => TlsVersion::Tls12,
                VersionName::Tls13 => TlsVersion::Tls13,
            })
            .collect(),
    };
    let mut sni = Vec::with_capacity(t.sni.len());
    for (k, s) in t.sni.into_iter().enumerate() {
        if s.server_names.is_empty() {
            return Err(invalid(
                at(&format!("tls.sni[{k}].server_names")),
                "[]",
                "at least one DNS name, e.g. [\"broker.example.com\"]",
            ));
        }
        sni.push(SniCertificate {
            server_names: s.server_names,
            cert_file: s.cert_file,
            key_file: s.key_file,
        });
    }
    Ok(TlsListener {
        settings: TlsSettings {
            cert_file: t.cert_file,
            key_file: t.key_file,
            client_ca_file: t.client_ca_file,
            require_client_cert: t.require_client_cert,
            versions,
            sni,
            alpn: alpn_for(protocol),
        },
        use_identity_as_username: t.use_identity_as_username,
    })
}

/// The ALPN protocols a TLS listener accepts (RFC 7301): `mqtt` on MQTT
/// listeners; on WebSocket listeners also `http/1.1`, which browsers offer
/// for `wss://` (a client offering neither is refused, one offering no ALPN
/// at all is accepted).
fn alpn_for(protocol: Protocol) -> Vec<Vec<u8>> {
    match protocol {
        Protocol::Mqtt | Protocol::Http => vec![ALPN_MQTT.to_vec()],
        Protocol::Ws => vec![ALPN_HTTP_1_1.to_vec(), ALPN_MQTT.to_vec()],
    }
}
