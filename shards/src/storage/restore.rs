//! Start-up, on each shard's thread: its stored records into its engine
//! (`Broker::restore` for each, then `Broker::finish_restore`), before the
//! shard accepts connections. A record the engine refuses is reported with
//! its location and skipped.

use std::sync::Arc;
use std::time::Instant;

use ringmq_engine::broker::{Broker, ShardId};

use super::record::show_key;
use super::recover::{Record, Recovered};

/// One shard's share of the stored records.
#[derive(Default)]
pub struct ShardRecords {
    /// Sessions, messages and inbound QoS 2 ids of the clients it owns.
    pub owned: Vec<Record>,
    /// Every retained message (shared by all shards).
    pub retained: Arc<Vec<Record>>,
}

impl Recovered {
    /// Splits the records into one share per shard.
    pub fn into_shards(self) -> Vec<ShardRecords> {
        let retained = self.retained;
        self.owned
            .into_iter()
            .map(|owned| ShardRecords {
                owned,
                retained: retained.clone(),
            })
            .collect()
    }
}

/// Loads `records` into `broker` and finishes the restore; logs how many
/// and how long it took.
pub fn into_broker(broker: &mut Broker, shard: ShardId, records: ShardRecords, now_ms: u64) {
    let start = Instant::now();
    // Stored times are wall-clock: expiry counts the downtime.
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    broker.set_wall_clock(now_ms, wall_ms);
    let mut refused = 0u64;
    for r in records.owned.iter().chain(records.retained.iter()) {
        if let Err(e) = broker.restore(r.keyspace, &r.key, &r.value, now_ms) {
            refused += 1;
            tracing::error!(
                shard,
                keyspace = r.keyspace.name(),
                key = %show_key(&r.key),
                error = %e,
                "stored record refused by the engine; skipped"
            );
        }
    }
    broker.finish_restore(now_ms);
    tracing::info!(
        shard,
        owned_records = records.owned.len(),
        retained = records.retained.len(),
        refused,
        restore_ms = start.elapsed().as_millis() as u64,
        "restored"
    );
}
