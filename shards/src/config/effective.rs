//! `ringmq check-config`: the effective configuration printed as a TOML
//! file that reads back to the same configuration.

use serde::Serialize;

use super::{Auth, Config, Limits, Listener, Runtime, SharedSubscriptions, Storage, Tracing};

/// What `check-config` prints: the configuration as a TOML file.
#[derive(Serialize)]
struct Effective<'a> {
    listener: Vec<toml::Table>,
    limits: &'a Limits,
    runtime: &'a Runtime,
    auth: &'a Auth,
    shared_subscriptions: &'a SharedSubscriptions,
    storage: &'a Storage,
    tracing: &'a Tracing,
}

impl Config {
    /// The effective configuration as TOML (what `ringmq check-config`
    /// prints): every key, with the value in force after the defaults, the
    /// file and the flags. Read back as a `--config` file it gives the
    /// same configuration.
    pub fn to_toml(&self) -> String {
        let effective = Effective {
            listener: self.listeners.iter().map(Listener::to_toml).collect(),
            limits: &self.limits,
            runtime: &self.runtime,
            auth: &self.auth,
            shared_subscriptions: &self.shared_subscriptions,
            storage: &self.storage,
            tracing: &self.tracing,
        };
        let body = toml::to_string(&effective).unwrap_or_else(|e| {
            // Every value is a bool, a string, a map of strings or an
            // integer bounded by `validate`; this is not reached.
            format!("# cannot print the configuration as TOML: {e}\n")
        });
        format!("# ringmq effective configuration (built-in defaults, then the file, then the flags)\n{body}")
    }
}
