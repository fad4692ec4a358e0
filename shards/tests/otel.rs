//! Black-box tests of OpenTelemetry tracing (docs/operations.md,
//! "Tracing") against the real binary.
//!
//! Every build: with no `[tracing]` endpoint a v5 PUBLISH reaches its
//! subscriber byte for byte as sent, user properties (a `traceparent`
//! included) untouched, and nothing is added to one that had none.
//!
//! Built with `--features otel` (`cargo test -p ringmq --features otel
//! --test otel`): a small OTLP/HTTP receiver runs in the test; a v5
//! publisher sends a `traceparent` and `tracestate`, subscribers on both
//! shards get the message, and the test checks the exported span (trace
//! id, parent span id, attributes, service name) against what the
//! publisher sent and what the subscribers received, and the export
//! counters on `/metrics`.

use bytes::{Bytes, BytesMut};
use ringmq_engine::codec::{
    self, Connect, Decoded, Packet, Protocol, Publish, QoS, Subscribe, SubscribeFilter,
    SubscriptionOptions,
};
use ringmq_tests::{binary, client_id_on_shard, RawClient};

const SHARDS: u16 = 2;
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec::encode(packet, Protocol::V5, &mut out).unwrap_or_else(|e| panic!("encode: {e:?}"));
    out.to_vec()
}

fn decode(frame: Vec<u8>) -> Packet {
    let mut buf = BytesMut::from(&frame[..]);
    match codec::decode(&mut buf, Protocol::V5, u32::MAX) {
        Ok(Decoded::Packet(p)) => p,
        other => panic!("not one packet: {other:?}"),
    }
}

/// A v5 client, connected (CONNACK read).
fn connect(addr: std::net::SocketAddr, client_id: &str) -> RawClient {
    let mut c = RawClient::connect(addr);
    c.send(&encode(&Packet::Connect(Box::new(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive_s: 0,
        client_id: Bytes::from(client_id.to_string()),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }))));
    match decode(c.read_packet()) {
        Packet::ConnAck(a) => assert_eq!(a.reason.0, 0, "{client_id}: {a:?}"),
        p => panic!("{client_id}: not a CONNACK: {p:?}"),
    }
    c
}

fn subscribe(c: &mut RawClient, filter: &str, qos: QoS) {
    c.send(&encode(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: Bytes::from(filter.to_string()),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
        properties: Default::default(),
    })));
    match decode(c.read_packet()) {
        Packet::SubAck(a) => assert_eq!(a.packet_id, 1),
        p => panic!("not a SUBACK: {p:?}"),
    }
}

fn publish(topic: &str, qos: QoS, user: &[(&str, &str)]) -> Publish {
    let mut p = Publish {
        dup: false,
        qos,
        retain: false,
        topic: Bytes::from(topic.to_string()),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 7 },
        payload: Bytes::from_static(b"hello"),
        properties: Default::default(),
    };
    p.properties.user = user
        .iter()
        .map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string())))
        .collect();
    p
}

/// Without a tracing endpoint nothing changes on the wire (any build).
#[test]
fn without_an_endpoint_publishes_pass_byte_for_byte() {
    let bin = binary(env!("CARGO_BIN_EXE_ringmq"));
    let broker = ringmq_tests::Broker::start(&bin, &[]);
    let publisher = client_id_on_shard("plain-pub", 0, SHARDS);
    let near = client_id_on_shard("plain-sub", 0, SHARDS);
    let far = client_id_on_shard("plain-sub", 1, SHARDS);
    let mut subs = [connect(broker.addr(), &near), connect(broker.addr(), &far)];
    for s in subs.iter_mut() {
        subscribe(s, "plain/#", QoS::AtMostOnce);
    }
    let mut p = connect(broker.addr(), &publisher);
    for user in [
        vec![("traceparent", PARENT), ("tracestate", STATE), ("k", "v")],
        vec![("k", "v")],
        vec![],
    ] {
        let sent = encode(&Packet::Publish(publish("plain/a", QoS::AtMostOnce, &user)));
        p.send(&sent);
        for s in subs.iter_mut() {
            let got = s.read_packet();
            assert_eq!(got, sent, "user properties {user:?}");
        }
    }
}

#[cfg(feature = "otel")]
mod traced {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::{Duration, Instant};

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;
    use ringmq_tests::http;

    use super::*;

