//! Giving memory back after a burst of connections has gone: the slab's
//! vacant tail (whole chunks of it: the slab is a `ChunkedVec`, which grows
//! and shrinks without copying), the timer heap's stale entries, spare capacity, and the
//! receive buffers' pages ([`bufring`](super::bufring) module docs); and
//! the receive buffers' pages alone once receives have been quiet for a
//! while with the connections still there
//! ([`Driver::release_idle_receive_buffers`]).
//!
//! The shard calls [`Driver::shrink_memory`] about a second after closes
//! (never on the publish path); [`Driver::fire_timers`] also lets go of
//! the timer heap's spare capacity once it has emptied well below its
//! peak ([`crate::alloc::shrunk_capacity`]: hysteresis, so churn does not reallocate
//! back and forth).
//!
//! Generations: a slot dropped from the tail and pushed again later starts
//! above every generation it had before (`gen_floor`), so a stale
//! `(slot, generation)` pair (a timer, a `DriverHandle` of a closed
//! connection, a ready-list entry) can never name the new connection.

use std::cmp::Reverse;

use super::{Driver, TimerKind};
use crate::alloc::shrunk_capacity;

impl Driver {
    /// Gives back the spare capacity of the slab and lists, the timer
    /// heap's entries for connections that have gone, and the pages of
    /// the receive buffers where the kernel allows (after a burst of
    /// closes). O(slots + timers): the shard calls it at most about once
    /// a second, after closes.
    pub fn shrink_memory(&mut self) {
        // A closed connection's close and packet timers stay in the heap
        // until due (`close_flush_timeout_ms`, `close_linger_ms`: 2 s
        // each by default); firing they find no connection and do
        // nothing. After 18,500 closes they held 850 KB past the release.
        let slots = &self.slots;
        self.timers.retain(|&Reverse((_, slot, gen, kind))| {
            kind == TimerKind::AcceptRetry
                || slots
                    .get(slot as usize)
                    .is_some_and(|s| s.gen == gen && s.conn.is_some())
        });
        // Trailing free slots go (nothing is in flight for a free slot, so
        // no completion can name one later; module docs: generations).
        while matches!(self.slots.last(), Some(s) if s.conn.is_none()) {
            if let Some(s) = self.slots.pop() {
                self.gen_floor = self.gen_floor.max(s.gen);
            }
        }
        let len = self.slots.len();
        self.free.retain(|&s| (s as usize) < len);
        self.slots.shrink_to_fit();
        self.free.shrink_to_fit();
        self.timers.shrink_to_fit();
        self.cqes.shrink_to_fit();
        self.close_waiting.shrink_to_fit();
        // The per-turn lists grew with the burst: emptied, their blocks go
        // (a list a burst grew stays in one of its pages and keeps that
        // page resident; the next turn that needs one allocates it anew).
        self.events.shrink_to_fit();
        self.steps.shrink_to_fit();
        self.ready_spare.shrink_to_fit();
        super::READY.with(|r| r.borrow_mut().shrink_to_fit());
        if let Some(direct) = &mut self.direct {
            direct.shrink();
        }
        self.scratch = bytes::BytesMut::new();
        self.release_receive_buffers();
    }

    /// Whether a receive took one of the provided buffers since the last
    /// call. The shard gives the buffers' pages back once receives have
    /// stopped for a while ([`Driver::release_idle_receive_buffers`]).
    pub fn take_receive_activity(&mut self) -> bool {
        std::mem::take(&mut self.received)
    }

    /// Gives back what only receiving needs, for a loop whose connections
    /// have gone quiet: the receive buffers' pages, where the kernel allows
    /// (`bufring` module docs), and the scratch buffer. Idle connections
    /// then hold no receive memory at all (the ring's buffers cycle, so
    /// after a burst of CONNECTs every buffer's first page is resident:
    /// 1 MiB with the default ring, 57 bytes per connection at 18,500;
    /// docs/benchmarks.md, memory per idle connection). The next receive
    /// faults in a zeroed page per buffer it touches. `false`: the pages
    /// were kept.
    pub fn release_idle_receive_buffers(&mut self) -> bool {
        self.scratch = bytes::BytesMut::new();
        self.release_receive_buffers()
    }

    /// After timers fired: the heap's spare capacity goes once it holds
    /// under a quarter of it ([`shrunk_capacity`]). Two comparisons when
    /// nothing is to be done.
    pub(super) fn shrink_timers_if_sparse(&mut self) {
        if let Some(to) = shrunk_capacity(self.timers.len(), self.timers.capacity()) {
            self.timers.shrink_to(to);
        }
    }

