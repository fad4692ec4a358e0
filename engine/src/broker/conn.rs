//! One network connection: its state, outgoing buffer, topic aliases in
//! both directions and acknowledgements held behind a barrier, and the ways
//! the broker writes to it or closes it.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU64;

use bytes::{Bytes, BytesMut};

use super::backlog::Backlogged;
use super::message::fnv;
use super::pending_auth::PendingAuth;
use super::short_bytes::ShortBytes;
use super::{Broker, CloseCause, ConnId, Event, SessionId};
use crate::codec::{
    self, Disconnect, EncodeError, Packet, Protocol, Publish, ReasonCode, SubscriptionOptions,
};
use crate::persist::{PersistFailure, StoredSubscription};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    AwaitConnect,
    /// CONNECT received; its authentication is in progress (`Conn::auth`).
    Authenticating,
    /// Its session's slab key in 4 bytes (a shard never holds 2^32
    /// sessions), so that the state takes 8 bytes, not 16
    /// ([`ConnState::active`], [`ConnState::session`]).
    Active(u32),
    Closing,
}

impl ConnState {
    /// Active, attached to `session`.
    pub(super) fn active(session: SessionId) -> ConnState {
        // A key over 32 bits cannot occur; it would name no session.
        ConnState::Active(u32::try_from(session).unwrap_or(u32::MAX))
    }

    /// The session of an active connection.
    pub(super) fn session(self) -> Option<SessionId> {
        match self {
            ConnState::Active(session) => Some(session as SessionId),
            _ => None,
        }
    }
}

pub(super) struct Conn {
    pub(super) state: ConnState,
    pub(super) protocol: Protocol,
    pub(super) out: BytesMut,
    pub(super) transmit_queued: bool,
    /// Close after 1.5 times this long without a packet, in seconds (the
    /// CONNECT's keep-alive); 0 = keep-alive off.
    pub(super) keep_alive_s: u16,
    /// The last packet's time once active; the accept time before.
    pub(super) last_packet_ms: u64,
    /// Its place in the deadline wheel (`deadlines.rs`), if any.
    pub(super) deadline: Option<DeadlineSlot>,
    pub(super) client_packet_size_max_bytes: u32,
    pub(super) client_receive_maximum: u16,
    /// min(our topic_alias_outbound_max, the client's Topic Alias Maximum).
    pub(super) aliases_out_max: u16,
    pub(super) generation: u64,
    /// What most connections never need ([`ConnRare`]): made on first use,
    /// dropped again by [`Conn::trim_rare`] once it holds nothing.
    rare: Option<Box<ConnRare>>,
    /// Authenticated with SCRAM-SHA-256 (v5 enhanced authentication), so
    /// AUTH packets may re-authenticate it.
    pub(super) enhanced_auth: bool,
    /// Its CONNACK waits in `held` (durable storage): nothing else is
    /// written to it meanwhile (QoS 1/2 messages wait in the session queue).
    pub(super) connack_held: bool,
    /// Listed in `Broker::out_kept`: its outgoing buffer is kept while it
    /// is busy (`out_release.rs`).
    pub(super) out_kept: bool,
    /// It took a batch since the last walk of `out_kept`.
    pub(super) out_used: bool,
}

/// The parts of a connection that an idle one does not use, boxed together
/// behind [`Conn::rare`] so that it pays one pointer for all of them
/// (docs/benchmarks.md, memory per idle connection).
#[derive(Default)]
pub(super) struct ConnRare {
    /// Inbound topic aliases, index = alias - 1; made on the first alias.
    pub(super) aliases: Box<[Option<Bytes>]>,
    /// Acknowledgements held back, in order, behind a cross-shard barrier.
    pub(super) held: VecDeque<Held>,
    /// What waits behind a full outgoing buffer, in order (`deliver.rs`).
    pub(super) backlog: VecDeque<Backlogged>,
    /// QoS 0 messages in `backlog` (retained ones sent on SUBSCRIBE are
    /// not counted), against `outgoing_queue_max_messages`.
    pub(super) backlog_messages: usize,
    /// Their topic and payload bytes, against `outgoing_queue_max_bytes`.
    pub(super) backlog_bytes: usize,
    /// Why the engine ends this connection (`connlog`, when logging; set
    /// once, at its end).
    pub(super) close_cause: Option<CloseCause>,
    /// The client id of the session it left when it stopped being active
    /// (`connlog`, when logging: its close record names it; while active
    /// the session's own id is used). Inline when short: no heap block.
    pub(super) client_id: Option<ShortBytes>,
    /// Outbound topic aliases (v5, when the client allows them), least
    /// recently used replaced first; made on the first PUBLISH that uses
    /// one.
    pub(super) aliases_out: Option<Box<OutAliases>>,
    /// An authentication in progress (CONNECT or re-authentication).
    pub(super) auth: Option<Box<PendingAuth>>,
}

