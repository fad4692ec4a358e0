//! Configuration: the embedded defaults (`config/ringmq.toml`, compiled in),
//! then an optional `--config FILE` on top (only the keys it sets), then the
//! command-line overrides; finally validated.
//!
//! Every section is `deny_unknown_fields`, and the file is deserialized
//! through `serde_path_to_error`, so a typo or a wrong type is reported with
//! the full key, the file, the line and what was expected:
//!
//! ```text
//! unknown key `limts` in config ringmq.toml (line 3), expected one of `listener`, `limits`, `runtime`, `auth`, `shared_subscriptions`
//! wrong type for key `runtime.shards` in config ringmq.toml (line 7): found string "two", expected u16
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ringmq_engine::broker::{BrokerConfig, SharedPolicy, SHARDS_MAX};
use ringmq_net::conn::DriverConfig;
use serde::{Deserialize, Serialize};

mod effective;
mod error;
mod listener;
mod storage;
mod tracing;

pub use error::ConfigError;
use error::{classify, in_range, invalid, line_of, mosquitto_line};
use listener::ListenersPartial;
pub use listener::{Listener, Protocol};
pub use storage::{Fsync, StorageMode};

/// The built-in defaults: `config/ringmq.toml`, compiled into the binary.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../config/ringmq.toml");
const EMBEDDED_ORIGIN: &str = "<built-in defaults>";

