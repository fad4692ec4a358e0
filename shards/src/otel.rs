//! OpenTelemetry tracing of routed publishes (cargo feature `otel`;
//! `[tracing]` in the configuration; docs/operations.md, "Tracing").
//!
//! Each shard's engine gets a [`ShardTracer`] (the engine's
//! `PublishTracer` hook, feature `trace-hook`). For every PUBLISH a client
//! sends that the broker accepts and routes, it:
//! 1. reads the W3C `traceparent` / `tracestate` user properties
//!    (`traceparent.rs`; a malformed or repeated traceparent is ignored),
//! 2. starts a span whose parent is that context (a new root without one),
//!    sampled by the publisher's flag or, for a new trace, by
//!    `tracing.sampling_ratio`,
//! 3. replaces the message's `traceparent` with one naming this span as
//!    parent (so every subscriber, on any shard, and the retained copy get
//!    it; `tracestate` goes on as the publisher sent it), and
//! 4. after routing, records the delivery count and ends the span.
//!
//! Finished spans leave the shard through a bounded queue to the exporter
//! thread (`export.rs`), which sends them over OTLP/HTTP with protobuf
//! (`http_client.rs`). Without an `endpoint` no tracer is installed and
//! the engine's hook is one `None` test per publish.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span};
use opentelemetry_sdk::Resource;
use ringmq_engine::broker::{Broker, PublishRouted, PublishStart, PublishTracer, ShardId};
use ringmq_engine::codec::QoS;

use crate::config;

mod export;
mod http_client;
pub mod traceparent;

pub use export::COUNTERS;
use traceparent::{TraceParent, TRACEPARENT, TRACESTATE};

/// The span's name (the topic is an attribute: names stay few).
const SPAN_NAME: &str = "mqtt route";

/// The process's tracer provider and its exporter thread.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Tracing {
    /// Starts the exporter for `config`; `None` when tracing is off.
    pub fn start(config: &config::Tracing) -> Result<Option<Arc<Tracing>>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let timeout = Duration::from_millis(config.export_timeout_ms);
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(http_client::UreqClient::new(timeout))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .with_timeout(timeout)
            .build()
            .map_err(|e| format!("tracing.endpoint {:?}: {e}", config.endpoint))?;
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let processor = export::QueueProcessor::start(
            exporter,
            export::QueueSettings {
                queue_max_spans: config.queue_max_spans,
                batch_max_spans: config.batch_max_spans,
                export_interval: Duration::from_millis(config.export_interval_ms),
                export_timeout: timeout,
            },
        )
        .map_err(|e| format!("cannot start the span exporter thread: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("ringmq");
        tracing::info!(
            endpoint = %config.endpoint,
            service_name = %config.service_name,
            sampling_ratio = config.sampling_ratio,
            "OpenTelemetry tracing on"
        );
        Ok(Some(Arc::new(Tracing { provider, tracer })))
    }

    /// Sends what is queued and stops the exporter thread (after the
    /// shards stopped).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "span exporter shutdown");
        }
    }
}

/// Installs shard `shard`'s tracer in its engine, if tracing is on.
pub fn install(broker: &mut Broker, tracing: Option<&Arc<Tracing>>, shard: ShardId) {
    if let Some(t) = tracing {
        broker.set_publish_tracer(Some(Box::new(ShardTracer {
            tracer: t.tracer.clone(),
            shard,
            current: None,
        })));
    }
}

/// One shard's hook: the span of the publish being routed.
pub struct ShardTracer {
    tracer: SdkTracer,
    shard: ShardId,
    current: Option<Span>,
}

impl PublishTracer for ShardTracer {
    fn start(&mut self, p: PublishStart<'_>) -> bool {
        let parent = match incoming(p.user_properties) {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        let qos = match p.qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        };
        let attributes = vec![
            KeyValue::new("messaging.system", "mqtt"),
            KeyValue::new("messaging.operation.name", "route"),
            KeyValue::new("messaging.destination.name", lossy(p.topic)),
            KeyValue::new("messaging.client.id", lossy(p.client_id)),
            KeyValue::new("mqtt.qos", qos),
            KeyValue::new("mqtt.retain", p.retain),
            KeyValue::new("ringmq.shard", i64::from(self.shard)),
        ];
        let span = self
            .tracer
            .span_builder(SPAN_NAME)
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        let sc = span.span_context();
        if !sc.is_valid() {
            return false;
        }
        let value = traceparent::format(&TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            parent_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
        });
        set_traceparent(p.user_properties, Bytes::from(value));
        self.current = Some(span);
        true
    }

    fn finish(&mut self, routed: PublishRouted) {
        if let Some(mut span) = self.current.take() {
            span.set_attribute(KeyValue::new(
                "ringmq.deliveries",
                i64::from(routed.deliveries),
            ));
            span.set_attribute(KeyValue::new(
                "ringmq.forwarded_shards",
                i64::from(routed.forwarded),
            ));
            span.set_attribute(KeyValue::new("ringmq.matched", routed.matched));
            span.end();
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    // Topics and client ids are UTF-8 (the codec checks); lossy for safety.
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => s.to_string(),
        Cow::Owned(s) => s,
    }
}

fn is(name: &Bytes, wanted: &str) -> bool {
    name.eq_ignore_ascii_case(wanted.as_bytes())
}

/// The publisher's span context: its one valid `traceparent` (more than
/// one is ignored, as for HTTP headers) and its `tracestate` (kept only if
/// it parses; the property itself goes on unchanged either way).
pub fn incoming(properties: &[(Bytes, Bytes)]) -> Option<SpanContext> {
    let mut parents = properties.iter().filter(|(k, _)| is(k, TRACEPARENT));
    let (_, value) = parents.next()?;
    if parents.next().is_some() {
        return None;
    }
    let tp = traceparent::parse(value)?;
    let state = properties
        .iter()
        .find(|(k, _)| is(k, TRACESTATE))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| TraceState::from_str(v).ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.parent_id),
        TraceFlags::new(tp.flags & TraceFlags::SAMPLED.to_u8()),
        true,
        state,
    ))
}

/// Replace every `traceparent` property with one holding `value` (in the
/// first one's place, or at the end).
pub fn set_traceparent(properties: &mut Vec<(Bytes, Bytes)>, value: Bytes) {
    let mut slot = None;
    let mut i = 0;
    properties.retain(|(k, _)| {
        let keep = !is(k, TRACEPARENT) || slot.is_none();
        if is(k, TRACEPARENT) && slot.is_none() {
            slot = Some(i);
        }
        i += 1;
        keep
    });
    let entry = (Bytes::from_static(TRACEPARENT.as_bytes()), value);
    match slot.and_then(|i| properties.get_mut(i)) {
        Some(e) => *e = entry,
        None => properties.push(entry),
    }
}

#[cfg(test)]
mod tests;
