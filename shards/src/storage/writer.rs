//! Writes off the shards: one writer thread for the store, fed by every
//! shard, with group commit; completions go back to each shard the way
//! password verdicts do (`auth`): an mpsc reply channel plus an
//! `AtomicWaker`, so a shard never blocks on I/O.
//!
//! ```text
//!   shard: drain_events → Broker::take_persist_batch (only while fewer than
//!     IN_FLIGHT_MAX_BATCHES of its batches are in flight: meanwhile the
//!     engine keeps gathering ops, which is the shard's own group commit)
//!     └─ ShardStore::submit ──mpsc──▶ writer thread
//!   writer: wait for a batch, take everything queued (all shards), one
//!     atomic write, then per `storage.fsync`:
//!       always    fsync, then complete
//!       interval  complete, fsync once `fsync_interval_ms` after the first
//!                 unsynced write
//!       never     complete; the OS writes back when it likes
//!     reply ──mpsc──▶ the shard's inbox, AtomicWaker::wake
//!   shard's persist task: Broker::handle_persisted(id, result), drain_events
//! ```
//!
//! Every write reaches the OS (`write(2)`) before its batch completes, so
//! in every mode a completed batch survives the process being killed;
//! only `always` promises it survives a power loss (docs/storage.md).
//!
//! The queue is bounded by the in-flight limit: at most
//! `IN_FLIGHT_MAX_BATCHES` per shard.
//!
//! A failed write or fsync completes every batch of its group with
//! `PersistFailure` (logged here; the engine refuses what waited on them)
//! and the broker keeps running. The store refuses every write after a
//! failure (fjall is poisoned: what reached the disk is unknown), so the
//! writer closes it and keeps, per key, the last op not surely on disk
//! (the group, and in interval mode what was written since the last
//! fsync). Batches arriving meanwhile are refused at once and kept too.
//! After `RETRY_FIRST_MS`, doubling up to `RETRY_MAX_MS`, it reopens the
//! store (which recovers from its journal), writes everything kept and
//! fsyncs; once that works, batches are written again. Nothing is
//! acknowledged that is not written (and in `always` mode fsynced).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::task::Poll;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use ringmq_engine::broker::ShardId;

use bytes::Bytes;

use super::db::{failure_in, Lock, Store, DISK_FULL_BELOW_BYTES};
use crate::config::Fsync;
use ringmq_engine::persist::{Keyspace, PersistBatch, PersistFailure, PersistOp};

/// Batches of one shard submitted and not yet completed, at most.
pub const IN_FLIGHT_MAX_BATCHES: usize = 2;

/// A batch on its way to the writer.
struct Job {
    shard: ShardId,
    batch: PersistBatch,
    reply: Sender<Done>,
    wake: Arc<AtomicWaker>,
}

/// A batch's outcome on its way back to its shard.
#[derive(Debug)]
pub struct Done {
    pub id: u64,
    pub result: Result<(), PersistFailure>,
}

/// The writer thread; dropping every [`ShardStore`] and this ends it
/// (after a last fsync).
pub struct Writer {
    jobs: Sender<Job>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread over `store`.
    pub fn start(store: Store, fsync: Fsync, interval_ms: u64) -> Result<Writer, String> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("ringmq-storage".into())
            .spawn(move || run(store, &rx, fsync, Duration::from_millis(interval_ms)))
            .map_err(|e| format!("cannot spawn the storage writer thread: {e}"))?;
        Ok(Writer { jobs, thread })
    }

    /// A shard's end of the writer.
    pub fn for_shard(&self, shard: ShardId) -> ShardStore {
        let (reply_tx, reply_rx) = mpsc::channel();
        ShardStore {
            shard,
            jobs: self.jobs.clone(),
            reply_tx,
            reply_rx,
            wake: Arc::new(AtomicWaker::new()),
            in_flight: Cell::new(0),
        }
    }

    /// Closes the queue and waits up to `limit` for the writer to finish
    /// what was queued and sync; `false` if it did not in time.
    pub fn finish(self, limit: Duration) -> bool {
        drop(self.jobs);
        let deadline = Instant::now() + limit;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        if self.thread.join().is_err() {
            tracing::error!("the storage writer thread panicked");
        }
        true
    }
}

/// Most batches written as one group (bounds one write's memory).
const GROUP_MAX_BATCHES: usize = 1024;
/// First wait before reopening the store after a failure, in milliseconds;
/// doubled after each failed attempt up to [`RETRY_MAX_MS`].
pub const RETRY_FIRST_MS: u64 = 100;
/// Longest wait between two attempts to reopen a failed store, in ms.
pub const RETRY_MAX_MS: u64 = 5_000;