    /// Longest wait for the broker's export.
    const EXPORT_WAIT: Duration = Duration::from_secs(15);
    /// Most bytes of one request the receiver reads.
    const REQUEST_MAX_BYTES: usize = 4 << 20;

    /// An OTLP/HTTP receiver on 127.0.0.1: every POST body decoded as an
    /// `ExportTraceServiceRequest` goes to the channel; it answers 200.
    /// Stops when dropped.
    struct Receiver {
        addr: SocketAddr,
        requests: mpsc::Receiver<(String, ExportTraceServiceRequest)>,
        stop: Arc<AtomicBool>,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn receiver() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let tx = tx.clone();
                        thread::spawn(move || serve(stream, tx));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver {
            addr,
            requests: rx,
            stop,
        }
    }

    /// Requests on one connection (the exporter keeps it alive).
    fn serve(mut stream: TcpStream, tx: mpsc::Sender<(String, ExportTraceServiceRequest)>) {
        if stream.set_nonblocking(false).is_err()
            || stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .is_err()
        {
            return;
        }
        let mut buf = Vec::new();
        loop {
            let Some(end) = find(&buf, b"\r\n\r\n") else {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                assert!(buf.len() < REQUEST_MAX_BYTES, "request head too large");
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no Content-Length in {head}"));
            assert!(length < REQUEST_MAX_BYTES, "{length} bytes");
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..end + 4 + length).skip(end + 4).collect();
            let request = ExportTraceServiceRequest::decode(&body[..])
                .unwrap_or_else(|e| panic!("not an OTLP trace request: {e}\n{head}"));
            let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
            if stream.write_all(answer).is_err() || tx.send((head, request)).is_err() {
                return;
            }
        }
    }

