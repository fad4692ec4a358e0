//! Connection deadlines (the CONNECT timeout, then keep-alive) in one
//! coarse wheel: buckets of [`DEADLINE_TICK_MS`] keyed by tick, each a list
//! of connections. A connection is in at most one bucket, and leaves it
//! when it closes (its slot in the bucket is kept in [`Conn::deadline`],
//! so removal is a `swap_remove`): no stale entry outlives a connection,
//! and there is one entry per connection, whatever its traffic.
//!
//! A packet from the client does not touch the wheel (it only sets
//! `Conn::last_packet_ms`). When a bucket is due, each of its connections
//! is checked against its exact deadline: past it, the connection is
//! closed; otherwise it moves to the bucket of its new deadline. So a
//! connection that keeps talking costs one move per keep-alive grace
//! period at most, and all connections due in one tick are checked on one
//! wake-up of the shard: at most one wake-up per tick for all of them,
//! never one per connection.
//!
//! Exactness: a connection is never closed before its deadline
//! (1.5 x keep-alive after its last packet, [MQTT-3.1.2-24] (v3.1.1) /
//! [MQTT-3.1.2-22] (v5); `connect_timeout_ms` after the accept), and at
//! most one tick after it.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use super::conn::{Conn, ConnState, DeadlineSlot};
use super::timer::keep_alive_grace_ms;
use super::{Broker, CloseCause, ConnId};
use crate::codec::ReasonCode;

/// Granularity of connection deadlines, in milliseconds: a connection is
/// closed at most this long after its exact deadline, and the shard wakes
/// for them at most once per this interval.
pub const DEADLINE_TICK_MS: u64 = 100;

/// The buckets: tick -> connections whose deadline falls in
/// `((tick - 1) * DEADLINE_TICK_MS, tick * DEADLINE_TICK_MS]`, each id in
/// 4 bytes (memory per idle connection). Empty buckets are removed, so
/// memory follows the connections.
pub(super) type DeadlineWheel = BTreeMap<u64, Vec<u32>>;

/// The tick whose bucket is due at or after `due_ms` (never before it).
fn tick_of(due_ms: u64) -> u64 {
    due_ms.div_ceil(DEADLINE_TICK_MS).max(1)
}

/// What a connection's next check is about, and when it is due.
enum Due {
    Connect(u64),
    KeepAlive(u64),
}

/// The deadline of `c` now: the CONNECT timeout while connecting (from the
/// accept, kept in `last_packet_ms` until the connection is active), the
/// keep-alive grace once active; none with keep-alive 0 or while closing.
fn due_of(c: &Conn, connect_timeout_ms: u64) -> Option<Due> {
    match c.state {
        ConnState::AwaitConnect | ConnState::Authenticating => {
            Some(Due::Connect(c.last_packet_ms + connect_timeout_ms))
        }
        ConnState::Active(_) if c.keep_alive_s > 0 => Some(Due::KeepAlive(
            c.last_packet_ms + keep_alive_grace_ms(u64::from(c.keep_alive_s) * 1000),
        )),
        ConnState::Active(_) | ConnState::Closing => None,
    }
}

impl Due {
    fn ms(&self) -> u64 {
        match *self {
            Due::Connect(ms) | Due::KeepAlive(ms) => ms,
        }
    }
}

impl Broker {
    /// Puts `conn` in the bucket of its current deadline (taking it out of
    /// the one it was in); a connection without a deadline leaves the wheel.
    pub(super) fn schedule_deadline(&mut self, conn: ConnId) {
        self.unschedule_deadline(conn);
        let connect_timeout_ms = self.config.connect_timeout_ms;
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let Some(due) = due_of(c, connect_timeout_ms) else {
            return;
        };
        let tick = tick_of(due.ms());
        let Some(nonzero) = NonZeroU64::new(tick) else {
            return; // `tick_of` is at least 1
        };
        let Ok(id) = u32::try_from(conn) else {
            // Connection ids are slab keys far below 2^32
            // (`connections_max`); leave it out rather than alias another.
            return;
        };
        let bucket = self.deadlines.entry(tick).or_default();
        let Ok(index) = u32::try_from(bucket.len()) else {
            // More than 4 billion connections in one tick cannot happen
            // (`connections_max` is far below); leave it out rather than
            // corrupt the slots.
            return;
        };
        bucket.push(id);
        c.deadline = Some(DeadlineSlot {
            tick: nonzero,
            index,
        });
    }

