//! TLS listeners in the runtime: each TLS listener's files are loaded on
//! the main thread at start-up ([`load_all`]), reloaded by a SIGHUP hook
//! ([`register_reload`]), and read by the shards through a
//! [`Cached`](crate::reload::Cached) view when they accept a connection.
//! The TLS work itself is `ringmq_net::tls` (a byte transform inside the
//! connection driver).

use std::path::PathBuf;
use std::sync::Arc;

use ringmq_net::tls::{self, LoadedTls};

use crate::config::{Config, Listener};
use crate::reload::{Hooks, Outcome, Reloadable};

/// A TLS listener's state shared by the main thread and every shard.
#[derive(Clone)]
pub struct SharedTls {
    /// The current certificates and settings; replaced by a reload.
    pub files: Arc<Reloadable<LoadedTls>>,
    /// `tls.use_identity_as_username`.
    pub use_identity_as_username: bool,
}

/// Loads the files of every TLS listener, in listener order (`None` for a
/// plain listener). The error names the listener and the file.
pub fn load_all(config: &Config) -> Result<Vec<Option<SharedTls>>, String> {
    config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| {
            let Some(t) = &listener.tls else {
                return Ok(None);
            };
            let loaded = tls::load(&t.settings)
                .map_err(|e| format!("listener[{i}] ({}): {e}", listener.describe()))?;
            Ok(Some(SharedTls {
                files: Reloadable::new(loaded),
                use_identity_as_username: t.use_identity_as_username,
            }))
        })
        .collect()
}

/// Registers the reload hook of a TLS listener: re-read its files; store
/// them if they changed and are valid; keep the old ones otherwise.
pub fn register_reload(hooks: &mut Hooks, listener: &Listener, shared: &SharedTls) {
    let Some(t) = &listener.tls else { return };
    let settings = t.settings.clone();
    let files = shared.files.clone();
    hooks.register(
        format!("TLS certificates of {}", listener.describe()),
        move || match tls::load(&settings) {
            Err(e) => Outcome::Refused(e.to_string()),
            Ok(new) => {
                let changed = new.changed_files(&files.load());
                if changed.is_empty() {
                    return Outcome::Unchanged;
                }
                files.store(new);
                Outcome::Changed(format!("files changed: {}", list(&changed)))
            }
        },
    );
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
