//! Start-up: read every stored record once, check it, and sort it to the
//! shards that load it: Sessions / Messages / InboundQos2 to the owner of
//! their client id under the *current* shard count (so a changed shard
//! count moves sessions to their new owners), Retained to every shard.
//! A damaged record is reported with its keyspace and key and skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjall::PartitionHandle;

use super::db::Store;
use super::record::{self, show_key, Route};
use ringmq_engine::persist::Keyspace;

/// One checked record.
#[derive(Clone, Debug)]
pub struct Record {
    pub keyspace: Keyspace,
    pub key: Bytes,
    pub value: Bytes,
}

/// Counts of one keyspace.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpaceCount {
    pub records: u64,
    /// Keys plus values, as stored (checksums included).
    pub bytes: u64,
    pub damaged: u64,
}

/// Every record, sorted to the shards.
#[derive(Debug, Default)]
pub struct Recovered {
    /// By shard: that shard's sessions, messages and inbound QoS 2 ids.
    pub owned: Vec<Vec<Record>>,
    /// Every retained message (loaded by every shard).
    pub retained: Arc<Vec<Record>>,
    pub counts: [SpaceCount; 4],
    pub elapsed: Duration,
}

/// Calls `each(keyspace, key, stored value)` for every record of every
/// engine keyspace, in key order. A read error the store cannot step over
/// stops the scan with a message naming the keyspace and the last key read.
pub fn scan(store: &Store, mut each: impl FnMut(Keyspace, &[u8], &[u8])) -> Result<(), String> {
    for space in Keyspace::ALL {
        scan_part(store.part(space), space, &mut each)?;
    }
    Ok(())
}

fn scan_part(
    part: &PartitionHandle,
    space: Keyspace,
    each: &mut impl FnMut(Keyspace, &[u8], &[u8]),
) -> Result<(), String> {
    let mut last: Option<Vec<u8>> = None;
    for kv in part.iter() {
        match kv {
            Ok((k, v)) => {
                each(space, &k, &v);
                last = Some(k.to_vec());
            }
            Err(e) => {
                let after = match &last {
                    Some(k) => format!("after key {}", show_key(k)),
                    None => "before its first key".into(),
                };
                return Err(format!(
                    "the store cannot read keyspace {} {after}: {e} (records after this point \
                     cannot be recovered; `ringmq storage export` shows what can be read)",
                    space.name()
                ));
            }
        }
    }
    Ok(())
}

fn slot(space: Keyspace) -> usize {
    match space {
        Keyspace::Sessions => 0,
        Keyspace::Messages => 1,
        Keyspace::InboundQos2 => 2,
        Keyspace::Retained => 3,
    }
}

/// Reads and sorts every record for `shard_count` shards.
pub fn load(store: &Store, shard_count: u16) -> Result<Recovered, String> {
    let start = Instant::now();
    let mut owned: Vec<Vec<Record>> = (0..shard_count).map(|_| Vec::new()).collect();
    let mut retained = Vec::new();
    let mut counts = [SpaceCount::default(); 4];
    scan(store, |space, key, stored| {
        let count = &mut counts[slot(space)];
        count.records += 1;
        count.bytes += (key.len() + stored.len()) as u64;
        let value = match record::open(space.name(), key, stored) {
            Ok(v) => v,
            Err(e) => {
                count.damaged += 1;
                tracing::error!(keyspace = space.name(), key = %show_key(key), "{e}; skipped");
                return;
            }
        };
        let rec = Record {
            keyspace: space,
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        };
        match record::route(space, key, shard_count) {
            Route::Every => retained.push(rec),
            Route::One(shard) => match owned.get_mut(usize::from(shard)) {
                Some(list) => list.push(rec),
                None => count.damaged += 1,
            },
            Route::BadKey => {
                count.damaged += 1;
                tracing::error!(
                    keyspace = space.name(),
                    key = %show_key(key),
                    "damaged record: its key does not start with a client id; skipped"
                );
            }
        }
    })?;
    Ok(Recovered {
        owned,
        retained: Arc::new(retained),
        counts,
        elapsed: start.elapsed(),
    })
}

impl Recovered {
    /// Records of a keyspace (damaged ones included).
    pub fn count(&self, space: Keyspace) -> SpaceCount {
        self.counts[slot(space)]
    }

    /// Damaged records skipped, all keyspaces.
    pub fn damaged(&self) -> u64 {
        self.counts.iter().map(|c| c.damaged).sum()
    }
}

#[cfg(test)]
// A failed unwrap in a test is that test failing.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::db::Write;
    use ringmq_engine::broker::owner_shard;

    fn client_key(id: &str, tail: &[u8]) -> Vec<u8> {
        let mut k = (id.len() as u16).to_be_bytes().to_vec();
        k.extend_from_slice(id.as_bytes());
        k.extend_from_slice(tail);
        k
    }

    #[test]
    fn records_go_to_their_owners_retained_to_all_and_damage_is_skipped() {
        let dir = std::env::temp_dir().join(format!("ringmq-recover-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        let ids: Vec<String> = (0..40).map(|i| format!("client-{i}")).collect();
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| client_key(id, &[])).collect();
        let msg_keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| client_key(id, &1u64.to_be_bytes()))
            .collect();
        let mut writes: Vec<Write> = Vec::new();
        for (k, m) in keys.iter().zip(&msg_keys) {
            writes.push((Keyspace::Sessions, k, Some(b"session")));
            writes.push((Keyspace::Messages, m, Some(b"message")));
        }
        writes.push((Keyspace::Retained, b"r/1", Some(b"one")));
        writes.push((Keyspace::Retained, b"r/2", Some(b"two")));
        store.write(writes.into_iter()).unwrap();
        // A damaged value and a key naming no client id, written raw.
        let part = store.part(Keyspace::Sessions);
        let mut bad = record::seal("sessions", &keys[0], b"session");
        bad[6] ^= 1;
        part.insert(&keys[0], bad).unwrap();
        part.insert(b"\x00\x09x", record::seal("sessions", b"\x00\x09x", b"s"))
            .unwrap();

        for shards in [1u16, 3, 4] {
            let r = load(&store, shards).unwrap();
            assert_eq!(r.owned.len(), usize::from(shards));
            assert_eq!(r.retained.len(), 2);
            assert_eq!(r.count(Keyspace::Sessions).records, 41);
            assert_eq!(r.count(Keyspace::Sessions).damaged, 2);
            assert_eq!(r.count(Keyspace::Messages).records, 40);
            assert_eq!(r.damaged(), 2);
            let mut loaded = 0;
            for (shard, list) in r.owned.iter().enumerate() {
                for rec in list {
                    let id = record::client_id_of(&rec.key).unwrap();
                    assert_eq!(usize::from(owner_shard(id, shards)), shard);
                    assert!(rec.value.as_ref() == b"session" || rec.value.as_ref() == b"message");
                    loaded += 1;
                }
            }
            // 40 messages + 39 good sessions.
            assert_eq!(loaded, 79);
        }
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