impl ConnRare {
    /// Holds nothing worth a box: no queued item, no buffer kept for
    /// reuse, nothing to log.
    fn is_vacant(&self) -> bool {
        self.aliases.is_empty()
            && self.held.is_empty()
            && self.held.capacity() == 0
            && self.backlog.is_empty()
            && self.backlog.capacity() == 0
            && self.close_cause.is_none()
            && self.client_id.is_none()
            && self.aliases_out.is_none()
            && self.auth.is_none()
    }
}

/// Where a connection sits in the deadline wheel (`deadlines.rs`): its
/// bucket and its index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DeadlineSlot {
    /// Never 0 (`tick_of`), so that `Option<DeadlineSlot>` takes no more room.
    pub(super) tick: NonZeroU64,
    pub(super) index: u32,
}

/// A subscription change a held SUBSCRIBE or UNSUBSCRIBE made: undone if
/// its SUBACK / UNSUBACK is refused, so that the session keeps what the
/// client was told (no message flows for a subscription it was told
/// failed; one it was told it could not remove stays).
#[derive(Debug)]
pub(super) struct SubUndo {
    /// The filter changed.
    pub(super) filter: Bytes,
    /// What the SUBSCRIBE set (`None`: the UNSUBSCRIBE removed it).
    pub(super) set: Option<StoredSubscription>,
    /// What it replaced (same filter), if anything.
    pub(super) previous: Option<StoredSubscription>,
}

/// An item of a connection's held queue (see [`Broker::write_ack`]).
#[allow(clippy::large_enum_variant)] // rare (cross-shard barriers only), not worth a Box
pub(super) enum Held {
    /// Wait for the barrier with this token.
    Wait(u64),
    Packet(Packet),
    /// Send the retained messages matching a new subscription.
    Retained {
        filter: Bytes,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    },
    /// The barrier before it ended with a persist failure: the
    /// acknowledgement behind it is refused (`refuse.rs`), and the
    /// subscription changes of a refused SUBACK / UNSUBACK undone.
    Refuse(PersistFailure, Vec<SubUndo>),
    /// Send the inflight QoS 2 PUBLISH with this packet id (held until its
    /// record is on disk, so that a restart resends it with the same id).
    Publish(u16),
    /// The held CONNACK was sent: resend inflight messages, drain the queue.
    Resume {
        session_present: bool,
    },
}

/// "No slot" in [`OutAliases`]' recency list.
const NIL: u16 = u16::MAX;

/// One outbound alias: the topic it stands for (its own bytes, so that it
/// does not keep a read buffer alive, reused when the alias is replaced)
/// and its place in the recency list.
struct AliasSlot {
    topic: Vec<u8>,
    hash: u64,
    /// Towards the most recently used end.
    newer: u16,
    /// Towards the least recently used end.
    older: u16,
}

/// The outbound topic aliases of one connection: at most
/// `Conn::aliases_out_max` (alias = slot index + 1), the least recently
/// used one replaced when a new topic needs one. Lookup by topic hash and
/// recency updates are O(1); once every slot exists, replacing reuses the
/// slot's buffer and the map's room, so a publish allocates nothing
/// (a topic longer than the replaced one may grow that buffer once).
pub(super) struct OutAliases {
    slots: Vec<AliasSlot>,
    by_hash: HashMap<u64, u16>,
    /// Most and least recently used slots (`NIL` when empty).
    newest: u16,
    oldest: u16,
}

/// What [`OutAliases::choose`] decided for one PUBLISH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AliasUse {
    /// The client knows this alias for the topic: send an empty topic.
    Known(u16),
    /// Send the topic with this alias, then [`OutAliases::commit`] it
    /// (slot `alias - 1`, new or replacing its least recently used topic).
    Set(u16),
    /// No alias (a hash shared with another aliased topic).
    None,
}

impl Default for OutAliases {
    fn default() -> Self {
        OutAliases {
            slots: Vec::new(),
            by_hash: HashMap::new(),
            newest: NIL,
            oldest: NIL,
        }
    }
}

impl OutAliases {
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn unlink(&mut self, i: u16) {
        let (newer, older) = match self.slots.get(usize::from(i)) {
            Some(s) => (s.newer, s.older),
            None => return,
        };
        match self.slots.get_mut(usize::from(newer)) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.slots.get_mut(usize::from(older)) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
    }

    fn push_newest(&mut self, i: u16) {
        let old_newest = self.newest;
        if let Some(s) = self.slots.get_mut(usize::from(i)) {
            s.newer = NIL;
            s.older = old_newest;
        }
        match self.slots.get_mut(usize::from(old_newest)) {
            Some(n) => n.newer = i,
            None => self.oldest = i,
        }
        self.newest = i;
    }

