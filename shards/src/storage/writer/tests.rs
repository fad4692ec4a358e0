use std::sync::atomic::Ordering;
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

/// The value of retained key `key` in the (closed) store under `dir`.
fn stored_in(dir: &std::path::Path, key: &str) -> Option<Vec<u8>> {
    let store = Store::open(dir).unwrap();
    stored(&store, key)
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
        let store = Store::open(&dir).unwrap();
        let writer = Writer::start(store, fsync, 20).unwrap();
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
        drop(shard);
        assert!(writer.finish(Duration::from_secs(10)));
        let store = Store::open(&dir).unwrap();
        assert_eq!(
            stored(&store, "last").as_deref(),
            Some(&b"20"[..]),
            "{fsync:?}"
        );
        assert_eq!(stored(&store, "t/7").as_deref(), Some(&b"v7"[..]));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_batch_with_a_delete_removes_the_key() {
    let dir = crate::storage::scratch_dir("delete");
    let store = Store::open(&dir).unwrap();
    let writer = Writer::start(store, Fsync::Always, 1000).unwrap();
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
    drop(shard);
    assert!(writer.finish(Duration::from_secs(10)));
    assert_eq!(stored_in(&dir, "a"), None);
    assert_eq!(stored_in(&dir, "b").as_deref(), Some(&b"2"[..]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_batch_for_a_stopped_writer_fails_instead_of_hanging() {
    let dir = crate::storage::scratch_dir("gone");
    let store = Store::open(&dir).unwrap();
    let writer = Writer::start(store, Fsync::Never, 1000).unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
}

fn del(key: &str) -> PersistOp {
    PersistOp {
        keyspace: Keyspace::Retained,
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: None,
    }
}

/// A job as the writer receives it (its reply goes nowhere).
fn job(id: u64, ops: Vec<PersistOp>) -> Job {
    let (reply, _) = mpsc::channel();
    Job {
        shard: 0,
        batch: PersistBatch { id, ops },
        reply,
        wake: Arc::new(AtomicWaker::new()),
    }
}

fn state(store: Store, fsync: Fsync) -> State {
    State {
        slot: Some(Slot::Open(store)),
        fsync,
        interval: Duration::from_millis(20),
        unsynced_since: None,
        since_sync: Vec::new(),
        broken: None,
        pending: BTreeMap::new(),
    }
}

/// Makes the next attempt to reopen due now.
fn due_now(s: &mut State) {
    if let Some(b) = &mut s.broken {
        b.next_try = Instant::now();
    }
}

#[test]
fn a_failed_write_refuses_until_the_store_is_reopened_then_writes_everything_kept() {
    let dir = crate::storage::scratch_dir("failed-write");
    let store = Store::open(&dir).unwrap();
    let faults = store.faults();
    let mut s = state(store, Fsync::Always);
    faults.writes.store(1, Ordering::SeqCst);
    let first = s.commit(&[job(1, vec![put("a", "1"), put("x", "1")])]);
    assert_eq!(first, Err(PersistFailure::DiskFull));
    assert!(
        matches!(s.slot, Some(Slot::Closed(_))),
        "closed after a failure"
    );
    // Before the first retry is due: refused at once, kept in order.
    let second = s.commit(&[job(2, vec![del("x"), put("b", "2")])]);
    assert_eq!(second, Err(PersistFailure::DiskFull));
    assert_eq!(s.broken.as_ref().map(|b| b.refused), Some(1));
    assert_eq!(s.pending.len(), 3, "a, x (deleted), b");
    // The reopen fails once: refused, and the next attempt waits longer.
    faults.opens.store(1, Ordering::SeqCst);
    due_now(&mut s);
    assert!(s.commit(&[job(3, vec![put("c", "3")])]).is_err());
    let backoff = s.broken.as_ref().map(|b| b.backoff);
    assert_eq!(backoff, Some(Duration::from_millis(2 * RETRY_FIRST_MS)));
    // The next attempt works: this batch and everything kept are written.
    due_now(&mut s);
    assert_eq!(s.commit(&[job(4, vec![put("d", "4")])]), Ok(()));
    assert!(s.broken.is_none() && s.pending.is_empty());
    assert_eq!(s.commit(&[job(5, vec![put("e", "5")])]), Ok(()));
    s.finish();
    drop(s);
    let store = Store::open(&dir).unwrap();
    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")] {
        assert_eq!(
            stored(&store, key).as_deref(),
            Some(value.as_bytes()),
            "{key}"
        );
    }
    assert_eq!(stored(&store, "x"), None, "the later delete wins");
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_fsync_keeps_what_was_written_since_the_last_one_and_rewrites_it() {
    let dir = crate::storage::scratch_dir("failed-fsync");
    let store = Store::open(&dir).unwrap();
    let faults = store.faults();
    let mut s = state(store, Fsync::Interval);
    assert_eq!(s.commit(&[job(1, vec![put("a", "1")])]), Ok(()));
    s.unsynced_since = Some(Instant::now() - Duration::from_secs(1));
    s.periodic_sync();
    assert!(s.since_sync.is_empty(), "synced");
    assert_eq!(s.commit(&[job(2, vec![put("b", "2")])]), Ok(()));
    assert_eq!(s.since_sync.len(), 1);
    faults.syncs.store(1, Ordering::SeqCst);
    s.unsynced_since = Some(Instant::now() - Duration::from_secs(1));
    s.periodic_sync();
    let failure = s.broken.as_ref().map(|b| b.failure);
    assert_eq!(failure, Some(PersistFailure::Io));
    let kept: Vec<_> = s.pending.keys().map(|(_, k)| k.clone()).collect();
    assert_eq!(
        kept,
        vec![Bytes::from_static(b"b")],
        "only what the failed fsync covered"
    );
    assert_eq!(
        s.commit(&[job(3, vec![put("c", "3")])]),
        Err(PersistFailure::Io)
    );
    due_now(&mut s);
    assert_eq!(s.commit(&[job(4, vec![put("d", "4")])]), Ok(()));
    s.finish();
    drop(s);
    for key in ["a", "b", "c", "d"] {
        assert!(stored_in(&dir, key).is_some(), "{key}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_store_recovers_by_itself_and_later_batches_succeed() {
    let dir = crate::storage::scratch_dir("recovers");
    let store = Store::open(&dir).unwrap();
    let faults = store.faults();
    faults.syncs.store(1, Ordering::SeqCst);
    let writer = Writer::start(store, Fsync::Always, 1000).unwrap();
    let shard = writer.for_shard(0);
    shard.submit(PersistBatch {
        id: 1,
        ops: vec![put("first", "1")],
    });
    assert_eq!(wait(&shard).result, Err(PersistFailure::Io));
    // No batch meanwhile: the writer reopens the store on its own timer.
    thread::sleep(Duration::from_millis(3 * RETRY_FIRST_MS));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 2;
    loop {
        shard.submit(PersistBatch {
            id,
            ops: vec![put("probe", &id.to_string())],
        });
        if wait(&shard).result.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the store never recovered");
        thread::sleep(Duration::from_millis(RETRY_FIRST_MS));
        id += 1;
    }
    drop(shard);
    assert!(writer.finish(Duration::from_secs(10)));
    assert_eq!(stored_in(&dir, "first").as_deref(), Some(&b"1"[..]));
    std::fs::remove_dir_all(&dir).unwrap();
}
