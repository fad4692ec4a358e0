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
//!
//! Files, one concern each: `message` (what crosses the shard: ring
//! messages, events, ownership), `ring` (handling ring messages), `conn`
//! (a connection and writing to it),
//! `session` (a session, its inflight window and queue), `connect`
//! (CONNECT, takeover, will, expiry), `connack` (refusals, fitting the
//! CONNACK), `authenticate` / `pending_auth` (authentication in progress), `publish` (inbound PUBLISH), `route`
//! (the trie walk), `shared` (shared groups and their chooser), `deliver`
//! (one message to one session, outbound acknowledgements), `backlog` (what
//! waits behind a full outgoing buffer), `subscribe` (SUBSCRIBE, interest
//! replication), `barrier` (barriers: other shards, the persist batch),
//! `persist` / `refuse` / `restore` (durable state: recording, failed
//! writes, recovery), `violation` (protocol
//! errors that end a connection), `timer`, `deadlines` (the connection
//! deadline wheel), `stats` (counters and gauges), `sys` (`$SYS`), `sys_totals` (broker-wide `$SYS` with Mosquitto's names),
//! `retained`, `compact` (owned copies of decoded data), `trace_hook` (the
//! publish tracing hook, feature `trace-hook`), `auth`, `acl`
//! (applying the ACL), `config`,
//! `slab`.

mod acl;
mod auth;
mod authenticate;
mod backlog;
mod barrier;
mod client_ids;
mod compact;
mod config;
mod conn;
mod connack;
mod connect;
mod connlog;
mod deadlines;
mod deliver;
mod message;
mod out_release;
mod pending_auth;
mod persist;
mod publish;
mod refuse;
mod restore;
mod retained;
mod ring;
mod route;
mod session;
mod shared;
mod short_bytes;
mod slab;
mod stats;
mod subscribe;
mod sys;
mod sys_totals;
mod timer;
#[cfg(feature = "trace-hook")]
mod trace_hook;
mod violation;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

pub use auth::{AnonymousPolicy, Authenticator, Credentials};
pub use config::{BrokerConfig, SharedPolicy};
pub use connlog::{CloseCause, ConnectionRecord};
pub use deadlines::DEADLINE_TICK_MS;
pub use message::{owner_shard, route_connect, Event, Route, ShardMessage};
pub use stats::{Gauges, LatencyHistogram, Stats, LATENCY_BUCKETS_MS};
pub use sys_totals::{BrokerTotals, LoadAverages};
#[cfg(feature = "trace-hook")]
pub use trace_hook::{PublishRouted, PublishStart, PublishTracer};

use crate::acl::Acl;
use crate::codec::{self, Decoded, Disconnect, Packet, ReasonCode};
use crate::topic::TopicTrie;
use barrier::Barrier;
use conn::{Conn, ConnState};
use retained::RetainedStore;
use route::{Match, RouteNode};
use session::{OutState, Session};
use slab::Slab;
use timer::Timer;
use violation::Violation;

pub use out_release::OUT_RELEASE_AFTER_MS;

/// Index of a connection inside one shard.
pub type ConnId = usize;
/// Index of a shard, `0..shard_count`.
pub type ShardId = u16;
/// Most shards a broker may run (interest sets are `u64` bitmasks).
pub const SHARDS_MAX: u16 = 64;

/// Index of a session inside one shard.
type SessionId = usize;

