//! The native io_uring shard loop (`runtime.io = "native"`): one thread,
//! one `ringmq_net::uring::Driver`, no tasks. Each turn:
//!
//! ```text
//!   rings (bounded batch) ─▶ engine / adopt hand-offs ─▶ drain_events
//!   auth verdicts (delayed ones wait in a list) ─▶ engine
//!   engine deadline due ─▶ handle_timeout;  memory release; ACL reload
//!   receives quiet for a second ─▶ give the receive buffers' pages back
//!   driver.flush        (every connection's output ─▶ one SEND each)
//!   register the eventfd waker on the mesh signal and the auth inbox,
//!   look once more, then ONE io_uring_enter: submit all, sleep until a
//!   completion, a wake-up or the earliest deadline of all of the above
//!   driver.complete     (accepts, receives ─▶ Handler::on_bytes, sends)
//!   driver.fire_timers  (packet-complete, close flush/linger)
//! ```
//!
//! The shard state ([`Shard`]), the engine calls, the mesh protocol and the
//! connection handler ([`crate::conn::ConnCtx`]) are the monoio path's;
//! only the driving differs. Every listener kind is served (TLS and
//! WebSocket through the byte transforms the monoio path uses:
//! `ringmq_net::uring` and `native::route`), and storage on disk (the
//! writer's completions are applied each turn, the last batches flushed
//! at shutdown).

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::Waker;

use ringmq_net::uring::{Driver, Event, UringLimits};

use super::metrics::SysTotals;
use super::{ShardInit, StartReport, MEMORY_RELEASE_DELAY_MS, OVERFLOW_RECHECK_MS};

/// After a memory release that found no connection left, the allocator's
/// housekeeping runs once more this long after it, in milliseconds: blocks
/// of this thread's pages that other threads free after the release (the
/// release makes the other shards switch to smaller rings, and they free
/// the old ones when they next run) leave empty pages that only this
/// thread's housekeeping gives back, which a quiet shard otherwise never
/// runs. A page census after 100,000 closes showed such empty 5-40 KiB
/// pages per shard; no gain beyond the rounds' spread was measured
/// (docs/benchmarks.md, "client ids inside the records").
const MEMORY_RELEASE_AGAIN_MS: u64 = 1_000;
use super::{FLUSH_POLL_MS, STORAGE_FLUSH_MAX_MS};
use crate::acl::ACL_RELOAD_POLL_MS;
use crate::auth::Done;
use crate::mesh::RingMsg;
use crate::metrics::{Gathering, GATHER_POLL_MS};
use crate::reload::Cached;
use crate::shard::state::Shard;

mod route;

/// The driver for a shard, or why the kernel refused it (the caller falls
/// back to monoio).
pub fn driver(init: &ShardInit) -> std::io::Result<Driver> {
    let limits = UringLimits {
        gather_wait_us: init.settings.native_gather_us,
        hold_us: init.settings.native_hold_us,
        direct_fds: init.settings.native_direct_fds,
        ..UringLimits::default()
    };
    Driver::new(limits, init.settings.driver)
}