/// The store, or only its directory lock while it is closed after a
/// failure.
enum Slot {
    Open(Store),
    Closed(Lock),
}

/// The store failed: since when, why, and when to try again.
struct Broken {
    since: Instant,
    failure: PersistFailure,
    backoff: Duration,
    next_try: Instant,
    /// Batches refused since.
    refused: u64,
}

/// The writer thread's state.
struct State {
    /// `None` only while a reopen is in progress.
    slot: Option<Slot>,
    fsync: Fsync,
    interval: Duration,
    /// The first write not yet fsynced (interval mode).
    unsynced_since: Option<Instant>,
    /// Ops written since the last fsync (interval mode): written again if
    /// that fsync fails, since the OS may have dropped them.
    since_sync: Vec<PersistOp>,
    broken: Option<Broken>,
    /// Every op not (or not surely) on disk since the store failed, the
    /// last one per key (what a batch of all of them in order would leave);
    /// written first when the store works again.
    pending: BTreeMap<(Keyspace, Bytes), Option<Bytes>>,
}

fn run(store: Store, rx: &Receiver<Job>, fsync: Fsync, interval: Duration) {
    let mut state = State {
        slot: Some(Slot::Open(store)),
        fsync,
        interval,
        unsynced_since: None,
        since_sync: Vec::new(),
        broken: None,
        pending: BTreeMap::new(),
    };
    let mut group: Vec<Job> = Vec::new();
    loop {
        let first = match state.wake_at() {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        state.periodic_sync();
        let Some(first) = first else {
            if state.retry_due() {
                // Nothing queued: try to bring the store back anyway.
                if state.recover().is_err() {
                    state.back_off();
                }
            }
            continue;
        };
        group.push(first);
        while group.len() < GROUP_MAX_BATCHES {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let result = state.commit(&group);
        for job in group.drain(..) {
            let done = Done {
                id: job.batch.id,
                result,
            };
            if job.reply.send(done).is_ok() {
                job.wake.wake();
            } else {
                tracing::debug!(shard = job.shard, "storage completion for a stopped shard");
            }
        }
    }
    state.finish();
}

/// Bytes a stored op takes besides its key and value (checksum, journal
/// framing), counted generously.
const OP_OVERHEAD_BYTES: usize = 64;

fn op_bytes(op: &PersistOp) -> usize {
    op.key.len() + op.value.as_ref().map_or(0, Bytes::len) + OP_OVERHEAD_BYTES
}

/// Refuses (as a full disk) a write of `bytes` where the filesystem of
/// `dir` has less than that plus [`DISK_FULL_BELOW_BYTES`] free: the store
/// does not report every failed journal write (fjall 2.11 drops the error
/// of a write that bypasses its 8 KiB buffer and leaves a torn batch in
/// its journal), so a write that might not fit is not attempted. A
/// filesystem that cannot be asked does not stop the write.
fn room_for(dir: &std::path::Path, bytes: usize) -> Result<(), fjall::Error> {
    let Ok(free) = ringmq_net::os::free_bytes(dir) else {
        return Ok(());
    };
    let needed = (bytes as u64).saturating_add(DISK_FULL_BELOW_BYTES);
    if free >= needed {
        return Ok(());
    }
    Err(fjall::Error::Io(std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        format!("{free} bytes free, a write of {bytes} bytes needs {needed}"),
    )))
}

fn ops(group: &[Job]) -> impl Iterator<Item = &PersistOp> {
    group.iter().flat_map(|job| job.batch.ops.iter())
}

impl State {
    /// When the loop must wake without a batch: the interval fsync, the
    /// next attempt to reopen a failed store.
    fn wake_at(&self) -> Option<Instant> {
        let sync = self.unsynced_since.map(|since| since + self.interval);
        let retry = self.broken.as_ref().map(|b| b.next_try);
        match (sync, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn retry_due(&self) -> bool {
        self.broken
            .as_ref()
            .is_some_and(|b| Instant::now() >= b.next_try)
    }

    fn store(&self) -> Option<&Store> {
        match &self.slot {
            Some(Slot::Open(store)) => Some(store),
            _ => None,
        }
    }

    fn dir(&self) -> std::path::PathBuf {
        match &self.slot {
            Some(Slot::Open(store)) => store.dir().to_path_buf(),
            Some(Slot::Closed(lock)) => lock.dir().to_path_buf(),
            None => std::path::PathBuf::new(),
        }
    }

    /// Interval mode: the fsync `fsync_interval_ms` after the first
    /// unsynced write.
    fn periodic_sync(&mut self) {
        let Some(since) = self.unsynced_since else {
            return;
        };
        if since.elapsed() < self.interval {
            return;
        }
        self.unsynced_since = None;
        let Some(result) = self.store().map(Store::sync) else {
            return;
        };
        match result {
            Ok(()) => self.since_sync.clear(),
            Err(e) => self.fail(&e, "periodic fsync", &[]),
        }
    }

    /// Writes `group` (and the fsync `always` asks for); refused at once
    /// while the store is failed and not due for another attempt.
    fn commit(&mut self, group: &[Job]) -> Result<(), PersistFailure> {
        if self.broken.is_some() {
            for op in ops(group) {
                self.pending
                    .insert((op.keyspace, op.key.clone()), op.value.clone());
            }
            if !self.retry_due() {
                let broken = self.broken.as_mut().map(|b| {
                    b.refused += group.len() as u64;
                    b.failure
                });
                return Err(broken.unwrap_or(PersistFailure::Io));
            }
            return self.recover().inspect_err(|_| self.back_off());
        }
        let Some(store) = self.store() else {
            return Err(PersistFailure::Io);
        };
        let bytes = ops(group).map(op_bytes).sum();
        if let Err(e) = room_for(store.dir(), bytes) {
            self.fail(&e, "write", group);
            return Err(PersistFailure::DiskFull);
        }
        let writes = ops(group).map(|op| (op.keyspace, op.key.as_ref(), op.value.as_deref()));
        let written = store.write(writes).and_then(|()| match self.fsync {
            Fsync::Always => store.sync(),
            Fsync::Interval | Fsync::Never => Ok(()),
        });
        match written {
            Ok(()) => {
                if self.fsync == Fsync::Interval {
                    self.since_sync.extend(ops(group).cloned());
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
                Ok(())
            }
            Err(e) => {
                self.fail(&e, "write", group);
                Err(self
                    .broken
                    .as_ref()
                    .map_or(PersistFailure::Io, |b| b.failure))
            }
        }
    }

    /// The store failed with `e`: log it, keep what may not be on disk
    /// (`group`, and in interval mode what was written since the last
    /// fsync) for the next attempt, and close the store (it refuses every
    /// write after a failure; reopening recovers it from its journal).
    fn fail(&mut self, e: &fjall::Error, what: &str, group: &[Job]) {
        let dir = self.dir();
        let failure = failure_in(e, &dir);
        let unsynced = std::mem::take(&mut self.since_sync);
        self.unsynced_since = None;
        for op in unsynced.iter().chain(ops(group)) {
            self.pending
                .insert((op.keyspace, op.key.clone()), op.value.clone());
        }
        tracing::error!(
            error = %e,
            ?failure,
            batches = group.len(),
            ops = ops(group).count(),
            kept_ops = self.pending.len(),
            dir = %dir.display(),
            "storage {what} failed; the acknowledgements waiting on it are refused, and so is \
             every acknowledgement that needs storage until the store is reopened"
        );
        if let Some(Slot::Open(store)) = self.slot.take() {
            self.slot = Some(Slot::Closed(store.close()));
        }
        let backoff = Duration::from_millis(RETRY_FIRST_MS);
        self.broken = Some(Broken {
            since: Instant::now(),
            failure,
            backoff,
            next_try: Instant::now() + backoff,
            refused: 0,
        });
    }

    /// After a failed attempt: wait twice as long (at most `RETRY_MAX_MS`).
    fn back_off(&mut self) {
        if let Some(b) = &mut self.broken {
            b.backoff = (b.backoff * 2).min(Duration::from_millis(RETRY_MAX_MS));
            b.next_try = Instant::now() + b.backoff;
        }
    }

    /// Reopens the failed store, writes every pending op and fsyncs; on
    /// success the store works again.
    fn recover(&mut self) -> Result<(), PersistFailure> {
        let lock = match self.slot.take() {
            Some(Slot::Closed(lock)) => lock,
            Some(Slot::Open(store)) => store.close(),
            None => return Err(PersistFailure::Io),
        };
        let bytes = self
            .pending
            .iter()
            .map(|((_, key), value)| key.len() + value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
            + self.pending.len() * OP_OVERHEAD_BYTES;
        if let Err(e) = room_for(lock.dir(), bytes) {
            tracing::warn!(error = %e, dir = %lock.dir().display(), "storage: still no room; trying again later");
            self.slot = Some(Slot::Closed(lock));
            if let Some(b) = &mut self.broken {
                b.failure = PersistFailure::DiskFull;
            }
            return Err(PersistFailure::DiskFull);
        }
        let store = match lock.open() {
            Ok(store) => store,
            Err((e, lock)) => {
                tracing::warn!(error = %e, dir = %lock.dir().display(), "storage: reopening failed; trying again later");
                self.slot = Some(Slot::Closed(lock));
                return Err(self
                    .broken
                    .as_ref()
                    .map_or(PersistFailure::Io, |b| b.failure));
            }
        };
        let writes = self
            .pending
            .iter()
            .map(|((space, key), value)| (*space, key.as_ref(), value.as_deref()));
        match store.write(writes).and_then(|()| store.sync()) {
            Ok(()) => {
                if let Some(b) = self.broken.take() {
                    tracing::info!(
                        dir = %store.dir().display(),
                        rewritten_ops = self.pending.len(),
                        refused_batches = b.refused,
                        failed_for_ms = b.since.elapsed().as_millis() as u64,
                        "storage works again: the store was reopened and what had failed is written"
                    );
                }
                self.pending.clear();
                self.slot = Some(Slot::Open(store));
                Ok(())
            }
            Err(e) => {
                let failure = failure_in(&e, store.dir());
                tracing::warn!(error = %e, ?failure, dir = %store.dir().display(), "storage: still failing after reopening; trying again later");
                self.slot = Some(Slot::Closed(store.close()));
                if let Some(b) = &mut self.broken {
                    b.failure = failure;
                }
                Err(failure)
            }
        }
    }

    /// The queue closed: make everything durable (one last attempt if the
    /// store is failed).
    fn finish(&mut self) {
        if self.broken.is_some() {
            if self.recover().is_err() {
                tracing::error!(
                    ops = self.pending.len(),
                    "storage: still failing at shutdown; changes since the failure are not stored \
                     (none of them was acknowledged)"
                );
            }
            return;
        }
        if let Some(Err(e)) = self.store().map(Store::sync) {
            tracing::error!(error = %e, "storage: final fsync failed");
        }
    }
}

/// One shard's end of the writer (lives on the shard thread).
pub struct ShardStore {
    shard: ShardId,
    jobs: Sender<Job>,
    reply_tx: Sender<Done>,
    reply_rx: Receiver<Done>,
    wake: Arc<AtomicWaker>,
    in_flight: Cell<usize>,
}

impl ShardStore {
    /// Whether another batch may be submitted now.
    pub fn has_room(&self) -> bool {
        self.in_flight.get() < IN_FLIGHT_MAX_BATCHES
    }

    /// Batches submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Queues `batch` for the writer. If the writer is gone, the batch
    /// completes at once with `PersistFailure::Io`.
    pub fn submit(&self, batch: PersistBatch) {
        self.in_flight.set(self.in_flight.get() + 1);
        let id = batch.id;
        let job = Job {
            shard: self.shard,
            batch,
            reply: self.reply_tx.clone(),
            wake: self.wake.clone(),
        };
        if self.jobs.send(job).is_err() {
            tracing::error!(
                shard = self.shard,
                "the storage writer is gone; batch refused"
            );
            let failed = Done {
                id,
                result: Err(PersistFailure::Io),
            };
            if self.reply_tx.send(failed).is_ok() {
                self.wake.wake();
            }
        }
    }

    /// A completion, if one is waiting.
    pub fn try_next(&self) -> Option<Done> {
        let done = self.reply_rx.try_recv().ok()?;
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        Some(done)
    }

    /// Wakes `waker` when the next completion arrives (the native loop
    /// registers before it sleeps, then looks again with `try_next`).
    pub fn register(&self, waker: &std::task::Waker) {
        self.wake.register(waker);
    }

    /// The next completion (register, then re-check: no lost wake-up).
    pub async fn next(&self) -> Done {
        poll_fn(|cx| {
            if let Some(done) = self.try_next() {
                return Poll::Ready(done);
            }
            self.wake.register(cx.waker());
            match self.try_next() {
                Some(done) => Poll::Ready(done),
                None => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
// A failed unwrap in a test is that test failing.
#[allow(clippy::unwrap_used)]
mod tests;