/// One shard's broker.
pub struct Broker {
    config: BrokerConfig,
    shard: ShardId,
    shard_count: u16,
    auth: Box<dyn Authenticator>,
    /// The ACL in force (`None`: everything allowed); see `acl`.
    acl: Option<Arc<Acl>>,
    // Connections (conn.rs) and sessions (session.rs, connect.rs).
    conns: Slab<Conn>,
    sessions: Slab<Session>,
    /// Sessions by client id (client_ids.rs).
    by_client_id: client_ids::ClientIds,
    /// Assigned client ids so far (connect.rs).
    assigned_ids: u64,
    /// This shard's replica of the subscriptions (route.rs, subscribe.rs).
    router: TopicTrie<RouteNode>,
    retained: RetainedStore,
    // Outputs, and the timer heap behind `poll_timeout` (timer.rs).
    events: VecDeque<Event>,
    /// Connection records for the log (`connlog`), when `log_connections`.
    connection_records: VecDeque<ConnectionRecord>,
    timers: BinaryHeap<Reverse<(u64, Timer)>>,
    /// Connection deadlines: CONNECT timeout, keep-alive (deadlines.rs).
    deadlines: deadlines::DeadlineWheel,
    /// Connections keeping their outgoing buffer, with their generation,
    /// and when to walk them to release quiet ones (out_release.rs).
    out_kept: Vec<(ConnId, u64)>,
    out_release_due_ms: Option<u64>,
    /// The latest time the broker was given (for timers armed where no
    /// time is passed in).
    clock_ms: u64,
    next_generation: u64,
    stats: Stats,
    started_ms: Option<u64>,
    // Scratch of route.rs, reused per publish (no allocation once warm).
    scratch_matches: Vec<Match>,
    scratch_shared_remote: Vec<route::SharedOut>,
    scratch_subscription_ids: Vec<u32>,
    scratch_shared_filters: Vec<Bytes>,
    // Cross-shard barriers waiting for acknowledgements (barrier.rs).
    barriers: HashMap<u64, Barrier>,
    next_barrier: u64,
    /// User names taken from verified client certificates, by connection,
    /// until that connection's CONNECT ([`Broker::set_certificate_identity`]).
    /// Empty unless a TLS listener has `use_identity_as_username`.
    certificate_identities: HashMap<ConnId, Bytes>,
    /// Durable state: recording (persist.rs) and restoring (restore.rs).
    persist: persist::PersistState,
    restoring: Option<Box<restore::Restoring>>,
    /// Will and expiry timers of restored sessions wait until every shard
    /// has restored (restore.rs).
    restore_gate: restore::Gate,
    /// The publish tracer (`trace_hook.rs`, feature `trace-hook`).
    #[cfg(feature = "trace-hook")]
    tracer: Option<Box<dyn PublishTracer>>,
}

