//! Logging: tracing to stderr. The filter is `--log-level` if given, else
//! `RUST_LOG` if set, else `runtime.log_level` from the configuration.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `cli` is `--log-level`, `config` is
/// `runtime.log_level` (already validated); `format` is
/// `runtime.log_format` (`json`: one JSON object per line, with the
/// fields of each event at the top level).
pub fn init(cli: Option<&str>, config: &str, format: LogFormat) {
    let filter = match cli {
        Some(level) => EnvFilter::try_new(level).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    .or_else(|| EnvFilter::try_new(config).ok())
    .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_thread_names(true);
    // A second subscriber cannot be installed (only tests would try): the
    // first one stays, which is what they want.
    let _already_installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
