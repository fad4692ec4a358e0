//! The state one shard's tasks share through `Rc` ([`Shard`]): its engine,
//! a driver handle per connection, the ring mesh, the timer and shutdown
//! flags; and the dispatch of the engine's events to those (module docs of
//! `shard`). Connections (module `conn`) call into it; it never calls
//! them, and it keeps no reference to a connection's handler, only its
//! [`DriverHandle`], so there is no `Rc` cycle between shard and
//! connection.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use ringmq_engine::auth::{AuthRequest, AuthVerdict};
use ringmq_engine::broker::{Broker, ConnId, Event, ShardId, ShardMessage};
use ringmq_engine::codec::ReasonCode;
use ringmq_net::clock::Clock;
use ringmq_net::conn::{CloseReason, DriverConfig, DriverHandle};
use ringmq_net::tls::offload::HandshakePool;
use ringmq_net::wake::Notify;

use crate::auth::{Done, ShardAuth};
use crate::conn_table::ConnTable;
use crate::connlog::ConnLog;
use crate::mesh::{Mesh, PushOutcome, RingMsg};
use crate::metrics::MetricsHub;
use crate::storage::writer::Done as Persisted;
use crate::storage::ShardStore;

/// Runtime knobs of a shard (from `[runtime]` and `[listener]`).
#[derive(Clone, Copy, Debug)]
pub struct ShardSettings {
    pub driver: DriverConfig,
    pub ring_batch_max_messages: usize,
    /// `runtime.native_gather_us` (`UringLimits::gather_wait_us`).
    pub native_gather_us: u32,
    /// `runtime.native_hold_us` (`UringLimits::hold_us`).
    pub native_hold_us: u32,
    /// `runtime.native_direct_fds` (`UringLimits::direct_fds`).
    pub native_direct_fds: u32,
    /// Most bytes read while routing a new connection before giving up
    /// and serving it locally (the engine then judges the CONNECT).
    pub route_buffer_max_bytes: usize,
    pub shutdown_grace_ms: u64,
    /// `runtime.log_connections`.
    pub log_connections: bool,
    /// `runtime.log_connections_max_lines_per_s`.
    pub log_connections_max_lines_per_s: u32,
}

/// What a connection's handler lends the shard while the engine handles
/// its input: where to pause it if a message it produced went over the
/// overflow limit towards a peer.
pub struct Origin {
    pub handle: DriverHandle,
    /// Set when a message this connection produced went over the overflow
    /// limit towards this peer: reads pause until that overflow shrinks.
    pub blocked_on: Cell<Option<ShardId>>,
    /// The connection's engine id (below 2^31) and, in the top bit, its
    /// `use_identity_as_username` flag: both in the 4 bytes the two fields
    /// above leave over, so that `ConnCtx` takes 24 bytes, an `Rc` in
    /// mimalloc's 40-byte class (docs/benchmarks.md, memory per idle
    /// connection; `a_connection_context_stays_small`).
    conn_and_flag: u32,
}

/// The flag bit of [`Origin::conn_and_flag`].
const IDENTITY_AS_USERNAME: u32 = 1 << 31;

impl Origin {
    /// Connection `conn` (below 2^31: [`Origin::new`] refuses more), not
    /// blocked on any peer.
    pub fn new(handle: DriverHandle, conn: ConnId, use_identity_as_username: bool) -> Option<Self> {
        let conn = u32::try_from(conn)
            .ok()
            .filter(|&c| c < IDENTITY_AS_USERNAME)?;
        let flag = if use_identity_as_username {
            IDENTITY_AS_USERNAME
        } else {
            0
        };
        Some(Origin {
            handle,
            blocked_on: Cell::new(None),
            conn_and_flag: conn | flag,
        })
    }

    /// The connection's engine id.
    pub fn conn(&self) -> ConnId {
        (self.conn_and_flag & !IDENTITY_AS_USERNAME) as ConnId
    }

