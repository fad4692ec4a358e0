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
//!   earlier;
//! - the memory release task: a second (`MEMORY_RELEASE_DELAY_MS`) after
//!   connections closed, frees the memory they held to the allocator's
//!   arenas, which the purge helper gives back to the OS
//!   (`ringmq_net::alloc`);
//! - the auth task: applies password verdicts from the helper threads
//!   (`auth`), after a delay for repeat offenders;
//! - on shard 0, the `$SYS` totals task (`shard/metrics.rs`). The ring
//!   task also answers snapshot requests (`crate::metrics`);
//! - the persist task (`storage = "disk"`): applies the storage writer's
//!   completions (`storage::writer`).
//!
//! With storage on disk, the shard first loads its stored records into its
//! engine (`storage::restore`), then starts accepting; at shutdown it
//! waits (within the grace period) until its last writes are stored.
//!
//! The state those tasks share is [`state::Shard`]. After every `handle_*`
//! call the caller runs [`Shard::drain_events`], which dispatches `Transmit`/`Close` to connection drivers and `ToShard`
//! to the mesh, then wakes the peers pushed to (once per batch) and
//! re-arms the timer.

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::time::Duration;

use ringmq_engine::acl::Acl;
use ringmq_engine::broker::{Broker, BrokerConfig, ShardId};
use ringmq_net::clock::Clock;
use ringmq_net::wake::{yield_now, Notify};

use crate::auth::{AuthService, ShardAuth};
use crate::config::IoMode;
use crate::conn::{self, ListenerCtx, ListenerTls};
use crate::mesh::{Mesh, RingMsg};
use crate::reload::{Cached, Reloadable};
use crate::storage::restore::ShardRecords;
use crate::storage::ShardStore;
use crate::tls::SharedTls;

mod backend;
mod metrics;
#[cfg(target_os = "linux")]
pub mod native;
pub mod state;

pub use backend::run;
use state::Shard;
pub use state::ShardSettings;

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
    pub listeners: Vec<ShardListener>,
    pub mesh: Mesh,
    pub clock: Clock,
    pub io: IoMode,
    /// Why the native loop was refused, when this shard fell back to
    /// monoio (set by the shard itself; the start-up report carries it).
    pub refused: Option<String>,
    /// CPU to pin to, if pinning.
    pub cpu: Option<usize>,
    /// Password verification threads (shared by all shards), if a
    /// password file is configured.
    pub auth: Option<Arc<AuthService>>,
    pub report: mpsc::Sender<StartReport>,
    /// The ACL (`[auth] acl_file`), reloaded on SIGHUP; `None`: none.
    pub acl: Option<Arc<Reloadable<Acl>>>,
    /// Where snapshots are asked for (`/metrics`, `$SYS` totals).
    pub metrics: Arc<crate::metrics::MetricsHub>,
    /// TLS handshake threads (shared by all shards), if a listener has TLS.
    pub tls_pool: Option<Arc<ringmq_net::tls::offload::HandshakePool>>,
    /// The storage writer and this shard's stored records (`storage =
    /// "disk"`); `None` in memory.
    pub storage: Option<(ShardStore, ShardRecords)>,
    #[cfg(feature = "otel")]
    pub tracing: Option<Arc<crate::otel::Tracing>>,
}

/// One listener's socket for this shard, and what its connections need.
pub struct ShardListener {
    pub socket: std::net::TcpListener,
    /// `mqtt://ADDR` or `mqtts://ADDR`, for logs.
    pub name: String,
    pub nodelay: bool,
    pub tls: Option<SharedTls>,
    /// WebSocket listeners: their settings.
    pub ws: Option<std::sync::Arc<ringmq_net::ws::WsSettings>>,
}

/// A shard's start-up result, sent to the main thread.
pub struct StartReport {
    pub shard: ShardId,
    /// The I/O driver in use, or why the shard could not start.
    pub result: Result<&'static str, String>,
    /// Why the native loop was refused, if this shard fell back from it.
    pub refused: Option<String>,
}

/// What both backends build the same way from a [`ShardInit`].
struct Parts {
    shard: Rc<Shard>,
    listeners: Vec<(std::net::TcpListener, ListenerCtx)>,
    acl: Option<Cached<Acl>>,
    report: mpsc::Sender<StartReport>,
    cpu: Option<usize>,
    /// Why the native loop was refused, if this shard fell back from it.
    refused: Option<String>,
}

