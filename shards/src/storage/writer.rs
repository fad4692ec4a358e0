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
//! `IN_FLIGHT_MAX_BATCHES` per shard. A failed write completes every batch
//! in it with `PersistFailure` (logged here); the broker keeps running.

use std::cell::Cell;
use std::future::poll_fn;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::task::Poll;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use ringmq_engine::broker::ShardId;

use super::db::{failure_of, Store};
use crate::config::Fsync;
use ringmq_engine::persist::{PersistBatch, PersistFailure};

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
    pub fn start(store: Arc<Store>, fsync: Fsync, interval_ms: u64) -> Result<Writer, String> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("ringmq-storage".into())
            .spawn(move || run(&store, &rx, fsync, Duration::from_millis(interval_ms)))
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

fn run(store: &Store, rx: &Receiver<Job>, fsync: Fsync, interval: Duration) {
    // The first write not yet fsynced (interval mode).
    let mut unsynced_since: Option<Instant> = None;
    let mut group: Vec<Job> = Vec::new();
    loop {
        let first = match unsynced_since {
            Some(since) => {
                let left = (since + interval).saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        if let Some(since) = unsynced_since {
            if since.elapsed() >= interval {
                if let Err(e) = store.sync() {
                    tracing::error!(error = %e, "storage: periodic fsync failed");
                }
                unsynced_since = None;
            }
        }
        let Some(first) = first else { continue };
        group.push(first);
        while group.len() < GROUP_MAX_BATCHES {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let result = commit(store, &group, fsync);
        if result.is_ok() && fsync == Fsync::Interval && unsynced_since.is_none() {
            unsynced_since = Some(Instant::now());
        }
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
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "storage: final fsync failed");
    }
}

/// One write of every op of `group`, then the fsync `always` asks for.
fn commit(store: &Store, group: &[Job], fsync: Fsync) -> Result<(), PersistFailure> {
    let writes = group.iter().flat_map(|job| {
        job.batch
            .ops
            .iter()
            .map(|op| (op.keyspace, op.key.as_ref(), op.value.as_deref()))
    });
    let written = store.write(writes).and_then(|()| match fsync {
        Fsync::Always => store.sync(),
        Fsync::Interval | Fsync::Never => Ok(()),
    });
    written.map_err(|e| {
        let failure = failure_of(&e);
        let ops: usize = group.iter().map(|j| j.batch.ops.len()).sum();
        tracing::error!(
            error = %e,
            ?failure,
            batches = group.len(),
            ops,
            dir = %store.dir().display(),
            "storage write failed; the acknowledgements waiting on it are refused"
        );
        failure
    })
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
