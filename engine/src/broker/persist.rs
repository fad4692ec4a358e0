//! Recording durable state (issue #13; the records are `crate::persist`):
//! with `BrokerConfig::durable`, every change to a session that outlives
//! its connection, to its queued and inflight messages, to its inbound
//! QoS 2 packet ids and to retained messages becomes a [`PersistOp`]; the
//! runtime takes them as a batch per loop turn and reports when the batch
//! is on disk. Acknowledgements that promise durability wait for that
//! (`barrier.rs`: a barrier also waits for a local batch). Without
//! `durable` every recording function returns at its first test: nothing
//! is recorded, nothing held.

use std::collections::VecDeque;

use bytes::Bytes;

use super::session::Session;
use super::{owner_shard, Broker, ShardId};
use crate::codec::Publish;
use crate::persist::{
    inbound_qos2_key, inbound_qos2_value, message_key, session_key, Keyspace, MessageRecord,
    MessageStage, PersistBatch, PersistFailure, PersistOp, RetainedRecord, SessionRecord,
};

/// A shard's recording state.
#[derive(Default)]
pub(super) struct PersistState {
    /// `BrokerConfig::durable`.
    pub(super) on: bool,
    ops: Vec<PersistOp>,
    /// Client ids whose session record is rewritten (or deleted) when the
    /// batch is taken: a session changed several times in one loop turn is
    /// written once, as it is then.
    dirty_sessions: Vec<Bytes>,
    /// Id of the batch being filled (the next `take_persist_batch`).
    pub(super) open_batch: u64,
    /// Changes recorded so far: a handler compares it before and after to
    /// know whether its acknowledgement must wait for the open batch.
    pub(super) recorded: u64,
    /// Wall-clock milliseconds minus engine milliseconds (`set_wall_clock`).
    wall_offset_ms: i64,
    /// Sequence numbers of message records (unique per shard and run, and
    /// above every restored one).
    pub(super) next_seq: u64,
    /// Barriers whose local part waits for a batch: (batch, token).
    pub(super) waiting: VecDeque<(u64, u64)>,
    /// Barrier acknowledgements owed to other shards once a batch is
    /// written: (batch, origin, token).
    pub(super) owed_acks: VecDeque<(u64, ShardId, u64)>,
}

impl PersistState {
    pub(super) fn new(on: bool) -> PersistState {
        PersistState {
            on,
            open_batch: 1,
            next_seq: 1,
            ..PersistState::default()
        }
    }

    /// Engine time `ms` as wall-clock milliseconds.
    pub(super) fn wall(&self, ms: u64) -> u64 {
        let wall = i128::from(ms) + i128::from(self.wall_offset_ms);
        u64::try_from(wall.max(0)).unwrap_or(u64::MAX)
    }

    fn push(&mut self, keyspace: Keyspace, key: Bytes, value: Option<Bytes>) {
        self.recorded += 1;
        // The same record again (a message queued then sent at once): the
        // newer value replaces the older op, ops applying in order anyway.
        if let Some(last) = self.ops.last_mut() {
            if last.keyspace == keyspace && last.key == key {
                last.value = value;
                return;
            }
        }
        self.ops.push(PersistOp {
            keyspace,
            key,
            value,
        });
    }

    /// A new message sequence number.
    pub(super) fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// The session of `client_id` changed: its record is rewritten.
    pub(super) fn session_changed(&mut self, client_id: &[u8]) {
        self.recorded += 1;
        if !self.dirty_sessions.iter().any(|d| d[..] == *client_id) {
            self.dirty_sessions.push(Bytes::copy_from_slice(client_id));
        }
    }

    /// Put the message record `seq` of the session of `client_id` at `stage`.
    pub(super) fn put_message(
        &mut self,
        client_id: &[u8],
        seq: u64,
        stage: MessageStage,
        publish: &Publish,
        received_at_ms: u64,
        shared_filter: Option<&Bytes>,
    ) {
        let record = MessageRecord {
            stage,
            publish: match stage {
                // The message itself is not needed any more, only its id.
                MessageStage::PubRelSent(_) => Publish {
                    qos: publish.qos,
                    ..Publish::default()
                },
                _ => publish.clone(),
            },
            received_at_wall_ms: self.wall(received_at_ms),
            shared_filter: shared_filter.cloned(),
        };
        // A message that does not encode is over the protocol's limits:
        // it is never delivered either (dropped at `drain_queue`).
        if let Some(value) = record.encode() {
            self.push(Keyspace::Messages, message_key(client_id, seq), Some(value));
        }
    }