    /// Takes `conn` out of the wheel (closed, or no deadline any more).
    pub(super) fn unschedule_deadline(&mut self, conn: ConnId) {
        let Some(slot) = self.conns.get_mut(conn).and_then(|c| c.deadline.take()) else {
            return;
        };
        let Some(bucket) = self.deadlines.get_mut(&slot.tick.get()) else {
            return;
        };
        let i = slot.index as usize;
        if bucket.get(i).is_some_and(|&id| id as ConnId == conn) {
            bucket.swap_remove(i);
            // The last entry moved into the hole: tell it.
            if let Some(&moved) = bucket.get(i) {
                let moved = self.conns.get_mut(moved as ConnId);
                if let Some(s) = moved.and_then(|m| m.deadline.as_mut()) {
                    s.index = slot.index;
                }
            }
        }
        if bucket.is_empty() {
            self.deadlines.remove(&slot.tick.get());
        }
    }

    /// Lets go of the wheel's last node once no connection is left in it:
    /// a `BTreeMap` keeps its root node when its last entry goes. Found
    /// as the one engine block still live after a burst of connections
    /// closed (368 bytes; allocated by the burst's first connection, it
    /// kept an allocator page of the burst resident; docs/benchmarks.md,
    /// "Memory given back after closes: the first `$SYS` publish at
    /// start-up"). Run with the other shrinks, after closes.
    pub(super) fn shrink_deadlines(&mut self) {
        if self.deadlines.is_empty() {
            self.deadlines = DeadlineWheel::new();
        }
    }

    /// When the first bucket is due, if any.
    pub(super) fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines
            .first_key_value()
            .map(|(tick, _)| tick.saturating_mul(DEADLINE_TICK_MS))
    }

    /// Checks every connection of every bucket due at `now_ms`: closes
    /// those past their deadline, moves the others to their new one.
    pub(super) fn check_deadlines(&mut self, now_ms: u64) {
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().saturating_mul(DEADLINE_TICK_MS) > now_ms {
                break;
            }
            for conn in entry.remove() {
                let conn = conn as ConnId;
                if let Some(c) = self.conns.get_mut(conn) {
                    c.deadline = None;
                    self.check_deadline(conn, now_ms);
                }
            }
        }
    }

    fn check_deadline(&mut self, conn: ConnId, now_ms: u64) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        match due_of(c, self.config.connect_timeout_ms) {
            None => {}
            Some(due) if due.ms() > now_ms => self.schedule_deadline(conn),
            // Also bounds an authentication that never ends (a slow store,
            // a SCRAM client that stops answering).
            Some(Due::Connect(_)) => {
                self.set_close_cause(conn, CloseCause::ConnectTimeout);
                self.close(conn, now_ms);
            }
            Some(Due::KeepAlive(_)) => {
                self.set_close_cause(conn, CloseCause::KeepAliveTimeout);
                self.disconnect_with(conn, ReasonCode::KEEP_ALIVE_TIMEOUT, now_ms);
            }
        }
    }

    /// Connections waiting in the deadline wheel (one entry each at most):
    /// for tests and statistics.
    pub fn scheduled_deadlines(&self) -> usize {
        self.deadlines.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_never_due_before_its_deadlines() {
        for due in [1, 99, 100, 101, 14_999, 15_000, 15_001] {
            let fires = tick_of(due) * DEADLINE_TICK_MS;
            assert!(fires >= due, "{due} fires at {fires}");
            assert!(fires < due + DEADLINE_TICK_MS, "{due} fires at {fires}");
        }
        assert_eq!(tick_of(0), 1);
    }
}
