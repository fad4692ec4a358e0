//! Holding output while the shard is busy (`UringLimits::hold_us`): a
//! bounded latency-for-CPU trade for fan-out of small messages.
//!
//! Every send costs the sending core the kernel's whole send path (on
//! loopback also the receiving socket's TCP processing and its reader's
//! wake-up), whatever its size: a publish fanned out to 100 subscribers
//! is 100 sends (85% of the shard's time in `io_send` in an evenly paced
//! fan-out, docs/benchmarks.md). Holding a fan-out's output until the
//! next input has been routed sends each subscriber the messages of both
//! in one send; holding longer than that only adds latency. So a hold
//! lasts as long as input is expected to come, and at most `hold_us`:
//!
//! - The shard must be busy: its thread's CPU time over the last
//!   [`HOLD_SAMPLE_MS`] at least [`HOLD_BUSY_ON_PERCENT`] of the wall
//!   time (it stays busy until that falls under [`HOLD_BUSY_OFF_PERCENT`]).
//! - A turn in which at least [`HOLD_FANOUT_MIN`] connections ask for
//!   attention (a fan-out) with nothing held is a *lead*. The time from a
//!   lead to the next turn with input (a receive that reached a handler,
//!   or messages from other shards: [`Driver::note_input`]) is measured
//!   every time; a lead holds only if the last such time says the next
//!   input comes within `hold_us` of the lead's arrival (estimated as the
//!   start of the `io_uring_enter` that took it when that one was sending
//!   a fan-out, the lead may have waited through it). Otherwise it is
//!   sent at once: an evenly paced publisher slower than `hold_us`, or
//!   bursts that arrive whole, gain nothing from a hold.
//! - The lead, and every connection that asks for attention until the
//!   release, are attended together at the release: when input arrives
//!   and the next input, expected one gap (the time since the input
//!   before) later, would come after the deadline (the lead's arrival +
//!   `hold_us`); when input stays quiet for [`HOLD_QUIET_FACTOR`] of that
//!   gap (plus [`HOLD_QUIET_MIN_US`]) past its expected time; at the
//!   deadline at the latest. Each connection's output of the inputs in
//!   between leaves as one send.
//! - Staggered halves: when exactly one input is expected to join (the
//!   next within `hold_us` of the lead, the one after it not: an evenly
//!   paced publisher slower than half the hold), holding the whole
//!   fan-out makes every other input a fan-out of all its connections
//!   and the first message wait for the second and then for that whole
//!   fan-out. So a fresh lead (no hold released in its turn) attends half
//!   its connections at once and holds the other half; the release at the
//!   next input attends the held half (the previous and the current
//!   message in one send), and what that input made ready (the other
//!   half, now with one message) is held in turn, whatever its size, until
//!   the input after. The same sends per delivery, each fan-out half as
//!   long, the load even; a half that stops getting input leaves at the
//!   quiet margin or the deadline, like any hold.
//! - Bursts of a known size: a hold that ends with its input complete
//!   (no further input within `hold_us` of its release) teaches the size
//!   of a burst, in bytes received. Once two such holds in a row took the
//!   same size, a hold (not a staggered half) whose input reaches it is
//!   released at once, and a lead that brought it all is not held: the
//!   burst is complete, so neither the first wait nor the quiet margin
//!   can add anything to it (a publisher writing bursts of ten messages
//!   one by one: the broker often takes the whole burst in its first
//!   turn, and waited [`HOLD_FIRST_WAIT_US`] for nothing). A hold whose
//!   burst turned out larger (input again within `hold_us`), or with
//!   input from other shards (no byte count), forgets the size until two
//!   holds agree again.
//! - So the added latency is at most `hold_us` per message, and only
//!   while busy with a fan-out whose next input is expected within it: a
//!   shard that is lightly loaded or idle, or serves a few connections
//!   (gathering batches those), attends every connection in the turn that
//!   asked (its first turn after a quiet spell samples the CPU again, and
//!   idle shards are not woken to sample).
//! - During a hold, a connection whose input asks for an answer, or whose
//!   send completes while it has new output (it is queued), waits for
//!   the same release instead of sending at once; one whose send
//!   completes with nothing new is pumped at once (it does not join the
//!   hold empty, to leave at its release with only the next input's
//!   output: the other staggered half).
//! - The loop's sleep ends at the next time the hold must be looked at
//!   (`Driver::submit_and_wait`).

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
/// may start a hold: a fan-out (a publish to many subscribers is a send to
/// each of them). With fewer, gathering already batches their output
/// (`UringLimits::gather_wait_us`), and holding would only add latency.
pub const HOLD_FANOUT_MIN: usize = 16;
/// A hold ends when input stays quiet past its expected time by this
/// fraction (percent) of the gap it was expected after...
pub const HOLD_QUIET_FACTOR: u32 = 50;
/// ... plus this many microseconds (the jitter of a wake-up).
pub const HOLD_QUIET_MIN_US: u64 = 20;
/// A busy fan-out waits at least this long (µs, at most the limit) for
/// the rest of a burst whose first messages started it.
pub const HOLD_FIRST_WAIT_US: u64 = 100;

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
    /// [`HOLD_FIRST_WAIT_US`].
    first_wait: Duration,
    /// When the current sample began, and the thread's CPU time then (ns).
    sample_start: Instant,
    sample_cpu_ns: u64,
    /// Connections held, (slot, generation), each once (their handle's
    /// queued flag stays set until attended).
    held: Vec<(u32, u32)>,
    /// When the held connections are attended at the latest (the lead's
    /// arrival + the limit); `None`: no hold under way.
    deadline: Option<Instant>,
    /// When the loop must look at the hold next (at most `deadline`): the
    /// release unless input came before.
    due: Option<Instant>,
    /// The last turn with input during the hold (the lead's first).
    last_input: Instant,
    /// When the last input arrived (estimated: `attend_ready`), and the
    /// time between it and the one before.
    input_at: Instant,
    input_gap: Duration,
    /// Input arrived since the last [`Driver::attend_ready`].
    input: bool,
    /// The last lead whose next input has not come yet.
    lead_at: Option<Instant>,
    /// The time from the last measured lead to the next input.
    follow: Option<Duration>,
    /// When the last `io_uring_enter` began, and whether it submitted a
    /// fan-out's sends (input it took may have waited through them).
    enter_began: Instant,
    enter_sent_fanout: bool,
    /// The hold under way is one half of a staggered fan-out.
    staggered: bool,
    /// Bytes received since the last [`Driver::attend_ready`], and whether
    /// input without a byte count (other shards' messages) came too.
    turn_bytes: u64,
    turn_opaque: bool,
    /// Bytes the hold under way took (its lead's turn included), and
    /// whether input without a byte count joined it.
    hold_bytes: u64,
    hold_opaque: bool,
    /// The last release (or unheld lead) whose burst may be complete:
    /// when, and its bytes (0: unknown); settled by the next input.
    settling: Option<(Instant, u64)>,
    /// The sizes of the last two complete bursts (0: unknown), older
    /// first: equal and known, a burst of that size is complete.
    burst_sizes: [u64; 2],
}

