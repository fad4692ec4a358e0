//! The trace context in user properties, and a shard's tracer end to end
//! in process (an exporter that keeps what it gets).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn props(pairs: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
    pairs
        .iter()
        .map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string())))
        .collect()
}

#[test]
fn the_publishers_context_is_read_from_its_user_properties() {
    let p = props(&[
        ("a", "b"),
        ("TraceParent", PARENT),
        ("tracestate", "congo=t61rcWkgMzE"),
    ]);
    let sc = incoming(&p).unwrap_or_else(|| panic!("not found"));
    assert_eq!(
        format!("{}", sc.trace_id()),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(format!("{}", sc.span_id()), "00f067aa0ba902b7");
    assert!(sc.is_sampled() && sc.is_remote());
    assert_eq!(sc.trace_state().get("congo"), Some("t61rcWkgMzE"));
    // A bad tracestate is not kept in the context (the property itself
    // is passed on untouched).
    let p = props(&[("traceparent", PARENT), ("tracestate", "not a list member")]);
    assert_eq!(
        incoming(&p).map(|sc| sc.trace_state().header()),
        Some(String::new())
    );
}

#[test]
fn malformed_or_repeated_traceparents_start_a_new_trace() {
    for p in [
        props(&[]),
        props(&[("traceparent", "garbage")]),
        props(&[("traceparent", &PARENT.replace("00-", "ff-"))]),
        props(&[("traceparent", PARENT), ("traceparent", PARENT)]),
        props(&[("trace-parent", PARENT)]),
    ] {
        assert!(incoming(&p).is_none(), "{p:?}");
    }
}

#[test]
fn the_traceparent_is_replaced_in_place_and_only_once() {
    let new = Bytes::from_static(b"00-11111111111111111111111111111111-2222222222222222-01");
    let mut p = props(&[
        ("a", "1"),
        ("traceparent", PARENT),
        ("b", "2"),
        ("TRACEPARENT", "x"),
    ]);
    set_traceparent(&mut p, new.clone());
    assert_eq!(
        p,
        vec![
            (Bytes::from("a"), Bytes::from("1")),
            (Bytes::from("traceparent"), new.clone()),
            (Bytes::from("b"), Bytes::from("2")),
        ]
    );
    let mut p = props(&[("tracestate", "k=v")]);
    set_traceparent(&mut p, new.clone());
    assert_eq!(p[1], (Bytes::from("traceparent"), new));
    assert_eq!(p[0], (Bytes::from("tracestate"), Bytes::from("k=v")));
}

/// Keeps every exported span.
#[derive(Clone, Debug, Default)]
struct Keep(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Keep {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().map(|mut v| v.extend(batch)).ok();
        Ok(())
    }
}

fn provider(exporter: Keep, ratio: f64) -> SdkTracerProvider {
    let processor = export::QueueProcessor::start(
        exporter,
        export::QueueSettings {
            queue_max_spans: 16,
            batch_max_spans: 4,
            export_interval: Duration::from_millis(10),
            export_timeout: Duration::from_secs(5),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .build()
}

fn shard_tracer(provider: &SdkTracerProvider, shard: ShardId) -> ShardTracer {
    ShardTracer {
        tracer: provider.tracer("test"),
        shard,
        current: None,
    }
}

fn route(t: &mut ShardTracer, user: &mut Vec<(Bytes, Bytes)>) -> bool {
    let started = t.start(PublishStart {
        client_id: b"pub-1",
        topic: b"a/b",
        qos: QoS::AtLeastOnce,
        retain: false,
        user_properties: user,
    });
    if started {
        t.finish(PublishRouted {
            deliveries: 3,
            forwarded: 1,
            matched: true,
        });
    }
    started
}

#[test]
fn a_shard_tracer_continues_the_trace_and_hands_it_on() {
    let kept = Keep::default();
    let provider = provider(kept.clone(), 1.0);
    let mut t = shard_tracer(&provider, 1);
    let mut user = props(&[("traceparent", PARENT), ("tracestate", "k=v")]);
    assert!(route(&mut t, &mut user));
    // Without a traceparent: a new root, and subscribers get one.
    let mut bare = Vec::new();
    assert!(route(&mut t, &mut bare));
    provider.shutdown().unwrap_or_else(|e| panic!("{e}"));
    let spans = kept.0.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let span = &spans[0];
    assert_eq!(
        format!("{}", span.span_context.trace_id()),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(format!("{}", span.parent_span_id), "00f067aa0ba902b7");
    let handed = traceparent::parse(&user[0].1).unwrap_or_else(|| panic!("{user:?}"));
    assert_eq!(handed.trace_id, span.span_context.trace_id().to_bytes());
    assert_eq!(handed.parent_id, span.span_context.span_id().to_bytes());
    assert!(handed.sampled());
    assert_eq!(user[1], (Bytes::from("tracestate"), Bytes::from("k=v")));
    let attr = |s: &SpanData, k: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attr(span, "messaging.destination.name").as_deref(),
        Some("a/b")
    );
    assert_eq!(attr(span, "messaging.client.id").as_deref(), Some("pub-1"));
    assert_eq!(attr(span, "mqtt.qos").as_deref(), Some("1"));
    assert_eq!(attr(span, "ringmq.shard").as_deref(), Some("1"));
    assert_eq!(attr(span, "ringmq.deliveries").as_deref(), Some("3"));
    assert_eq!(attr(span, "ringmq.forwarded_shards").as_deref(), Some("1"));
    let root = &spans[1];
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    let handed = traceparent::parse(&bare[0].1).unwrap_or_else(|| panic!("{bare:?}"));
    assert_eq!(handed.parent_id, root.span_context.span_id().to_bytes());
}

#[test]
fn an_unsampled_publisher_is_not_recorded_but_still_handed_on() {
    let kept = Keep::default();
    let provider = provider(kept.clone(), 1.0);
    let mut t = shard_tracer(&provider, 0);
    let unsampled = PARENT.replace("-01", "-00");
    let mut user = props(&[("traceparent", &unsampled)]);
    assert!(route(&mut t, &mut user));
    provider.shutdown().unwrap_or_else(|e| panic!("{e}"));
    assert!(kept.0.lock().map(|v| v.is_empty()).unwrap_or(false));
    let handed = traceparent::parse(&user[0].1).unwrap_or_else(|| panic!("{user:?}"));
    assert_eq!(
        format!("{}", TraceId::from_bytes(handed.trace_id)),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_ne!(
        handed.parent_id,
        SpanId::from_hex("00f067aa0ba902b7")
            .map(|s| s.to_bytes())
            .unwrap_or_default()
    );
    assert!(!handed.sampled());
}
