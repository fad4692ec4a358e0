//! Recovery at start-up: the runtime feeds every stored record of this
//! shard (and every retained record) to [`Broker::restore`], then calls
//! [`Broker::finish_restore`], before its listeners accept. Sessions come
//! back offline, as if their connection had ended at the restart (or when
//! it really ended, if the record says so): subscriptions in the router and
//! announced to the other shards, queued and inflight messages in order
//! with their packet ids and stages, inbound QoS 2 packet ids (a PUBLISH
//! re-sent with DUP after the restart is not delivered twice), wills and
//! session expiry re-armed. Message and session expiry count the downtime
//! (records carry wall-clock times, see `Broker::set_wall_clock`).

use std::collections::HashMap;

use bytes::Bytes;

use super::session::{OutState, Outbound, Queued, Session};
use super::{owner_shard, Broker, Event, SessionId, ShardId, ShardMessage};
use crate::codec::{Publish, QoS};
use crate::persist::{
    check_inbound_qos2, split_client_key, Keyspace, MessageRecord, MessageStage, RestoreError,
    RetainedRecord, SessionRecord,
};

/// Records gathered by `restore` until `finish_restore` (they may come in
/// any order).
#[derive(Default)]
pub(super) struct Restoring {
    sessions: Vec<(Bytes, SessionRecord)>,
    messages: HashMap<Bytes, Vec<(u64, MessageRecord)>>,
    inbound: HashMap<Bytes, Vec<u16>>,
}

/// Timers of restored sessions held until every shard has restored: a
/// will due at the restart must reach the restored subscribers of every
/// shard, so it waits until each other shard announced its restored
/// subscriptions ([`ShardMessage::Restored`], behind its `Interest`
/// messages on the ring).
#[derive(Default)]
pub(super) struct Gate {
    /// `finish_restore` ran here.
    finished: bool,
    /// Other shards that sent `Restored` (each sends it once).
    peers_restored: u16,
    /// (session, generation, offline for ms) of the restored sessions, until
    /// the gate opens.
    deferred: Vec<(SessionId, u64, u64)>,
}

/// What is left of a stored message's expiry at `now_ms`: the engine time
/// to take as its reception and the interval to keep, or `None` when it
/// expired. Exact while the downtime fits before the engine's epoch;
/// otherwise the interval is shortened by the whole seconds elapsed.
fn restored_time(
    publish: &mut Publish,
    received_at_wall_ms: u64,
    now_wall_ms: u64,
    now_ms: u64,
) -> Option<u64> {
    let age_ms = now_wall_ms.saturating_sub(received_at_wall_ms);
    if let Some(interval_s) = publish.properties.message_expiry_interval_s {
        if age_ms >= u64::from(interval_s) * 1000 {
            return None;
        }
        if age_ms > now_ms {
            let left_s = u64::from(interval_s) - age_ms / 1000;
            publish.properties.message_expiry_interval_s = Some(left_s as u32);
            return Some(now_ms);
        }
    }
    Some(now_ms.saturating_sub(age_ms))
}

impl Broker {
    /// One stored record. A record that does not decode is reported and
    /// skipped; the others restore. Sessions and their messages take effect
    /// at [`Broker::finish_restore`]; retained messages at once.
    pub fn restore(
        &mut self,
        keyspace: Keyspace,
        key: &[u8],
        value: &[u8],
        now_ms: u64,
    ) -> Result<(), RestoreError> {
        self.start_clock(now_ms);
        if keyspace == Keyspace::Retained {
            return self.restore_retained(key, value, now_ms);
        }
        let (client_id, tail) = split_client_key(keyspace, key)?;
        if owner_shard(client_id, self.shard_count) != self.shard {
            return Err(RestoreError::WrongShard);
        }
        let client_id = Bytes::copy_from_slice(client_id);
        let restoring = self.restoring.get_or_insert_with(Default::default);
        match keyspace {
            Keyspace::Sessions => {
                let record = SessionRecord::decode(value)?;
                restoring.sessions.push((client_id, record));
            }
            Keyspace::Messages => {
                let record = MessageRecord::decode(value)?;
                let mut seq = [0u8; 8];
                seq.copy_from_slice(tail);
                let seq = u64::from_be_bytes(seq);
                restoring
                    .messages
                    .entry(client_id)
                    .or_default()
                    .push((seq, record));
            }
            Keyspace::InboundQos2 | Keyspace::Retained => {
                check_inbound_qos2(value)?;
                let mut pid = [0u8; 2];
                pid.copy_from_slice(tail);
                let pid = u16::from_be_bytes(pid);
                if pid == 0 {
                    return Err(RestoreError::BadKey(keyspace));
                }
                restoring.inbound.entry(client_id).or_default().push(pid);
            }
        }
        Ok(())
    }

