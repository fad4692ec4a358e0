//! `ringmq`: the broker binary. One shard (thread + monoio runtime + engine
//! `Broker`) per core, SO_REUSEPORT listeners, an SPSC ring mesh between
//! shards.
//!
//! Modules: [`cli`] (flags), [`config`] (TOML + overrides + validation),
//! [`logging`], [`connlog`] (connect / disconnect lines), [`server`] (start-up, signals, shutdown), [`shard`] (one
//! shard's runtime), [`conn`] (routing + engine glue of a connection),
//! [`mesh`] (rings, wake-ups, full-ring policy), [`metrics`] (snapshots
//! of the shards, Prometheus text), [`http`] (`/metrics`, `/health`,
//! `/ready`), [`reload`] (SIGHUP
//! reload hooks), [`auth`] (password verification threads), [`passwd`] (the `ringmq passwd` command). The process
//! clock is `ringmq_net::clock::Clock`.
//!
//! Exit codes: 0 after a graceful shutdown, 1 on a runtime or start-up
//! error (port in use, io_uring unavailable with `io = "uring"`, a shard
//! died, a second signal), 2 on a command-line or configuration error.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod acl;
mod auth;
mod cli;
mod config;
mod conn;
mod conn_table;
mod connlog;
mod http;
mod logging;
mod mesh;
mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod passwd;
mod reload;
mod server;
mod shard;
mod storage;
mod tls;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ServeArgs};
use config::Config;

/// mimalloc, with a second heap for what outlives the connections
/// (`ringmq_net::lasting`).
#[global_allocator]
static GLOBAL: ringmq_net::lasting::Allocator = ringmq_net::lasting::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(&cli.serve),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::DefaultConfig) => {
            print!("{}", config::EMBEDDED_DEFAULTS);
            ExitCode::SUCCESS
        }
        Some(Command::Passwd(args)) => match passwd::run(&args) {
            Ok(done) => {
                eprintln!("ringmq passwd: {done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringmq passwd: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::CheckConfig(args)) => match load(&args) {
            Ok(config) => {
                // Certificates and keys are part of the configuration.
                if let Err(e) = tls::load_all(&config) {
                    eprintln!("ringmq: cannot load TLS files: {e}");
                    return ExitCode::from(2);
                }
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::Acl(args)) => acl::run(args),
        Some(Command::Storage(args)) => storage::tool::run(&args),
        Some(Command::Reload(args)) => {
            reload::send(args.config.as_deref(), args.pid_file.as_deref())
        }
    }
}

fn load(args: &ServeArgs) -> Result<Config, ExitCode> {
    let config = Config::load(args.config.as_deref(), &args.overrides()).map_err(|e| {
        eprintln!("ringmq: {e}");
        ExitCode::from(2)
    })?;
    // A bad ACL file is a configuration error too (exit 2, with its line).
    if let Err(e) = acl::load_configured(&config.auth.acl_file) {
        eprintln!("ringmq: auth.acl_file: {e}");
        return Err(ExitCode::from(2));
    }
    // The password file is part of the configuration: a missing or invalid
    // one is a configuration error (exit 2), named with its line.
    if !config.auth.password_file.is_empty() {
        let path = std::path::Path::new(&config.auth.password_file);
        if let Err(e) = auth::load_store(path) {
            eprintln!("ringmq: {e}");
            return Err(ExitCode::from(2));
        }
    }
    Ok(config)
}

fn serve(args: &ServeArgs) -> ExitCode {
    // Before the heap grows (ringmq_net::alloc docs).
    let huge_pages = ringmq_net::alloc::keep_small_pages();
    let large_blocks = ringmq_net::alloc::large_blocks_from_os();
    ringmq_net::lasting::init();
    let config = match load(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    logging::init(
        args.log_level().as_deref(),
        &config.runtime.log_level,
        config.runtime.log_format,
    );
    if let ringmq_net::alloc::HugePages::Failed(kind) = huge_pages {
        tracing::warn!(error = ?kind, "cannot turn transparent huge pages off; memory given back after closes may stay resident");
    }
    tracing::debug!(
        ?large_blocks,
        arena_max_object_kib = ringmq_net::alloc::arena_max_object_kib(),
        "allocator: large blocks"
    );
    match server::serve(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging is set up by now; the log goes to stderr.
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
