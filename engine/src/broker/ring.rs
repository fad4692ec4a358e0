//! A message from another shard's ring ([`ShardMessage`]): publishes to
//! route here, shared-group deliveries, interest and retained updates, and
//! barrier acknowledgements. A message carrying a barrier is answered once
//! what it changed here is applied (and, with `durable`, on disk).

use super::route::Source;
use super::{Broker, ShardMessage};

impl Broker {
    /// A message from another shard's ring.
    pub fn handle_shard_message(&mut self, msg: ShardMessage, now_ms: u64) {
        self.start_clock(now_ms);
        let recorded_before = self.persist.recorded;
        match msg {
            ShardMessage::Publish {
                mut publish,
                received_at_ms,
                origin,
                barrier,
            } => {
                self.route(&mut publish, Source::Shard, received_at_ms, now_ms, 0);
                self.answer_barrier(origin, barrier, recorded_before);
            }
            ShardMessage::SharedPublish {
                filter,
                mut publish,
                received_at_ms,
                key,
                origin,
                barrier,
            } => {
                self.deliver_shared_local(&filter, &mut publish, received_at_ms, key, now_ms);
                self.answer_barrier(origin, barrier, recorded_before);
            }
            ShardMessage::SharedRoute {
                filter,
                mut publish,
                received_at_ms,
                origin,
                barrier,
            } => {
                let at = received_at_ms;
                let forwarded =
                    self.route_shared_home(&filter, &mut publish, at, (origin, barrier), now_ms);
                if !forwarded {
                    self.answer_barrier(origin, barrier, recorded_before);
                }
            }
            ShardMessage::Interest {
                filter,
                shard,
                count,
                barrier,
            } => {
                self.apply_interest(&filter, shard, count);
                self.ack_barrier(shard, barrier, None);
            }
            ShardMessage::Retain {
                publish,
                received_at_ms,
                origin,
                barrier,
            } => {
                self.persist_retained(&publish, received_at_ms);
                self.store_retained(publish, received_at_ms);
                self.answer_barrier(origin, barrier, recorded_before);
            }
            ShardMessage::Ack { barrier, failure } => {
                self.barrier_answered(barrier, true, failure, now_ms)
            }
            ShardMessage::Restored { shard } => self.peer_restored(shard, now_ms),
        }
    }
}
