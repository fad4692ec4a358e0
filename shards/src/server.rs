//! `ringmq serve`: bind the listeners, build the ring mesh, start one
//! pinned thread per shard, then wait on the main thread for a signal.
//!
//! Signals are received synchronously: SIGINT, SIGTERM and SIGUSR1 are
//! blocked on the main thread *before* any other thread exists (threads
//! inherit the mask), and the main thread waits for them with
//! `sigwait`/`sigtimedwait`. No async-signal handler runs at all.
//!
//! - SIGINT / SIGTERM: graceful shutdown. Every shard stops accepting, calls
//!   `Broker::shutdown` (v5 clients get DISCONNECT 0x8B), flushes and closes
//!   its connections, and stops; the process exits 0. A shard gets
//!   `shutdown_grace_ms` for this; the main thread waits that plus
//!   [`SHUTDOWN_MARGIN_MS`], then exits 0 anyway (logging what was left).
//! - A second SIGINT/SIGTERM during the shutdown: exit at once, code 1.
//! - SIGUSR1: sent by a shard thread as it exits; if that happens while
//!   serving, a shard died (a bug): the others are stopped and the process
//!   exits 1.
//! - SIGHUP (`ringmq reload` sends it to the pid in `runtime.pid_file`):
//!   reload certificates and other reloadable files ([`reload`]):
//!   every registered hook runs on this thread and logs what changed or
//!   why it was refused; shards pick the new values up for new
//!   connections.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ringmq_net::listener::{bind, bind_group, BindError, ListenerOptions};
use ringmq_net::os::{self, SignalSet};

use crate::config::{Config, IoMode};
use crate::mesh::{self, RingMsg, ShardSignal};
use crate::metrics::MetricsHub;
use crate::reload::{self, Hooks, Reloadable};
use crate::shard::{self, ShardInit, ShardListener, ShardSettings, StartReport};
use crate::tls;
use ringmq_net::clock::Clock;
use ringmq_net::tls::offload::HandshakePool;

/// How long the shards may take to start (build runtimes, adopt
/// listeners) before start-up is declared failed.
pub const STARTUP_TIMEOUT_MS: u64 = 10_000;
/// The same with `storage = "disk"`, where a shard first loads its stored
/// sessions and retained messages.
pub const STORAGE_STARTUP_TIMEOUT_MS: u64 = 600_000;
/// Extra time the main thread gives the shards beyond `shutdown_grace_ms`.
pub const SHUTDOWN_MARGIN_MS: u64 = 1_000;

