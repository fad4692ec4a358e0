//! Gathering the shards' numbers without touching their publish path.
//!
//! On the hot path a shard only bumps its own counters (the engine's
//! `Stats`, plain integers on its thread). Nothing else reads them there.
//! When someone wants numbers (`GET /metrics`, the broker-wide `$SYS` tick
//! of shard 0) the [`MetricsHub`] asks each shard for a snapshot:
//!
//! 1. the asker bumps the shard's `requested` generation (an atomic) and
//!    wakes the shard's ring task (the mesh's `ShardSignal`, the wake-up
//!    the rings already use);
//! 2. the ring task, between two batches, sees `requested > answered`,
//!    copies its counters, measures its gauges (`Broker::gauges`, a walk
//!    over its sessions) and its rings into the slot's [`ShardSnapshot`]
//!    under `try_lock` (it never waits: if the asker holds the lock, it
//!    tries again when woken next), then stores `answered`;
//! 3. the asker polls `answered` every [`GATHER_POLL_MS`] (waking the
//!    shard again), for at most [`GATHER_TIMEOUT_MS`], then copies every
//!    slot. A shard that did not answer in time (busy, or stopped)
//!    contributes its previous snapshot, marked not fresh.
//!
//! So a shard pays for a snapshot only when one is asked for, and the
//! asker's lock is held only for a copy of a few hundred bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ringmq_engine::broker::{Gauges, ShardId, Stats};
use ringmq_net::clock::Clock;

use crate::mesh::{RingStats, ShardSignal};

pub mod exposition;

/// How long an asker waits for the shards' snapshots, in milliseconds.
pub const GATHER_TIMEOUT_MS: u64 = 1_000;
/// How often an asker looks whether the shards answered (and wakes the
/// ones that did not), in milliseconds.
pub const GATHER_POLL_MS: u64 = 1;

/// What one shard reported.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    pub shard: ShardId,
    /// The request this answers (0: never answered).
    pub generation: u64,
    /// Whether it answered the request at hand (set by the asker).
    pub fresh: bool,
    pub stats: Stats,
    pub gauges: Gauges,
    /// Sockets this shard accepted from its listeners (a connection
    /// handed to another shard counts here only).
    pub sockets_accepted: u64,
    /// Its outbound rings, by peer.
    pub rings: Vec<RingStats>,
}

struct Slot {
    requested: AtomicU64,
    answered: AtomicU64,
    running: AtomicBool,
    snapshot: Mutex<ShardSnapshot>,
}

/// Shared by the shards, the HTTP thread and the main thread.
pub struct MetricsHub {
    slots: Vec<Slot>,
    signals: Arc<[ShardSignal]>,
    clock: Clock,
    /// Set by the main thread once every listener is bound and every
    /// shard started; cleared when the shutdown starts.
    serving: AtomicBool,
}

