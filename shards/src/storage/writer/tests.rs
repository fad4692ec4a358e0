use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::storage::record;
use ringmq_engine::persist::{Keyspace, PersistOp};

fn put(key: &str, value: &str) -> PersistOp {
    PersistOp {
        keyspace: Keyspace::Retained,
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
    }
}

/// Spins (the tests have no runtime) until a completion arrives.
fn wait(store: &ShardStore) -> Done {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(done) = store.try_next() {
            return done;
        }
        assert!(Instant::now() < deadline, "no completion within 10 s");
        thread::sleep(Duration::from_millis(1));
    }
}

fn stored(store: &Store, key: &str) -> Option<Vec<u8>> {
    let v = store.part(Keyspace::Retained).get(key).unwrap()?;
    Some(
        record::open("retained", key.as_bytes(), &v)
            .unwrap()
            .to_vec(),
    )
}

#[test]
fn batches_complete_in_order_and_land_in_the_store_in_every_mode() {
    for fsync in [Fsync::Always, Fsync::Interval, Fsync::Never] {
        let dir = crate::storage::scratch_dir("modes");
        let store = Arc::new(Store::open(&dir).unwrap());
        let writer = Writer::start(store.clone(), fsync, 20).unwrap();
        let shard = writer.for_shard(0);
        for id in 1..=20u64 {
            assert!(shard.has_room() || shard.in_flight() > 0);
            shard.submit(PersistBatch {
                id,
                ops: vec![
                    put(&format!("t/{id}"), &format!("v{id}")),
                    put("last", &id.to_string()),
                ],
            });
            if !shard.has_room() {
                let done = wait(&shard);
                assert_eq!(done.result, Ok(()));
            }
        }
        let mut ids = Vec::new();
        while shard.in_flight() > 0 {
            ids.push(wait(&shard).id);
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(
            stored(&store, "last").as_deref(),
            Some(&b"20"[..]),
            "{fsync:?}"
        );
        assert_eq!(stored(&store, "t/7").as_deref(), Some(&b"v7"[..]));
        drop(shard);
        assert!(writer.finish(Duration::from_secs(10)));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_batch_with_a_delete_removes_the_key() {
    let dir = crate::storage::scratch_dir("delete");
    let store = Arc::new(Store::open(&dir).unwrap());
    let writer = Writer::start(store.clone(), Fsync::Always, 1000).unwrap();
    let shard = writer.for_shard(1);
    shard.submit(PersistBatch {
        id: 1,
        ops: vec![put("a", "1"), put("b", "2")],
    });
    shard.submit(PersistBatch {
        id: 2,
        ops: vec![PersistOp {
            keyspace: Keyspace::Retained,
            key: Bytes::from_static(b"a"),
            value: None,
        }],
    });
    assert_eq!(wait(&shard).id, 1);
    assert_eq!(wait(&shard).id, 2);
    assert_eq!(stored(&store, "a"), None);
    assert_eq!(stored(&store, "b").as_deref(), Some(&b"2"[..]));
    drop(shard);
    assert!(writer.finish(Duration::from_secs(10)));
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_batch_for_a_stopped_writer_fails_instead_of_hanging() {
    let dir = crate::storage::scratch_dir("gone");
    let store = Arc::new(Store::open(&dir).unwrap());
    let writer = Writer::start(store.clone(), Fsync::Never, 1000).unwrap();
    let shard = writer.for_shard(0);
    // Stop the thread by closing a copy of its queue from the inside: drop
    // every sender but the shard's, then make the shard's fail by ending
    // the receiver (the thread exits once the queue is closed).
    let Writer { jobs, thread } = writer;
    drop(jobs);
    // The shard still holds a sender, so the thread waits; submit one
    // batch to see it served, then close the shard's end too.
    shard.submit(PersistBatch {
        id: 1,
        ops: vec![put("x", "1")],
    });
    assert_eq!(wait(&shard).result, Ok(()));
    let ShardStore {
        jobs: shard_jobs, ..
    } = shard;
    drop(shard_jobs);
    thread.join().unwrap();
    // A new handle whose queue has no receiver any more.
    let (dead_tx, dead_rx) = mpsc::channel::<Job>();
    drop(dead_rx);
    let (reply_tx, reply_rx) = mpsc::channel();
    let orphan = ShardStore {
        shard: 0,
        jobs: dead_tx,
        reply_tx,
        reply_rx,
        wake: Arc::new(AtomicWaker::new()),
        in_flight: Cell::new(0),
    };
    orphan.submit(PersistBatch {
        id: 2,
        ops: vec![put("y", "1")],
    });
    let done = wait(&orphan);
    assert_eq!((done.id, done.result), (2, Err(PersistFailure::Io)));
    assert_eq!(orphan.in_flight(), 0);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