    /// The alias to use for `topic` with at most `max` aliases; a known
    /// one becomes the most recently used.
    pub(super) fn choose(&mut self, topic: &[u8], max: u16) -> AliasUse {
        let hash = fnv(topic);
        if let Some(&i) = self.by_hash.get(&hash) {
            let same = self
                .slots
                .get(usize::from(i))
                .is_some_and(|s| s.topic == topic);
            if !same {
                return AliasUse::None;
            }
            self.unlink(i);
            self.push_newest(i);
            return AliasUse::Known(i + 1);
        }
        if self.slots.len() < usize::from(max) {
            return AliasUse::Set(self.slots.len() as u16 + 1);
        }
        match self.oldest {
            NIL => AliasUse::None,
            i => AliasUse::Set(i + 1),
        }
    }

    /// The client has been sent `topic` with `alias` (from `choose`'s `Set`
    /// with the same `max`).
    pub(super) fn commit(&mut self, topic: &[u8], alias: u16, max: u16) {
        let Some(i) = alias.checked_sub(1) else {
            return;
        };
        let hash = fnv(topic);
        if usize::from(i) == self.slots.len() {
            if self.slots.is_empty() {
                // Room for the whole table at once: no growth per publish.
                self.slots.reserve_exact(usize::from(max));
                self.by_hash.reserve(usize::from(max));
            }
            self.slots.push(AliasSlot {
                topic: topic.to_vec(),
                hash,
                newer: NIL,
                older: NIL,
            });
        } else {
            self.unlink(i);
            let Some(s) = self.slots.get_mut(usize::from(i)) else {
                return;
            };
            if self.by_hash.get(&s.hash) == Some(&i) {
                self.by_hash.remove(&s.hash);
            }
            s.topic.clear();
            s.topic.extend_from_slice(topic);
            s.hash = hash;
        }
        self.by_hash.insert(hash, i);
        self.push_newest(i);
    }
}

impl Conn {
    /// A connection waiting for its CONNECT.
    pub(super) fn new(generation: u64, now_ms: u64) -> Conn {
        Conn {
            state: ConnState::AwaitConnect,
            protocol: Protocol::V3_1_1,
            out: BytesMut::new(),
            transmit_queued: false,
            keep_alive_s: 0,
            last_packet_ms: now_ms,
            deadline: None,
            client_packet_size_max_bytes: u32::MAX,
            client_receive_maximum: u16::MAX,
            aliases_out_max: 0,
            generation,
            rare: None,
            enhanced_auth: false,
            connack_held: false,
            out_kept: false,
            out_used: false,
        }
    }

    /// Its rarely used parts, if any were ever needed.
    pub(super) fn rare(&self) -> Option<&ConnRare> {
        self.rare.as_deref()
    }

    /// Its rarely used parts, made now if they were not yet.
    pub(super) fn rare_mut(&mut self) -> &mut ConnRare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Its rarely used parts, if any were ever needed (mutable).
    pub(super) fn rare_mut_if_any(&mut self) -> Option<&mut ConnRare> {
        self.rare.as_deref_mut()
    }

    /// The authentication in progress, if any.
    pub(super) fn auth(&self) -> Option<&PendingAuth> {
        self.rare()?.auth.as_deref()
    }

    /// The authentication in progress, if any (mutable).
    pub(super) fn auth_mut(&mut self) -> Option<&mut PendingAuth> {
        self.rare_mut_if_any()?.auth.as_deref_mut()
    }

    /// Starts (or replaces) the authentication in progress.
    pub(super) fn set_auth(&mut self, pending: Box<PendingAuth>) {
        self.rare_mut().auth = Some(pending);
    }

    /// Ends the authentication in progress: what it was, if any.
    pub(super) fn take_auth(&mut self) -> Option<Box<PendingAuth>> {
        let pending = self.rare_mut_if_any()?.auth.take();
        self.trim_rare();
        pending
    }

    /// Drops the rarely used parts once they hold nothing (after a held
    /// CONNACK went out, for instance). A backlog keeps its buffer, so a
    /// slow subscriber does not allocate it again for every burst.
    pub(super) fn trim_rare(&mut self) {
        if self.rare.as_ref().is_some_and(|r| r.is_vacant()) {
            self.rare = None;
        }
    }

    /// After a held CONNACK went out (durable storage): unless more waits,
    /// the held queue's buffer and the box go, so that an idle connection
    /// of a stored session costs what any other does. (A connection that
    /// keeps using barriers keeps its buffer: see `barrier.rs`.)
    pub(super) fn release_held_connack(&mut self) {
        if let Some(rare) = self.rare.as_deref_mut() {
            if rare.held.is_empty() {
                rare.held = VecDeque::new();
            }
        }
        self.trim_rare();
    }

