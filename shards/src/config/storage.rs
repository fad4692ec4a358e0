//! `[storage]`: the choice between memory and disk, and its checks.

use serde::{Deserialize, Serialize};

use super::{bounds, in_range, invalid, ConfigError, Storage};

/// `storage.fsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Always,
    Interval,
    Never,
}

/// `storage.storage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// Nothing survives a restart.
    Memory,
    /// Sessions, queues, QoS state and retained messages in `data_dir`.
    Disk,
}

impl Storage {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            "storage.fsync_interval_ms",
            self.fsync_interval_ms,
            bounds::FSYNC_INTERVAL_MS,
        )?;
        if self.storage == StorageMode::Disk && self.data_dir.trim().is_empty() {
            return Err(invalid(
                "storage.data_dir",
                "\"\"",
                "a directory for the store (created if missing) when storage.storage = \"disk\"",
            ));
        }
        Ok(())
    }
}