/// Defines a config section twice: the complete struct the program uses,
/// and a private "partial" twin with every field optional, which is what a
/// file deserializes into (a file need not repeat the defaults).
macro_rules! section {
    (
        $(#[$doc:meta])*
        $name:ident / $partial:ident in $key:literal {
            $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize)]
        pub struct $name {
            $( $(#[$fdoc])* pub $field: $ty, )*
        }

        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $partial {
            $( $field: Option<$ty>, )*
        }

        impl $partial {
            /// Values set here win; the others come from `base`.
            fn over(self, base: $partial) -> $partial {
                $partial { $( $field: self.$field.or(base.$field), )* }
            }

            fn complete(self) -> Result<$name, ConfigError> {
                Ok($name {
                    $( $field: self.$field.ok_or(ConfigError::MissingDefault {
                        key: concat!($key, ".", stringify!($field)),
                    })?, )*
                })
            }
        }
    };
}

section! {
    /// `[limits]`: the engine's limits (`BrokerConfig`), one key per field.
    Limits / LimitsPartial in "limits" {
        connections_max: usize,
        packet_size_max_bytes: u32,
        receive_maximum: u16,
        inflight_max: u16,
        session_queue_max_messages: usize,
        outgoing_buffer_max_bytes: usize,
        outgoing_queue_max_messages: usize,
        outgoing_queue_max_bytes: usize,
        topic_alias_max: u16,
        topic_alias_outbound_max: u16,
        topic_levels_max: usize,
        subscriptions_per_session_max: usize,
        retained_messages_max: usize,
        retained_bytes_max: usize,
        keep_alive_max_s: u16,
        session_expiry_max_s: u32,
        client_id_max_bytes: usize,
        barrier_held_max_entries: usize,
        connect_timeout_ms: u64,
    }
}

section! {
    /// `[runtime]`: shards, I/O driver, rings, buffers, shutdown, logging.
    Runtime / RuntimePartial in "runtime" {
        /// Shard count; 0 = one per allowed CPU (at most `SHARDS_MAX`).
        shards: u16,
        io: IoMode,
        pin_cores: bool,
        ring_capacity_slots: usize,
        ring_overflow_max_messages: usize,
        ring_batch_max_messages: usize,
        native_gather_us: u32,
        native_hold_us: u32,
        native_direct_fds: u32,
        read_chunk_bytes: usize,
        packet_complete_timeout_ms: u64,
        close_flush_timeout_ms: u64,
        close_linger_ms: u64,
        shutdown_grace_ms: u64,
        sys_interval_s: u32,
        log_level: String,
        /// Connect and disconnect lines at info (`connlog`).
        log_connections: bool,
        /// Rate limit of those lines, per shard.
        log_connections_max_lines_per_s: u32,
        /// `text` or `json`.
        log_format: LogFormat,
        /// Helper threads that run TLS server handshakes (started only
        /// if a listener has TLS).
        tls_handshake_threads: usize,
        /// Where to write the process id ("" = nowhere), for `ringmq reload`.
        pid_file: String,
    }
}

section! {
    /// `[auth]`: who may connect.
    Auth / AuthPartial in "auth" {
        /// Accept clients that present no user name.
        allow_anonymous: bool,
        /// ACL file (`user` / `client` sections, `topic` and `pattern`
        /// rules, see `ringmq_engine::acl`); "" = none, everything allowed.
        acl_file: String,
        /// Password file (`user:argon2id-hash` lines, see `ringmq passwd`);
        /// "" = none.
        password_file: String,
        /// Helper threads that verify passwords (never a shard).
        verify_threads: usize,
        /// Verifications waiting for a helper thread, in requests; a CONNECT
        /// that finds the queue full is refused with "server busy".
        verify_queue_max_requests: usize,
    }
}

section! {
    /// `[shared_subscriptions]`: how a `$share/{group}/...` group chooses
    /// the member of each message.
    SharedSubscriptions / SharedSubscriptionsPartial in "shared_subscriptions" {
        /// The default policy (`SharedPolicy` names: `round_robin`,
        /// `random`, `sticky`, `hash_clientid`, `hash_topic`,
        /// `least_inflight`).
        policy: String,
        /// Per-group overrides: group name -> policy.
        groups: BTreeMap<String, String>,
    }
}

section! {
    /// `[storage]`: where sessions and retained messages are kept
    /// (docs/storage.md).
    Storage / StoragePartial in "storage" {
        /// `memory` (lost on restart) or `disk`.
        storage: StorageMode,
        /// Directory of the store (`disk` only), created if missing.
        data_dir: String,
        /// When a write is made durable (`always`, `interval`, `never`).
        fsync: Fsync,
        /// `interval`: at most this long between a write and its fsync.
        fsync_interval_ms: u64,
    }
}

section! {
    /// `[tracing]`: OpenTelemetry export of routed publishes (feature
    /// `otel`; docs/operations.md, "Tracing").
    Tracing / TracingPartial in "tracing" {
        /// OTLP/HTTP traces URL; "" = tracing off.
        endpoint: String,
        service_name: String,
        sampling_ratio: f64,
        queue_max_spans: usize,
        batch_max_spans: usize,
        export_interval_ms: u64,
        export_timeout_ms: u64,
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which I/O backend the shards run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// The native io_uring shard loop where the kernel accepts its setup,
    /// else monoio on io_uring, else monoio on epoll (logged at start-up).
    Auto,
    /// monoio on io_uring, or fail at start-up.
    Uring,
    /// monoio on the portable readiness (epoll) driver.
    Epoll,
    /// The native io_uring shard loop; monoio (io_uring, else epoll) where
    /// refused, with a warning.
    Native,
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The names `--io` and `runtime.io` take (lowercase).
        let value = clap::ValueEnum::to_possible_value(self);
        f.write_str(value.as_ref().map_or("?", |v| v.get_name()))
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialConfig {
    /// `[[listener]]` (or the old `[listener]`): resolved separately, a
    /// file's list replaces the built-in one (`listener` module).
    listener: Option<ListenersPartial>,
    #[serde(default)]
    limits: LimitsPartial,
    #[serde(default)]
    runtime: RuntimePartial,
    #[serde(default)]
    auth: AuthPartial,
    #[serde(default)]
    shared_subscriptions: SharedSubscriptionsPartial,
    #[serde(default)]
    storage: StoragePartial,
    #[serde(default)]
    tracing: TracingPartial,
}

impl PartialConfig {
    fn over(self, base: PartialConfig) -> PartialConfig {
        PartialConfig {
            listener: self.listener.or(base.listener),
            limits: self.limits.over(base.limits),
            runtime: self.runtime.over(base.runtime),
            auth: self.auth.over(base.auth),
            shared_subscriptions: self.shared_subscriptions.over(base.shared_subscriptions),
            storage: self.storage.over(base.storage),
            tracing: self.tracing.over(base.tracing),
        }
    }
}

/// The whole, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `[[listener]]`, in file order (at least one).
    pub listeners: Vec<Listener>,
    pub limits: Limits,
    pub runtime: Runtime,
    pub auth: Auth,
    pub shared_subscriptions: SharedSubscriptions,
    pub storage: Storage,
    pub tracing: Tracing,
}

/// Command-line values that override the files.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub shards: Option<u16>,
    pub io: Option<IoMode>,
    pub log_level: Option<String>,
}

/// Ranges enforced on `[runtime]` and `[listener]` values (inclusive).
pub mod bounds;

fn parse_partial(text: &str, origin: &str) -> Result<PartialConfig, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = line_of(text, inner.span());
        let message = inner.message().trim().to_string();
        classify(origin, line, &path, &message)
    })
}

