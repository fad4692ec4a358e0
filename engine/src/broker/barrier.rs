//! Barriers: acknowledgements to a client wait until every other shard has
//! applied an interest, retained or publish update, so that a client that
//! saw SUBACK (or PUBACK of a retained message) can rely on it from any
//! shard, and, with `BrokerConfig::durable`, until the state they promise
//! is on disk (this shard's open persist batch, `persist.rs`; another
//! shard answers only once its own batch holding the delivery is written).
//! Rings are FIFO, so an Ack means everything before it arrived.
//!
//! A handler that broadcasts takes a token from [`Broker::new_barrier_token`],
//! counts the acknowledgements its broadcasts ask for (returned by the
//! broadcasting functions), and passes both to [`Broker::open_barrier`].
//! A barrier that ends with a persist failure turns the acknowledgement
//! held right behind it into a refusal (`refuse.rs`).

use super::conn::{Held, SubUndo};
use super::{Broker, ConnId, Event, ShardId, ShardMessage};
use crate::persist::PersistFailure;

/// A barrier still waiting for acknowledgements from other shards or for
/// a local persist batch.
pub(super) struct Barrier {
    conn: ConnId,
    generation: u64,
    acks_remaining: u32,
    /// Waiting for this shard's open persist batch.
    batch_pending: bool,
    /// The first failure reported (locally or by another shard).
    failure: Option<PersistFailure>,
    /// What to undo if the SUBACK it holds is refused (`subscribe.rs`).
    undo: Vec<SubUndo>,
}

impl Broker {
    /// A new barrier token (non-zero).
    pub(super) fn new_barrier_token(&mut self) -> u64 {
        self.next_barrier += 1;
        self.next_barrier
    }

    /// A SUBACK held by barrier `token` refuses, if the barrier fails,
    /// what `undo` lists (`subscribe.rs`).
    pub(super) fn on_refusal_undo(&mut self, token: u64, undo: Vec<SubUndo>) {
        if let Some(b) = self.barriers.get_mut(&token) {
            b.undo = undo;
        }
    }

    /// Hold `conn`'s next acknowledgements until `acks` Acks for `token`
    /// arrive and, with `wait_batch`, the open persist batch is written.
    /// Nothing to wait for when `acks` is 0 and `wait_batch` false.
    pub(super) fn open_barrier(&mut self, conn: ConnId, token: u64, acks: u32, wait_batch: bool) {
        if acks == 0 && !wait_batch {
            return;
        }
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.rare_mut().held.push_back(Held::Wait(token));
        let generation = c.generation;
        self.barriers.insert(
            token,
            Barrier {
                conn,
                generation,
                acks_remaining: acks,
                batch_pending: wait_batch,
                failure: None,
                undo: Vec::new(),
            },
        );
        if wait_batch {
            let batch = self.persist.open_batch;
            self.persist.waiting.push_back((batch, token));
        }
    }

    /// Whether `conn` holds more than `barrier_held_max_entries` entries.
    pub(super) fn held_over_limit(&self, conn: ConnId) -> bool {
        self.conns.get(conn).is_some_and(|c| {
            c.rare().map_or(0, |r| r.held.len()) > self.config.barrier_held_max_entries
        })
    }

    /// Answer a message from `origin` that carried a non-zero `barrier`
    /// (`failure`: this shard could not store what the message brought).
    pub(super) fn ack_barrier(
        &mut self,
        origin: ShardId,
        barrier: u64,
        failure: Option<PersistFailure>,
    ) {
        if barrier != 0 && origin < self.shard_count && origin != self.shard {
            self.events.push_back(Event::ToShard {
                shard: origin,
                msg: ShardMessage::Ack { barrier, failure },
            });
        }
    }

    /// Another shard applied the message that carried `token` (`remote`),
    /// or this shard's batch that `token` waited for is written; with
    /// `failure`, what it promised could not be stored.
    pub(super) fn barrier_answered(
        &mut self,
        token: u64,
        remote: bool,
        failure: Option<PersistFailure>,
        now_ms: u64,
    ) {
        let Some(b) = self.barriers.get_mut(&token) else {
            return;
        };
        if remote {
            b.acks_remaining = b.acks_remaining.saturating_sub(1);
        } else {
            b.batch_pending = false;
        }
        b.failure = b.failure.or(failure);
        self.barrier_progress(token, now_ms);
    }

    /// Release what `token` held once nothing is left to wait for.
    fn barrier_progress(&mut self, token: u64, now_ms: u64) {
        let Some(b) = self.barriers.get(&token) else {
            return;
        };
        if b.acks_remaining > 0 || b.batch_pending {
            return;
        }
        let Some(b) = self.barriers.remove(&token) else {
            return;
        };
        let (conn, generation, failure) = (b.conn, b.generation, b.failure);
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.generation != generation {
            return;
        }
        let Some(held) = c.rare_mut_if_any().map(|r| &mut r.held) else {
            return;
        };
        let Some(i) = held
            .iter()
            .position(|h| matches!(h, Held::Wait(t) if *t == token))
        else {
            return;
        };
        match failure {
            Some(f) => {
                if let Some(h) = held.get_mut(i) {
                    *h = Held::Refuse(f, b.undo);
                }
            }
            None => {
                held.remove(i);
            }
        }
        self.flush_held(conn, now_ms);
    }

    /// Write held items up to the first barrier still pending.
    fn flush_held(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            let Some(session) = c.state.session() else {
                return;
            };
            let Some(held) = c.rare_mut_if_any().map(|r| &mut r.held) else {
                return;
            };
            match held.front() {
                None | Some(Held::Wait(_)) => return,
                Some(_) => {}
            }
            match held.pop_front() {
                Some(Held::Packet(p)) => self.write_packet(conn, &p),
                Some(Held::Retained {
                    filter,
                    options,
                    subscription_id,
                }) => self.send_retained(session, &filter, options, subscription_id, now_ms),
                Some(Held::Refuse(failure, undo)) => {
                    // The acknowledgement right behind the barrier is the
                    // one it held (the handler wrote it next).
                    if matches!(held.front(), Some(Held::Packet(_))) {
                        if let Some(Held::Packet(p)) = held.pop_front() {
                            self.refuse_ack(conn, session, p, failure, now_ms);
                        }
                    }
                    if !undo.is_empty() {
                        self.undo_subscribe(conn, session, undo);
                    }
                }
                Some(Held::Publish(packet_id)) => {
                    self.send_held_publish(conn, session, packet_id, now_ms)
                }
                Some(Held::Resume { session_present }) => {
                    self.resume(conn, session, session_present, now_ms);
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.release_held_connack();
                    }
                }
                _ => return,
            }
        }
    }
}