    fn restore_retained(
        &mut self,
        key: &[u8],
        value: &[u8],
        now_ms: u64,
    ) -> Result<(), RestoreError> {
        let RetainedRecord {
            mut publish,
            received_at_wall_ms,
        } = RetainedRecord::decode(key, value)?;
        let now_wall = self.persist.wall(now_ms);
        match restored_time(&mut publish, received_at_wall_ms, now_wall, now_ms) {
            Some(received_at_ms) => self.store_retained(publish, received_at_ms),
            None => {
                self.stats.dropped_expired += 1;
                self.persist_retained_expired(vec![publish.topic]);
            }
        }
        Ok(())
    }

    /// Every record is in: rebuild the sessions, their subscriptions (in
    /// the router, announced to the other shards with `ToShard` events),
    /// queues, inflight windows and inbound QoS 2 ids; records without a
    /// session are deleted with the first batch. Then tell every other
    /// shard ([`ShardMessage::Restored`]); the will and expiry timers of
    /// the restored sessions are armed once every other shard has said the
    /// same (at once with one shard), so that a will due at the restart (a
    /// session whose expiry passed during the downtime ends then, its will
    /// published) reaches the restored subscribers of every shard. Call it
    /// on every shard, with or without records; then drain `poll_event`.
    pub fn finish_restore(&mut self, now_ms: u64) {
        self.start_clock(now_ms);
        if self.restore_gate.finished {
            return;
        }
        self.restore_gate.finished = true;
        let offline = self.rebuild_restored(now_ms);
        self.restore_gate.deferred = offline;
        for shard in 0..self.shard_count {
            if shard != self.shard {
                let msg = ShardMessage::Restored { shard: self.shard };
                self.events.push_back(Event::ToShard { shard, msg });
            }
        }
        self.open_restore_gate(now_ms);
    }

    /// Shard `shard` has restored (its subscriptions' interest is in).
    pub(super) fn peer_restored(&mut self, shard: ShardId, now_ms: u64) {
        if shard != self.shard && shard < self.shard_count {
            self.restore_gate.peers_restored = self.restore_gate.peers_restored.saturating_add(1);
        }
        self.open_restore_gate(now_ms);
    }

    /// Arms the deferred timers once this shard and every other one have
    /// restored. A session whose client came back meanwhile is skipped
    /// (its timers are its connection's business now).
    fn open_restore_gate(&mut self, now_ms: u64) {
        let gate = &self.restore_gate;
        if !gate.finished || gate.peers_restored < self.shard_count.saturating_sub(1) {
            return;
        }
        let deferred = std::mem::take(&mut self.restore_gate.deferred);
        for (session, generation, offline_ms) in deferred {
            let current = self
                .sessions
                .get(session)
                .is_some_and(|s| s.generation == generation && s.conn().is_none());
            if current {
                self.arm_offline(session, generation, offline_ms, now_ms);
            }
        }
    }