impl Hold {
    pub(super) fn new(limit_us: u32) -> Hold {
        let now = Instant::now();
        Hold {
            limit: Duration::from_micros(u64::from(limit_us)),
            busy: false,
            on: HOLD_BUSY_ON_PERCENT,
            off: HOLD_BUSY_OFF_PERCENT,
            fanout_min: HOLD_FANOUT_MIN,
            first_wait: Duration::from_micros(HOLD_FIRST_WAIT_US),
            sample_start: now,
            sample_cpu_ns: crate::os::thread_cpu_ns(),
            held: Vec::new(),
            deadline: None,
            due: None,
            last_input: now,
            input_at: now,
            input_gap: Duration::ZERO,
            input: false,
            lead_at: None,
            follow: None,
            enter_began: now,
            enter_sent_fanout: false,
            staggered: false,
            turn_bytes: 0,
            turn_opaque: false,
            hold_bytes: 0,
            hold_opaque: false,
            settling: None,
            burst_sizes: [0, 0],
        }
    }

    /// The size of a complete burst, in bytes, once two in a row agreed.
    pub(super) fn burst_bytes(&self) -> Option<u64> {
        let [older, last] = self.burst_sizes;
        (last > 0 && older == last).then_some(last)
    }

    /// Input arrived at `at`: the burst of the last release was complete
    /// if none came within the limit of it (module docs).
    fn settle(&mut self, at: Instant) {
        if let Some((released, bytes)) = self.settling.take() {
            let complete = at.saturating_duration_since(released) > self.limit;
            self.burst_sizes = [self.burst_sizes[1], if complete { bytes } else { 0 }];
        }
    }