/// Runs the shard on `driver` until it has shut down.
pub fn run(init: ShardInit, mut driver: Driver) {
    let settings = init.settings;
    let sys_interval_ms = u64::from(init.broker_config.sys_interval_s) * 1000;
    let super::Parts {
        shard,
        listeners,
        acl,
        report,
        cpu,
        ..
    } = super::into_parts(init);
    let id = shard.id;
    // The first `$SYS` publish, before any connection (`Broker::start`).
    shard.broker.borrow_mut().start(shard.now_ms());
    // What restoring stored records and that produced (timers, messages
    // to other shards).
    shard.drain_events(None);
    let mut sockets = Vec::with_capacity(listeners.len());
    let mut contexts = Vec::with_capacity(listeners.len());
    for (socket, ctx) in listeners {
        // Sockets accepted into the direct table take the listener's
        // TCP_NODELAY (Linux copies it to accepted sockets; a direct socket
        // has no descriptor for setsockopt).
        if ctx.nodelay && driver.direct_slots() > 0 {
            if let Err(e) = socket2::SockRef::from(&socket).set_nodelay(true) {
                tracing::warn!(shard = id, listener = %ctx.name, error = %e, "TCP_NODELAY on the listener");
            }
        }
        // Stays open (and owned here) until the loop has ended.
        driver.add_listener(socket.as_raw_fd());
        sockets.push(socket);
        contexts.push(ctx);
    }
    // Accepts failing (the open-file limit): one warning per interval.
    let mut accept_warn = ringmq_net::throttle::WarnThrottle::default();
    let mut acl_current = acl.as_ref().map(|cached| cached.get());
    shard.metrics.set_running(id, true);
    // Shard 0 publishes the broker-wide `$SYS` totals (`shard::metrics`).
    let mut sys = (id == 0 && sys_interval_ms > 0).then(|| SysTick {
        totals: SysTotals::new(&shard),
        // The first totals at once (`shard::metrics::sys_totals_task`).
        next_at: shard.now_ms(),
        gathering: None,
        polled_at: 0,
    });
    if let Some(e) = driver.direct_error() {
        // One line for the broker (every shard's ring has the same kernel).
        if id == 0 {
            tracing::warn!(error = %e, "no direct descriptors (runtime.native_direct_fds): connections use process descriptors");
        } else {
            tracing::debug!(shard = id, error = %e, "no direct descriptors");
        }
    }
    tracing::info!(shard = id, io = "native io_uring", cpu = ?cpu, direct_fds = driver.direct_slots(), "shard started");
    if report
        .send(StartReport {
            shard: id,
            result: Ok("native io_uring"),
            refused: None,
        })
        .is_err()
    {
        tracing::debug!(shard = id, "start-up report not read");
    }

    let waker = driver.waker();
    let budget = settings.ring_batch_max_messages.max(1);
    let mut batch: Vec<RingMsg> = Vec::with_capacity(budget);
    let mut events: Vec<Event> = Vec::new();
    // Verdicts held back for repeat offenders: (due ms, verdict).
    let mut delayed: Vec<(u64, Done)> = Vec::new();
    let mut release_at: Option<u64> = None;
    // A second release after one that found no connection left
    // (`MEMORY_RELEASE_AGAIN_MS`).
    let mut release_again_at: Option<u64> = None;
    // When receiving went quiet long enough to give the receive buffers'
    // pages back (set again by every turn that received).
    let mut recv_quiet_at: Option<u64> = None;
    let mut acl_check_at = shard.now_ms() + ACL_RELOAD_POLL_MS;
    let mut overflow_check_at: Option<u64> = None;
    let mut stop_at: Option<u64> = None;
    ringmq_net::lasting::end_startup();
    loop {
        let now = shard.now_ms();
        shard.answer_metrics();
        if let Some(sys) = &mut sys {
            sys.turn(&shard, now, sys_interval_ms);
        }
        if shard.mesh.borrow().signal().shutdown_requested() && !shard.stopping.get() {
            shard.begin_shutdown();
            driver.stop_accepting();
            stop_at = Some(now + settings.shutdown_grace_ms);
        }
        let popped = shard.mesh.borrow_mut().pop_batch(budget, &mut batch);
        for msg in batch.drain(..) {
            match msg {
                RingMsg::Engine(msg) => shard.handle_shard_message(msg, now),
                RingMsg::Handoff { fd, bytes, tls, ws } => {
                    route::adopt(&shard, &mut driver, fd, bytes, tls, ws);
                }
            }
        }
        if popped > 0 {
            shard.drain_events(None);
            // Input for a held fan-out (`ringmq_net::uring` hold).
            driver.note_input();
        }
        shard.mesh.borrow_mut().flush_overflow();
        shard.mesh.borrow_mut().publish_wakeups();
        shard.resume_paused();
        if shard.mesh.borrow().stats().overflow_messages > 0 {
            let at = *overflow_check_at.get_or_insert(now + OVERFLOW_RECHECK_MS);
            if at <= now {
                shard.mesh.borrow().wake_overflow_peers();
                overflow_check_at = Some(now + OVERFLOW_RECHECK_MS);
            }
        } else {
            overflow_check_at = None;
        }
        poll_auth(&shard, &mut delayed, now);
        shard.poll_persisted(None);
        let due = shard.broker.borrow().poll_timeout();
        if due.is_some_and(|d| d <= now) {
            shard.broker.borrow_mut().handle_timeout(now);
            shard.drain_events(None);
        }
        if shard.closed_some.take() {
            release_at.get_or_insert(now + MEMORY_RELEASE_DELAY_MS);
        }
        if release_at.is_some_and(|at| at <= now) {
            release_at = None;
            shard.shrink_memory();
            // What the release rebuilds smaller stays (`lasting`).
            ringmq_net::lasting::scope(|| driver.shrink_memory());
            if driver.connections() == 0 {
                ringmq_net::alloc::release_all_free_memory();
                release_again_at = Some(now + MEMORY_RELEASE_AGAIN_MS);
            } else {
                ringmq_net::alloc::release_free_memory();
            }
        }
        if release_again_at.is_some_and(|at| at <= now) {
            release_again_at = None;
            if driver.connections() == 0 && release_at.is_none() {
                ringmq_net::alloc::release_all_free_memory();
            }
        }
        if recv_quiet_at.is_some_and(|at| at <= now) {
            recv_quiet_at = None;
            driver.release_idle_receive_buffers();
        }
        if let (Some(cached), true) = (&acl, acl_check_at <= now) {
            acl_check_at = now + ACL_RELOAD_POLL_MS;
            reload_acl(&shard, cached, &mut acl_current);
        }
        if shard.stopping.get() {
            if driver.connections() == 0 {
                break;
            }
            if stop_at.is_some_and(|at| at <= now) {
                tracing::warn!(
                    shard = id,
                    connections = driver.connections(),
                    grace_ms = settings.shutdown_grace_ms,
                    "shutdown grace elapsed with connections still open; closing them"
                );
                break;
            }
        }

        shard.freeze_clock(now);
        driver.flush(now);
        shard.thaw_clock();
        let busy = popped >= budget
            || driver.has_ready()
            || !sleep_safely(&shard, &waker, &mut delayed, now);
        let deadline = [
            shard.broker.borrow().poll_timeout(),
            driver.next_deadline_ms(),
            delayed.iter().map(|(at, _)| *at).min(),
            release_at,
            release_again_at,
            recv_quiet_at,
            acl.as_ref().map(|_| acl_check_at),
            overflow_check_at,
            stop_at,
            sys.as_ref().map(SysTick::deadline),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = if busy {
            Some(0)
        } else {
            deadline.map(|at| at.saturating_sub(shard.now_ms()).max(1))
        };
        if let Err(e) = driver.submit_and_wait(timeout) {
            tracing::error!(shard = id, error = %e, "io_uring_enter failed; stopping the shard");
            break;
        }
        let now = shard.now_ms();
        shard.freeze_clock(now);
        events.extend(driver.complete(now));
        shard.thaw_clock();
        if driver.take_receive_activity() {
            recv_quiet_at = Some(now + MEMORY_RELEASE_DELAY_MS);
        }
        for event in events.drain(..) {
            match event {
                Event::Accepted { listener, socket } => {
                    shard.count_accepted_socket();
                    if let Some(ctx) = contexts.get(listener) {
                        route::serve_accepted(&shard, &mut driver, socket, ctx);
                    }
                }
                Event::AcceptFailed { listener, error } => {
                    let name = contexts.get(listener).map_or("?", |c| c.name.as_str());
                    if let Some(suppressed) = accept_warn.allow(std::time::Instant::now()) {
                        tracing::warn!(shard = id, listener = %name, error = %error, suppressed, "accept failed");
                    }
                }
                Event::Detached {
                    handler,
                    fd,
                    bytes,
                    tls,
                    ws,
                } => route::hand_off(&shard, handler, fd, bytes, tls, ws),
            }
        }
        driver.fire_timers(now);
    }
    let close_steps_deferred = driver.close_steps_deferred();
    drop(driver);
    drop(sockets);
    flush_storage(&shard);
    super::log_stopped(&shard, close_steps_deferred);
}

/// Registers the loop's waker where other threads signal work (mesh,
/// auth), then looks again (`mesh` docs: register, then re-check).
/// `false`: work is already there, do not sleep. A verdict found here
/// joins `delayed` (due at once unless held back).
fn sleep_safely(shard: &Shard, waker: &Waker, delayed: &mut Vec<(u64, Done)>, now: u64) -> bool {
    let mut verdict_due = false;
    if let Some(auth) = &shard.auth {
        auth.register(waker);
        while let Some(done) = auth.try_next() {
            verdict_due |= done.delay_ms == 0;
            delayed.push((now + done.delay_ms, done));
        }
    }
    if shard.poll_persisted(Some(waker)) {
        return false;
    }
    let mesh = shard.mesh.borrow();
    mesh.signal().register(waker);
    let shutdown = mesh.signal().shutdown_requested() && !shard.stopping.get();
    !(verdict_due || mesh.has_work() || shutdown || shard.metrics_pending())
}

/// At shutdown, once the connections are gone: the engine's last writes
/// stored (at most `STORAGE_FLUSH_MAX_MS`; `shard::flush_storage` on the
/// monoio path). The loop has ended, so this thread just polls.
fn flush_storage(shard: &Shard) {
    let limit = std::time::Duration::from_millis(STORAGE_FLUSH_MAX_MS);
    let deadline = std::time::Instant::now() + limit;
    while !super::storage_flushed(shard, deadline) {
        std::thread::sleep(std::time::Duration::from_millis(FLUSH_POLL_MS));
        shard.poll_persisted(None);
    }
}

/// Shard 0's `$SYS` totals on the native loop: every `sys_interval_s` ask
/// every shard for a snapshot, poll for the answers every
/// `GATHER_POLL_MS` (at most `GATHER_TIMEOUT_MS`), then publish
/// (`shard::metrics::sys_totals_task` on the monoio path).
struct SysTick {
    totals: SysTotals,
    next_at: u64,
    /// The request in progress and when it was made (ms).
    gathering: Option<(Gathering, u64)>,
    /// When the answers were last looked at (ms).
    polled_at: u64,
}

impl SysTick {
    fn turn(&mut self, shard: &Shard, now: u64, interval_ms: u64) {
        if shard.is_stopping() {
            self.gathering = None;
            self.next_at = u64::MAX;
            return;
        }
        if self.gathering.is_none() && now >= self.next_at {
            self.gathering = Some((shard.metrics.ask(), now));
        }
        let Some((gathering, asked_at)) = &self.gathering else {
            return;
        };
        // This shard answers its own request in the same turn.
        shard.answer_metrics();
        self.polled_at = now;
        if let Some(snapshots) = shard.metrics.poll(gathering, now - asked_at) {
            self.totals.publish(shard, &snapshots);
            self.gathering = None;
            self.next_at = now + interval_ms;
        }
    }

    fn deadline(&self) -> u64 {
        match &self.gathering {
            Some(_) => self.polled_at + GATHER_POLL_MS,
            None => self.next_at,
        }
    }
}

/// Applies the verdicts that came back, holding those for repeat
/// offenders until their delay has passed (`auth` docs).
fn poll_auth(shard: &Shard, delayed: &mut Vec<(u64, Done)>, now: u64) {
    if let Some(auth) = &shard.auth {
        while let Some(done) = auth.try_next() {
            if done.delay_ms == 0 {
                shard.apply_auth(done);
            } else {
                delayed.push((now + done.delay_ms, done));
            }
        }
    }
    let mut i = 0;
    while i < delayed.len() {
        if delayed[i].0 <= now {
            let (_, done) = delayed.swap_remove(i);
            shard.apply_auth(done);
        } else {
            i += 1;
        }
    }
}

/// Gives the engine the ACL a SIGHUP loaded (`acl::follow_reloads` on the
/// monoio path).
fn reload_acl(
    shard: &Shard,
    cached: &Cached<ringmq_engine::acl::Acl>,
    current: &mut Option<Arc<ringmq_engine::acl::Acl>>,
) {
    let latest = cached.get();
    if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &latest)) {
        return;
    }
    shard.broker.borrow_mut().set_acl(Some(latest.clone()));
    tracing::info!(
        shard = shard.id,
        rules = latest.rules().len(),
        "ACL reloaded"
    );
    *current = Some(latest);
}
