//! One shard: an OS thread pinned to a core, running a monoio runtime that
//! owns a `Broker` and everything it talks to. Nothing here is shared with
//! other threads except through the ring mesh (`mesh`).
//!
//! Tasks of a shard, all on its thread:
//! - one accept task per listening socket (`SO_REUSEPORT`);
//! - two tasks per connection (reader, writer: `ringmq_net::conn`), plus the
//!   routing step of a new connection (`conn`);
//! - the ring task: drains inbound rings in bounded batches, moves overflow
//!   onto rings, adopts handed-off connections, starts the shutdown;
//! - the timer task: sleeps until `Broker::poll_timeout`, calls
//!   `handle_timeout`; re-armed whenever an engine call moves the deadline
//!   earlier.
//!
//! After every `handle_*` call the caller runs [`Shard::drain_events`],
//! which dispatches `Transmit`/`Close` to connection drivers and `ToShard`
//! to the mesh, then wakes the peers pushed to (once per batch) and
//! re-arms the timer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use ringmq_engine::broker::{Broker, BrokerConfig, ConnId, Event, ShardId};
use ringmq_net::conn::{CloseReason, DriverConfig, DriverHandle};
use ringmq_net::wake::{yield_now, Notify};

use crate::clock::Clock;
use crate::config::IoMode;
use crate::conn::{self, ConnCtx};
use crate::mesh::{Mesh, PushOutcome, RingMsg};

/// After an accept error such as EMFILE, wait this long before accepting
/// again (the error would repeat at once otherwise).
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// io_uring submission queue entries per shard.
const URING_ENTRIES: u32 = 1024;

/// Everything a shard thread needs, built on the main thread.
pub struct ShardInit {
    pub id: ShardId,
    pub count: u16,
    pub broker_config: BrokerConfig,
    pub settings: ShardSettings,
    pub listeners: Vec<std::net::TcpListener>,
    pub mesh: Mesh,
    pub clock: Clock,
    pub io: IoMode,
    /// CPU to pin to, if pinning.
    pub cpu: Option<usize>,
    pub report: mpsc::Sender<StartReport>,
}

/// Runtime knobs of a shard (from `[runtime]` and `[listener]`).
#[derive(Clone, Copy, Debug)]
pub struct ShardSettings {
    pub driver: DriverConfig,
    pub nodelay: bool,
    pub ring_batch_max_messages: usize,
    /// Most bytes read while routing a new connection before giving up
    /// and serving it locally (the engine then judges the CONNECT).
    pub route_buffer_max_bytes: usize,
    pub shutdown_grace_ms: u64,
}

/// A shard's start-up result, sent to the main thread.
pub struct StartReport {
    pub shard: ShardId,
    /// The I/O driver in use, or why the shard could not start.
    pub result: Result<&'static str, String>,
}

/// Runs a shard on the current thread until it has shut down.
pub fn run(init: ShardInit) {
    let shard = init.id;
    if let Some(cpu) = init.cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            tracing::warn!(shard, cpu, error = %e, "cannot pin shard to its CPU; running unpinned");
        }
    }
    let report = init.report.clone();
    let fail = |e: String| {
        let _ = report.send(StartReport {
            shard,
            result: Err(e),
        });
    };
    match init.io {
        IoMode::Auto => {
            let built = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .with_entries(URING_ENTRIES)
                .enable_timer()
                .build();
            match built {
                Ok(monoio::FusionRuntime::Uring(mut rt)) => {
                    rt.block_on(shard_main(init, "io_uring"))
                }
                Ok(monoio::FusionRuntime::Legacy(mut rt)) => rt.block_on(shard_main(init, "epoll")),
                Err(e) => fail(format!("cannot start the I/O runtime: {e}")),
            }
        }
        IoMode::Uring => {
            if !monoio::utils::detect_uring() {
                return fail(
                    "io = \"uring\" but this kernel does not offer io_uring (or the operations ringmq needs); \
                     use io = \"auto\" or \"epoll\""
                        .into(),
                );
            }
            let built = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(URING_ENTRIES)
                .enable_timer()
                .build();
            match built {
                Ok(mut rt) => rt.block_on(shard_main(init, "io_uring")),
                Err(e) => fail(format!(
                    "io = \"uring\" but io_uring could not be set up: {e}"
                )),
            }
        }
        IoMode::Epoll => {
            let built = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match built {
                Ok(mut rt) => rt.block_on(shard_main(init, "epoll")),
                Err(e) => fail(format!("cannot start the epoll runtime: {e}")),
            }
        }
    }
}

