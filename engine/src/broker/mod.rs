//! One shard's broker state machine: connections, sessions, the router
//! replica (local subscriptions + interest of other shards) and retained
//! messages. Sans-IO: see the crate docs for the input/output contract.
//!
//! Use, per shard (the runtime's loop):
//! 1. `accept(now)` for each new socket -> `ConnId` (or `None`: refuse, close).
//! 2. `handle_read(conn, &mut buf, now)` with the socket's read buffer; the
//!    broker consumes every complete frame and leaves a partial one.
//! 3. `handle_closed(conn, now)` on EOF / error (exactly once per `ConnId`,
//!    also after a `Close` event); `handle_shard_message` for ring messages;
//!    `handle_timeout(now)` when `poll_timeout()` is due.
//! 4. Then drain `poll_event()` until `None`: `Transmit(conn)` -> write
//!    `outgoing(conn)`; `Close(conn)` -> flush and close the socket, then call
//!    `handle_closed`; `ToShard` -> push on that shard's ring.
//!
//! Time is a `u64` of milliseconds from any fixed epoch, shared by all
//! shards, never decreasing. The broker never reads a clock.
//!
//! Session ownership: a client id lives on shard `owner_shard(id)`; the
//! runtime moves a connection to its owner before CONNECT reaches the
//! broker (see [`route_connect`]), so takeover, persistent sessions and QoS
//! state never cross shards. Publishes cross shards at most once per shard
//! ([`ShardMessage::Publish`]), guided by the interest table that every
//! shard keeps of the others ([`ShardMessage::Interest`]).

mod auth;
mod config;
mod connect;
mod publish;
mod retained;
mod slab;
mod subscribe;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

pub use auth::{AnonymousPolicy, Authenticator, Credentials};
pub use config::BrokerConfig;

use crate::codec::{
    self, Decoded, Disconnect, Packet, Protocol, Publish, ReasonCode, SubscriptionOptions, Will,
};
use crate::topic::TopicTrie;
use retained::RetainedStore;
use slab::Slab;

/// Index of a connection inside one shard.
pub type ConnId = usize;
/// Index of a shard, `0..shard_count`.
pub type ShardId = u16;
/// Most shards a broker may run (interest sets are `u64` bitmasks).
pub const SHARDS_MAX: u16 = 64;

type SessionId = usize;

/// A message between shards (carried on the SPSC rings).
#[derive(Clone, Debug)]
pub enum ShardMessage {
    /// Deliver to this shard's local non-shared subscribers.
    Publish {
        publish: Publish,
        received_at_ms: u64,
    },
    /// Deliver to one local member of the shared subscription `filter`
    /// (`$share/{group}/{filter}`), chosen by the sending shard.
    SharedPublish {
        filter: Bytes,
        publish: Publish,
        received_at_ms: u64,
    },
    /// Shard `shard` now has `count` local subscriptions on `filter`
    /// (a plain or a `$share/...` filter). Absolute, so re-sending is harmless.
    /// A non-zero `barrier` asks the receiver to answer with [`ShardMessage::Ack`].
    Interest {
        filter: Bytes,
        shard: ShardId,
        count: u32,
        barrier: u64,
    },
    /// Replace (or clear, with an empty payload) a retained message; acked
    /// to `origin` when `barrier` is non-zero.
    Retain {
        publish: Publish,
        received_at_ms: u64,
        origin: ShardId,
        barrier: u64,
    },
    /// The receiver has applied the message that carried `barrier`.
    Ack { barrier: u64 },
}

/// What the runtime must do next.
// `ToShard` is large on purpose: boxing it would allocate once per
// cross-shard publish; the event queue is reused, so its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// `outgoing(conn)` has bytes to write.
    Transmit(ConnId),
    /// Flush `outgoing(conn)`, then close the socket (then `handle_closed`).
    Close(ConnId),
    /// Push `msg` on the ring to `shard`.
    ToShard { shard: ShardId, msg: ShardMessage },
}

/// Where a new connection belongs, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// No complete first packet yet.
    NeedMore,
    /// Serve it here (owner shard, empty client id, or not a valid CONNECT:
    /// the local broker answers errors itself).
    Local,
    /// Hand the connection to this shard.
    Shard(ShardId),
}

