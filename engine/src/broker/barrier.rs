//! Cross-shard barriers: acknowledgements to a client wait until every
//! other shard has applied an interest or retained update, so that a client
//! that saw SUBACK (or PUBACK of a retained message) can rely on it from
//! any shard. Rings are FIFO, so an Ack means everything before it arrived.
//!
//! A handler that broadcasts takes a token from [`Broker::new_barrier_token`],
//! counts the acknowledgements its broadcasts ask for (returned by the
//! broadcasting functions), and passes both to [`Broker::open_barrier`].

use super::conn::{ConnState, Held};
use super::{Broker, ConnId, Event, ShardId, ShardMessage};

/// A barrier still waiting for acknowledgements from other shards.
pub(super) struct Barrier {
    conn: ConnId,
    generation: u64,
    acks_remaining: u32,
}

impl Broker {
    /// A new barrier token (non-zero).
    pub(super) fn new_barrier_token(&mut self) -> u64 {
        self.next_barrier += 1;
        self.next_barrier
    }

    /// Hold `conn`'s next acknowledgements until `acks` Acks for `token`
    /// arrive. Nothing to wait for when `acks` is 0.
    pub(super) fn open_barrier(&mut self, conn: ConnId, token: u64, acks: u32) {
        if acks == 0 {
            return;
        }
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.held.push_back(Held::Wait(token));
        let generation = c.generation;
        self.barriers.insert(
            token,
            Barrier {
                conn,
                generation,
                acks_remaining: acks,
            },
        );
    }

    /// Whether `conn` holds more than `barrier_held_max_entries` entries.
    pub(super) fn held_over_limit(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn)
            .is_some_and(|c| c.held.len() > self.config.barrier_held_max_entries)
    }

    /// Answer a message from `origin` that carried a non-zero `barrier`.
    pub(super) fn ack_barrier(&mut self, origin: ShardId, barrier: u64) {
        if barrier != 0 && origin < self.shard_count && origin != self.shard {
            self.events.push_back(Event::ToShard {
                shard: origin,
                msg: ShardMessage::Ack { barrier },
            });
        }
    }

    /// Another shard applied the message that carried `token`.
    pub(super) fn barrier_acked(&mut self, token: u64, now_ms: u64) {
        let Some(b) = self.barriers.get_mut(&token) else {
            return;
        };
        b.acks_remaining = b.acks_remaining.saturating_sub(1);
        if b.acks_remaining > 0 {
            return;
        }
        let (conn, generation) = (b.conn, b.generation);
        self.barriers.remove(&token);
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.generation != generation {
            return;
        }
        c.held
            .retain(|h| !matches!(h, Held::Wait(t) if *t == token));
        self.flush_held(conn, now_ms);
    }

    /// Write held items up to the first barrier still pending.
    fn flush_held(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            let session = match c.state {
                ConnState::Active(s) => s,
                _ => return,
            };
            match c.held.front() {
                None | Some(Held::Wait(_)) => return,
                Some(_) => {}
            }
            match c.held.pop_front() {
                Some(Held::Packet(p)) => self.write_packet(conn, &p),
                Some(Held::Retained {
                    filter,
                    options,
                    subscription_id,
                }) => self.send_retained(session, &filter, options, subscription_id, now_ms),
                _ => return,
            }
        }
    }
}
