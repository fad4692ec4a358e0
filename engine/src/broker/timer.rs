//! The broker's timers: delayed will, session expiry and the periodic
//! `$SYS` publish, in one heap ordered by due time. A timer names its
//! target with a generation, so one whose session moved on meanwhile is
//! ignored when it fires. Connection deadlines (CONNECT timeout,
//! keep-alive) are not here but in the wheel of `deadlines.rs`: one entry
//! per connection, removed when it closes.

use std::cmp::Reverse;

use super::{Broker, SessionId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    Will { session: SessionId, generation: u64 },
    SessionExpiry { session: SessionId, generation: u64 },
    Sys,
}

/// How long a connection may stay silent: one and a half times its
/// keep-alive ([MQTT-3.1.2-22] (v5) / [MQTT-3.1.2-24] (v3.1.1)).
pub(super) fn keep_alive_grace_ms(keep_alive_ms: u64) -> u64 {
    keep_alive_ms * 3 / 2
}

/// Below this capacity (entries of 32 bytes) the timer heap is not
/// shrunk (`Broker::shrink_timers`).
pub(super) const TIMERS_SHRINK_MIN: usize = 64;

impl Broker {
    /// Run `timer` at `due_ms` (or at the first `handle_timeout` after it).
    pub(super) fn arm(&mut self, due_ms: u64, timer: Timer) {
        self.timers.push(Reverse((due_ms, timer)));
    }

    /// The shard starts serving: starts the clock (uptime, the `$SYS`
    /// timer) and publishes the `$SYS` statistics now rather than
    /// `sys_interval_s` after the first connection, so that their retained
    /// messages are there from the start (as Mosquitto's are). Their
    /// topics, payloads and the retained index's tables are then allocated
    /// before any connection: allocated during the first burst of
    /// connections, such long-lived blocks each kept an allocator page of
    /// the burst resident after it closed (docs/benchmarks.md, "Memory
    /// given back after closes: the first `$SYS` publish at start-up").
    /// Call once, after restoring stored state; a no-op for the `$SYS`
    /// part with `sys_interval_s = 0`.
    pub fn start(&mut self, now_ms: u64) {
        self.start_clock(now_ms);
        self.clock_ms = now_ms;
        if self.config.sys_interval_s > 0 {
            self.publish_sys(now_ms);
        }
    }

    /// Gives back the capacity a burst left in the timer heap, once it
    /// holds under a quarter of it and that is above
    /// [`TIMERS_SHRINK_MIN`] entries: to twice its length, never below the
    /// minimum. A small heap is left alone: it always holds the `$SYS`
    /// timer, and shrinking it to that one entry after every burst of
    /// closes moved it to a new block, allocated among the burst's freed
    /// ones, where it kept an allocator page resident (docs/benchmarks.md,
    /// "Memory given back after closes: the first `$SYS` publish at
    /// start-up").
    pub(super) fn shrink_timers(&mut self) {
        let (len, capacity) = (self.timers.len(), self.timers.capacity());
        if capacity > TIMERS_SHRINK_MIN && len < capacity / 4 {
            self.timers.shrink_to((len * 2).max(TIMERS_SHRINK_MIN));
        }
    }

    /// The first time the broker sees: start the uptime and the `$SYS` timer.
    pub(super) fn start_clock(&mut self, now_ms: u64) {
        if self.started_ms.is_none() {
            self.started_ms = Some(now_ms);
            self.arm_sys(now_ms);
        }
    }

    fn arm_sys(&mut self, now_ms: u64) {
        if self.config.sys_interval_s > 0 {
            let due = now_ms + u64::from(self.config.sys_interval_s) * 1000;
            self.arm(due, Timer::Sys);
        }
    }

    pub(super) fn fire(&mut self, timer: Timer, now_ms: u64) {
        match timer {
            Timer::Will {
                session,
                generation,
            } => {
                let due = match self.sessions.get(session) {
                    Some(s) if s.generation == generation && s.conn().is_none() => s.will.is_some(),
                    _ => false,
                };
                if due {
                    self.publish_will(session, now_ms);
                }
            }
            Timer::SessionExpiry {
                session,
                generation,
            } => {
                let due = matches!(self.sessions.get(session), Some(s) if s.generation == generation && s.conn().is_none());
                if due {
                    self.stats.sessions_expired += 1;
                    self.end_session(session, now_ms);
                }
            }
            Timer::Sys => {
                self.publish_sys(now_ms);
                let expired = self.retained.remove_expired(now_ms);
                self.persist_retained_expired(expired);
                self.arm_sys(now_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;

    #[test]
    fn start_publishes_sys_at_once_and_arms_the_next() {
        let mut broker = Broker::new(BrokerConfig::default(), 0, 1);
        assert_eq!(broker.retained.count, 0);
        broker.start(5_000);
        assert!(broker.retained.count > 0, "$SYS retained at start-up");
        let interval_ms = u64::from(BrokerConfig::default().sys_interval_s) * 1000;
        assert_eq!(broker.poll_timeout(), Some(5_000 + interval_ms));
        // Off: nothing published, no timer.
        let config = BrokerConfig {
            sys_interval_s: 0,
            ..BrokerConfig::default()
        };
        let mut quiet = Broker::new(config, 0, 1);
        quiet.start(5_000);
        assert_eq!(quiet.retained.count, 0);
        assert_eq!(quiet.poll_timeout(), None);
    }

    #[test]
    fn a_small_timer_heap_keeps_its_block_and_a_grown_one_shrinks() {
        let mut broker = Broker::new(BrokerConfig::default(), 0, 1);
        broker.start(0);
        for i in 0..3 {
            broker.arm(1_000 + i, Timer::Sys);
        }
        broker.timers.retain(|Reverse((due, _))| *due > 1_002);
        let (capacity, at) = (broker.timers.capacity(), broker.timers.as_slice().as_ptr());
        assert!(capacity > broker.timers.len());
        broker.shrink_memory();
        assert_eq!(broker.timers.capacity(), capacity, "small: not reallocated");
        assert_eq!(broker.timers.as_slice().as_ptr(), at);
        // A burst's worth of timers, then gone.
        for i in 0..10_000 {
            broker.arm(2_000 + i, Timer::Sys);
        }
        broker.timers.retain(|Reverse((due, _))| *due > 11_990);
        broker.shrink_memory();
        assert_eq!(broker.timers.len(), 9);
        assert_eq!(broker.timers.capacity(), TIMERS_SHRINK_MIN);
    }
}
