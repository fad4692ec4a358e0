//! Broker fan-out: one QoS 0 PUBLISH read from a connection, matched and
//! encoded into the outgoing buffers of 1, 100 and 10 000 subscribers
//! (engine only: no sockets). Reported per publish; divide by the
//! subscriber count for the cost per delivery.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmq_engine::broker::{Broker, BrokerConfig, ConnId, Event, LatencyHistogram};
use ringmq_engine::codec::{self, Connect, Packet, Protocol, Publish, Subscribe, SubscribeFilter};

fn frame(packet: &Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec::encode(packet, Protocol::V3_1_1, &mut b).expect("encode");
    b.to_vec()
}

fn connect(broker: &mut Broker, id: &str) -> ConnId {
    let conn = broker.accept(0).expect("accept");
    let c = Connect {
        protocol: Protocol::V3_1_1,
        clean_start: true,
        keep_alive_s: 0,
        client_id: id.as_bytes().to_vec().into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    };
    let mut buf = BytesMut::from(&frame(&Packet::Connect(Box::new(c)))[..]);
    broker.handle_read(conn, &mut buf, 0);
    conn
}

fn setup(subscribers: usize) -> (Broker, ConnId, Vec<ConnId>) {
    let config = BrokerConfig {
        sys_interval_s: 0,
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config, 0, 1);
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let conn = connect(&mut broker, &format!("sub-{i}"));
        let filter = match i % 3 {
            0 => "fleet/site-1/+/temp",
            1 => "fleet/#",
            _ => "fleet/site-1/dev-9/temp",
        };
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: filter.into(),
                options: Default::default(),
            }],
            properties: Default::default(),
        };
        let mut buf = BytesMut::from(&frame(&Packet::Subscribe(sub))[..]);
        broker.handle_read(conn, &mut buf, 0);
        subs.push(conn);
    }
    let publisher = connect(&mut broker, "publisher");
    while broker.poll_event().is_some() {}
    for c in &subs {
        if let Some(o) = broker.outgoing(*c) {
            o.clear();
        }
    }
    (broker, publisher, subs)
}

fn fanout(c: &mut Criterion) {
    let publish = Publish {
        topic: "fleet/site-1/dev-9/temp".into(),
        payload: vec![0x42; 64].into(),
        ..Default::default()
    };
    let bytes = frame(&Packet::Publish(publish));
    let mut group = c.benchmark_group("fanout_qos0");
    for n in [1usize, 100, 10_000] {
        let (mut broker, publisher, subs) = setup(n);
        let mut read_buf = BytesMut::with_capacity(64 * 1024);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                read_buf.extend_from_slice(&bytes);
                broker.handle_read(publisher, &mut read_buf, 1);
                let mut transmits = 0;
                while let Some(ev) = broker.poll_event() {
                    if let Event::Transmit(conn) = ev {
                        transmits += 1;
                        if let Some(o) = broker.outgoing(conn) {
                            o.clear();
                        }
                    }
                }
                assert_eq!(transmits, n);
            })
        });
        drop(subs);
    }
    group.finish();
}

/// The latency bucket each delivery records (`LatencyHistogram::record`),
/// alone: 1024 latencies, 7 in 8 under a millisecond as on a broker that
/// keeps up, the rest spread over the buckets.
fn latency_record(c: &mut Criterion) {
    let latencies: Vec<u64> = (0..1024u64)
        .map(|i| if i % 8 == 7 { (i * 37) % 12_000 } else { i % 2 })
        .collect();
    let mut group = c.benchmark_group("latency_record");
    group.throughput(Throughput::Elements(latencies.len() as u64));
    group.bench_function("1024", |b| {
        let mut h = LatencyHistogram::default();
        b.iter(|| {
            for &ms in &latencies {
                h.record(std::hint::black_box(ms));
            }
            std::hint::black_box(&h);
        })
    });
    group.finish();
}

criterion_group!(benches, fanout, latency_record);
criterion_main!(benches);
