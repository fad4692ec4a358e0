//! Codec benchmarks: decode and encode of PUBLISH (16 B, 256 B, 4 KiB
//! payloads; v3.1.1, and v5 with a few properties), CONNECT v5 and
//! SUBSCRIBE (v3.1.1 and v5), each next to the same operation with
//! mqttbytes 0.6 (its v4 and v5 modules) in the same criterion group.
//!
//! Decode starts from a `BytesMut` holding one frame (made outside the
//! timed routine by `iter_batched`) for both codecs, since both split the
//! frame off a `BytesMut`; the decoded packet is returned so its drop is not
//! timed. Encode writes into one reused, pre-sized `BytesMut`.
//!
//! Run: cargo bench -p ringmq-bench --bench codec -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use ringmq_engine::codec as rq;

const MAX: u32 = 1 << 20;
const TOPIC: &str = "sensors/building-7/floor-3/temperature";
const SIZES: [(usize, &str); 3] = [(16, "16B"), (256, "256B"), (4096, "4KiB")];

// ---- the packets, built once per codec ----

fn rq_publish(size: usize, v5: bool) -> rq::Publish {
    let mut p = rq::Publish {
        qos: rq::QoS::AtLeastOnce,
        topic: Bytes::from_static(TOPIC.as_bytes()),
        packet_id: 4242,
        payload: Bytes::from(vec![0xA5; size]),
        ..rq::Publish::default()
    };
    if v5 {
        p.properties = rq::PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval_s: Some(3_600),
            content_type: Some(Bytes::from_static(b"application/json")),
            correlation_data: Some(Bytes::from_static(b"req-0001")),
            ..rq::PublishProperties::default()
        };
    }
    p
}

fn mb4_publish(size: usize) -> mqttbytes::v4::Publish {
    let mut p = mqttbytes::v4::Publish::new(TOPIC, mqttbytes::QoS::AtLeastOnce, vec![0xA5; size]);
    p.pkid = 4242;
    p
}

fn mb5_publish(size: usize) -> mqttbytes::v5::Publish {
    let mut p = mqttbytes::v5::Publish::new(TOPIC, mqttbytes::QoS::AtLeastOnce, vec![0xA5; size]);
    p.pkid = 4242;
    p.properties = Some(mqttbytes::v5::PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3_600),
        topic_alias: None,
        response_topic: None,
        correlation_data: Some(Bytes::from_static(b"req-0001")),
        user_properties: Vec::new(),
        subscription_identifiers: Vec::new(),
        content_type: Some("application/json".to_string()),
    });
    p
}

fn rq_connect() -> rq::Packet {
    rq::Packet::Connect(Box::new(rq::Connect {
        protocol: rq::Protocol::V5,
        clean_start: true,
        keep_alive_s: 60,
        client_id: Bytes::from_static(b"loadgen-client-000123"),
        will: Some(rq::Will {
            topic: Bytes::from_static(b"clients/loadgen-client-000123/status"),
            payload: Bytes::from_static(b"offline"),
            qos: rq::QoS::AtLeastOnce,
            retain: true,
            properties: rq::WillProperties {
                will_delay_interval_s: Some(5),
                ..rq::WillProperties::default()
            },
        }),
        username: Some(Bytes::from_static(b"user")),
        password: Some(Bytes::from_static(b"secret-password")),
        properties: rq::ConnectProperties {
            session_expiry_interval_s: Some(3_600),
            receive_maximum: Some(100),
            maximum_packet_size_bytes: Some(1 << 20),
            topic_alias_maximum: Some(16),
            ..rq::ConnectProperties::default()
        },
    }))
}

fn mb5_connect() -> mqttbytes::v5::Connect {
    use mqttbytes::v5::*;
    let mut c = Connect::new("loadgen-client-000123");
    c.keep_alive = 60;
    c.clean_session = true;
    let mut will = LastWill::new(
        "clients/loadgen-client-000123/status",
        b"offline".to_vec(),
        mqttbytes::QoS::AtLeastOnce,
        true,
    );
    will.properties = Some(WillProperties {
        delay_interval: Some(5),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    });
    c.last_will = Some(will);
    c.login = Some(Login::new("user", "secret-password"));
    c.properties = Some(ConnectProperties {
        session_expiry_interval: Some(3_600),
        receive_maximum: Some(100),
        max_packet_size: Some(1 << 20),
        topic_alias_max: Some(16),
        request_response_info: None,
        request_problem_info: None,
        user_properties: Vec::new(),
        authentication_method: None,
        authentication_data: None,
    });
    c
}