/// Why serving failed.
#[derive(Debug)]
pub enum ServeError {
    /// A listening socket could not be created.
    Bind(BindError),
    /// A TLS listener's certificate files could not be loaded.
    Tls(String),
    /// Signals could not be set up.
    Signals(std::io::Error),
    /// A shard could not start.
    Start(String),
    /// A shard stopped while serving.
    ShardDied,
    /// A second signal cut the graceful shutdown short.
    Forced,
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind(e) => e.fmt(f),
            ServeError::Tls(e) => write!(f, "cannot load TLS files: {e}"),
            ServeError::Signals(e) => write!(f, "cannot set up signal handling: {e}"),
            ServeError::Start(e) => write!(f, "cannot start: {e}"),
            ServeError::ShardDied => {
                f.write_str("a shard stopped unexpectedly; stopped the others")
            }
            ServeError::Forced => f.write_str("second signal: exited before the shutdown finished"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Raises SIGUSR1 (after counting the exit) when a shard thread ends,
/// normally or by a panic.
struct ExitNotice(Arc<AtomicUsize>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        let _ = os::signal_self(libc::SIGUSR1);
    }
}

/// Most descriptors the broker reserves room for at start-up
/// (`os::reserve_fd_table`; ~0.5 MiB of kernel memory). Past it the table
/// still grows as connections arrive (each doubling then costs a shard one
/// RCU wait).
const FD_TABLE_RESERVE_MAX: u64 = 65_536;

/// Descriptors beyond the connections: listeners, rings' wake-ups, files.
const FD_TABLE_SPARE: u64 = 256;

/// Runs the broker until SIGINT/SIGTERM; returns once it has shut down.
pub fn serve(config: &Config) -> Result<(), ServeError> {
    let cpus = os::allowed_cpus();
    let count = config.shard_count(cpus.len());
    // Before the first thread: the descriptor table grows once, without
    // the RCU wait each later growth would cost a shard (os docs).
    let fds = (count as u64)
        .saturating_mul(u64::try_from(config.limits.connections_max).unwrap_or(u64::MAX))
        .saturating_add(FD_TABLE_SPARE)
        .min(FD_TABLE_RESERVE_MAX);
    match os::reserve_fd_table(fds) {
        Ok(reserved) => tracing::debug!(reserved, "descriptor table reserved"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot reserve the descriptor table; it grows as connections arrive")
        }
    }
    let signals = SignalSet::block(&[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGHUP])
        .map_err(ServeError::Signals)?;
    // Freed memory goes back to the OS from a helper thread, not from
    // inside a shard's allocations (ringmq_net::alloc docs). Spawned after
    // the signals are blocked, like every other thread: a thread that
    // existed before would take SIGINT asynchronously and die of it.
    if let ringmq_net::alloc::Purger::Failed(e) = ringmq_net::alloc::start_purger() {
        tracing::warn!(error = %e, "cannot start the memory purge thread; shards purge freed memory themselves");
    }

    // Removed again when `serve` returns, however it returns.
    let _pid_file = match config.runtime.pid_file.as_str() {
        "" => None,
        path => {
            Some(reload::PidFile::write(std::path::Path::new(path)).map_err(ServeError::Start)?)
        }
    };
    // Certificates first: a bad file is reported before any socket is bound.
    let tls_shared = tls::load_all(config).map_err(ServeError::Tls)?;
    // Reload hooks: each reloadable file registers one (see `reload`).
    let mut hooks = Hooks::new();
    for (listener, shared) in config.listeners.iter().zip(&tls_shared) {
        if let Some(shared) = shared {
            tls::register_reload(&mut hooks, listener, shared);
        }
    }

    let acl = crate::acl::load_configured(&config.auth.acl_file)
        .map_err(ServeError::Start)?
        .map(Reloadable::new);
    if let Some(shared) = &acl {
        let path = std::path::PathBuf::from(&config.auth.acl_file);
        hooks.register(
            format!("acl_file {}", path.display()),
            crate::acl::reload_hook(path, shared.clone()),
        );
    }

    let mut listeners: Vec<Vec<ShardListener>> = (0..count).map(|_| Vec::new()).collect();
    let mut bound: Vec<String> = Vec::new();
    let mut http_sockets = Vec::new();
    for (listener, shared) in config.listeners.iter().zip(&tls_shared) {
        let address = listener.bind;
        if listener.protocol == crate::config::Protocol::Http {
            // One socket, served by the HTTP thread (not by the shards).
            let options = ListenerOptions {
                reuse_port: false,
                ..listener.options()
            };
            let socket = bind(address, &options).map_err(ServeError::Bind)?;
            let local = socket
                .local_addr()
                .map_err(|source| ServeError::Bind(BindError { address, source }))?;
            tracing::info!(listener = %format!("http://{local}"), "listener bound");
            bound.push(local.to_string());
            http_sockets.push(socket);
            continue;
        }
        let group = bind_group(address, usize::from(count), &listener.options())
            .map_err(ServeError::Bind)?;
        let local = group[0]
            .local_addr()
            .map_err(|source| ServeError::Bind(BindError { address, source }))?;
        let name = crate::config::Listener {
            bind: local,
            ..listener.clone()
        }
        .describe();
        tracing::info!(listener = %name, tls = listener.tls.is_some(), "listener bound");
        bound.push(local.to_string());
        for (i, socket) in group.into_iter().enumerate() {
            listeners[i].push(ShardListener {
                socket,
                name: name.clone(),
                nodelay: listener.nodelay,
                tls: shared.clone(),
                ws: listener.ws.clone().map(std::sync::Arc::new),
            });
        }
    }

    let r = &config.runtime;
    let (meshes, ring_signals) =
        mesh::build(count, r.ring_capacity_slots, r.ring_overflow_max_messages);
    // Each ring starts at `mesh::RING_INITIAL_SLOTS` and grows up to
    // `ring_capacity_slots` (mesh docs): the most the mesh may take.
    let ring_bytes_max = usize::from(count)
        * usize::from(count.saturating_sub(1))
        * r.ring_capacity_slots
        * std::mem::size_of::<RingMsg>();
    tracing::debug!(
        shards = count,
        ring_bytes_max,
        slot_bytes = std::mem::size_of::<RingMsg>(),
        initial_slots = r.ring_capacity_slots.min(mesh::RING_INITIAL_SLOTS),
        "ring mesh built"
    );

    // Asked by /metrics and the $SYS totals; wakes shards through the
    // mesh's signals.
    let clock = Clock::new();
    let hub = MetricsHub::new(ring_signals.clone(), clock);
    if !http_sockets.is_empty() {
        crate::http::start(http_sockets, hub.clone(), r.ring_capacity_slots)
            .map_err(|e| ServeError::Start(format!("cannot start the HTTP thread: {e}")))?;
    }

    let settings = ShardSettings {
        driver: config.driver_config(),
        ring_batch_max_messages: r.ring_batch_max_messages,
        native_gather_us: r.native_gather_us,
        native_hold_us: r.native_hold_us,
        native_direct_fds: r.native_direct_fds,
        route_buffer_max_bytes: config.read_buffer_max_bytes(),
        shutdown_grace_ms: r.shutdown_grace_ms,
        log_connections: r.log_connections,
        log_connections_max_lines_per_s: r.log_connections_max_lines_per_s,
    };
    // Password file: loaded now (a bad one stops the start), re-read on SIGHUP.
    let auth = crate::auth::start(config, &mut hooks, clock).map_err(ServeError::Start)?;
    // TLS handshakes run on helper threads, never on a shard.
    let tls_pool = if tls_shared.iter().any(Option::is_some) {
        Some(
            HandshakePool::start(r.tls_handshake_threads, "ringmq-tls")
                .map_err(ServeError::Start)?,
        )
    } else {
        None
    };
    // Storage on disk: opened and read back before any shard starts; each
    // shard loads its share before it accepts.
    let storage = crate::storage::start(config, count).map_err(ServeError::Start)?;
    let (writer, shares) = match storage {
        Some(s) => (Some(s.writer), s.recovered.into_shards()),
        None => (None, Vec::new()),
    };
    let mut shares = shares.into_iter();
    // OpenTelemetry (`[tracing]`, feature `otel`): the exporter thread
    // starts before the shards that feed it.
    #[cfg(feature = "otel")]
    let otel = crate::otel::Tracing::start(&config.tracing).map_err(ServeError::Start)?;
    let exited = Arc::new(AtomicUsize::new(0));
    let (report_tx, report_rx) = mpsc::channel::<StartReport>();
    let mut threads = Vec::with_capacity(usize::from(count));
    for (i, (mesh, listeners)) in meshes.into_iter().zip(listeners).enumerate() {
        let init = ShardInit {
            id: i as u16,
            count,
            broker_config: config.broker_config(),
            settings,
            listeners,
            mesh,
            clock,
            io: r.io,
            refused: None,
            cpu: if r.pin_cores {
                Some(cpus[i % cpus.len()])
            } else {
                None
            },
            report: report_tx.clone(),
            acl: acl.clone(),
            auth: auth.clone(),
            metrics: hub.clone(),
            tls_pool: tls_pool.clone(),
            #[cfg(feature = "otel")]
            tracing: otel.clone(),
            storage: writer
                .as_ref()
                .map(|w| (w.for_shard(i as u16), shares.next().unwrap_or_default())),
        };
        let notice = ExitNotice(exited.clone());
        let spawned = thread::Builder::new()
            .name(format!("ringmq-shard-{i}"))
            .spawn(move || {
                let _notice = notice;
                shard::run(init);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop_all(&ring_signals);
                return Err(ServeError::Start(format!(
                    "cannot spawn shard thread {i}: {e}"
                )));
            }
        }
    }
    drop(report_tx);

    // Loading stored records is part of a shard's start.
    let startup_ms = if writer.is_some() {
        STORAGE_STARTUP_TIMEOUT_MS
    } else {
        STARTUP_TIMEOUT_MS
    };
    let (drivers, refused) = match wait_started(&report_rx, count, startup_ms) {
        Ok(d) => d,
        Err(e) => {
            stop_all(&ring_signals);
            wait_stopped(
                &signals,
                &exited,
                count,
                Duration::from_millis(r.shutdown_grace_ms + SHUTDOWN_MARGIN_MS),
            );
            return Err(ServeError::Start(e));
        }
    };
    hub.set_serving(true);
    log_io_choice(r.io, &drivers, refused.as_deref());
    let addresses = bound.join(",");
    tracing::info!(addresses = %addresses, shards = count, io = %drivers, "listening");

    // Serve until a signal.
    let died = loop {
        match signals.wait(None) {
            Ok(Some(libc::SIGINT | libc::SIGTERM)) => break false,
            Ok(Some(libc::SIGHUP)) => {
                let outcomes = hooks.run_all();
                let refused = outcomes
                    .iter()
                    .filter(|o| matches!(o, reload::Outcome::Refused(_)))
                    .count();
                tracing::info!(hooks = outcomes.len(), refused, "reload done");
            }
            Ok(_) if exited.load(Ordering::SeqCst) > 0 => break true,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "waiting for signals failed; shutting down");
                break false;
            }
        }
    };
    hub.set_serving(false);
    if died {
        tracing::error!("a shard stopped unexpectedly; stopping the others");
    } else {
        tracing::info!(grace_ms = r.shutdown_grace_ms, "shutting down");
    }
    stop_all(&ring_signals);
    let deadline = Duration::from_millis(r.shutdown_grace_ms + SHUTDOWN_MARGIN_MS);
    let outcome = wait_stopped(&signals, &exited, count, deadline);
    for t in threads {
        if t.is_finished() {
            let _ = t.join();
        }
    }
    if let Some(pool) = &tls_pool {
        let c = pool.stats().counts();
        tracing::info!(
            steps_on_helper_threads = c.offloaded_steps,
            steps_on_shards = c.inline_steps,
            longest_step_on_a_shard_us = c.inline_step_max_us,
            "TLS handshake work"
        );
    }
    if let Some(writer) = writer {
        if !writer.finish(Duration::from_millis(SHUTDOWN_MARGIN_MS)) {
            tracing::warn!("storage writer still busy after the shutdown margin; exiting anyway");
        }
    }
    // The shards' last spans are queued: send them.
    #[cfg(feature = "otel")]
    if let Some(otel) = &otel {
        otel.shutdown();
    }
    match (died, outcome) {
        (true, _) => Err(ServeError::ShardDied),
        (false, Stopped::Forced) => Err(ServeError::Forced),
        (false, Stopped::All) => {
            tracing::info!("stopped");
            Ok(())
        }
        (false, Stopped::Timeout(left)) => {
            tracing::warn!(
                shards_still_running = left,
                "shutdown took longer than its grace period; exiting anyway"
            );
            Ok(())
        }
    }
}

