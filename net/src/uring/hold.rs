//! Holding output while the shard is busy (`UringLimits::hold_us`): a
//! bounded latency-for-CPU trade for fan-out of small messages.
//!
//! Every send costs the sending core the kernel's whole send path (on
//! loopback also the receiving socket's TCP processing and its reader's
//! wake-up), whatever its size: a publish fanned out to 100 subscribers
//! is 100 sends (85% of the shard's time in `io_send` in an evenly paced
//! fan-out, docs/benchmarks.md). While the shard's thread is busy (its
//! CPU time over the last [`HOLD_SAMPLE_MS`] at least
//! [`HOLD_BUSY_ON_PERCENT`] of the wall time; it stays busy until that
//! falls under [`HOLD_BUSY_OFF_PERCENT`]), a turn in which at least
//! [`HOLD_FANOUT_MIN`] connections ask for attention starts a hold: they,
//! and every connection that asks until the hold ends, are attended
//! together `hold_us` after it started, each connection's output of the
//! publishes in between leaving as one send.
//!
//! - The added latency is at most `hold_us` per message, and only while
//!   busy with a fan-out: a shard that is lightly loaded or idle, or
//!   serves a few connections (gathering batches those), attends every
//!   connection in the turn that asked (its first turn after a quiet
//!   spell samples the CPU again, and idle shards are not woken to
//!   sample).
//! - During a hold, a connection whose send completes, or whose input
//!   asks for an answer, waits for the same release instead of sending
//!   at once.
//! - The loop's sleep ends at the release (`Driver::submit_and_wait`).

use std::time::{Duration, Instant};

use super::Driver;

/// Window over which the shard thread's CPU share is sampled, in ms.
pub const HOLD_SAMPLE_MS: u64 = 10;
/// CPU share (percent of the wall time of a sample) from which the shard
/// counts as busy and holds output.
pub const HOLD_BUSY_ON_PERCENT: u64 = 15;
/// CPU share under which a holding shard stops holding (lower than
/// [`HOLD_BUSY_ON_PERCENT`]: holding itself lowers the share).
pub const HOLD_BUSY_OFF_PERCENT: u64 = 8;
/// Connections asking for attention in one turn from which a busy shard
/// starts a hold: a fan-out (a publish to many subscribers is a send to
/// each of them). With fewer, gathering already batches their output
/// (`UringLimits::gather_wait_us`), and holding would only add latency.
pub const HOLD_FANOUT_MIN: usize = 16;

/// The holding state of one driver.
pub(super) struct Hold {
    /// The limit; `Duration::ZERO`: never hold.
    limit: Duration,
    /// Whether the last sample found the shard busy.
    busy: bool,
    /// [`HOLD_BUSY_ON_PERCENT`] and [`HOLD_BUSY_OFF_PERCENT`].
    on: u64,
    off: u64,
    /// [`HOLD_FANOUT_MIN`].
    fanout_min: usize,
    /// When the current sample began, and the thread's CPU time then (ns).
    sample_start: Instant,
    sample_cpu_ns: u64,
    /// Connections held, (slot, generation), each once (their handle's
    /// queued flag stays set until attended).
    held: Vec<(u32, u32)>,
    /// When the held connections are attended.
    due: Option<Instant>,
}

impl Hold {
    pub(super) fn new(limit_us: u32) -> Hold {
        Hold {
            limit: Duration::from_micros(u64::from(limit_us)),
            busy: false,
            on: HOLD_BUSY_ON_PERCENT,
            off: HOLD_BUSY_OFF_PERCENT,
            fanout_min: HOLD_FANOUT_MIN,
            sample_start: Instant::now(),
            sample_cpu_ns: crate::os::thread_cpu_ns(),
            held: Vec::new(),
            due: None,
        }
    }

    /// Whether output is held now (samples the CPU share once a
    /// [`HOLD_SAMPLE_MS`] window has passed).
    fn active(&mut self, now: Instant) -> bool {
        if self.limit.is_zero() {
            return false;
        }
        let wall = now.saturating_duration_since(self.sample_start);
        if wall >= Duration::from_millis(HOLD_SAMPLE_MS) {
            let cpu = crate::os::thread_cpu_ns();
            let used = cpu.saturating_sub(self.sample_cpu_ns);
            let wall_ns = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX).max(1);
            let percent = used.saturating_mul(100) / wall_ns;
            self.busy = if self.busy {
                percent >= self.off
            } else {
                percent >= self.on
            };
            self.sample_start = now;
            self.sample_cpu_ns = cpu;
        }
        self.busy
    }

    /// Sets the busy thresholds (percent of a sample's wall time).
    #[cfg(test)]
    pub(super) fn set_thresholds(&mut self, on: u64, off: u64, fanout_min: usize) {
        self.on = on;
        self.off = off;
        self.fanout_min = fanout_min;
    }

    /// Whether the last sample found the shard busy.
    #[cfg(test)]
    pub(super) fn is_busy(&self) -> bool {
        self.busy
    }

    /// When the loop must wake to release held connections.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }
}

impl Driver {
    /// Attends the connections that asked for attention, or holds them
    /// (module docs); returns after the ready list is empty.
    pub(super) fn attend_ready(&mut self) {
        let now = Instant::now();
        let busy = self.hold.active(now);
        let release = !busy || self.hold.due.is_some_and(|due| due <= now);
        if release && !self.hold.held.is_empty() {
            self.hold.due = None;
            let held = std::mem::take(&mut self.hold.held);
            for &(slot, gen) in &held {
                self.attend(slot, gen);
            }
            // Keep the allocation for the next hold.
            self.hold.held = held;
            self.hold.held.clear();
        }
        loop {
            // The list and `ready_spare` swap allocations: none per turn.
            let mut batch = super::take_ready(std::mem::take(&mut self.ready_spare));
            if batch.is_empty() {
                self.ready_spare = batch;
                break;
            }
            // A hold starts with a fan-out; once started, everything that
            // asks for attention joins it until its release.
            let hold = busy
                && !release
                && (self.hold.due.is_some()
                    || !self.hold.held.is_empty()
                    || batch.len() >= self.hold.fanout_min);
            if hold {
                self.hold.held.extend_from_slice(&batch);
            } else {
                for &(slot, gen) in &batch {
                    self.attend(slot, gen);
                }
            }
            batch.clear();
            self.ready_spare = batch;
        }
        if !self.hold.held.is_empty() && self.hold.due.is_none() {
            self.hold.due = Some(now + self.hold.limit);
        }
    }

    /// During a hold, an open connection whose send completed, or whose
    /// input asked for an answer, waits for the release (queued, its
    /// receive kept armed) instead of sending at once: returns `true`.
    pub(super) fn wait_for_release(&mut self, slot: u32, gen: u32) -> bool {
        if !self.holding() {
            return false;
        }
        let Some(c) = self.conn(slot, gen) else {
            return false;
        };
        if !c.is_open() {
            return false;
        }
        c.handle.queue();
        self.arm_recv(slot, gen);
        true
    }

    /// Whether a hold is under way: a connection's next send waits for
    /// its release.
    pub(super) fn holding(&self) -> bool {
        self.hold.due.is_some()
    }
}
