//! Which I/O backend a shard runs on (`runtime.io`): the native io_uring
//! loop (`native`; `auto` tries it first), else monoio on io_uring, else
//! monoio on epoll, the portable fallback. A shard that falls back from the
//! native loop records why in its start report; the main thread logs the
//! choice once (`server`).

#[cfg(target_os = "linux")]
use super::native;
use super::{shard_main, ShardInit, StartReport, URING_ENTRIES};
use crate::config::IoMode;
use ringmq_net::opslab::EPOLL_EVENTS;

/// Runs a shard on the current thread until it has shut down.
pub fn run(init: ShardInit) {
    // Until the loop starts (`native::run`, `shard_main`).
    ringmq_net::lasting::begin_startup();
    let shard = init.id;
    if let Some(cpu) = init.cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            tracing::warn!(shard, cpu, error = %e, "cannot pin shard to its CPU; running unpinned");
        }
    }
    match init.io {
        IoMode::Native => run_native(init),
        IoMode::Auto => run_auto(init),
        IoMode::Uring => run_uring(init),
        IoMode::Epoll => run_epoll(init),
    }
}

/// Tells the main thread that this shard could not start.
fn fail(init: &ShardInit, e: String) {
    if init
        .report
        .send(StartReport {
            shard: init.id,
            result: Err(e),
            refused: init.refused.clone(),
        })
        .is_err()
    {
        tracing::debug!(shard = init.id, "start-up report not read");
    }
}

/// `io = "native"`: the native io_uring loop (every listener kind: MQTT,
/// TLS, ws, wss; storage in memory or on disk), or monoio (as `auto` falls
/// back) with a log line when the kernel or a sandbox refuses what it needs.
#[cfg(target_os = "linux")]
fn run_native(mut init: ShardInit) {
    let shard = init.id;
    match native::driver(&init) {
        Ok(driver) => native::run(init, driver),
        Err(e) => {
            tracing::warn!(
                shard,
                error = %e,
                "io = \"native\": io_uring refused a feature the native loop needs; this shard runs on monoio"
            );
            init.refused = Some(e.to_string());
            run_monoio(init)
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn run_native(mut init: ShardInit) {
    tracing::warn!(
        shard = init.id,
        "io = \"native\" needs Linux io_uring; this shard runs on monoio"
    );
    init.refused = Some("not Linux".into());
    run_monoio(init)
}

/// `io = "auto"` (the default): the native io_uring loop where the kernel
/// accepts its setup, else monoio (io_uring, else epoll). The main thread
/// logs the choice and the refusal once (`server`), not every shard.
#[cfg(target_os = "linux")]
fn run_auto(mut init: ShardInit) {
    match native::driver(&init) {
        Ok(driver) => native::run(init, driver),
        Err(e) => {
            tracing::debug!(shard = init.id, error = %e, "native io_uring loop refused");
            init.refused = Some(e.to_string());
            run_monoio(init)
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn run_auto(mut init: ShardInit) {
    init.refused = Some("not Linux".into());
    run_monoio(init)
}

/// monoio on io_uring where the kernel allows it, else on epoll.
fn run_monoio(init: ShardInit) {
    // io_uring's queue size, or the epoll driver's events per wait where
    // monoio falls back to it (`EPOLL_EVENTS`: its buffer's size class).
    let entries = if monoio::utils::detect_uring() {
        URING_ENTRIES
    } else {
        EPOLL_EVENTS
    };
    let built = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(entries)
        .enable_timer()
        .build();
    match built {
        Ok(monoio::FusionRuntime::Uring(mut rt)) => rt.block_on(shard_main(init, "io_uring")),
        Ok(monoio::FusionRuntime::Legacy(mut rt)) => rt.block_on(shard_main(init, "epoll")),
        Err(e) => fail(&init, format!("cannot start the I/O runtime: {e}")),
    }
}

fn run_uring(init: ShardInit) {
    if !monoio::utils::detect_uring() {
        return fail(
            &init,
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
        Err(e) => fail(
            &init,
            format!("io = \"uring\" but io_uring could not be set up: {e}"),
        ),
    }
}

fn run_epoll(init: ShardInit) {
    let built = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .with_entries(EPOLL_EVENTS)
        .enable_timer()
        .build();
    match built {
        Ok(mut rt) => rt.block_on(shard_main(init, "epoll")),
        Err(e) => fail(&init, format!("cannot start the epoll runtime: {e}")),
    }
}