impl Config {
    /// The built-in defaults alone.
    #[cfg(test)]
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::load_str(None, &Overrides::default())
    }

    /// Defaults, then `file` (if any), then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = match file {
            None => None,
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    origin: origin.clone(),
                    error: e.to_string(),
                })?;
                Some((text, origin))
            }
        };
        Config::load_str(
            text.as_ref().map(|(t, o)| (t.as_str(), o.as_str())),
            overrides,
        )
    }

    /// Defaults, then `file` given as `(text, origin)`, then `overrides`.
    pub fn load_str(
        file: Option<(&str, &str)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut merged = parse_partial(EMBEDDED_DEFAULTS, EMBEDDED_ORIGIN)?;
        let mut listeners = merged
            .listener
            .take()
            .map(|l| l.over(Vec::new()))
            .unwrap_or_default();
        // Keys a [[listener]] table omits take the first built-in
        // listener's values.
        let template = listeners.first().cloned().unwrap_or_default();
        if let Some((text, origin)) = file {
            let mut layer =
                parse_partial(text, origin).map_err(|e| match mosquitto_line(text) {
                    Some((line, text)) => ConfigError::Mosquitto {
                        inner: Box::new(e),
                        line,
                        text,
                    },
                    None => e,
                })?;
            if let Some(l) = layer.listener.take() {
                listeners = l.over(listeners);
            }
            merged = layer.over(merged);
        }
        if !overrides.listen.is_empty() {
            listeners = listener::plain(&overrides.listen);
        }
        merged.runtime.shards = overrides.shards.or(merged.runtime.shards);
        merged.runtime.io = overrides.io.or(merged.runtime.io);
        if let Some(level) = &overrides.log_level {
            merged.runtime.log_level = Some(level.clone());
        }
        let listeners = listener::complete(listeners, &template)?;
        let limits = merged.limits.complete()?;
        let runtime = merged.runtime.complete()?;
        let auth = merged.auth.complete()?;
        let shared_subscriptions = merged.shared_subscriptions.complete()?;
        let storage = merged.storage.complete()?;
        let tracing = merged.tracing.complete()?;
        let config = Config {
            listeners,
            limits,
            runtime,
            auth,
            shared_subscriptions,
            storage,
            tracing,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.runtime;
        if r.shards > SHARDS_MAX {
            return Err(invalid(
                "runtime.shards",
                r.shards,
                format!("0 (one per CPU) or 1..={SHARDS_MAX}"),
            ));
        }
        in_range(
            "runtime.ring_capacity_slots",
            r.ring_capacity_slots,
            bounds::RING_CAPACITY_SLOTS,
        )?;
        in_range(
            "runtime.ring_overflow_max_messages",
            r.ring_overflow_max_messages,
            bounds::RING_OVERFLOW_MAX_MESSAGES,
        )?;
        in_range(
            "runtime.ring_batch_max_messages",
            r.ring_batch_max_messages,
            bounds::RING_BATCH_MAX_MESSAGES,
        )?;
        let gather = ("runtime.native_gather_us", r.native_gather_us);
        in_range(gather.0, gather.1, bounds::NATIVE_GATHER_US)?;
        let hold = ("runtime.native_hold_us", r.native_hold_us);
        in_range(hold.0, hold.1, bounds::NATIVE_HOLD_US)?;
        let direct = ("runtime.native_direct_fds", r.native_direct_fds);
        in_range(direct.0, direct.1, bounds::NATIVE_DIRECT_FDS)?;
        in_range(
            "runtime.read_chunk_bytes",
            r.read_chunk_bytes,
            bounds::READ_CHUNK_BYTES,
        )?;
        for (key, ms) in [
            ("runtime.shutdown_grace_ms", r.shutdown_grace_ms),
            ("runtime.close_flush_timeout_ms", r.close_flush_timeout_ms),
            ("runtime.close_linger_ms", r.close_linger_ms),
        ] {
            in_range(key, ms, bounds::TIMEOUT_MS)?;
        }
        in_range(
            "runtime.packet_complete_timeout_ms",
            r.packet_complete_timeout_ms,
            bounds::PACKET_COMPLETE_TIMEOUT_MS,
        )?;
        in_range(
            "runtime.log_connections_max_lines_per_s",
            r.log_connections_max_lines_per_s,
            bounds::LOG_CONNECTIONS_MAX_LINES_PER_S,
        )?;
        in_range(
            "runtime.tls_handshake_threads",
            r.tls_handshake_threads,
            bounds::TLS_HANDSHAKE_THREADS,
        )?;
        if tracing_subscriber::EnvFilter::try_new(&r.log_level).is_err() {
            return Err(invalid(
                "runtime.log_level",
                format!("{:?}", r.log_level),
                "error, warn, info, debug, trace or a tracing filter such as \"info,ringmq=debug\"",
            ));
        }
        let shared = &self.shared_subscriptions;
        let policies = "round_robin, random, sticky, hash_clientid, hash_topic or least_inflight";
        if SharedPolicy::from_name(&shared.policy).is_none() {
            return Err(invalid(
                "shared_subscriptions.policy",
                format!("{:?}", shared.policy),
                policies,
            ));
        }
        for policy in shared.groups.values() {
            if SharedPolicy::from_name(policy).is_none() {
                return Err(invalid(
                    "shared_subscriptions.groups",
                    format!("{policy:?}"),
                    policies,
                ));
            }
        }
        let l = &self.limits;
        if l.connections_max == 0 {
            return Err(invalid("limits.connections_max", 0, "at least 1"));
        }
        in_range(
            "limits.packet_size_max_bytes",
            l.packet_size_max_bytes,
            bounds::PACKET_SIZE_MAX_BYTES,
        )?;
        if l.receive_maximum == 0 {
            return Err(invalid(
                "limits.receive_maximum",
                0,
                "1..=65535 (0 is a protocol error)",
            ));
        }
        if l.inflight_max == 0 {
            return Err(invalid("limits.inflight_max", 0, "1..=65535"));
        }
        if l.barrier_held_max_entries < 2 {
            return Err(invalid(
                "limits.barrier_held_max_entries",
                l.barrier_held_max_entries,
                "at least 2 (a barrier's mark and one acknowledgement)",
            ));
        }
        let a = &self.auth;
        let certificate_auth = self
            .listeners
            .iter()
            .any(|l| l.tls.as_ref().is_some_and(|t| t.use_identity_as_username));
        if !a.allow_anonymous && a.password_file.is_empty() && !certificate_auth {
            return Err(ConfigError::Conflict {
                message: "auth.allow_anonymous = false, but no way to authenticate a client is \
                          configured: set auth.password_file (create one with `ringmq passwd -c \
                          FILE USER`), or use client certificates as identity (a listener with \
                          tls.use_identity_as_username), or set auth.allow_anonymous = true"
                    .into(),
            });
        }
        in_range(
            "auth.verify_threads",
            a.verify_threads,
            bounds::VERIFY_THREADS,
        )?;
        in_range(
            "auth.verify_queue_max_requests",
            a.verify_queue_max_requests,
            bounds::VERIFY_QUEUE_MAX_REQUESTS,
        )?;
        self.storage.validate()?;
        self.tracing.validate()
    }

    /// Shards to run: `runtime.shards`, or one per allowed CPU if 0.
    pub fn shard_count(&self, allowed_cpus: usize) -> u16 {
        match self.runtime.shards {
            0 => u16::try_from(allowed_cpus.max(1))
                .unwrap_or(SHARDS_MAX)
                .min(SHARDS_MAX),
            n => n,
        }
    }

    /// The engine's configuration (identical on every shard).
    #[allow(clippy::needless_update)]
    pub fn broker_config(&self) -> BrokerConfig {
        let l = &self.limits;
        BrokerConfig {
            connections_max: l.connections_max,
            packet_size_max_bytes: l.packet_size_max_bytes,
            allow_anonymous: self.auth.allow_anonymous,
            user_store: !self.auth.password_file.is_empty(),
            receive_maximum: l.receive_maximum,
            inflight_max: l.inflight_max,
            session_queue_max_messages: l.session_queue_max_messages,
            outgoing_buffer_max_bytes: l.outgoing_buffer_max_bytes,
            outgoing_queue_max_messages: l.outgoing_queue_max_messages,
            outgoing_queue_max_bytes: l.outgoing_queue_max_bytes,
            topic_alias_max: l.topic_alias_max,
            topic_alias_outbound_max: l.topic_alias_outbound_max,
            topic_levels_max: l.topic_levels_max,
            subscriptions_per_session_max: l.subscriptions_per_session_max,
            retained_messages_max: l.retained_messages_max,
            retained_bytes_max: l.retained_bytes_max,
            keep_alive_max_s: l.keep_alive_max_s,
            session_expiry_max_s: l.session_expiry_max_s,
            client_id_max_bytes: l.client_id_max_bytes,
            barrier_held_max_entries: l.barrier_held_max_entries,
            connect_timeout_ms: l.connect_timeout_ms,
            sys_interval_s: self.runtime.sys_interval_s,
            log_connections: self.runtime.log_connections,
            durable: self.storage.storage == StorageMode::Disk,
            // Names checked by `validate`.
            shared_policy: SharedPolicy::from_name(&self.shared_subscriptions.policy)
                .unwrap_or_default(),
            shared_group_policies: self
                .shared_subscriptions
                .groups
                .iter()
                .map(|(g, p)| (g.clone(), SharedPolicy::from_name(p).unwrap_or_default()))
                .collect(),
            // Fields the engine grows before this file learns about them
            // keep the engine's defaults.
            ..BrokerConfig::default()
        }
    }
}

impl Config {
    /// The connection driver's limits: reads of `read_chunk_bytes`, and a
    /// read buffer that holds the largest packet plus one read.
    pub fn driver_config(&self) -> DriverConfig {
        let r = &self.runtime;
        DriverConfig {
            read_chunk_bytes: r.read_chunk_bytes,
            read_buffer_max_bytes: self.read_buffer_max_bytes(),
            close_flush_timeout_ms: r.close_flush_timeout_ms,
            close_linger_ms: r.close_linger_ms,
            packet_complete_timeout_ms: r.packet_complete_timeout_ms,
        }
    }

    /// Most bytes a connection's read buffer holds: the largest packet plus
    /// one read (also the bound on a new connection's routing read).
    pub fn read_buffer_max_bytes(&self) -> usize {
        (self.limits.packet_size_max_bytes as usize).saturating_add(self.runtime.read_chunk_bytes)
    }
}

#[cfg(test)]
mod tests;