/// Session ownership: shard of a client id (FNV-1a, stable across runs).
pub fn owner_shard(client_id: &[u8], shard_count: u16) -> ShardId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shard_count.max(1))) as ShardId
}

/// Decide from the first bytes of a connection which shard owns it.
pub fn route_connect(buf: &[u8], shard: ShardId, shard_count: u16) -> Route {
    // [MQTT-3.1.0-1]: anything but CONNECT is judged by the local broker at
    // once, rather than waiting for what its first byte claims is a long packet.
    if shard_count <= 1 || buf.first().is_some_and(|b| b >> 4 != 1) {
        return Route::Local;
    }
    let frame_len = match codec::check_frame(buf, codec::REMAINING_LENGTH_MAX_BYTES) {
        Ok(codec::FrameCheck::Complete { frame_len }) => frame_len,
        Ok(codec::FrameCheck::Incomplete { .. }) => return Route::NeedMore,
        Err(_) => return Route::Local,
    };
    let Some(frame) = buf.get(..frame_len) else {
        return Route::NeedMore;
    };
    match codec::decode_packet(Bytes::copy_from_slice(frame), Protocol::V5) {
        Ok(Packet::Connect(c)) if !c.client_id.is_empty() => {
            let owner = owner_shard(&c.client_id, shard_count);
            if owner == shard {
                Route::Local
            } else {
                Route::Shard(owner)
            }
        }
        _ => Route::Local,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    AwaitConnect,
    Active(SessionId),
    Closing,
}

struct Conn {
    state: ConnState,
    protocol: Protocol,
    out: BytesMut,
    transmit_queued: bool,
    /// Close after this long without a packet; 0 = keep-alive off.
    keep_alive_ms: u64,
    last_packet_ms: u64,
    /// Inbound topic aliases, index = alias - 1.
    aliases: Vec<Option<Bytes>>,
    client_packet_size_max_bytes: u32,
    client_receive_maximum: u16,
    generation: u64,
    /// Outbound topic aliases in use (v5, off unless configured): topic -> alias.
    aliases_out: HashMap<Bytes, u16>,
    /// min(our topic_alias_outbound_max, the client's Topic Alias Maximum).
    aliases_out_max: u16,
    /// Acknowledgements held back, in order, behind a cross-shard barrier.
    held: VecDeque<Held>,
}

/// An item of a connection's held queue (see [`Broker::write_ack`]).
#[allow(clippy::large_enum_variant)] // rare (cross-shard barriers only), not worth a Box
enum Held {
    /// Wait for the barrier with this token.
    Wait(u64),
    Packet(Packet),
    /// Send the retained messages matching a new subscription.
    Retained {
        filter: Bytes,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    },
}

/// A cross-shard barrier: acknowledgements to a client wait until every
/// other shard has applied an interest or retained update, so that a client
/// that saw SUBACK (or PUBACK of a retained message) can rely on it from
/// any shard. Rings are FIFO, so an Ack means everything before it arrived.
struct Barrier {
    conn: ConnId,
    generation: u64,
    acks_remaining: u32,
}

impl Conn {
    /// Tell the runtime (once per batch) that this connection has bytes to write.
    fn queue_transmit(&mut self, conn: ConnId, events: &mut VecDeque<Event>) {
        if !self.transmit_queued {
            self.transmit_queued = true;
            events.push_back(Event::Transmit(conn));
        }
    }

    /// Encode a PUBLISH into the outgoing buffer. With outbound aliases on,
    /// the first PUBLISH of a topic sets an alias and later ones send an
    /// empty topic with that alias (MQTT 5.0 3.3.2.3.4); the mapping lives
    /// as long as this network connection ([MQTT-3.3.2-7]).
    fn write_publish(&mut self, p: &mut Publish) {
        if self.aliases_out_max == 0 {
            let _ = codec::encode_publish(p, self.protocol, &mut self.out);
            return;
        }
        if let Some(&alias) = self.aliases_out.get(&p.topic) {
            let topic = std::mem::take(&mut p.topic);
            p.properties.topic_alias = Some(alias);
            let _ = codec::encode_publish(p, self.protocol, &mut self.out);
            p.topic = topic;
        } else if self.aliases_out.len() < usize::from(self.aliases_out_max) {
            let alias = self.aliases_out.len() as u16 + 1;
            self.aliases_out.insert(p.topic.clone(), alias);
            p.properties.topic_alias = Some(alias);
            let _ = codec::encode_publish(p, self.protocol, &mut self.out);
        } else {
            let _ = codec::encode_publish(p, self.protocol, &mut self.out);
        }
        p.properties.topic_alias = None;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after the packet awaited
enum OutState {
    AwaitPubAck,
    AwaitPubRec,
    AwaitPubComp,
}

/// A QoS 1/2 message sent to the client and not yet fully acknowledged.
struct Outbound {
    packet_id: u16,
    state: OutState,
    publish: Publish,
    received_at_ms: u64,
    /// The `$share/...` filter it was delivered through, for re-dispatch.
    shared_filter: Option<Bytes>,
}

/// A message waiting for the inflight window or for the client to return.
struct Queued {
    publish: Publish,
    received_at_ms: u64,
    shared_filter: Option<Bytes>,
}

struct Session {
    client_id: Bytes,
    username: Option<Bytes>,
    conn: Option<ConnId>,
    protocol: Protocol,
    /// Filters this session subscribed with (the router trie holds the
    /// options); used to enforce the per-session limit and to clean up.
    subscriptions: Vec<Bytes>,
    /// Seconds the session outlives its connection; `u32::MAX` = never.
    expiry_interval_s: u32,
    inflight: VecDeque<Outbound>,
    queue: VecDeque<Queued>,
    next_packet_id: u16,
    /// QoS 2 packet ids received and PUBREC'd, awaiting PUBREL.
    inbound_qos2: Vec<u16>,
    will: Option<Will>,
    generation: u64,
}

/// A local subscriber on a trie node.
#[derive(Clone, Copy)]
struct LocalSub {
    session: SessionId,
    options: SubscriptionOptions,
    subscription_id: Option<u32>,
}

/// A shared subscription group on a trie node.
struct SharedGroup {
    /// The full `$share/{group}/{filter}` string.
    full_filter: Bytes,
    name: Bytes,
    members: Vec<LocalSub>,
    /// Members on other shards, per shard.
    remote_members: Vec<(ShardId, u32)>,
    cursor: usize,
}

/// Router trie value: everything subscribed with one filter.
#[derive(Default)]
struct RouteNode {
    subs: Vec<LocalSub>,
    groups: Vec<SharedGroup>,
    /// Other shards with at least one non-shared subscription on this filter.
    remote_shards: u64,
}

impl RouteNode {
    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.groups.is_empty() && self.remote_shards == 0
    }
}

/// One match of a publish, gathered during the trie walk.
#[derive(Clone, Copy)]
struct Match {
    session: SessionId,
    qos: u8,
    retain_as_published: bool,
    no_local: bool,
    subscription_id: Option<u32>,
    /// Index into `scratch_shared_filters` when matched through a shared group.
    shared: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    ConnectTimeout { conn: ConnId, generation: u64 },
    KeepAlive { conn: ConnId, generation: u64 },
    Will { session: SessionId, generation: u64 },
    SessionExpiry { session: SessionId, generation: u64 },
    Sys,
}

/// Counters of one shard (also published under `$SYS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    /// QoS 0 messages dropped because a connection's outgoing buffer was full.
    pub dropped_qos0_buffer_full: u64,
    /// Messages dropped because a session queue was full.
    pub dropped_queue_full: u64,
    /// Retained messages not stored because of the retained limits.
    pub dropped_retained_limit: u64,
    /// Shared-group messages from another shard whose group had no member here any more.
    pub dropped_no_shared_member: u64,
    /// Messages dropped because they exceeded a client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// Messages dropped because their Message Expiry Interval passed.
    pub dropped_expired: u64,
    pub protocol_errors: u64,
}

/// One shard's broker.
pub struct Broker {
    config: BrokerConfig,
    shard: ShardId,
    shard_count: u16,
    auth: Box<dyn Authenticator>,
    conns: Slab<Conn>,
    sessions: Slab<Session>,
    by_client_id: HashMap<Bytes, SessionId>,
    router: TopicTrie<RouteNode>,
    retained: RetainedStore,
    events: VecDeque<Event>,
    timers: BinaryHeap<Reverse<(u64, Timer)>>,
    next_generation: u64,
    assigned_ids: u64,
    stats: Stats,
    started_ms: Option<u64>,
    // Scratch, reused per publish (no allocation once warm).
    scratch_matches: Vec<Match>,
    scratch_shared_remote: Vec<(ShardId, Bytes)>,
    scratch_subscription_ids: Vec<u32>,
    scratch_shared_filters: Vec<Bytes>,
    barriers: HashMap<u64, Barrier>,
    next_barrier: u64,
    /// While handling a SUBSCRIBE/UNSUBSCRIBE: the barrier token put on
    /// interest broadcasts, and how many were sent.
    barrier_token: u64,
    barrier_sends: u32,
}

impl Broker {
    /// A shard's broker. Panics if `shard >= shard_count` or
    /// `shard_count > SHARDS_MAX` (start-up configuration errors).
    pub fn new(config: BrokerConfig, shard: ShardId, shard_count: u16) -> Broker {
        assert!(
            (1..=SHARDS_MAX).contains(&shard_count),
            "shard_count must be 1..={SHARDS_MAX}"
        );
        assert!(shard < shard_count, "shard index out of range");
        let auth = Box::new(AnonymousPolicy {
            allow_anonymous: config.allow_anonymous,
        });
        Broker {
            config,
            shard,
            shard_count,
            auth,
            conns: Slab::default(),
            sessions: Slab::default(),
            by_client_id: HashMap::new(),
            router: TopicTrie::new(),
            retained: RetainedStore::default(),
            events: VecDeque::new(),
            timers: BinaryHeap::new(),
            next_generation: 1,
            assigned_ids: 0,
            stats: Stats::default(),
            started_ms: None,
            scratch_matches: Vec::new(),
            scratch_shared_remote: Vec::new(),
            scratch_subscription_ids: Vec::new(),
            scratch_shared_filters: Vec::new(),
            barriers: HashMap::new(),
            next_barrier: 0,
            barrier_token: 0,
            barrier_sends: 0,
        }
    }

    /// Replace the authentication / authorization policy.
    pub fn set_authenticator(&mut self, auth: Box<dyn Authenticator>) {
        self.auth = auth;
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.connections = self.conns.len() as u64;
        s
    }

    /// Sessions on this shard, connected or not.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Retained messages in this shard's replica.
    pub fn retained_count(&self) -> usize {
        self.retained.count
    }

    // ---------------------------------------------------------------- inputs

    /// A new socket. `None` when `connections_max` is reached: close it.
    pub fn accept(&mut self, now_ms: u64) -> Option<ConnId> {
        self.start_clock(now_ms);
        if self.conns.len() >= self.config.connections_max {
            return None;
        }
        let generation = self.generation();
        let conn = self.conns.insert(Conn {
            state: ConnState::AwaitConnect,
            protocol: Protocol::V3_1_1,
            out: BytesMut::new(),
            transmit_queued: false,
            keep_alive_ms: 0,
            last_packet_ms: now_ms,
            aliases: Vec::new(),
            client_packet_size_max_bytes: u32::MAX,
            client_receive_maximum: u16::MAX,
            generation,
            aliases_out: HashMap::new(),
            aliases_out_max: 0,
            held: VecDeque::new(),
        });
        let deadline = now_ms + self.config.connect_timeout_ms;
        self.timers.push(Reverse((
            deadline,
            Timer::ConnectTimeout { conn, generation },
        )));
        Some(conn)
    }

    /// Bytes read from `conn`: every complete frame in `buf` is consumed.
    pub fn handle_read(&mut self, conn: ConnId, buf: &mut BytesMut, now_ms: u64) {
        loop {
            let (state, protocol) = match self.conns.get(conn) {
                Some(c) => (c.state, c.protocol),
                None => {
                    buf.clear();
                    return;
                }
            };
            if state == ConnState::Closing {
                buf.clear();
                return;
            }
            if state == ConnState::AwaitConnect
                && !buf.is_empty()
                && buf.first().map(|b| b >> 4) != Some(1)
            {
                // [MQTT-3.1.0-1]: the first packet must be CONNECT.
                self.stats.protocol_errors += 1;
                buf.clear();
                self.close(conn, now_ms);
                return;
            }
            let level = if state == ConnState::AwaitConnect {
                peek_connect_level(buf)
            } else {
                None
            };
            match codec::decode(buf, protocol, self.config.packet_size_max_bytes) {
                Ok(Decoded::Packet(packet)) => {
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.last_packet_ms = now_ms;
                    }
                    self.handle_packet(conn, packet, now_ms);
                }
                Ok(Decoded::Incomplete { .. }) => return,
                Err(e) => {
                    buf.clear();
                    self.stats.protocol_errors += 1;
                    if state == ConnState::AwaitConnect {
                        self.refuse_connect(conn, level, e.reason_code(), now_ms);
                    } else {
                        self.disconnect_with(conn, e.reason_code(), now_ms);
                    }
                    return;
                }
            }
        }
    }

    /// The socket of `conn` is gone (EOF, error, or closed after `Close`).
    pub fn handle_closed(&mut self, conn: ConnId, now_ms: u64) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if let ConnState::Active(session) = c.state {
            // Not a DISCONNECT we saw: the will is published ([MQTT-3.1.2-8]).
            self.detach_session(session, true, now_ms);
        }
        self.conns.remove(conn);
    }

    /// A message from another shard's ring.
    pub fn handle_shard_message(&mut self, msg: ShardMessage, now_ms: u64) {
        self.start_clock(now_ms);
        match msg {
            ShardMessage::Publish {
                mut publish,
                received_at_ms,
            } => {
                self.route(&mut publish, None, received_at_ms, false, now_ms);
            }
            ShardMessage::SharedPublish {
                filter,
                mut publish,
                received_at_ms,
            } => {
                self.deliver_shared_local(&filter, &mut publish, received_at_ms, now_ms);
            }
            ShardMessage::Interest {
                filter,
                shard,
                count,
                barrier,
            } => {
                self.apply_interest(&filter, shard, count);
                self.ack_barrier(shard, barrier);
            }
            ShardMessage::Retain {
                publish,
                received_at_ms,
                origin,
                barrier,
            } => {
                self.store_retained(publish, received_at_ms);
                self.ack_barrier(origin, barrier);
            }
            ShardMessage::Ack { barrier } => self.barrier_acked(barrier, now_ms),
        }
    }

    /// Run every timer due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.start_clock(now_ms);
        while let Some(Reverse((due, timer))) = self.timers.peek().copied() {
            if due > now_ms {
                break;
            }
            self.timers.pop();
            self.fire(timer, now_ms);
        }
    }

    /// The earliest time `handle_timeout` must be called, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((due, _))| *due)
    }

    /// The next thing for the runtime to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes waiting to be written to `conn`. Take them with `split()`.
    pub fn outgoing(&mut self, conn: ConnId) -> Option<&mut BytesMut> {
        let c = self.conns.get_mut(conn)?;
        c.transmit_queued = false;
        Some(&mut c.out)
    }

    /// Server shutdown: v5 clients get DISCONNECT 0x8B, all connections close.
    pub fn shutdown(&mut self, now_ms: u64) {
        let conns: Vec<ConnId> = self.conns.keys().collect();
        for conn in conns {
            let state = self.conns.get(conn).map(|c| c.state);
            match state {
                Some(ConnState::Active(_)) => {
                    self.disconnect_with(conn, ReasonCode::SERVER_SHUTTING_DOWN, now_ms)
                }
                Some(ConnState::AwaitConnect) => self.close(conn, now_ms),
                _ => {}
            }
        }
    }

    // ---------------------------------------------------------------- internals

    fn start_clock(&mut self, now_ms: u64) {
        if self.started_ms.is_none() {
            self.started_ms = Some(now_ms);
            if self.config.sys_interval_s > 0 {
                let due = now_ms + u64::from(self.config.sys_interval_s) * 1000;
                self.timers.push(Reverse((due, Timer::Sys)));
            }
        }
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    fn fire(&mut self, timer: Timer, now_ms: u64) {
        match timer {
            Timer::ConnectTimeout { conn, generation } => {
                if let Some(c) = self.conns.get(conn) {
                    if c.generation == generation && c.state == ConnState::AwaitConnect {
                        self.close(conn, now_ms);
                    }
                }
            }
            Timer::KeepAlive { conn, generation } => {
                let Some(c) = self.conns.get(conn) else {
                    return;
                };
                if c.generation != generation
                    || c.keep_alive_ms == 0
                    || c.state == ConnState::Closing
                {
                    return;
                }
                // [MQTT-3.1.2-22] (v5) / [MQTT-3.1.2-24] (v3.1.1): 1.5 x keep-alive.
                let deadline = c.last_packet_ms + c.keep_alive_ms * 3 / 2;
                if deadline <= now_ms {
                    self.disconnect_with(conn, ReasonCode::KEEP_ALIVE_TIMEOUT, now_ms);
                } else {
                    self.timers
                        .push(Reverse((deadline, Timer::KeepAlive { conn, generation })));
                }
            }
            Timer::Will {
                session,
                generation,
            } => {
                let due = match self.sessions.get(session) {
                    Some(s) if s.generation == generation && s.conn.is_none() => s.will.is_some(),
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
                let due = matches!(self.sessions.get(session), Some(s) if s.generation == generation && s.conn.is_none());
                if due {
                    self.end_session(session, now_ms);
                }
            }
            Timer::Sys => {
                self.publish_sys(now_ms);
                self.retained.remove_expired(now_ms);
                if self.config.sys_interval_s > 0 {
                    let due = now_ms + u64::from(self.config.sys_interval_s) * 1000;
                    self.timers.push(Reverse((due, Timer::Sys)));
                }
            }
        }
    }

    fn handle_packet(&mut self, conn: ConnId, packet: Packet, now_ms: u64) {
        let state = match self.conns.get(conn) {
            Some(c) => c.state,
            None => return,
        };
        let session = match (state, packet) {
            (ConnState::AwaitConnect, Packet::Connect(connect)) => {
                self.handle_connect(conn, *connect, now_ms);
                return;
            }
            (ConnState::Active(session), packet) => (session, packet),
            _ => {
                // Anything before CONNECT closes the connection ([MQTT-3.1.0-1]).
                self.stats.protocol_errors += 1;
                self.close(conn, now_ms);
                return;
            }
        };
        let (session, packet) = session;
        match packet {
            Packet::Publish(p) => self.handle_publish(conn, session, p, now_ms),
            Packet::PubAck(a) => {
                self.complete_outbound(session, a.packet_id, OutState::AwaitPubAck, now_ms)
            }
            Packet::PubRec(a) => self.handle_pubrec(conn, session, a.packet_id, a.reason, now_ms),
            Packet::PubRel(a) => self.handle_pubrel(conn, session, a.packet_id),
            Packet::PubComp(a) => {
                self.complete_outbound(session, a.packet_id, OutState::AwaitPubComp, now_ms)
            }
            Packet::Subscribe(s) => self.handle_subscribe(conn, session, s, now_ms),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(conn, session, u),
            Packet::PingReq => self.write_packet(conn, &Packet::PingResp),
            Packet::Disconnect(d) => self.handle_disconnect(conn, session, d, now_ms),
            // A second CONNECT ([MQTT-3.1.0-2]), AUTH without an authentication
            // method ([MQTT-4.12.0-1]), or a server-to-client packet.
            _ => self.disconnect_with(conn, ReasonCode::PROTOCOL_ERROR, now_ms),
        }
    }

    fn handle_disconnect(&mut self, conn: ConnId, session: SessionId, d: Disconnect, now_ms: u64) {
        if let Some(new_expiry) = d.properties.session_expiry_interval_s {
            let Some(s) = self.sessions.get_mut(session) else {
                return;
            };
            if s.expiry_interval_s == 0 && new_expiry != 0 {
                // [MQTT-3.14.2-2]: 0 in CONNECT cannot become non-zero here.
                self.disconnect_with(conn, ReasonCode::PROTOCOL_ERROR, now_ms);
                return;
            }
            s.expiry_interval_s = new_expiry.min(self.config.session_expiry_max_s);
        }
        // Reason 0x04 keeps the will; any other normal DISCONNECT deletes it
        // ([MQTT-3.1.2-10], [MQTT-3.14.4-3]).
        let publish_will = d.reason == ReasonCode::DISCONNECT_WITH_WILL;
        if let Some(c) = self.conns.get_mut(conn) {
            c.state = ConnState::Closing;
        }
        self.detach_session(session, publish_will, now_ms);
        self.events.push_back(Event::Close(conn));
    }

    /// Encode `packet` into the connection's outgoing buffer.
    fn write_packet(&mut self, conn: ConnId, packet: &Packet) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if codec::encode(packet, c.protocol, &mut c.out).is_ok() {
            c.queue_transmit(conn, &mut self.events);
        }
    }

    /// Write an acknowledgement (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK),
    /// behind any held ones so that acknowledgements keep their order.
    fn write_ack(&mut self, conn: ConnId, packet: Packet) {
        match self.conns.get_mut(conn) {
            Some(c) if !c.held.is_empty() => c.held.push_back(Held::Packet(packet)),
            Some(_) => self.write_packet(conn, &packet),
            None => {}
        }
    }

    /// A new barrier token (non-zero).
    fn new_barrier_token(&mut self) -> u64 {
        self.next_barrier += 1;
        self.next_barrier
    }

    /// Hold `conn`'s next acknowledgements until `acks` Acks for `token` arrive.
    fn open_barrier(&mut self, conn: ConnId, token: u64, acks: u32) {
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

    fn ack_barrier(&mut self, origin: ShardId, barrier: u64) {
        if barrier != 0 && origin < self.shard_count && origin != self.shard {
            self.events.push_back(Event::ToShard {
                shard: origin,
                msg: ShardMessage::Ack { barrier },
            });
        }
    }

    fn barrier_acked(&mut self, token: u64, now_ms: u64) {
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

    /// v5: DISCONNECT with `reason`, then close. v3: just close.
    fn disconnect_with(&mut self, conn: ConnId, reason: ReasonCode, now_ms: u64) {
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
    fn close(&mut self, conn: ConnId, now_ms: u64) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let state = c.state;
        if state == ConnState::Closing {
            return;
        }
        c.state = ConnState::Closing;
        if let ConnState::Active(session) = state {
            self.detach_session(session, true, now_ms);
        }
        self.events.push_back(Event::Close(conn));
    }
}

/// Protocol level of a CONNECT at the start of `buf`, if visible: used to
/// answer a CONNECT that fails to decode in the client's own version.
fn peek_connect_level(buf: &[u8]) -> Option<u8> {
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return None;
        }
    }
    let name_len = usize::from(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]));
    buf.get(i + 2 + name_len).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_shard_is_stable_and_in_range() {
        for n in 1..8u16 {
            for id in ["a", "b", "client-1", ""] {
                let s = owner_shard(id.as_bytes(), n);
                assert!(s < n);
                assert_eq!(s, owner_shard(id.as_bytes(), n));
            }
        }
    }

    #[test]
    fn route_connect_decides_from_the_first_packet() {
        let mut connect = bytes::BytesMut::new();
        let c = crate::codec::Connect {
            protocol: Protocol::V3_1_1,
            clean_start: true,
            keep_alive_s: 60,
            client_id: Bytes::from_static(b"abc"),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        let encoded = codec::encode(
            &Packet::Connect(Box::new(c)),
            Protocol::V3_1_1,
            &mut connect,
        );
        assert!(encoded.is_ok());
        let owner = owner_shard(b"abc", 4);
        assert_eq!(route_connect(&connect, owner, 4), Route::Local);
        assert_eq!(
            route_connect(&connect, (owner + 1) % 4, 4),
            Route::Shard(owner)
        );
        assert_eq!(
            route_connect(&connect[..connect.len() - 1], 0, 4),
            Route::NeedMore
        );
        // Not a CONNECT: local at once, even if it announces a long packet.
        assert_eq!(route_connect(&[0x30, 0xFF, 0xFF], 0, 4), Route::Local);
        assert_eq!(route_connect(&connect, 0, 1), Route::Local);
    }

    #[test]
    fn peek_level() {
        let connect = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0];
        assert_eq!(peek_connect_level(&connect), Some(5));
        assert_eq!(peek_connect_level(&connect[..5]), None);
    }
}