const FILTERS: [&str; 3] = [
    "sensors/+/floor-3/#",
    "alerts/#",
    "clients/loadgen-client-000123/cmd",
];

fn rq_subscribe() -> rq::Packet {
    rq::Packet::Subscribe(rq::Subscribe {
        packet_id: 7,
        filters: FILTERS
            .iter()
            .map(|f| rq::SubscribeFilter {
                filter: Bytes::from_static(f.as_bytes()),
                options: rq::SubscriptionOptions {
                    qos: rq::QoS::AtLeastOnce,
                    ..rq::SubscriptionOptions::default()
                },
            })
            .collect(),
        properties: rq::SubscribeProperties::default(),
    })
}

fn mb4_subscribe() -> mqttbytes::v4::Subscribe {
    let mut s =
        mqttbytes::v4::Subscribe::new_many(FILTERS.iter().map(|f| {
            mqttbytes::v4::SubscribeFilter::new(f.to_string(), mqttbytes::QoS::AtLeastOnce)
        }));
    s.pkid = 7;
    s
}

fn mb5_subscribe() -> mqttbytes::v5::Subscribe {
    let mut s =
        mqttbytes::v5::Subscribe::new_many(FILTERS.iter().map(|f| {
            mqttbytes::v5::SubscribeFilter::new(f.to_string(), mqttbytes::QoS::AtLeastOnce)
        }));
    s.pkid = 7;
    s
}

// ---- helpers ----

fn rq_frame(packet: &rq::Packet, protocol: rq::Protocol) -> Bytes {
    rq::encode_to_bytes(packet, protocol).expect("encode")
}

fn bench_decode_rq(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    frame: &Bytes,
    protocol: rq::Protocol,
) {
    c.bench_function(id, |b| {
        b.iter_batched(
            || BytesMut::from(&frame[..]),
            |mut buf| {
                let out = rq::decode(black_box(&mut buf), protocol, MAX);
                (buf, out)
            },
            BatchSize::SmallInput,
        )
    });
}

fn bench_decode_mb4(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    frame: &Bytes,
) {
    c.bench_function(id, |b| {
        b.iter_batched(
            || BytesMut::from(&frame[..]),
            |mut buf| {
                let out = mqttbytes::v4::read(black_box(&mut buf), MAX as usize);
                (buf, out)
            },
            BatchSize::SmallInput,
        )
    });
}

fn bench_decode_mb5(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    frame: &Bytes,
) {
    c.bench_function(id, |b| {
        b.iter_batched(
            || BytesMut::from(&frame[..]),
            |mut buf| {
                let out = mqttbytes::v5::read(black_box(&mut buf), MAX as usize);
                (buf, out)
            },
            BatchSize::SmallInput,
        )
    });
}

/// Both codecs must agree on the bytes, or the comparison is meaningless.
fn assert_same_wire(what: &str, ours: &[u8], theirs: &[u8]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: frame lengths differ");
}

// ---- groups ----

fn publish(c: &mut Criterion) {
    for (v5, tag) in [(false, "v3_1_1"), (true, "v5")] {
        let protocol = if v5 {
            rq::Protocol::V5
        } else {
            rq::Protocol::V3_1_1
        };

        let mut g = c.benchmark_group(format!("decode_publish_{tag}"));
        for (size, label) in SIZES {
            let ours = rq_frame(&rq::Packet::Publish(rq_publish(size, v5)), protocol);
            let mut theirs = BytesMut::new();
            if v5 {
                mb5_publish(size)
                    .write(&mut theirs)
                    .expect("mqttbytes encode");
            } else {
                mb4_publish(size)
                    .write(&mut theirs)
                    .expect("mqttbytes encode");
            }
            assert_same_wire("publish", &ours, &theirs);
            bench_decode_rq(&mut g, BenchmarkId::new("ringmq", label), &ours, protocol);
            if v5 {
                bench_decode_mb5(
                    &mut g,
                    BenchmarkId::new("mqttbytes", label),
                    &theirs.freeze(),
                );
            } else {
                bench_decode_mb4(
                    &mut g,
                    BenchmarkId::new("mqttbytes", label),
                    &theirs.freeze(),
                );
            }
        }
        g.finish();

        let mut g = c.benchmark_group(format!("encode_publish_{tag}"));
        for (size, label) in SIZES {
            let ours = rq_publish(size, v5);
            let mut out = BytesMut::with_capacity(8192);
            g.bench_function(BenchmarkId::new("ringmq", label), |b| {
                b.iter(|| {
                    out.clear();
                    rq::encode_publish(black_box(&ours), protocol, &mut out)
                })
            });
            if v5 {
                let theirs = mb5_publish(size);
                g.bench_function(BenchmarkId::new("mqttbytes", label), |b| {
                    b.iter(|| {
                        out.clear();
                        black_box(&theirs).write(&mut out)
                    })
                });
            } else {
                let theirs = mb4_publish(size);
                g.bench_function(BenchmarkId::new("mqttbytes", label), |b| {
                    b.iter(|| {
                        out.clear();
                        black_box(&theirs).write(&mut out)
                    })
                });
            }
        }
        g.finish();
    }
}