    /// The generation a slot pushed at the end of the slab starts from.
    pub(super) fn new_slot_gen(&self) -> u32 {
        self.gen_floor
    }
}

/// The driver against real sockets (the `tests` module's rig).
#[cfg(test)]
mod driver_tests {
    use std::cmp::Reverse;
    use std::io::Write;

    use super::super::tests::Rig;
    use super::super::TimerKind;
    use crate::alloc::SHRINK_MIN_CAPACITY;

    /// After closes the heap keeps only the timers of connections that are
    /// still there; the open connection's pending timer survives and
    /// still works, and the vacant tail of the slab goes.
    #[test]
    fn a_closed_connections_timers_go_and_an_open_ones_stay() {
        let Some(mut rig) = Rig::new() else { return };
        // The connection that stays takes slot 0; the one that closes
        // slot 1, the tail.
        let (mut stays, _stays_echo) = rig.connect();
        let (mut goes, goes_echo) = rig.connect();
        // A partial line: its packet timer (the handler left bytes).
        stays
            .write_all(b"hal")
            .unwrap_or_else(|e| panic!("write: {e}"));
        rig.turn_until("packet timer", |r| {
            r.driver
                .timers
                .iter()
                .any(|Reverse(t)| t.3 == TimerKind::PacketComplete)
        });
        // A local close: flush and linger timers, then the peer's close.
        goes.write_all(b"close\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let (_, eof) = rig.read(&mut goes, usize::MAX);
        assert!(eof);
        drop(goes);
        rig.turn_until("close reported", |_| !goes_echo.closed.borrow().is_empty());
        rig.turn_until("slot freed", |r| r.driver.connections() == 1);
        let stale = rig.driver.timers.len();
        assert!(stale >= 2, "the closed connection's timers wait ({stale})");
        rig.driver.shrink_memory();
        let left: Vec<_> = rig
            .driver
            .timers
            .iter()
            .map(|Reverse(t)| (t.1, t.3))
            .collect();
        assert_eq!(left, vec![(0, TimerKind::PacketComplete)]);
        assert_eq!(rig.driver.slots.len(), 1, "the vacant tail goes");
        // The open connection is untouched: its line completes.
        stays
            .write_all(b"lo\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let (got, eof) = rig.read(&mut stays, 6);
        assert_eq!(got, b"hallo\n");
        assert!(!eof);
    }

    /// A slot dropped from the tail and pushed again starts above its old
    /// generation: what still names the closed connection (a timer, a
    /// handle) cannot reach the new one.
    #[test]
    fn a_slot_pushed_again_after_a_shrink_gets_a_new_generation() {
        let Some(mut rig) = Rig::new() else { return };
        let (client, echo) = rig.connect();
        let old_gen = rig.driver.slots[0].gen;
        drop(client);
        rig.turn_until("close reported", |_| !echo.closed.borrow().is_empty());
        rig.turn_until("slot freed", |r| r.driver.connections() == 0);
        rig.driver.shrink_memory();
        assert!(rig.driver.slots.is_empty());
        let (_client, _echo) = rig.connect();
        assert_eq!(rig.driver.slots.len(), 1, "slot 0 again");
        assert!(
            rig.driver.conn(0, old_gen).is_none(),
            "the old name is stale"
        );
        assert!(rig.driver.slots[0].gen > old_gen);
        assert!(rig.driver.conn(0, rig.driver.slots[0].gen).is_some());
    }

    /// Once timers have fired and the heap holds under a quarter of its
    /// capacity, the capacity goes too (without a release step).
    #[test]
    fn the_timer_heap_lets_go_of_its_capacity_after_firing() {
        let Some(mut rig) = Rig::new() else { return };
        let now = rig.now();
        // Timers for connections long gone (as after a burst of closes).
        for slot in 0..8 * SHRINK_MIN_CAPACITY as u32 {
            rig.driver
                .timers
                .push(Reverse((now, slot, 1, TimerKind::CloseLinger)));
        }
        let peak = rig.driver.timers.capacity();
        assert!(peak >= 8 * SHRINK_MIN_CAPACITY);
        rig.driver.fire_timers(now);
        assert!(rig.driver.timers.is_empty());
        let after = rig.driver.timers.capacity();
        assert!(
            after <= 2 * SHRINK_MIN_CAPACITY,
            "capacity {after} after firing (was {peak})"
        );
    }
}