    /// Take the user name from the client certificate (TLS listeners with
    /// `use_identity_as_username`).
    pub fn use_identity_as_username(&self) -> bool {
        self.conn_and_flag & IDENTITY_AS_USERNAME != 0
    }
}

/// One shard's state, shared by its tasks through `Rc` (never across
/// threads).
pub struct Shard {
    pub id: ShardId,
    pub count: u16,
    pub broker: RefCell<Broker>,
    pub clock: Clock,
    /// The time of the native loop's current phase ([`Shard::freeze_clock`]).
    frozen_ms: Cell<Option<u64>>,
    pub settings: ShardSettings,
    /// The helper threads that run TLS server handshakes (shared by all
    /// shards; `None` without a TLS listener).
    pub tls_pool: Option<Arc<HandshakePool>>,
    /// Connect / disconnect lines (`connlog`).
    pub connlog: ConnLog,
    /// The driver of every accepted connection, by engine id.
    pub(super) conns: RefCell<ConnTable<DriverHandle>>,
    pub(super) mesh: RefCell<Mesh>,
    /// Connections paused because the overflow towards that peer is over
    /// its limit.
    paused: RefCell<Vec<(ShardId, DriverHandle)>>,
    pub(super) timer_armed_ms: Cell<Option<u64>>,
    pub(super) timer_rearm: Notify,
    pub(super) stopping: Cell<bool>,
    pub(super) stop_accepting: RefCell<Vec<Rc<Notify>>>,
    pub(super) shutdown_started: Notify,
    pub(super) drained: Notify,
    /// Set when a connection closed: the memory release task runs
    /// (`shard` module docs).
    pub(super) closed_some: Notify,
    /// Password verification on the helper threads; `None` without a
    /// password file.
    pub(super) auth: Option<ShardAuth>,
    /// Where this shard answers snapshot requests (`metrics`).
    pub(super) metrics: Arc<MetricsHub>,
    /// Sockets accepted from this shard's listeners (hand-offs not
    /// counted again by their owner).
    pub(super) sockets_accepted: Cell<u64>,
    /// The storage writer (`storage = "disk"`); `None` in memory.
    pub(super) store: Option<ShardStore>,
}