    /// A hold (or a lead not held) ended at `at` with `bytes` of input,
    /// `known` if all of it came with a byte count and not as a
    /// staggered half: its burst is complete unless input follows within
    /// the limit (module docs).
    fn ended(&mut self, at: Instant, bytes: u64, known: bool) {
        self.settling = Some((at, if known { bytes } else { 0 }));
    }

    /// Whether the shard counts as busy now (samples the CPU share once a
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

    /// The latest time the loop may sleep to while input is expected
    /// `gap` after `at`: its expected time plus the quiet margin, capped
    /// by the deadline.
    fn quiet_after(&self, at: Instant, gap: Duration, deadline: Instant) -> Instant {
        let margin = gap * HOLD_QUIET_FACTOR / 100 + Duration::from_micros(HOLD_QUIET_MIN_US);
        (at + gap + margin).min(deadline)
    }

    /// Sets the busy thresholds (percent of a sample's wall time).
    #[cfg(test)]
    pub(super) fn set_thresholds(&mut self, on: u64, off: u64, fanout_min: usize) {
        self.on = on;
        self.off = off;
        self.fanout_min = fanout_min;
    }

    /// Sets the first wait (tests: long enough to tell apart on a loaded
    /// machine).
    #[cfg(test)]
    pub(super) fn set_first_wait(&mut self, wait: Duration) {
        self.first_wait = wait;
    }

    /// Whether the last sample found the shard busy.
    #[cfg(test)]
    pub(super) fn is_busy(&self) -> bool {
        self.busy
    }

    /// When the loop must wake to look at the hold.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// An `io_uring_enter` begins, submitting `queued` entries.
    pub(super) fn entering(&mut self, queued: usize) {
        if self.limit.is_zero() {
            return;
        }
        self.enter_began = Instant::now();
        self.enter_sent_fanout = queued >= self.fanout_min;
    }
}

impl Driver {
    /// Input arrived for this turn: a receive handed bytes to a handler,
    /// or messages came from other shards (outside the driver); it ends a
    /// hold's quiet spell (module docs).
    pub fn note_input(&mut self) {
        self.hold.input = true;
        // Other shards' messages: no byte count for the burst sizes.
        self.hold.turn_opaque = true;
    }