    /// The records gathered by `restore` as sessions (offline, as listed
    /// for their timers) and retained state.
    fn rebuild_restored(&mut self, now_ms: u64) -> Vec<(SessionId, u64, u64)> {
        let Some(restoring) = self.restoring.take() else {
            return Vec::new();
        };
        let Restoring {
            sessions,
            mut messages,
            mut inbound,
        } = *restoring;
        let now_wall = self.persist.wall(now_ms);
        // Sequence numbers continue above every stored one.
        let max_seq = messages.values().flatten().map(|(seq, _)| *seq).max();
        self.persist.next_seq = self.persist.next_seq.max(max_seq.unwrap_or(0) + 1);
        let mut offline = Vec::with_capacity(sessions.len());
        for (client_id, record) in sessions {
            let msgs = messages.remove(&client_id).unwrap_or_default();
            let pids = inbound.remove(&client_id).unwrap_or_default();
            offline.extend(self.restore_session(client_id, record, msgs, pids, now_wall, now_ms));
        }
        // Orphans (their session's record was lost or ended): deleted.
        for (client_id, msgs) in messages {
            for (seq, _) in msgs {
                self.persist.delete_message(&client_id, seq);
            }
        }
        for (client_id, pids) in inbound {
            for pid in pids {
                self.persist.inbound_qos2(&client_id, pid, false);
            }
        }
        offline
    }

    /// One session back, offline; returns it with its generation and how
    /// long it has been offline (for its timers).
    fn restore_session(
        &mut self,
        client_id: Bytes,
        record: SessionRecord,
        mut msgs: Vec<(u64, MessageRecord)>,
        pids: Vec<u16>,
        now_wall: u64,
        now_ms: u64,
    ) -> Option<(SessionId, u64, u64)> {
        if self.by_client_id.contains(&self.sessions, &client_id) {
            return None; // the same record twice: the first one stands
        }
        let generation = self.generation();
        let mut s = Session::new(
            &client_id[..],
            record.protocol,
            record.expiry_interval_s,
            generation,
        );
        s.username = record.username.as_deref().map(Box::from);
        s.acl = self.session_acl(s.username.as_deref(), &client_id);
        s.will = record.will.map(Box::new);
        s.stored = true;
        s.qos.inbound_qos2 = pids;
        msgs.sort_unstable_by_key(|(seq, _)| *seq);
        let mut last_pid = 0;
        for (seq, m) in msgs {
            let MessageRecord {
                stage,
                mut publish,
                received_at_wall_ms,
                shared_filter,
            } = m;
            let at = restored_time(&mut publish, received_at_wall_ms, now_wall, now_ms);
            let (packet_id, state) = match stage {
                MessageStage::Queued => {
                    let Some(received_at_ms) = at else {
                        // Expired while queued: never delivered.
                        self.stats.dropped_expired += 1;
                        self.persist.delete_message(&client_id, seq);
                        continue;
                    };
                    s.qos.queue.push_back(Queued {
                        publish,
                        received_at_ms,
                        shared_filter,
                        seq,
                    });
                    continue;
                }
                MessageStage::PublishSent(pid) if publish.qos == QoS::ExactlyOnce => {
                    (pid, OutState::AwaitPubRec)
                }
                MessageStage::PublishSent(pid) => (pid, OutState::AwaitPubAck),
                MessageStage::PubRelSent(pid) => (pid, OutState::AwaitPubComp),
            };
            if s.qos.inflight.iter().any(|o| o.packet_id == packet_id) {
                // Two records with one packet id: the later one is stale.
                self.persist.delete_message(&client_id, seq);
                continue;
            }
            last_pid = packet_id;
            s.qos.inflight.push_back(Outbound {
                packet_id,
                state,
                publish,
                // Delivery has started: an expired one is still completed.
                received_at_ms: at.unwrap_or(now_ms),
                shared_filter,
                seq,
            });
        }
        s.allocate_after(last_pid);
        let offline_ms = match record.offline_since_wall_ms {
            Some(since) => now_wall.saturating_sub(since),
            None => 0, // connected until the restart
        };
        s.set_offline_since_ms(now_ms.saturating_sub(offline_ms));
        let session: SessionId = self.sessions.insert(s);
        self.by_client_id.insert(&self.sessions, session);
        for sub in record.subscriptions {
            let (filter, options, id) = (sub.filter, sub.options, sub.subscription_id);
            self.add_subscription(session, filter, options, id, 0);
        }
        if record.offline_since_wall_ms.is_none() {
            // Its record still says connected: rewritten with the time.
            self.persist_session(session);
        }
        Some((session, generation, offline_ms))
    }
}
