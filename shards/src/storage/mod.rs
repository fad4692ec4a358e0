//! Durable storage (`[storage] storage = "disk"`, docs/storage.md): the
//! runtime side of the engine's persistence interface.
//!
//! - [`db`]: the store under `data_dir` (fjall), its lock and meta record;
//! - [`record`]: the checksum on every record, the routing of a record to
//!   the shard that loads it;
//! - [`writer`]: the writer thread, group commit, fsync modes, completions
//!   back to the shards;
//! - [`recover`]: the start-up scan;
//! - [`tool`]: `ringmq storage inspect|compact|export`.
//!
//! With `storage = "memory"` none of this runs: no store is opened, no
//! thread started, and the engine gathers no writes.

pub mod db;
pub mod record;
pub mod recover;
pub mod restore;
pub mod tool;
pub mod writer;

use std::path::Path;

pub use db::Store;
pub use recover::Recovered;
use ringmq_engine::persist::Keyspace;
pub use writer::{ShardStore, Writer};

use crate::config::{Config, StorageMode};

/// What the store held at start-up, and its writer thread (which keeps
/// the store open).
pub struct Started {
    pub recovered: Recovered,
    pub writer: Writer,
}

/// Opens the store and reads it back (`storage = "disk"`); `None` with
/// `storage = "memory"`. Logs what was recovered and how long it took.
pub fn start(config: &Config, shard_count: u16) -> Result<Option<Started>, String> {
    let s = &config.storage;
    if s.storage == StorageMode::Memory {
        return Ok(None);
    }
    let store = Store::open(Path::new(&s.data_dir))?;
    let previous = store.shard_count()?;
    let recovered = recover::load(&store, shard_count)?;
    let count = |space| recovered.count(space).records;
    tracing::info!(
        data_dir = %s.data_dir,
        sessions = count(Keyspace::Sessions),
        messages = count(Keyspace::Messages),
        inbound_qos2 = count(Keyspace::InboundQos2),
        retained = count(Keyspace::Retained),
        damaged = recovered.damaged(),
        read_ms = recovered.elapsed.as_millis() as u64,
        disk_bytes = store.disk_bytes(),
        fsync = ?s.fsync,
        "storage opened"
    );
    if let Some(before) = previous.filter(|&n| n != shard_count) {
        tracing::info!(
            before,
            now = shard_count,
            "shard count changed: sessions are loaded by their owners under the new count"
        );
    }
    if previous != Some(shard_count) {
        store.set_shard_count(shard_count)?;
    }
    let writer = Writer::start(store, s.fsync, s.fsync_interval_ms)?;
    Ok(Some(Started { recovered, writer }))
}

/// A fresh directory name under the system's temporary directory, for
/// tests (unique per process and call).
#[cfg(test)]
pub(crate) fn scratch_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "ringmq-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ))
}