impl Broker {
    // ----- construction ----------------------------------------------------

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
        let persist = persist::PersistState::new(config.durable);
        Broker {
            config,
            shard,
            shard_count,
            auth,
            acl: None,
            conns: Slab::default(),
            sessions: Slab::default(),
            by_client_id: client_ids::ClientIds::default(),
            router: TopicTrie::new(),
            retained: RetainedStore::default(),
            events: VecDeque::new(),
            connection_records: VecDeque::new(),
            timers: BinaryHeap::new(),
            deadlines: deadlines::DeadlineWheel::new(),
            out_kept: Vec::new(),
            out_release_due_ms: None,
            clock_ms: 0,
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
            certificate_identities: HashMap::new(),
            persist,
            restoring: None,
            restore_gate: restore::Gate::default(),
            #[cfg(feature = "trace-hook")]
            tracer: None,
        }
    }

    /// Replace the authentication / authorization policy.
    pub fn set_authenticator(&mut self, auth: Box<dyn Authenticator>) {
        self.auth = auth;
    }

    // ----- inputs ----------------------------------------------------------

    /// A new socket. `None` when `connections_max` is reached: close it.
    pub fn accept(&mut self, now_ms: u64) -> Option<ConnId> {
        self.start_clock(now_ms);
        self.clock_ms = now_ms;
        if self.conns.len() >= self.config.connections_max {
            self.stats.connections_refused_limit += 1;
            return None;
        }
        let generation = self.generation();
        let conn = self.conns.insert(Conn::new(generation, now_ms));
        self.schedule_deadline(conn);
        Some(conn)
    }

    /// Bytes read from `conn`: every complete frame in `buf` is consumed.
    pub fn handle_read(&mut self, conn: ConnId, buf: &mut BytesMut, now_ms: u64) {
        self.clock_ms = now_ms;
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
            if self.auth_pending(conn) {
                // Nothing after a CONNECT is processed before its verdict
                // ([MQTT-3.1.4-6]); it stays in `buf` for the next call.
                return;
            }
            if state == ConnState::AwaitConnect
                && !buf.is_empty()
                && buf.first().map(|b| b >> 4) != Some(1)
            {
                buf.clear();
                self.violation(conn, Violation::NotConnect, now_ms);
                return;
            }
            let level = if state == ConnState::AwaitConnect {
                codec::peek_connect_level(buf)
            } else {
                None
            };
            let before = buf.len();
            match codec::decode(buf, protocol, self.config.packet_size_max_bytes) {
                Ok(Decoded::Packet(packet)) => {
                    self.stats.packets_received += 1;
                    self.stats.bytes_received += (before - buf.len()) as u64;
                    // While connecting, `last_packet_ms` stays the accept
                    // time (the CONNECT timeout counts from it).
                    if let Some(c) = self.conns.get_mut(conn) {
                        if matches!(c.state, ConnState::Active(_)) {
                            c.last_packet_ms = now_ms;
                        }
                    }
                    if let Err(v) = self.handle_packet(conn, packet, now_ms) {
                        self.violation(conn, v, now_ms);
                    } else if self.held_over_limit(conn) {
                        // `barrier_held_max_entries`: a broker limit, not a
                        // protocol violation; the held entries are dropped.
                        self.set_close_cause(conn, CloseCause::Limit(ReasonCode::QUOTA_EXCEEDED));
                        self.disconnect_with(conn, ReasonCode::QUOTA_EXCEEDED, now_ms);
                    }
                }
                Ok(Decoded::Incomplete { .. }) => return,
                Err(e) => {
                    buf.clear();
                    if state == ConnState::AwaitConnect {
                        self.stats.protocol_errors += 1;
                        self.refuse_connect(conn, level, e.reason_code(), now_ms);
                    } else {
                        self.violation(conn, Violation::Decode(e), now_ms);
                    }
                    return;
                }
            }
        }
    }

    /// The runtime is taking `conn`'s outgoing buffer (call it right before
    /// `outgoing(conn)` each time the socket has taken the previous batch):
    /// the broker refills the buffer from what waited behind it (retained
    /// messages sent on SUBSCRIBE, QoS 0 messages that arrived while it was
    /// full), up to `outgoing_buffer_max_bytes`. More left waiting is
    /// announced with another `Transmit`.
    pub fn handle_writable(&mut self, conn: ConnId, now_ms: u64) {
        self.clock_ms = now_ms;
        self.pump_backlog(conn, now_ms);
        if let Some(c) = self.conns.get_mut(conn) {
            if c.has_backlog() && !c.out.is_empty() {
                // The runtime takes the buffer now; the event brings it back
                // for the rest once this batch is written.
                c.transmit_queued = true;
                self.events.push_back(Event::Transmit(conn));
            }
        }
    }

    /// The socket of `conn` is gone (EOF, error, or closed after `Close`).
    pub fn handle_closed(&mut self, conn: ConnId, now_ms: u64) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let state = c.state;
        // Before the session is detached (and perhaps ends): the record
        // names its client id.
        self.record_closed(conn);
        if let Some(session) = state.session() {
            // Not a DISCONNECT we saw: the will is published ([MQTT-3.1.2-8]).
            self.detach_session(session, true, now_ms);
        }
        self.unschedule_deadline(conn);
        self.conns.remove(conn);
        self.certificate_identities.remove(&conn);
    }

    /// The TLS layer verified `conn`'s client certificate against the
    /// listener's client CA, and the listener uses the certificate's
    /// identity as the user name (`use_identity_as_username`). Call it
    /// before the connection's first bytes: its CONNECT then gets
    /// `identity` as user name whatever it carries, and its password is not
    /// checked (the certificate stands for it), as Mosquitto does.
    pub fn set_certificate_identity(&mut self, conn: ConnId, identity: &str) {
        if self.conns.get(conn).is_some() {
            self.certificate_identities
                .insert(conn, Bytes::copy_from_slice(identity.as_bytes()));
        }
    }

    /// Run every timer due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.start_clock(now_ms);
        self.clock_ms = now_ms;
        while let Some(Reverse((due, timer))) = self.timers.peek().copied() {
            if due > now_ms {
                break;
            }
            self.timers.pop();
            self.fire(timer, now_ms);
        }
        self.check_deadlines(now_ms);
        self.release_quiet_buffers(now_ms);
    }

    /// Server shutdown: v5 clients get DISCONNECT 0x8B, all connections close.
    pub fn shutdown(&mut self, now_ms: u64) {
        let conns: Vec<ConnId> = self.conns.keys().collect();
        for conn in conns {
            let state = self.conns.get(conn).map(|c| c.state);
            match state {
                Some(ConnState::Active(_)) => {
                    self.set_close_cause(conn, CloseCause::ServerShutdown);
                    self.disconnect_with(conn, ReasonCode::SERVER_SHUTTING_DOWN, now_ms)
                }
                Some(ConnState::AwaitConnect | ConnState::Authenticating) => {
                    self.set_close_cause(conn, CloseCause::ServerShutdown);
                    self.close(conn, now_ms)
                }
                _ => {}
            }
        }
    }

    // ----- outputs ---------------------------------------------------------

    /// The next thing for the runtime to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes waiting to be written to `conn`. Take them all with
    /// `split()` (they are counted as sent here).
    pub fn outgoing(&mut self, conn: ConnId) -> Option<&mut BytesMut> {
        let c = self.conns.get_mut(conn)?;
        c.transmit_queued = false;
        self.stats.bytes_sent += c.out.len() as u64;
        Some(&mut c.out)
    }

    /// The earliest time `handle_timeout` must be called, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        let timer = self.timers.peek().map(|Reverse((due, _))| *due);
        [timer, self.next_deadline_ms(), self.out_release_due_ms]
            .into_iter()
            .flatten()
            .min()
    }

    /// Gives back memory the tables kept at their high-water mark (the
    /// connection and session slabs, the client-id map, the event and
    /// barrier queues) once a burst of connections has gone. O(connections
    /// ever held): the runtime calls it at most about once a second, after
    /// closes.
    pub fn shrink_memory(&mut self) {
        self.conns.shrink();
        self.sessions.shrink();
        self.by_client_id.shrink_to_fit(&self.sessions);
        self.events.shrink_to_fit();
        self.connection_records.shrink_to_fit();
        self.barriers.shrink_to_fit();
        self.shrink_timers();
        self.shrink_deadlines();
        self.out_kept.shrink_to_fit();
    }

    // ----- queries ---------------------------------------------------------

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Sessions on this shard, connected or not.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Retained messages in this shard's replica.
    pub fn retained_count(&self) -> usize {
        self.retained.count
    }

    // ----- internals -------------------------------------------------------

    /// A new generation number: timers and barriers carry the generation of
    /// their connection or session, so a stale one is recognised.
    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// One decoded packet from `conn`: CONNECT first, then by packet type.
    fn handle_packet(
        &mut self,
        conn: ConnId,
        packet: Packet,
        now_ms: u64,
    ) -> Result<(), Violation> {
        let state = match self.conns.get(conn) {
            Some(c) => c.state,
            None => return Ok(()),
        };
        let (session, packet) = match (state, packet) {
            (ConnState::AwaitConnect, Packet::Connect(connect)) => {
                self.handle_connect(conn, *connect, now_ms);
                return Ok(());
            }
            (ConnState::Authenticating, Packet::Auth(auth)) => {
                self.handle_auth_connecting(conn, auth, now_ms);
                return Ok(());
            }
            (ConnState::Authenticating, _) => {
                // Enhanced authentication: only AUTH until the CONNACK.
                self.refuse_login(conn, ReasonCode::PROTOCOL_ERROR, now_ms);
                return Ok(());
            }
            (ConnState::Active(session), packet) => (session as SessionId, packet),
            (ConnState::AwaitConnect, _) => return Err(Violation::NotConnect),
            (ConnState::Closing, _) => return Ok(()),
        };
        match packet {
            Packet::Publish(p) => return self.handle_publish(conn, session, p, now_ms),
            Packet::PubAck(a) => {
                self.complete_outbound(session, a.packet_id, OutState::AwaitPubAck, now_ms)
            }
            Packet::PubRec(a) => self.handle_pubrec(conn, session, a.packet_id, a.reason, now_ms),
            Packet::PubRel(a) => self.handle_pubrel(conn, session, a.packet_id),
            Packet::PubComp(a) => {
                self.complete_outbound(session, a.packet_id, OutState::AwaitPubComp, now_ms)
            }
            Packet::Subscribe(s) => return self.handle_subscribe(conn, session, s, now_ms),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(conn, session, u),
            Packet::PingReq => self.write_packet(conn, &Packet::PingResp),
            Packet::Disconnect(d) => return self.handle_disconnect(conn, session, d, now_ms),
            Packet::Auth(a) => return self.handle_auth_active(conn, a, now_ms),
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => return Err(Violation::UnexpectedPacket),
        }
        Ok(())
    }

    /// A DISCONNECT from the client: the session is detached, its will
    /// published only for reason 0x04.
    fn handle_disconnect(
        &mut self,
        conn: ConnId,
        session: SessionId,
        d: Disconnect,
        now_ms: u64,
    ) -> Result<(), Violation> {
        if let Some(new_expiry) = d.properties.session_expiry_interval_s {
            let Some(s) = self.sessions.get_mut(session) else {
                return Ok(());
            };
            if s.expiry_interval_s == 0 && new_expiry != 0 {
                return Err(Violation::SessionExpiryFromZero);
            }
            s.expiry_interval_s = new_expiry.min(self.config.session_expiry_max_s);
        }
        // Reason 0x04 keeps the will; any other normal DISCONNECT deletes it
        // ([MQTT-3.1.2-10], [MQTT-3.14.4-3]).
        let publish_will = d.reason == ReasonCode::DISCONNECT_WITH_WILL;
        self.set_closing(conn);
        self.set_close_cause(conn, CloseCause::ClientDisconnect(d.reason));
        self.detach_session(session, publish_will, now_ms);
        self.events.push_back(Event::Close(conn));
        Ok(())
    }
}