    pub(super) fn delete_message(&mut self, client_id: &[u8], seq: u64) {
        self.push(Keyspace::Messages, message_key(client_id, seq), None);
    }

    /// An inbound QoS 2 packet id awaiting PUBREL (`present`) or released.
    pub(super) fn inbound_qos2(&mut self, client_id: &[u8], packet_id: u16, present: bool) {
        let value = present.then(inbound_qos2_value);
        self.push(
            Keyspace::InboundQos2,
            inbound_qos2_key(client_id, packet_id),
            value,
        );
    }

    /// Every record of `s` deleted (the session ended or is no longer kept).
    fn purge(&mut self, s: &Session) {
        for o in &s.qos.inflight {
            self.delete_message(&s.client_id, o.seq);
        }
        for q in &s.qos.queue {
            self.delete_message(&s.client_id, q.seq);
        }
        for pid in &s.qos.inbound_qos2 {
            self.inbound_qos2(&s.client_id, *pid, false);
        }
        self.push(Keyspace::Sessions, session_key(&s.client_id), None);
    }
}

/// Whether session `s` is stored: durable broker, and the session outlives
/// its connection.
pub(super) fn persisted(p: &PersistState, s: &Session) -> bool {
    p.on && s.expiry_interval_s > 0
}

impl Broker {
    /// The wall clock reads `wall_ms` (milliseconds since the Unix epoch)
    /// at engine time `now_ms`. Records carry wall-clock times, so that
    /// Message Expiry and Session Expiry count the downtime after a
    /// restart whatever the new process's engine epoch. Call it once per
    /// start, before `restore`; without it engine time is taken as wall time.
    pub fn set_wall_clock(&mut self, now_ms: u64, wall_ms: u64) {
        let offset = i128::from(wall_ms) - i128::from(now_ms);
        self.persist.wall_offset_ms =
            i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
    }

    /// Every op recorded since the last call, as batch `id` (ids increase
    /// by one from 1); `None` when nothing changed (always without
    /// `BrokerConfig::durable`). The runtime calls it once per loop turn,
    /// after draining `poll_event`, writes the batch off the shard thread
    /// and reports the outcome with [`Broker::handle_persisted`].
    pub fn take_persist_batch(&mut self) -> Option<PersistBatch> {
        if !self.persist.on {
            return None;
        }
        let dirty = std::mem::take(&mut self.persist.dirty_sessions);
        for client_id in dirty {
            self.flush_session_record(&client_id);
        }
        if self.persist.ops.is_empty() {
            return None;
        }
        let id = self.persist.open_batch;
        self.persist.open_batch += 1;
        Some(PersistBatch {
            id,
            ops: std::mem::take(&mut self.persist.ops),
        })
    }

    /// The store finished batch `id` (and, batches completing in order,
    /// every one before it): the acknowledgements that waited for it are
    /// sent, or with `Err` refused (v5 PUBACK / PUBREC / SUBACK with 0x97
    /// for a full disk, 0x80 for an I/O error; where the protocol has no
    /// code the connection is closed unacknowledged, so the client sends
    /// again). Then drain `poll_event`.
    pub fn handle_persisted(&mut self, id: u64, result: Result<(), PersistFailure>, now_ms: u64) {
        let failure = result.err();
        while let Some(&(batch, token)) = self.persist.waiting.front() {
            if batch > id {
                break;
            }
            self.persist.waiting.pop_front();
            self.barrier_answered(token, false, failure, now_ms);
        }
        while let Some(&(batch, origin, token)) = self.persist.owed_acks.front() {
            if batch > id {
                break;
            }
            self.persist.owed_acks.pop_front();
            self.ack_barrier(origin, token, failure);
        }
    }

