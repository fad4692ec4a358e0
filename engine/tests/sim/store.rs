//! A fake durable store for the simulation: it keeps the records of every
//! shard in memory and completes each persist batch as its mode says
//! (written, failed, or held until the test completes it).

use std::collections::BTreeMap;

use bytes::Bytes;
use ringmq_engine::broker::{owner_shard, Broker};
use ringmq_engine::persist::{
    split_client_key, Keyspace, PersistBatch, PersistFailure, RestoreError,
};

/// What the store does with the next batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Written at once (applied, then `handle_persisted(Ok)`).
    #[default]
    Write,
    /// Refused at once with this failure (nothing applied).
    Fail(PersistFailure),
    /// Kept in `held` until `complete` (a slow disk, or one that never answers).
    Hold,
}

#[derive(Default)]
pub struct FakeStore {
    pub mode: Mode,
    /// What is on "disk".
    pub records: BTreeMap<(Keyspace, Bytes), Bytes>,
    /// Batches taken and not answered yet: (shard, batch).
    pub held: Vec<(usize, PersistBatch)>,
    /// Batches taken so far.
    pub batches: usize,
}

impl FakeStore {
    fn apply(&mut self, batch: &PersistBatch) {
        for op in &batch.ops {
            let key = (op.keyspace, op.key.clone());
            match &op.value {
                Some(v) => {
                    self.records.insert(key, v.clone());
                }
                None => {
                    self.records.remove(&key);
                }
            }
        }
    }

    /// Takes `shard`'s batch, if any, and treats it per `mode`.
    pub fn take(&mut self, shard: usize, brokers: &mut [Broker], now_ms: u64) -> bool {
        let Some(batch) = brokers[shard].take_persist_batch() else {
            return false;
        };
        self.batches += 1;
        match self.mode {
            Mode::Write => {
                self.apply(&batch);
                brokers[shard].handle_persisted(batch.id, Ok(()), now_ms);
            }
            Mode::Fail(f) => brokers[shard].handle_persisted(batch.id, Err(f), now_ms),
            Mode::Hold => self.held.push((shard, batch)),
        }
        true
    }

    /// Completes the held batches of `shard` (all shards: `None`) with
    /// `result`, in order; the broker's events are left for `Sim::pump`.
    pub fn complete(
        &mut self,
        shard: Option<usize>,
        result: Result<(), PersistFailure>,
        brokers: &mut [Broker],
        now_ms: u64,
    ) {
        let held = std::mem::take(&mut self.held);
        for (s, batch) in held {
            if shard.is_some_and(|x| x != s) {
                self.held.push((s, batch));
                continue;
            }
            if result.is_ok() {
                self.apply(&batch);
            }
            brokers[s].handle_persisted(batch.id, result, now_ms);
        }
    }

    /// Feeds every record to its shard (retained ones to all), then
    /// `finish_restore`. Returns the records that were refused.
    pub fn restore_into(&mut self, brokers: &mut [Broker], now_ms: u64) -> Vec<RestoreError> {
        let shards = brokers.len() as u16;
        let mut errors = Vec::new();
        for ((keyspace, key), value) in &self.records {
            let owners: Vec<usize> = match split_client_key(*keyspace, key) {
                Ok((client_id, _)) => vec![owner_shard(client_id, shards) as usize],
                Err(_) => (0..brokers.len()).collect(),
            };
            for shard in owners {
                if let Err(e) = brokers[shard].restore(*keyspace, key, value, now_ms) {
                    errors.push(e);
                }
            }
        }
        for b in brokers.iter_mut() {
            b.finish_restore(now_ms);
        }
        errors
    }

    /// Keys stored in `keyspace`.
    pub fn keys(&self, keyspace: Keyspace) -> Vec<Bytes> {
        self.records
            .keys()
            .filter(|(k, _)| *k == keyspace)
            .map(|(_, key)| key.clone())
            .collect()
    }
}