/// The shard state (its engine with the ACL in force) and each listener's
/// socket and context.
fn into_parts(init: ShardInit) -> Parts {
    #[cfg(feature = "otel")]
    let tracing = init.tracing.clone();
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
        acl,
        auth,
        metrics,
        tls_pool,
        storage,
        refused,
        ..
    } = init;
    let listeners = listeners
        .into_iter()
        .map(|l| {
            let ctx = ListenerCtx {
                name: l.name,
                nodelay: l.nodelay,
                ws: l.ws,
                tls: l.tls.map(|t| ListenerTls {
                    files: Cached::new(t.files),
                    use_identity_as_username: t.use_identity_as_username,
                }),
            };
            (l.socket, ctx)
        })
        .collect();
    let mut broker = Broker::new(broker_config, id, count);
    #[cfg(feature = "otel")]
    crate::otel::install(&mut broker, tracing.as_ref(), id);
    let acl = acl.map(Cached::new);
    if let Some(cached) = &acl {
        broker.set_acl(Some(cached.get()));
    }
    let store = storage.map(|(store, records)| {
        crate::storage::restore::into_broker(&mut broker, id, records, clock.now_ms());
        store
    });
    let shard = Rc::new(Shard::new(
        id,
        count,
        broker,
        clock,
        settings,
        mesh,
        auth.map(|service| ShardAuth::new(id, service)),
        metrics,
        tls_pool,
        store,
    ));
    Parts {
        shard,
        listeners,
        acl,
        report,
        cpu,
        refused,
    }
}

async fn shard_main(init: ShardInit, driver: &'static str) {
    let settings = init.settings;
    let sys_interval_s = init.broker_config.sys_interval_s;
    let Parts {
        shard,
        listeners,
        acl,
        report,
        cpu,
        refused,
    } = into_parts(init);
    let id = shard.id;
    let mut monoio_listeners = Vec::with_capacity(listeners.len());
    for (socket, ctx) in listeners {
        match monoio::net::TcpListener::from_std(socket) {
            Ok(l) => monoio_listeners.push((l, Rc::new(ctx))),
            Err(e) => {
                let _ = report.send(StartReport {
                    shard: id,
                    result: Err(format!("cannot adopt listener: {e}")),
                    refused,
                });
                return;
            }
        }
    }
    if let Some(cached) = acl {
        monoio::spawn(crate::acl::follow_reloads(shard.clone(), cached));
    }
    let mut rearm_accepts = Vec::with_capacity(monoio_listeners.len());
    for (listener, ctx) in monoio_listeners {
        let stop = Rc::new(Notify::new());
        shard.stop_accepting.borrow_mut().push(stop.clone());
        let rearm = Rc::new(Notify::new());
        rearm_accepts.push(rearm.clone());
        monoio::spawn(accept_task(shard.clone(), listener, ctx, stop, rearm));
    }
    monoio::spawn(timer_task(shard.clone()));
    monoio::spawn(ring_task(shard.clone()));
    let slab = match driver {
        "io_uring" => MonoioSlab::Operations(rearm_accepts),
        _ => MonoioSlab::Registrations,
    };
    monoio::spawn(memory_release_task(shard.clone(), slab));
    monoio::spawn(auth_task(shard.clone()));
    if id == 0 && sys_interval_s > 0 {
        monoio::spawn(metrics::sys_totals_task(shard.clone(), sys_interval_s));
    }
    shard.metrics.set_running(id, true);
    monoio::spawn(persist_task(shard.clone()));
    // The first `$SYS` publish, before any connection (`Broker::start`).
    shard.broker.borrow_mut().start(shard.now_ms());
    // What restoring and that produced (timers, messages to other shards).
    shard.drain_events(None);
    tracing::info!(shard = id, io = driver, cpu = ?cpu, "shard started");
    let _ = report.send(StartReport {
        shard: id,
        result: Ok(driver),
        refused,
    });
    ringmq_net::lasting::end_startup();

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
    flush_storage(&shard, Duration::from_millis(STORAGE_FLUSH_MAX_MS)).await;
    log_stopped(&shard, ringmq_net::conn::pace::pacer().deferred());
}

/// The shard's last log line: its totals (and close steps that waited).
fn log_stopped(shard: &Shard, close_steps_deferred: u64) {
    let stats = shard.broker.borrow().stats();
    let mesh = shard.mesh.borrow().stats();
    tracing::info!(
        shard = shard.id,
        messages_received = stats.messages_received.iter().sum::<u64>(),
        messages_sent = stats.messages_sent.iter().sum::<u64>(),
        ring_pushes_over_limit = mesh.pushes_over_limit,
        close_steps_deferred,
        "shard stopped"
    );
}