fn connect(c: &mut Criterion) {
    let ours = rq_connect();
    let frame = rq_frame(&ours, rq::Protocol::V5);
    let mut theirs_frame = BytesMut::new();
    mb5_connect()
        .write(&mut theirs_frame)
        .expect("mqttbytes encode");
    assert_same_wire("connect", &frame, &theirs_frame);
    let theirs_frame = theirs_frame.freeze();

    let mut g = c.benchmark_group("connect_v5");
    bench_decode_rq(
        &mut g,
        BenchmarkId::new("ringmq", "decode"),
        &frame,
        rq::Protocol::V5,
    );
    bench_decode_mb5(
        &mut g,
        BenchmarkId::new("mqttbytes", "decode"),
        &theirs_frame,
    );
    let mut out = BytesMut::with_capacity(1024);
    g.bench_function(BenchmarkId::new("ringmq", "encode"), |b| {
        b.iter(|| {
            out.clear();
            rq::encode(black_box(&ours), rq::Protocol::V5, &mut out)
        })
    });
    let theirs = mb5_connect();
    g.bench_function(BenchmarkId::new("mqttbytes", "encode"), |b| {
        b.iter(|| {
            out.clear();
            black_box(&theirs).write(&mut out)
        })
    });
    g.finish();
}

fn subscribe(c: &mut Criterion) {
    let ours = rq_subscribe();
    for (v5, tag) in [(false, "v3_1_1"), (true, "v5")] {
        let protocol = if v5 {
            rq::Protocol::V5
        } else {
            rq::Protocol::V3_1_1
        };
        let frame = rq_frame(&ours, protocol);
        let mut theirs_frame = BytesMut::new();
        if v5 {
            mb5_subscribe()
                .write(&mut theirs_frame)
                .expect("mqttbytes encode");
        } else {
            mb4_subscribe()
                .write(&mut theirs_frame)
                .expect("mqttbytes encode");
        }
        assert_same_wire("subscribe", &frame, &theirs_frame);
        let theirs_frame = theirs_frame.freeze();

        let mut g = c.benchmark_group(format!("subscribe_{tag}"));
        bench_decode_rq(
            &mut g,
            BenchmarkId::new("ringmq", "decode"),
            &frame,
            protocol,
        );
        if v5 {
            bench_decode_mb5(
                &mut g,
                BenchmarkId::new("mqttbytes", "decode"),
                &theirs_frame,
            );
        } else {
            bench_decode_mb4(
                &mut g,
                BenchmarkId::new("mqttbytes", "decode"),
                &theirs_frame,
            );
        }
        let mut out = BytesMut::with_capacity(1024);
        g.bench_function(BenchmarkId::new("ringmq", "encode"), |b| {
            b.iter(|| {
                out.clear();
                rq::encode(black_box(&ours), protocol, &mut out)
            })
        });
        if v5 {
            let theirs = mb5_subscribe();
            g.bench_function(BenchmarkId::new("mqttbytes", "encode"), |b| {
                b.iter(|| {
                    out.clear();
                    black_box(&theirs).write(&mut out)
                })
            });
        } else {
            let theirs = mb4_subscribe();
            g.bench_function(BenchmarkId::new("mqttbytes", "encode"), |b| {
                b.iter(|| {
                    out.clear();
                    black_box(&theirs).write(&mut out)
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, publish, connect, subscribe);
criterion_main!(benches);