    /// A receive handed `bytes` to a handler: input, counted for the
    /// burst sizes (module docs).
    pub(super) fn note_received(&mut self, bytes: usize) {
        self.hold.input = true;
        self.hold.turn_bytes = self
            .hold
            .turn_bytes
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Attends the connections that asked for attention, or holds them
    /// (module docs); returns after the ready list is empty.
    pub(super) fn attend_ready(&mut self) {
        let now = Instant::now();
        let busy = self.hold.active(now);
        let input = std::mem::take(&mut self.hold.input);
        let turn_bytes = std::mem::take(&mut self.hold.turn_bytes);
        let turn_opaque = std::mem::take(&mut self.hold.turn_opaque);
        // When this turn's input arrived: now, unless it was taken at the
        // end of a fan-out's sends (it may have waited through them); then
        // when the inputs' pattern expects it, within that enter.
        let arrived = if input && self.hold.enter_sent_fanout {
            (self.hold.input_at + self.hold.input_gap)
                .min(now)
                .max(self.hold.enter_began)
        } else {
            now
        };
        if input {
            self.hold.settle(arrived);
            self.hold.input_gap = arrived.saturating_duration_since(self.hold.input_at);
            self.hold.input_at = arrived;
            if let Some(lead) = self.hold.lead_at.take() {
                self.hold.follow = Some(arrived.saturating_duration_since(lead));
            }
        }
        let mut release = !busy;
        if let Some(deadline) = self.hold.deadline {
            if input {
                self.hold.hold_bytes = self.hold.hold_bytes.saturating_add(turn_bytes);
                self.hold.hold_opaque |= turn_opaque;
                // A burst of the known size is complete (module docs).
                release |= !self.hold.staggered
                    && !self.hold.hold_opaque
                    && self
                        .hold
                        .burst_bytes()
                        .is_some_and(|n| self.hold.hold_bytes >= n);
            }
            if input && !release {
                let gap = arrived.saturating_duration_since(self.hold.last_input);
                self.hold.last_input = arrived;
                if arrived + gap > deadline {
                    // The next input would come too late to join.
                    release = true;
                } else {
                    let quiet = self.hold.quiet_after(arrived, gap, deadline);
                    self.hold.due = Some(self.hold.due.map_or(quiet, |due| due.max(quiet)));
                }
            }
            release |= self.hold.due.is_some_and(|due| due <= now);
        }
        // A hold released in this turn: a lead right after it is not split;
        // after a staggered half, what asks for attention now (whatever
        // its size) is the other half, held whole (module docs).
        let released = release && self.hold.deadline.is_some();
        let continued = released && std::mem::take(&mut self.hold.staggered);
        if released {
            let (bytes, opaque) = (self.hold.hold_bytes, self.hold.hold_opaque);
            self.hold.ended(now, bytes, !opaque && !continued);
            self.hold.deadline = None;
            self.hold.due = None;
            let held = std::mem::take(&mut self.hold.held);
            for &(slot, gen) in &held {
                self.attend(slot, gen);
            }
            // Keep the allocation for the next hold.
            self.hold.held = held;
            self.hold.held.clear();
        }
        let mut first = true;
        let mut stagger = false;
        loop {
            // The list and `ready_spare` swap allocations: none per turn.
            let mut batch = super::take_ready(std::mem::take(&mut self.ready_spare));
            if batch.is_empty() {
                self.ready_spare = batch;
                break;
            }
            if first
                && self.hold.deadline.is_none()
                && (batch.len() >= self.hold.fanout_min || continued)
            {
                // A lead: hold it if the next input is expected in time.
                self.hold.lead_at = Some(arrived);
                let deadline = arrived + self.hold.limit;
                // Exactly one input expected to join (the one after it
                // too late): a fresh lead sends half its connections now
                // and holds the rest; from then on each input releases
                // the half that waited through the one before.
                let halves = !released
                    && self
                        .hold
                        .follow
                        .is_some_and(|f| arrived + f <= deadline && arrived + f * 2 > deadline);
                // The lead's own input (a release in this turn took the
                // turn's input into the hold it ended).
                let (bytes, opaque) = if released {
                    (0, false)
                } else {
                    (turn_bytes, turn_opaque)
                };
                // The whole burst of the known size came with the lead:
                // nothing to wait for (module docs).
                let complete = !halves
                    && !continued
                    && !opaque
                    && self.hold.burst_bytes().is_some_and(|n| bytes >= n);
                if busy && now < deadline && complete {
                    self.hold.ended(now, bytes, true);
                } else if busy && now < deadline {
                    // At least the first wait (the rest of a burst), longer
                    // if the next input is expected before the deadline.
                    let first = (now + self.hold.first_wait).min(deadline);
                    let expected = self
                        .hold
                        .follow
                        .filter(|f| arrived + *f <= deadline)
                        .map_or(first, |f| self.hold.quiet_after(arrived, f, deadline));
                    self.hold.deadline = Some(deadline);
                    self.hold.due = Some(first.max(expected));
                    self.hold.last_input = arrived;
                    self.hold.hold_bytes = bytes;
                    self.hold.hold_opaque = opaque;
                    stagger = halves;
                    self.hold.staggered = stagger || continued;
                }
            }
            first = false;
            if self.hold.deadline.is_some() {
                // The first half (the smaller one) leaves now.
                let now_half = if stagger { batch.len() / 2 } else { 0 };
                stagger = false;
                for &(slot, gen) in &batch[..now_half] {
                    self.attend(slot, gen);
                }
                self.hold.held.extend_from_slice(&batch[now_half..]);
            } else {
                for &(slot, gen) in &batch {
                    self.attend(slot, gen);
                }
            }
            batch.clear();
            self.ready_spare = batch;
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

    /// A connection's send completed: during a hold, one that has output
    /// since it was last attended (it is queued: held, or in the ready
    /// list) waits for the release; one that has none (or only the rest of
    /// a batch the handler split) is pumped at once, so that it does not
    /// join the hold empty and leave at its release with only the next
    /// input's output (a staggered fan-out's other half: module docs).
    /// Returns `true` when it waits.
    pub(super) fn sent_during_hold(&mut self, slot: u32, gen: u32) -> bool {
        if !self.holding() {
            return false;
        }
        match self.conn(slot, gen) {
            Some(c) => c.is_open() && c.handle.is_queued(),
            None => false,
        }
    }

    /// Whether a hold is under way: a connection's next send waits for
    /// its release.
    pub(super) fn holding(&self) -> bool {
        self.hold.deadline.is_some()
    }
}