    fn received(c: &mut RawClient) -> Publish {
        match decode(c.read_packet()) {
            Packet::Publish(p) => p,
            p => panic!("not a PUBLISH: {p:?}"),
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn attrs(list: &[KeyValue]) -> HashMap<String, Value> {
        list.iter()
            .filter_map(|kv| Some((kv.key.clone(), kv.value.as_ref()?.value.clone()?)))
            .collect()
    }

    fn string(v: Option<&Value>) -> Option<&str> {
        match v {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn int(v: Option<&Value>) -> Option<i64> {
        match v {
            Some(Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The traceparent user property of a received PUBLISH, parsed into
    /// (trace id, parent id, flags) as hex.
    fn handed_on(p: &Publish) -> (String, String, String) {
        let values: Vec<&Bytes> = p
            .properties
            .user
            .iter()
            .filter(|(k, _)| &k[..] == b"traceparent")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values.len(), 1, "{:?}", p.properties.user);
        let v = std::str::from_utf8(values[0]).unwrap_or_else(|e| panic!("{e}"));
        let parts: Vec<&str> = v.split('-').collect();
        assert_eq!(parts.len(), 4, "{v}");
        assert_eq!(parts[0], "00", "{v}");
        (parts[1].into(), parts[2].into(), parts[3].into())
    }

    #[test]
    fn the_broker_continues_the_publishers_trace_and_hands_it_on() {
        let rx = receiver();
        let bin = binary(env!("CARGO_BIN_EXE_ringmq"));
        let extra = format!(
            "[tracing]\nendpoint = \"http://{}/v1/traces\"\nservice_name = \"ringmq-e2e\"\nexport_interval_ms = 50\n",
            rx.addr
        );
        let b = http::start(&bin, "otel-e2e", SHARDS, &extra);
        let publisher = client_id_on_shard("otel-pub", 0, SHARDS);
        let near = client_id_on_shard("otel-sub", 0, SHARDS);
        let far = client_id_on_shard("otel-sub", 1, SHARDS);
        let mut subs = [connect(b.mqtt, &near), connect(b.mqtt, &far)];
        for s in subs.iter_mut() {
            subscribe(s, "otel/#", QoS::AtLeastOnce);
        }
        let mut p = connect(b.mqtt, &publisher);
        let user = [("k", "v"), ("traceparent", PARENT), ("tracestate", STATE)];
        p.send(&encode(&Packet::Publish(publish(
            "otel/room-1",
            QoS::AtLeastOnce,
            &user,
        ))));
        match decode(p.read_packet()) {
            Packet::PubAck(a) => assert_eq!((a.packet_id, a.reason.0), (7, 0)),
            other => panic!("not a PUBACK: {other:?}"),
        }
        let got: Vec<Publish> = subs.iter_mut().map(received).collect();
        // Both subscribers, on both shards, get the same new parent: the
        // broker's span.
        let (trace_id, broker_span, flags) = handed_on(&got[0]);
        assert_eq!(
            handed_on(&got[1]),
            (trace_id.clone(), broker_span.clone(), flags.clone())
        );
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(broker_span, "00f067aa0ba902b7");
        assert_eq!(flags, "01");
        for g in &got {
            let others: Vec<(&[u8], &[u8])> = g
                .properties
                .user
                .iter()
                .filter(|(k, _)| &k[..] != b"traceparent")
                .map(|(k, v)| (&k[..], &v[..]))
                .collect();
            assert_eq!(
                others,
                vec![
                    (&b"k"[..], &b"v"[..]),
                    (&b"tracestate"[..], STATE.as_bytes())
                ],
                "other user properties pass unchanged"
            );
            assert_eq!(&g.payload[..], b"hello");
        }

        // The exported span.
        let deadline = Instant::now() + EXPORT_WAIT;
        let mut spans: Vec<(String, Span)> = Vec::new();
        let mut heads = Vec::new();
        while spans.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (head, request) = rx.requests.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no span exported within {EXPORT_WAIT:?}; log:\n{}",
                    b.broker.log()
                )
            });
            heads.push(head);
            for rs in request.resource_spans {
                let resource = rs
                    .resource
                    .map(|r| attrs(&r.attributes))
                    .unwrap_or_default();
                let service = string(resource.get("service.name"))
                    .unwrap_or("")
                    .to_string();
                for ss in rs.scope_spans {
                    spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
                }
            }
        }
        assert!(
            heads[0].starts_with("POST /v1/traces ")
                && heads[0]
                    .to_ascii_lowercase()
                    .contains("content-type: application/x-protobuf"),
            "{}",
            heads[0]
        );
        assert_eq!(spans.len(), 1, "one routed publish, one span: {spans:?}");
        let (service, span) = &spans[0];
        assert_eq!(service, "ringmq-e2e");
        assert_eq!(span.name, "mqtt route");
        assert_eq!(hex(&span.trace_id), trace_id);
        assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(hex(&span.span_id), broker_span);
        assert_eq!(span.trace_state, STATE);
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        let a = attrs(&span.attributes);
        assert_eq!(string(a.get("messaging.system")), Some("mqtt"));
        assert_eq!(
            string(a.get("messaging.destination.name")),
            Some("otel/room-1")
        );
        assert_eq!(
            string(a.get("messaging.client.id")),
            Some(publisher.as_str())
        );
        assert_eq!(int(a.get("mqtt.qos")), Some(1));
        assert_eq!(int(a.get("ringmq.shard")), Some(0));
        // One subscriber on the publisher's shard, one copy to the other.
        assert_eq!(int(a.get("ringmq.deliveries")), Some(1));
        assert_eq!(int(a.get("ringmq.forwarded_shards")), Some(1));

        // A publish without a traceparent starts a new trace; subscribers
        // get its root.
        p.send(&encode(&Packet::Publish(publish(
            "otel/room-2",
            QoS::AtMostOnce,
            &[],
        ))));
        let got: Vec<Publish> = subs.iter_mut().map(received).collect();
        let (new_trace, root, _) = handed_on(&got[0]);
        assert_eq!(handed_on(&got[1]).0, new_trace);
        assert_ne!(new_trace, trace_id);
        let deadline = Instant::now() + EXPORT_WAIT;
        let mut root_span = None;
        while root_span.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (_, request) = rx
                .requests
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("root span not exported; log:\n{}", b.broker.log()));
            root_span = request
                .resource_spans
                .into_iter()
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .find(|s| hex(&s.span_id) == root);
        }
        let root_span = root_span.unwrap_or_default();
        assert_eq!(hex(&root_span.trace_id), new_trace);
        assert!(root_span.parent_span_id.is_empty(), "{root_span:?}");

        let page = http::get(b.http, "/metrics").body;
        let exported = http::metric(&page, "ringmq_tracing_spans_exported_total");
        assert!(exported.is_some_and(|v| v >= 2.0), "{page}");
        assert_eq!(
            http::metric(
                &page,
                "ringmq_tracing_spans_dropped_total{reason=\"queue_full\"}"
            ),
            Some(0.0)
        );
    }
}
