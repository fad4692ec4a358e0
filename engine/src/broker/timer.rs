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

impl Broker {
    /// Run `timer` at `due_ms` (or at the first `handle_timeout` after it).
    pub(super) fn arm(&mut self, due_ms: u64, timer: Timer) {
        self.timers.push(Reverse((due_ms, timer)));
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