    /// The session record of `client_id` as the session is now: written,
    /// or deleted when the session ended or is no longer kept.
    fn flush_session_record(&mut self, client_id: &Bytes) {
        let session = self.by_client_id.get(&self.sessions, client_id);
        let Some(s) = session.and_then(|sid| self.sessions.get_mut(sid)) else {
            self.persist
                .push(Keyspace::Sessions, session_key(client_id), None);
            return;
        };
        if !persisted(&self.persist, s) {
            if s.stored {
                s.stored = false;
                self.persist.purge(s);
            }
            return;
        }
        let record = SessionRecord {
            protocol: s.protocol,
            expiry_interval_s: s.expiry_interval_s,
            offline_since_wall_ms: match s.conn() {
                Some(_) => None,
                None => Some(self.persist.wall(s.offline_since_ms())),
            },
            username: s.username.as_deref().map(Bytes::copy_from_slice),
            will: s.will.as_deref().cloned(),
            subscriptions: s.subscriptions.to_vec(),
        };
        let value = record.encode().or_else(|| {
            // A will over the protocol's limits cannot be published
            // either: the session is stored without it.
            SessionRecord {
                will: None,
                ..record
            }
            .encode()
        });
        self.persist
            .push(Keyspace::Sessions, session_key(client_id), value);
    }

    /// Session `session` changed (connected, detached, subscribed, its
    /// will went): its record is rewritten with the next batch.
    pub(super) fn persist_session(&mut self, session: usize) {
        if !self.persist.on {
            return;
        }
        if let Some(s) = self.sessions.get_mut(session) {
            if persisted(&self.persist, s) {
                // Stored from now on: its end deletes every record of it,
                // including those of this batch.
                s.stored = true;
            }
            if s.stored {
                self.persist.session_changed(&s.client_id);
            }
        }
    }

    /// Session `session` ends: every record of it is deleted.
    pub(super) fn persist_session_end(&mut self, session: usize) {
        if !self.persist.on {
            return;
        }
        if let Some(s) = self.sessions.get_mut(session) {
            if s.stored {
                s.stored = false;
                self.persist.purge(s);
            }
        }
    }

    /// A retained message was set (or cleared, empty payload) here. The
    /// topic's owner shard records it, so each key has one writer; `$SYS`
    /// topics are the broker's own and not stored.
    pub(super) fn persist_retained(&mut self, publish: &Publish, received_at_ms: u64) {
        if !self.persist.on
            || publish.topic.starts_with(b"$SYS/")
            || owner_shard(&publish.topic, self.shard_count) != self.shard
        {
            return;
        }
        let key = publish.topic.clone();
        if publish.payload.is_empty() {
            self.persist.push(Keyspace::Retained, key, None);
            return;
        }
        let record = RetainedRecord {
            publish: publish.clone(),
            received_at_wall_ms: self.persist.wall(received_at_ms),
        };
        if let Some(value) = record.encode() {
            self.persist.push(Keyspace::Retained, key, Some(value));
        }
    }

    /// Retained topics that expired here: their owner deletes their records.
    pub(super) fn persist_retained_expired(&mut self, topics: Vec<Bytes>) {
        if !self.persist.on {
            return;
        }
        for topic in topics {
            if owner_shard(&topic, self.shard_count) == self.shard {
                self.persist.push(Keyspace::Retained, topic, None);
            }
        }
    }

    /// A message from `origin` carried `barrier`: answer now, or once the
    /// open batch is written if handling it recorded anything (changes
    /// counted `recorded_before` when it started).
    pub(super) fn answer_barrier(&mut self, origin: ShardId, barrier: u64, recorded_before: u64) {
        if barrier == 0 {
            return;
        }
        if self.persist.on && self.persist.recorded != recorded_before {
            let batch = self.persist.open_batch;
            self.persist.owed_acks.push_back((batch, origin, barrier));
        } else {
            self.ack_barrier(origin, barrier, None);
        }
    }

    /// Whether a handler that started when `recorded_before` changes were
    /// counted recorded anything (its acknowledgement then waits for the
    /// open batch).
    pub(super) fn recorded_since(&self, recorded_before: u64) -> bool {
        self.persist.on && self.persist.recorded != recorded_before
    }
}