impl Shard {
    /// A shard with no connections yet.
    // The shard's parts, each built once by `shard_main`; a struct to
    // carry them would only repeat these fields.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ShardId,
        count: u16,
        broker: Broker,
        clock: Clock,
        settings: ShardSettings,
        mesh: Mesh,
        auth: Option<ShardAuth>,
        metrics: Arc<MetricsHub>,
        tls_pool: Option<Arc<HandshakePool>>,
        store: Option<ShardStore>,
    ) -> Shard {
        Shard {
            id,
            count,
            broker: RefCell::new(broker),
            clock,
            frozen_ms: Cell::new(None),
            settings,
            tls_pool,
            connlog: ConnLog::new(
                id,
                settings.log_connections,
                settings.log_connections_max_lines_per_s,
            ),
            conns: RefCell::new(ConnTable::default()),
            mesh: RefCell::new(mesh),
            paused: RefCell::new(Vec::new()),
            timer_armed_ms: Cell::new(None),
            timer_rearm: Notify::new(),
            stopping: Cell::new(false),
            stop_accepting: RefCell::new(Vec::new()),
            shutdown_started: Notify::new(),
            drained: Notify::new(),
            closed_some: Notify::new(),
            auth,
            metrics,
            sockets_accepted: Cell::new(0),
            store,
        }
    }

    /// Milliseconds on the process clock (the frozen time while a
    /// native-loop phase runs: [`Shard::freeze_clock`]).
    pub fn now_ms(&self) -> u64 {
        match self.frozen_ms.get() {
            Some(now) => now,
            None => self.clock.now_ms(),
        }
    }

    /// Until [`Shard::thaw_clock`], [`Shard::now_ms`] returns `now`: the
    /// native loop's flush and completion phases read the clock once, not
    /// once per connection served (a `clock_gettime` each: 2% of the
    /// shard's time in an evenly paced fan-out to 100 subscribers,
    /// docs/benchmarks.md). Each phase lasts a fraction of a millisecond
    /// to a few, the engine's resolution.
    pub fn freeze_clock(&self, now: u64) {
        self.frozen_ms.set(Some(now));
    }

    /// Ends [`Shard::freeze_clock`].
    pub fn thaw_clock(&self) {
        self.frozen_ms.set(None);
    }

    /// Whether the shard is shutting down (no new connections).
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Dispatches the engine's pending events (module docs). `origin` is
    /// the connection whose input caused them, paused if the mesh is over
    /// its limit for a message it produced.
    pub fn drain_events(&self, origin: Option<&Origin>) {
        loop {
            let event = self.broker.borrow_mut().poll_event();
            let Some(event) = event else { break };
            match event {
                Event::Transmit(id) => match self.conns.borrow().get(id) {
                    Some(handle) => handle.transmit(),
                    None => tracing::debug!(
                        shard = self.id,
                        conn = id,
                        "transmit for an unknown connection"
                    ),
                },
                Event::Close(id) => match self.conns.borrow().get(id) {
                    Some(handle) => handle.close(),
                    None => tracing::debug!(
                        shard = self.id,
                        conn = id,
                        "close for an unknown connection"
                    ),
                },
                Event::ToShard { shard, msg } => self.send(shard, RingMsg::Engine(msg), origin),
                Event::Authenticate {
                    conn,
                    token,
                    client_id,
                    request,
                } => self.authenticate(conn, token, client_id, request),
            }
        }
        self.write_connection_records(None);
        self.mesh.borrow_mut().publish_wakeups();
        self.rearm_timer();
        self.submit_persist();
    }

    /// Hands the writes the engine gathered to the storage writer
    /// (`storage = "disk"`), unless this shard already has its limit of
    /// batches in flight: the engine then keeps gathering, and the next
    /// completion submits everything at once (`storage::writer`).
    pub(super) fn submit_persist(&self) {
        let Some(store) = &self.store else { return };
        if !store.has_room() {
            return;
        }
        let batch = self.broker.borrow_mut().take_persist_batch();
        if let Some(batch) = batch {
            store.submit(batch);
        }
    }

    /// Applies storage completions (`first` and any others waiting): the
    /// acknowledgements that waited on them are sent, or refused if the
    /// write failed; then dispatches what that caused.
    pub fn apply_persisted(&self, first: Persisted) {
        let now = self.now_ms();
        let mut next = Some(first);
        while let Some(done) = next {
            self.broker
                .borrow_mut()
                .handle_persisted(done.id, done.result, now);
            next = self.store.as_ref().and_then(ShardStore::try_next);
        }
        self.drain_events(None);
    }

    /// The next storage completion (pending forever in memory mode).
    pub async fn next_persisted(&self) -> Persisted {
        match &self.store {
            Some(store) => store.next().await,
            None => std::future::pending().await,
        }
    }

    /// The native loop's side of the storage completions: applies those
    /// waiting; with `waker`, registers it first and looks again (register,
    /// then re-check). Returns whether any was applied.
    pub fn poll_persisted(&self, waker: Option<&std::task::Waker>) -> bool {
        let Some(store) = &self.store else {
            return false;
        };
        if let Some(waker) = waker {
            store.register(waker);
        }
        match store.try_next() {
            Some(done) => {
                self.apply_persisted(done);
                true
            }
            None => false,
        }
    }

    /// Storage batches of this shard not yet completed.
    pub fn persist_in_flight(&self) -> usize {
        self.store.as_ref().map_or(0, ShardStore::in_flight)
    }

    /// Pushes `msg` to `peer` under the full-ring policy (`mesh` docs).
    pub fn send(&self, peer: ShardId, msg: RingMsg, origin: Option<&Origin>) {
        let outcome = self.mesh.borrow_mut().push(peer, msg);
        match outcome {
            PushOutcome::Sent | PushOutcome::Queued => {}
            PushOutcome::OverLimit => {
                if let Some(origin) = origin {
                    // One entry per pause, however many messages went over.
                    if origin.blocked_on.replace(Some(peer)).is_none() {
                        self.paused.borrow_mut().push((peer, origin.handle.clone()));
                    }
                }
            }
            PushOutcome::InvalidPeer => tracing::error!(
                shard = self.id,
                peer,
                "message for an invalid shard dropped (engine or runtime bug)"
            ),
        }
    }

    /// Wakes pushes queued for peers; used right after a hand-off.
    pub fn publish_wakeups(&self) {
        self.mesh.borrow_mut().publish_wakeups();
    }

    /// Whether reads of a connection blocked on `peer` must stay paused.
    pub fn over_limit(&self, peer: ShardId) -> bool {
        self.mesh.borrow().over_limit(peer)
    }

    /// A socket was accepted from one of this shard's listeners.
    pub fn count_accepted_socket(&self) {
        self.sockets_accepted.set(self.sockets_accepted.get() + 1);
    }

    /// Registers a newly accepted connection's driver.
    pub fn register(&self, id: ConnId, handle: DriverHandle) {
        self.conns.borrow_mut().insert(id, handle);
    }

    /// Remembers a connection's remote address (throttle of failed logins, logs).
    pub fn remember_peer(&self, id: ConnId, peer: Option<SocketAddr>) {
        if let Some(auth) = &self.auth {
            auth.remember(id, peer);
        }
    }

    /// Hands an `Event::Authenticate` to the helper threads; a full queue
    /// (or no password file, which the engine should not ask about) is
    /// answered at once.
    fn authenticate(&self, conn: ConnId, token: u64, client_id: Bytes, request: AuthRequest) {
        let refused = match &self.auth {
            Some(auth) if auth.submit(conn, token, client_id.clone(), request) => return,
            Some(auth) => {
                tracing::warn!(
                    shard = self.id,
                    client_id = %String::from_utf8_lossy(&client_id),
                    peer = ?auth.peer(conn),
                    "login refused: server busy (auth.verify_queue_max_requests verifications already waiting)"
                );
                ReasonCode::SERVER_BUSY
            }
            None => ReasonCode::NOT_AUTHORIZED,
        };
        let now = self.now_ms();
        self.broker
            .borrow_mut()
            .handle_auth_result(conn, token, AuthVerdict::Refuse(refused), now);
    }

    /// Applies a verdict from the helper threads: log a refusal, tell the
    /// engine, let the connection read again (its unread input first).
    pub fn apply_auth(&self, done: Done) {
        if let AuthVerdict::Refuse(reason) = &done.verdict {
            tracing::warn!(
                shard = self.id,
                client_id = %String::from_utf8_lossy(&done.client_id),
                username = done.username.as_deref().unwrap_or(""),
                peer = ?done.peer,
                reason = format_args!("0x{:02X}", reason.0),
                delayed_ms = done.delay_ms,
                "login refused"
            );
        } else if matches!(done.verdict, AuthVerdict::Accept { .. }) {
            tracing::debug!(
                shard = self.id,
                client_id = %String::from_utf8_lossy(&done.client_id),
                username = done.username.as_deref().unwrap_or(""),
                peer = ?done.peer,
                "login accepted"
            );
        }
        let now = self.now_ms();
        self.broker
            .borrow_mut()
            .handle_auth_result(done.conn, done.token, done.verdict, now);
        if let Some(handle) = self.conns.borrow().get(done.conn) {
            handle.resume_reads();
        }
        self.drain_events(None);
    }

    /// The next verdict for this shard (pending forever without a password file).
    pub async fn next_auth_verdict(&self) -> Done {
        match &self.auth {
            Some(auth) => auth.next().await,
            None => std::future::pending().await,
        }
    }

    /// A connection's reader ended: forget it, tell the engine (exactly
    /// once per accepted id), dispatch what that caused.
    pub fn connection_closed(&self, id: ConnId, reason: CloseReason) {
        tracing::trace!(shard = self.id, conn = id, ?reason, "connection closed");
        self.conns.borrow_mut().remove(id);
        if let Some(auth) = &self.auth {
            auth.forget(id);
        }
        let now = self.now_ms();
        self.broker.borrow_mut().handle_closed(id, now);
        self.write_connection_records(Some(reason));
        self.drain_events(None);
        self.closed_some.notify();
        if self.stopping.get() && self.conns.borrow().is_empty() {
            self.drained.notify();
        }
    }

    /// Gives back the spare capacity of the engine's tables
    /// (`Broker::shrink_memory`), of the runtime's connection tables and
    /// of the rings to the other shards that grew (after a burst of closes;
    /// the memory release of either backend). The peers are woken to
    /// switch to the smaller rings (`Mesh::shrink_memory`; they free the
    /// old ones). What it rebuilds smaller stays: in the lasting heap
    /// (`ringmq_net::lasting`).
    pub fn shrink_memory(&self) {
        ringmq_net::lasting::scope(|| {
            self.broker.borrow_mut().shrink_memory();
            self.conns.borrow_mut().shrink_to_fit();
            self.paused.borrow_mut().shrink_to_fit();
            self.connlog.shrink_memory();
            self.mesh.borrow_mut().shrink_memory();
        });
    }

    /// A message of another shard's ring for the engine. A retained one
    /// (`$SYS` values among them) stays after the connections around it:
    /// stored in the lasting heap (`ringmq_net::lasting`).
    pub fn handle_shard_message(&self, msg: ShardMessage, now: u64) {
        if matches!(msg, ShardMessage::Retain { .. }) {
            ringmq_net::lasting::scope(|| self.broker.borrow_mut().handle_shard_message(msg, now));
        } else {
            self.broker.borrow_mut().handle_shard_message(msg, now);
        }
    }

    /// Writes the engine's connection records (`connlog`); `transport` is
    /// why the driver ended the connection just closed, if any.
    fn write_connection_records(&self, transport: Option<CloseReason>) {
        loop {
            let record = self.broker.borrow_mut().poll_connection_record();
            let Some(record) = record else { break };
            self.connlog.write(record, transport, self.now_ms());
        }
    }

    fn rearm_timer(&self) {
        let next = self.broker.borrow().poll_timeout();
        let earlier = match (next, self.timer_armed_ms.get()) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier {
            self.timer_armed_ms.set(next);
            self.timer_rearm.notify();
        }
    }

    /// Wakes the paused connections whose peer's overflow went below the
    /// limit; the others stay on the list.
    pub(super) fn resume_paused(&self) {
        if self.paused.borrow().is_empty() {
            return;
        }
        let mesh = self.mesh.borrow();
        self.paused.borrow_mut().retain(|(peer, handle)| {
            if mesh.over_limit(*peer) {
                return true;
            }
            handle.resume_reads();
            false
        });
    }

    pub(super) fn begin_shutdown(&self) {
        if self.stopping.replace(true) {
            return;
        }
        self.metrics.set_running(self.id, false);
        tracing::debug!(
            shard = self.id,
            connections = self.conns.borrow().len(),
            "shutting down"
        );
        for stop in self.stop_accepting.borrow().iter() {
            stop.notify();
        }
        let now = self.now_ms();
        self.broker.borrow_mut().shutdown(now);
        self.drain_events(None);
        self.shutdown_started.notify();
        if self.conns.borrow().is_empty() {
            self.drained.notify();
        }
    }
}