/// One shard's state, shared by its tasks through `Rc` (never across
/// threads).
pub struct Shard {
    pub id: ShardId,
    pub count: u16,
    pub broker: RefCell<Broker>,
    pub clock: Clock,
    pub settings: ShardSettings,
    /// Runtime side of every accepted connection, by engine id.
    conns: RefCell<HashMap<ConnId, Rc<ConnCtx>>>,
    mesh: RefCell<Mesh>,
    /// Connections paused because the overflow towards that peer is over
    /// its limit.
    paused: RefCell<Vec<(ShardId, DriverHandle)>>,
    timer_armed_ms: Cell<Option<u64>>,
    timer_rearm: Notify,
    stopping: Cell<bool>,
    stop_accepting: RefCell<Vec<Rc<Notify>>>,
    shutdown_started: Notify,
    drained: Notify,
}

impl Shard {
    /// Milliseconds on the process clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Whether the shard is shutting down (no new connections).
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Dispatches the engine's pending events (module docs). `origin` is
    /// the connection whose input caused them, paused if the mesh is over
    /// its limit for a message it produced.
    pub fn drain_events(&self, origin: Option<&ConnCtx>) {
        loop {
            let event = self.broker.borrow_mut().poll_event();
            let Some(event) = event else { break };
            match event {
                Event::Transmit(id) => match self.conns.borrow().get(&id) {
                    Some(ctx) => ctx.handle.transmit(),
                    None => tracing::debug!(
                        shard = self.id,
                        conn = id,
                        "transmit for an unknown connection"
                    ),
                },
                Event::Close(id) => match self.conns.borrow().get(&id) {
                    Some(ctx) => ctx.handle.close(),
                    None => tracing::debug!(
                        shard = self.id,
                        conn = id,
                        "close for an unknown connection"
                    ),
                },
                Event::ToShard { shard, msg } => self.send(shard, RingMsg::Engine(msg), origin),
            }
        }
        self.mesh.borrow_mut().publish_wakeups();
        self.rearm_timer();
    }

