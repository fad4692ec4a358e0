//! `[tracing]`: the checks of the OpenTelemetry export settings. The
//! section is read by every build, so that a file is valid or not whatever
//! the build; an `endpoint` in a build without the `otel` feature is an
//! error, not silently ignored.

use super::{bounds, in_range, invalid, ConfigError, Tracing};

impl Tracing {
    /// Whether spans are exported (an endpoint is set).
    pub fn enabled(&self) -> bool {
        !self.endpoint.is_empty()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(invalid(
                "tracing.sampling_ratio",
                self.sampling_ratio,
                "0.0..=1.0 (the share of new traces recorded)",
            ));
        }
        in_range(
            "tracing.queue_max_spans",
            self.queue_max_spans,
            bounds::TRACING_QUEUE_MAX_SPANS,
        )?;
        in_range(
            "tracing.batch_max_spans",
            self.batch_max_spans,
            bounds::TRACING_BATCH_MAX_SPANS,
        )?;
        if self.batch_max_spans > self.queue_max_spans {
            return Err(invalid(
                "tracing.batch_max_spans",
                self.batch_max_spans,
                format!("at most tracing.queue_max_spans ({})", self.queue_max_spans),
            ));
        }
        in_range(
            "tracing.export_interval_ms",
            self.export_interval_ms,
            bounds::TRACING_EXPORT_INTERVAL_MS,
        )?;
        in_range(
            "tracing.export_timeout_ms",
            self.export_timeout_ms,
            bounds::TRACING_EXPORT_TIMEOUT_MS,
        )?;
        if self.service_name.trim().is_empty() {
            return Err(invalid(
                "tracing.service_name",
                "\"\"",
                "a name (the `service.name` of the exported spans)",
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|s| self.endpoint.starts_with(s) && self.endpoint.len() > s.len());
        if !scheme_ok {
            return Err(invalid(
                "tracing.endpoint",
                format!("{:?}", self.endpoint),
                "\"\" (off) or the collector's OTLP/HTTP traces URL, such as \
                 \"http://127.0.0.1:4318/v1/traces\"",
            ));
        }
        if !cfg!(feature = "otel") {
            return Err(ConfigError::Conflict {
                message: format!(
                    "tracing.endpoint = {:?}, but this ringmq was built without \
                     OpenTelemetry: build it with `cargo build --release -p ringmq \
                     --features otel`, or set tracing.endpoint = \"\"",
                    self.endpoint
                ),
            });
        }
        Ok(())
    }
}