fn stop_all(signals: &[ShardSignal]) {
    for s in signals {
        s.request_shutdown();
    }
}

/// Collects one start report per shard: the summary of drivers in use,
/// and why the native loop was refused if a shard fell back from it.
fn wait_started(
    reports: &mpsc::Receiver<StartReport>,
    count: u16,
    timeout_ms: u64,
) -> Result<(String, Option<String>), String> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut drivers: Vec<&'static str> = vec![""; usize::from(count)];
    let mut refusal = None;
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        match reports.recv_timeout(left) {
            Ok(StartReport {
                shard,
                result: Ok(driver),
                refused,
            }) => {
                if let Some(slot) = drivers.get_mut(usize::from(shard)) {
                    *slot = driver;
                }
                refusal = refusal.or(refused);
            }
            Ok(StartReport {
                shard,
                result: Err(e),
                ..
            }) => return Err(format!("shard {shard}: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("shards did not start within {timeout_ms} ms"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("a shard exited during start-up".into())
            }
        }
    }
    let mut kinds = drivers.clone();
    kinds.sort_unstable();
    kinds.dedup();
    Ok((kinds.join("+"), refusal))
}

/// The one start-up line saying which I/O backend the shards run on and
/// why: what `runtime.io` asked for and, when the native loop was refused,
/// the kernel's answer (a warning then: the fallback serves, but slower).
fn log_io_choice(mode: IoMode, drivers: &str, refused: Option<&str>) {
    match refused {
        None => tracing::info!(
            io = %drivers,
            runtime_io = %mode,
            "I/O backend: {}",
            match mode {
                IoMode::Auto => "the native io_uring loop (the kernel accepted its io_uring setup)",
                IoMode::Native => "the native io_uring loop, as configured",
                IoMode::Uring => "monoio on io_uring, as configured",
                IoMode::Epoll => "monoio on epoll, as configured",
            }
        ),
        Some(why) => tracing::warn!(
            io = %drivers,
            runtime_io = %mode,
            refused = %why,
            "I/O backend: the native io_uring loop was refused; the portable monoio fallback serves"
        ),
    }
}

enum Stopped {
    All,
    Timeout(usize),
    Forced,
}

fn wait_stopped(signals: &SignalSet, exited: &AtomicUsize, count: u16, limit: Duration) -> Stopped {
    let deadline = Instant::now() + limit;
    loop {
        let done = exited.load(Ordering::SeqCst);
        if done >= usize::from(count) {
            return Stopped::All;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Stopped::Timeout(usize::from(count) - done);
        }
        match signals.wait(Some(left)) {
            Ok(Some(libc::SIGINT | libc::SIGTERM)) => return Stopped::Forced,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "waiting for shards failed");
                return Stopped::Timeout(usize::from(count) - done);
            }
        }
    }
}
