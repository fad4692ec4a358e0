//! Logging: tracing to stderr. The filter is `--log-level` if given, else
//! `RUST_LOG` if set, else `runtime.log_level` from the configuration.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `cli` is `--log-level`, `config` is
/// `runtime.log_level` (already validated).
pub fn init(cli: Option<&str>, config: &str) {
    let filter = match cli {
        Some(level) => EnvFilter::try_new(level).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    .or_else(|| EnvFilter::try_new(config).ok())
    .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_thread_names(true)
        .try_init();
}