    /// Acknowledgements wait behind a barrier (`barrier.rs`).
    pub(super) fn has_held(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| !r.held.is_empty())
    }

    /// Messages wait behind a full outgoing buffer (`deliver.rs`).
    pub(super) fn has_backlog(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| !r.backlog.is_empty())
    }

    /// The outbound QoS 1/2 window: the smaller of our `inflight_max` and
    /// the client's Receive Maximum ([MQTT-3.3.4-7]).
    pub(super) fn inflight_window(&self, inflight_max: u16) -> usize {
        usize::from(inflight_max.min(self.client_receive_maximum))
    }

    /// Tell the runtime (once per batch) that this connection has bytes to write.
    pub(super) fn queue_transmit(&mut self, conn: ConnId, events: &mut VecDeque<Event>) {
        if !self.transmit_queued {
            self.transmit_queued = true;
            events.push_back(Event::Transmit(conn));
        }
    }

    /// Encode a PUBLISH into the outgoing buffer. With outbound aliases
    /// (the client's Topic Alias Maximum and ours both above 0), a topic
    /// without an alias gets one (new, or the least recently used one,
    /// replaced: MQTT 5.0 3.3.2.3.4 lets the sender change a mapping by
    /// sending the topic with the alias) and later PUBLISHes of it an empty
    /// topic with that alias; the mapping lives as long as this network
    /// connection ([MQTT-3.3.2-7]).
    ///
    /// On an error (a field or the packet over the protocol's limits)
    /// nothing is written and no alias is assigned: the caller drops the
    /// message for this client and must not count it as sent.
    pub(super) fn write_publish(&mut self, p: &mut Publish) -> Result<(), EncodeError> {
        if self.aliases_out_max == 0 {
            return codec::encode_publish(p, self.protocol, &mut self.out).map(drop);
        }
        let aliases_out = self
            .rare
            .get_or_insert_with(Box::default)
            .aliases_out
            .get_or_insert_with(Box::default);
        let result = match aliases_out.choose(&p.topic, self.aliases_out_max) {
            AliasUse::Known(alias) => {
                let topic = std::mem::take(&mut p.topic);
                p.properties.topic_alias = Some(alias);
                let result = codec::encode_publish(p, self.protocol, &mut self.out);
                p.topic = topic;
                result
            }
            AliasUse::Set(alias) => {
                p.properties.topic_alias = Some(alias);
                let result = codec::encode_publish(p, self.protocol, &mut self.out);
                if result.is_ok() {
                    // Only once the client will see the topic with its alias.
                    aliases_out.commit(&p.topic, alias, self.aliases_out_max);
                }
                result
            }
            AliasUse::None => codec::encode_publish(p, self.protocol, &mut self.out),
        };
        p.properties.topic_alias = None;
        result.map(drop)
    }
}

impl Broker {
    /// Encode `packet` into the connection's outgoing buffer. The packets
    /// the broker builds itself (acknowledgements, CONNACK, DISCONNECT)
    /// are small and within the protocol's limits; one that did not encode
    /// would leave the buffer untouched and is not transmitted.
    pub(super) fn write_packet(&mut self, conn: ConnId, packet: &Packet) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if codec::encode(packet, c.protocol, &mut c.out).is_ok() {
            self.stats.packets_sent += 1;
            c.queue_transmit(conn, &mut self.events);
        }
    }

    /// Write an acknowledgement (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK),
    /// behind any held ones so that acknowledgements keep their order.
    pub(super) fn write_ack(&mut self, conn: ConnId, packet: Packet) {
        match self.conns.get_mut(conn) {
            Some(c) if c.has_held() => c.rare_mut().held.push_back(Held::Packet(packet)),
            Some(_) => self.write_packet(conn, &packet),
            None => {}
        }
    }

    /// v5: DISCONNECT with `reason`, then close. v3: just close.
    pub(super) fn disconnect_with(&mut self, conn: ConnId, reason: ReasonCode, now_ms: u64) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.state == ConnState::Closing {
            return;
        }
        if c.protocol.is_v5() && matches!(c.state, ConnState::Active(_)) {
            let d = Disconnect {
                reason,
                ..Disconnect::default()
            };
            self.write_packet(conn, &Packet::Disconnect(d));
        }
        self.close(conn, now_ms);
    }

    /// Close a connection the broker gives up on; a session attached to it
    /// is detached with its will published (not a normal DISCONNECT).
    pub(super) fn close(&mut self, conn: ConnId, now_ms: u64) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let state = c.state;
        if state == ConnState::Closing {
            return;
        }
        self.set_closing(conn);
        self.unschedule_deadline(conn);
        if let Some(session) = state.session() {
            self.detach_session(session, true, now_ms);
        }
        self.events.push_back(Event::Close(conn));
    }
}