fn lock(m: &Mutex<ShardSnapshot>) -> MutexGuard<'_, ShardSnapshot> {
    // A panic while copying numbers leaves them usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MetricsHub {
    /// A hub for the shards behind `signals` (one per shard).
    pub fn new(signals: Arc<[ShardSignal]>, clock: Clock) -> Arc<MetricsHub> {
        let slots = (0..signals.len())
            .map(|i| Slot {
                requested: AtomicU64::new(0),
                answered: AtomicU64::new(0),
                running: AtomicBool::new(false),
                snapshot: Mutex::new(ShardSnapshot {
                    shard: i as ShardId,
                    ..ShardSnapshot::default()
                }),
            })
            .collect();
        Arc::new(MetricsHub {
            slots,
            signals,
            clock,
            serving: AtomicBool::new(false),
        })
    }

    /// Seconds since the process clock started.
    pub fn uptime_s(&self) -> u64 {
        self.clock.now_ms() / 1000
    }

    // ----- readiness ---------------------------------------------------

    /// A shard started (`true`) or began to stop (`false`).
    pub fn set_running(&self, shard: ShardId, running: bool) {
        if let Some(slot) = self.slots.get(usize::from(shard)) {
            slot.running.store(running, Ordering::SeqCst);
        }
    }

    /// The main thread: every listener bound and every shard started
    /// (`true`), or the shutdown began (`false`).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// Why the broker is not ready, or `None` when it is: serving, and
    /// every shard running.
    pub fn not_ready(&self) -> Option<String> {
        if !self.serving.load(Ordering::SeqCst) {
            return Some("starting or stopping".into());
        }
        let down: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.running.load(Ordering::SeqCst))
            .map(|(i, _)| i.to_string())
            .collect();
        (!down.is_empty()).then(|| format!("shards not running: {}", down.join(",")))
    }

    // ----- the shard's side --------------------------------------------

    /// Whether `shard` was asked for a snapshot it has not given yet.
    pub fn pending(&self, shard: ShardId) -> bool {
        self.slots
            .get(usize::from(shard))
            .is_some_and(|s| s.requested.load(Ordering::SeqCst) > s.answered.load(Ordering::SeqCst))
    }

    /// The shard answers: `fill` writes its snapshot. Never waits: when
    /// the lock is taken, nothing is written and the request stays
    /// pending (the asker wakes the shard again).
    pub fn answer(&self, shard: ShardId, fill: impl FnOnce(&mut ShardSnapshot)) {
        let Some(slot) = self.slots.get(usize::from(shard)) else {
            return;
        };
        let wanted = slot.requested.load(Ordering::SeqCst);
        let guard = match slot.snapshot.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let Some(mut snapshot) = guard else { return };
        fill(&mut snapshot);
        snapshot.shard = shard;
        snapshot.generation = wanted;
        drop(snapshot);
        slot.answered.fetch_max(wanted, Ordering::SeqCst);
    }

    // ----- the asker's side --------------------------------------------

    /// Asks every shard for a snapshot and waits (asynchronously, on the
    /// caller's monoio runtime) for the answers, at most
    /// [`GATHER_TIMEOUT_MS`].
    pub async fn gather(&self) -> Vec<ShardSnapshot> {
        let gathering = self.ask();
        let mut waited_ms = 0;
        loop {
            if let Some(snapshots) = self.poll(&gathering, waited_ms) {
                return snapshots;
            }
            monoio::time::sleep(Duration::from_millis(GATHER_POLL_MS)).await;
            waited_ms += GATHER_POLL_MS;
        }
    }

    /// Asks every shard for a snapshot (the first step of [`gather`],
    /// for a caller that polls: the native shard loop).
    pub fn ask(&self) -> Gathering {
        Gathering {
            wanted: self
                .slots
                .iter()
                .map(|s| s.requested.fetch_add(1, Ordering::SeqCst) + 1)
                .collect(),
        }
    }

    /// The snapshots once every shard answered or `waited_ms` reached
    /// [`GATHER_TIMEOUT_MS`]; until then `None`, after waking the shards
    /// that have not answered. Call every [`GATHER_POLL_MS`].
    pub fn poll(&self, gathering: &Gathering, waited_ms: u64) -> Option<Vec<ShardSnapshot>> {
        let wanted = &gathering.wanted;
        let answered = |i: usize| self.slots[i].answered.load(Ordering::SeqCst) >= wanted[i];
        let mut all = true;
        for (i, signal) in self.signals.iter().enumerate() {
            if !answered(i) {
                all = false;
                signal.wake();
            }
        }
        if !all && waited_ms < GATHER_TIMEOUT_MS {
            return None;
        }
        Some(
            self.slots
                .iter()
                .enumerate()
                .map(|(i, slot)| {
                    let mut s = lock(&slot.snapshot).clone();
                    s.fresh = s.generation >= wanted[i];
                    s
                })
                .collect(),
        )
    }
}

/// A snapshot request in progress ([`MetricsHub::ask`]).
pub struct Gathering {
    /// The generation each shard must answer.
    wanted: Vec<u64>,
}

/// Broker-wide sums of the snapshots.
pub fn totals(snapshots: &[ShardSnapshot]) -> (Stats, Gauges, u64) {
    let mut stats = Stats::default();
    let mut gauges = Gauges::default();
    let mut sockets = 0;
    for s in snapshots {
        stats.add(&s.stats);
        gauges.add(&s.gauges);
        sockets += s.sockets_accepted;
    }
    (stats, gauges, sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(n: usize) -> Arc<MetricsHub> {
        let signals: Arc<[ShardSignal]> = (0..n).map(|_| ShardSignal::default()).collect();
        MetricsHub::new(signals, Clock::new())
    }

    #[test]
    fn ready_only_when_serving_and_every_shard_runs() {
        let h = hub(2);
        assert!(h.not_ready().is_some());
        h.set_running(0, true);
        h.set_running(1, true);
        assert!(h.not_ready().is_some(), "not serving yet");
        h.set_serving(true);
        assert_eq!(h.not_ready(), None);
        h.set_running(1, false);
        assert_eq!(h.not_ready().as_deref(), Some("shards not running: 1"));
        h.set_running(1, true);
        h.set_serving(false);
        assert!(h.not_ready().is_some());
    }

    #[test]
    fn a_shard_answers_only_what_was_asked_and_never_waits() {
        let h = hub(2);
        assert!(!h.pending(0));
        h.slots[0].requested.fetch_add(1, Ordering::SeqCst);
        assert!(h.pending(0));
        // The asker holds the lock: the shard leaves the request pending.
        {
            let _held = lock(&h.slots[0].snapshot);
            h.answer(0, |s| s.sockets_accepted = 7);
            assert!(h.pending(0));
        }
        h.answer(0, |s| s.sockets_accepted = 7);
        assert!(!h.pending(0));
        assert_eq!(lock(&h.slots[0].snapshot).sockets_accepted, 7);
        assert_eq!(lock(&h.slots[0].snapshot).generation, 1);
        assert!(!h.pending(1));
    }

    #[test]
    fn gather_returns_the_old_snapshot_of_a_shard_that_does_not_answer() {
        let h = hub(1);
        h.slots[0].requested.fetch_add(1, Ordering::SeqCst);
        h.answer(0, |s| s.sockets_accepted = 3);
        let mut rt = match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let started = std::time::Instant::now();
        let got = rt.block_on(h.gather());
        assert!(started.elapsed() >= Duration::from_millis(GATHER_TIMEOUT_MS));
        assert_eq!(got.len(), 1);
        assert!(!got[0].fresh);
        assert_eq!(got[0].sockets_accepted, 3);
    }
}