    /// Pushes `msg` to `peer` under the full-ring policy (`mesh` docs).
    pub fn send(&self, peer: ShardId, msg: RingMsg, origin: Option<&ConnCtx>) {
        let outcome = self.mesh.borrow_mut().push(peer, msg);
        match outcome {
            PushOutcome::Sent | PushOutcome::Queued | PushOutcome::Dropped => {}
            PushOutcome::OverLimit => {
                if let Some(ctx) = origin {
                    // One entry per pause, however many messages went over.
                    if ctx.blocked_on.replace(Some(peer)).is_none() {
                        self.paused.borrow_mut().push((peer, ctx.handle.clone()));
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

    /// Registers a newly accepted connection's runtime side.
    pub fn register(&self, ctx: Rc<ConnCtx>) {
        self.conns.borrow_mut().insert(ctx.id, ctx);
    }

    /// A connection's reader ended: forget it, tell the engine (exactly
    /// once per accepted id), dispatch what that caused.
    pub fn connection_closed(&self, id: ConnId, reason: CloseReason) {
        tracing::trace!(shard = self.id, conn = id, ?reason, "connection closed");
        self.conns.borrow_mut().remove(&id);
        let now = self.now_ms();
        self.broker.borrow_mut().handle_closed(id, now);
        self.drain_events(None);
        if self.stopping.get() && self.conns.borrow().is_empty() {
            self.drained.notify();
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
    fn resume_paused(&self) {
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

    fn begin_shutdown(&self) {
        if self.stopping.replace(true) {
            return;
        }
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

async fn shard_main(init: ShardInit, driver: &'static str) {
    let ShardInit {
        id,
        count,
        broker_config,
        settings,
        listeners,
        mesh,
        clock,
        report,
        cpu,
        ..
    } = init;
    let mut monoio_listeners = Vec::with_capacity(listeners.len());
    for l in listeners {
        match monoio::net::TcpListener::from_std(l) {
            Ok(l) => monoio_listeners.push(l),
            Err(e) => {
                let _ = report.send(StartReport {
                    shard: id,
                    result: Err(format!("cannot adopt listener: {e}")),
                });
                return;
            }
        }
    }
    let shard = Rc::new(Shard {
        id,
        count,
        broker: RefCell::new(Broker::new(broker_config, id, count)),
        clock,
        settings,
        conns: RefCell::new(HashMap::new()),
        mesh: RefCell::new(mesh),
        paused: RefCell::new(Vec::new()),
        timer_armed_ms: Cell::new(None),
        timer_rearm: Notify::new(),
        stopping: Cell::new(false),
        stop_accepting: RefCell::new(Vec::new()),
        shutdown_started: Notify::new(),
        drained: Notify::new(),
    });
    for listener in monoio_listeners {
        let stop = Rc::new(Notify::new());
        shard.stop_accepting.borrow_mut().push(stop.clone());
        monoio::spawn(accept_task(shard.clone(), listener, stop));
    }
    monoio::spawn(timer_task(shard.clone()));
    monoio::spawn(ring_task(shard.clone()));
    tracing::info!(shard = id, io = driver, cpu = ?cpu, "shard started");
    let _ = report.send(StartReport {
        shard: id,
        result: Ok(driver),
    });

    shard.shutdown_started.wait().await;
    let grace = Duration::from_millis(settings.shutdown_grace_ms);
    monoio::select! {
        _ = shard.drained.wait() => {}
        _ = monoio::time::sleep(grace) => {
            tracing::warn!(
                shard = id,
                connections = shard.conns.borrow().len(),
                grace_ms = settings.shutdown_grace_ms,
                "shutdown grace elapsed with connections still open; closing them"
            );
        }
    }
    let stats = shard.broker.borrow().stats();
    let mesh = shard.mesh.borrow().stats();
    tracing::info!(
        shard = id,
        messages_received = stats.messages_received,
        messages_sent = stats.messages_sent,
        dropped_qos0_ring_full = mesh.dropped_qos0_ring_full,
        "shard stopped"
    );
}

async fn accept_task(shard: Rc<Shard>, listener: monoio::net::TcpListener, stop: Rc<Notify>) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = stop.wait() => None,
        };
        let Some(result) = accepted else { break };
        match result {
            Ok((stream, _peer)) => {
                monoio::spawn(conn::serve_accepted(shard.clone(), stream));
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS/ENOMEM: back off instead of spinning;
                // ECONNABORTED and friends: just go on.
                let back_off = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                if back_off {
                    monoio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            }
        }
    }
    tracing::debug!(shard = shard.id, "stopped accepting");
}

async fn timer_task(shard: Rc<Shard>) {
    loop {
        let deadline = shard.broker.borrow().poll_timeout();
        shard.timer_armed_ms.set(deadline);
        let Some(deadline) = deadline else {
            shard.timer_rearm.wait().await;
            continue;
        };
        let now = shard.now_ms();
        if deadline <= now {
            shard.broker.borrow_mut().handle_timeout(now);
            shard.drain_events(None);
            continue;
        }
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_millis(deadline - now)) => {}
            _ = shard.timer_rearm.wait() => {}
        }
    }
}

async fn ring_task(shard: Rc<Shard>) {
    let budget = shard.settings.ring_batch_max_messages.max(1);
    let mut batch: Vec<RingMsg> = Vec::with_capacity(budget);
    loop {
        let shutdown_requested = shard.mesh.borrow().signal().shutdown_requested();
        if shutdown_requested && !shard.stopping.get() {
            shard.begin_shutdown();
        }
        let popped = shard.mesh.borrow_mut().pop_batch(budget, &mut batch);
        if popped > 0 {
            let now = shard.now_ms();
            for msg in batch.drain(..) {
                match msg {
                    RingMsg::Engine(msg) => {
                        shard.broker.borrow_mut().handle_shard_message(msg, now)
                    }
                    RingMsg::Handoff { fd, bytes } => conn::adopt_handoff(&shard, fd, bytes),
                }
            }
            shard.drain_events(None);
        }
        shard.mesh.borrow_mut().flush_overflow();
        shard.mesh.borrow_mut().publish_wakeups();
        shard.resume_paused();
        if popped >= budget {
            // More may be waiting: let connections run first.
            yield_now().await;
            continue;
        }
        wait_for_ring_work(&shard).await;
    }
}

/// Parks the ring task until a peer pushed to us, made room on a ring we
/// wait for, or a shutdown was requested (`mesh` docs: register, then
/// re-check).
async fn wait_for_ring_work(shard: &Shard) {
    poll_fn(|cx| {
        let mesh = shard.mesh.borrow();
        let ready =
            || mesh.has_work() || (mesh.signal().shutdown_requested() && !shard.stopping.get());
        if ready() {
            return Poll::Ready(());
        }
        mesh.signal().register(cx.waker());
        if ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await
}