/// What woke the accept task.
enum AcceptWake {
    Accepted(std::io::Result<(monoio::net::TcpStream, std::net::SocketAddr)>),
    Stop,
    Rearm,
}

/// Accepts connections until `stop`. `rearm` (the memory release task, on
/// monoio's io_uring driver) ends the pending accept and issues a new one,
/// so that its entry in monoio's operation slab moves out of the pages a
/// burst grew (`ringmq_net::opslab`). The accept is cancelled, not
/// dropped: a connection the kernel accepted meanwhile still arrives here.
async fn accept_task(
    shard: Rc<Shard>,
    listener: monoio::net::TcpListener,
    ctx: Rc<ListenerCtx>,
    stop: Rc<Notify>,
    rearm: Rc<Notify>,
) {
    let mut canceller = monoio::io::Canceller::new();
    let mut warn = ringmq_net::throttle::WarnThrottle::default();
    loop {
        let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
        let woke = monoio::select! {
            r = &mut accept => AcceptWake::Accepted(r),
            _ = stop.wait() => AcceptWake::Stop,
            _ = rearm.wait() => AcceptWake::Rearm,
        };
        let result = match woke {
            AcceptWake::Accepted(r) => r,
            AcceptWake::Stop => break,
            AcceptWake::Rearm => {
                canceller = canceller.cancel();
                match accept.await {
                    Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => continue,
                    r => r,
                }
            }
        };
        match result {
            Ok((stream, _peer)) => {
                monoio::spawn(conn::serve_accepted(shard.clone(), stream, ctx.clone()));
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS/ENOMEM: back off instead of spinning;
                // ECONNABORTED and friends: just go on.
                let back_off = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if let Some(suppressed) = warn.allow(std::time::Instant::now()) {
                    tracing::warn!(shard = shard.id, listener = %ctx.name, error = %e, suppressed, "accept failed");
                }
                if back_off {
                    monoio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            }
        }
    }
    tracing::debug!(shard = shard.id, "stopped accepting");
}

/// After connections closed, wait this long, then give the memory their
/// buffers held back to the OS (`memory_release_task`), in milliseconds.
/// Closes during the wait are covered by the same release, so under
/// constant churn a shard releases at most once per this interval.
const MEMORY_RELEASE_DELAY_MS: u64 = 1_000;

/// Gives freed memory back to the OS some time after connections closed:
/// shrinks the tables kept at their high-water mark (engine and shard),
/// then runs this thread's allocator housekeeping (forced, purge included,
/// once the shard has no connection left: nothing waits on it then). The allocator only
/// frees this heap's empty pages when this thread next runs it, which a
/// quiet shard may not do for a long time: without this, RSS stays at its
/// peak after a burst of connections has gone (docs/benchmarks.md, "Memory
/// held by stalled partial packets, and given back after closes"). The
/// purge (`madvise`) runs on the purge helper, not here. First it makes
/// monoio drop the pages its slab grew to during the burst
/// (`ringmq_net::opslab`): the operation slab on io_uring, the slab of
/// registrations on epoll.
async fn memory_release_task(shard: Rc<Shard>, slab: MonoioSlab) {
    loop {
        shard.closed_some.wait().await;
        monoio::time::sleep(Duration::from_millis(MEMORY_RELEASE_DELAY_MS)).await;
        shard.shrink_memory();
        let started = std::time::Instant::now();
        let compacted = match &slab {
            MonoioSlab::Operations(rearm_accepts) => {
                let rearm = || rearm_accepts.iter().for_each(|accept| accept.notify());
                ringmq_net::opslab::compact_op_slab(rearm).await
            }
            MonoioSlab::Registrations => ringmq_net::opslab::compact_registrations().await,
        };
        match compacted {
            Ok(0) => {}
            Ok(removals) => tracing::debug!(
                shard = shard.id,
                removals,
                took_us = started.elapsed().as_micros() as u64,
                "monoio slab compacted"
            ),
            Err(e) => {
                tracing::debug!(shard = shard.id, error = %e, "monoio slab not compacted")
            }
        }
        if shard.conns.borrow().is_empty() {
            ringmq_net::alloc::release_all_free_memory();
        } else {
            ringmq_net::alloc::release_free_memory();
        }
    }
}

/// Which of monoio's slabs a burst of connections grows on this shard's
/// driver (`ringmq_net::opslab`).
enum MonoioSlab {
    /// io_uring: the operation slab; the listeners' accept re-arm flags
    /// (their pending accepts move out of the burst's pages).
    Operations(Vec<Rc<Notify>>),
    /// epoll: the slab of registrations (one per open socket).
    Registrations,
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

/// While messages wait in an overflow queue (a publisher may be paused on
/// them), the ring task looks at its rings again at least this often and
/// wakes the peers it waits for, in milliseconds. The wake-up protocol
/// (`mesh` docs) should make this unnecessary, yet QoS 0 floods through
/// tiny rings showed stalls that lasted until an unrelated wake-up (up to
/// the 10 s `$SYS` tick): this bounds any lost cross-thread wake-up to a
/// few milliseconds, and costs nothing while no overflow is pending.
const OVERFLOW_RECHECK_MS: u64 = 5;

/// Applies the helper threads' verdicts as they come back; a verdict for a
/// repeat offender waits out its delay on this shard's timer, without
/// holding up the next verdict.
async fn auth_task(shard: Rc<Shard>) {
    loop {
        let done = shard.next_auth_verdict().await;
        if done.delay_ms == 0 {
            shard.apply_auth(done);
            continue;
        }
        let shard = shard.clone();
        monoio::spawn(async move {
            monoio::time::sleep(Duration::from_millis(done.delay_ms)).await;
            shard.apply_auth(done);
        });
    }
}

/// Applies the storage writer's completions as they come back.
async fn persist_task(shard: Rc<Shard>) {
    loop {
        let done = shard.next_persisted().await;
        shard.apply_persisted(done);
    }
}

/// At shutdown, how long a shard waits for its last writes to be stored,
/// in milliseconds (within `server::SHUTDOWN_MARGIN_MS`, which the main
/// thread allows beyond the grace period).
const STORAGE_FLUSH_MAX_MS: u64 = 500;

/// How often the shutdown checks whether the last writes are stored, in
/// milliseconds (the persist task applies the completions meanwhile).
const FLUSH_POLL_MS: u64 = 1;

/// At shutdown: hands the engine's last writes to the storage writer and
/// waits until every batch of this shard is stored, at most `limit`.
async fn flush_storage(shard: &Shard, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while !storage_flushed(shard, deadline) {
        monoio::time::sleep(Duration::from_millis(FLUSH_POLL_MS)).await;
    }
}

/// One look of the shutdown's storage flush (both backends): hands the
/// engine's last writes to the writer; `true` once every batch of this
/// shard is stored, or when `deadline` has passed (logged).
fn storage_flushed(shard: &Shard, deadline: std::time::Instant) -> bool {
    shard.submit_persist();
    let left = shard.persist_in_flight();
    if left == 0 {
        return true;
    }
    if std::time::Instant::now() >= deadline {
        tracing::warn!(
            shard = shard.id,
            batches = left,
            "shutdown: storage batches still being written after the grace period"
        );
        return true;
    }
    false
}

async fn ring_task(shard: Rc<Shard>) {
    let budget = shard.settings.ring_batch_max_messages.max(1);
    let mut batch: Vec<RingMsg> = Vec::with_capacity(budget);
    loop {
        shard.answer_metrics();
        let shutdown_requested = shard.mesh.borrow().signal().shutdown_requested();
        if shutdown_requested && !shard.stopping.get() {
            shard.begin_shutdown();
        }
        let popped = shard.mesh.borrow_mut().pop_batch(budget, &mut batch);
        if popped > 0 {
            let now = shard.now_ms();
            for msg in batch.drain(..) {
                match msg {
                    RingMsg::Engine(msg) => shard.handle_shard_message(msg, now),
                    RingMsg::Handoff { fd, bytes, tls, ws } => {
                        conn::adopt_handoff(&shard, fd, bytes, tls, ws)
                    }
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
        let overflow_pending = shard.mesh.borrow().stats().overflow_messages > 0;
        if !overflow_pending {
            wait_for_ring_work(&shard).await;
            continue;
        }
        monoio::select! {
            _ = wait_for_ring_work(&shard) => {}
            _ = monoio::time::sleep(Duration::from_millis(OVERFLOW_RECHECK_MS)) => {
                shard.mesh.borrow().wake_overflow_peers();
            }
        }
    }
}

/// Parks the ring task until a peer pushed to us, made room on a ring we
/// wait for, or a shutdown was requested (`mesh` docs: register, then
/// re-check).
async fn wait_for_ring_work(shard: &Shard) {
    poll_fn(|cx| {
        let mesh = shard.mesh.borrow();
        let ready = || {
            mesh.has_work()
                || shard.metrics_pending()
                || (mesh.signal().shutdown_requested() && !shard.stopping.get())
        };
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
