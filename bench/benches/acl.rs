//! The ACL check on the publish / delivery path, and what it adds to a
//! broker fan-out.
//!
//! - `acl_check/fleet_1k_users`: an ACL of 1000 user sections (5 rules
//!   each: own subtree, a `+` rule, a deny, a shared read-only tree) and 3
//!   patterns (`%u`, `%c`); one session's read check against 1024 topics,
//!   about half allowed.
//! - `acl_check/one_user_10k_rules`: one user with 10 000 literal rules
//!   (`site/{s}/device/{d}/temp`): the check is a trie walk, not a scan,
//!   so it costs about what a small section does.
//! - `acl_fanout/{off,on}/100`: one QoS 0 PUBLISH read by the broker and
//!   delivered to 100 `#` subscribers, without an ACL and with one in which
//!   every subscriber may read the topic (the cost of the read check per
//!   delivery, plus the write check once).

use std::hint::black_box;
use std::sync::Arc;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmq_engine::acl::{parse, Acl, Action};
use ringmq_engine::broker::{Broker, BrokerConfig, ConnId, Event};
use ringmq_engine::codec::{self, Connect, Packet, Protocol, Publish, Subscribe, SubscribeFilter};

/// Topics checked per criterion iteration.
const TOPICS_PER_ITER: usize = 1024;

fn compile(text: &str) -> Acl {
    Acl::compile(parse(text).expect("bench ACL parses"))
}

fn fleet_acl() -> String {
    let mut text = String::from(
        "pattern readwrite devices/%c/#\npattern read users/%u/inbox\npattern deny users/%u/inbox/private\n",
    );
    for u in 0..1000 {
        text.push_str(&format!(
            "user user-{u}\ntopic readwrite home/{u}/#\ntopic read site/+/sensor/{u}\n\
             topic deny home/{u}/secret/#\ntopic read public/#\ntopic subscribe #\n"
        ));
    }
    text
}

fn bench_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("acl_check");
    g.throughput(Throughput::Elements(TOPICS_PER_ITER as u64));

    let fleet = compile(&fleet_acl());
    let session = fleet.session(Some(b"user-500"), b"dev-500");
    let topics: Vec<String> = (0..TOPICS_PER_ITER)
        .map(|i| match i % 8 {
            0 => format!("home/500/room/{i}"),
            1 => format!("home/500/secret/{i}"),
            2 => format!("site/{}/sensor/500", i % 7),
            3 => format!("public/news/{i}"),
            4 => "devices/dev-500/state".to_string(),
            5 => "users/user-500/inbox".to_string(),
            6 => format!("home/{}/room", i % 1000),
            _ => format!("other/{i}/x"),
        })
        .collect();
    let allowed = topics
        .iter()
        .filter(|t| session.allows(Action::Read, t.as_bytes()))
        .count();
    assert_eq!(
        allowed,
        TOPICS_PER_ITER * 5 / 8,
        "the mix: 5 of 8 kinds allowed"
    );
    g.bench_function("fleet_1k_users", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for t in &topics {
                n += usize::from(session.allows(Action::Read, black_box(t.as_bytes())));
            }
            n
        })
    });

    let mut big = String::from("user u\n");
    for d in 0..10_000 {
        big.push_str(&format!("topic read site/{}/device/{d}/temp\n", d % 100));
    }
    let big = compile(&big);
    let session = big.session(Some(b"u"), b"c");
    let topics: Vec<String> = (0..TOPICS_PER_ITER)
        .map(|i| {
            let d = (i * 7919) % 20_000;
            format!("site/{}/device/{d}/temp", d % 100)
        })
        .collect();
    g.bench_function("one_user_10k_rules", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for t in &topics {
                n += usize::from(session.allows(Action::Read, black_box(t.as_bytes())));
            }
            n
        })
    });
    g.finish();
}

fn frame(packet: &Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec::encode(packet, Protocol::V3_1_1, &mut b).expect("encode");
    b.to_vec()
}

fn connect(broker: &mut Broker, id: &str, user: &str) -> ConnId {
    let conn = broker.accept(0).expect("accept");
    let c = Connect {
        protocol: Protocol::V3_1_1,
        clean_start: true,
        keep_alive_s: 0,
        client_id: id.as_bytes().to_vec().into(),
        will: None,
        username: Some(user.as_bytes().to_vec().into()),
        password: None,
        properties: Default::default(),
    };
    let mut buf = BytesMut::from(&frame(&Packet::Connect(Box::new(c)))[..]);
    broker.handle_read(conn, &mut buf, 0);
    conn
}

fn bench_fanout(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 100;
    let mut g = c.benchmark_group("acl_fanout");
    g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    let acl = Arc::new(compile(
        "user reader\ntopic subscribe #\ntopic read fleet/#\ntopic deny fleet/secret/#\n\
         user pub\ntopic write fleet/#\n",
    ));
    for (name, acl) in [("off", None), ("on", Some(acl))] {
        let config = BrokerConfig {
            sys_interval_s: 0,
            ..BrokerConfig::default()
        };
        let mut broker = Broker::new(config, 0, 1);
        broker.set_acl(acl);
        let mut conns = Vec::new();
        for i in 0..SUBSCRIBERS {
            let conn = connect(&mut broker, &format!("s{i}"), "reader");
            let sub = Subscribe {
                packet_id: 1,
                filters: vec![SubscribeFilter {
                    filter: "#".into(),
                    options: Default::default(),
                }],
                properties: Default::default(),
            };
            let mut buf = BytesMut::from(&frame(&Packet::Subscribe(sub))[..]);
            broker.handle_read(conn, &mut buf, 0);
            conns.push(conn);
        }
        let publisher = connect(&mut broker, "p", "pub");
        conns.push(publisher);
        let bytes = frame(&Packet::Publish(Publish {
            topic: "fleet/site-1/dev-7/temp".into(),
            payload: vec![7u8; 64].into(),
            ..Default::default()
        }));
        let mut read_buf = BytesMut::with_capacity(64 * 1024);
        let drain = |broker: &mut Broker| {
            let mut transmits = 0;
            while let Some(ev) = broker.poll_event() {
                if let Event::Transmit(_) = ev {
                    transmits += 1;
                }
            }
            for c in &conns {
                if let Some(out) = broker.outgoing(*c) {
                    out.clear();
                }
            }
            transmits
        };
        drain(&mut broker);
        read_buf.extend_from_slice(&bytes);
        broker.handle_read(publisher, &mut read_buf, 1);
        assert_eq!(drain(&mut broker), SUBSCRIBERS, "every reader gets it");
        g.bench_function(BenchmarkId::new(name, SUBSCRIBERS), |b| {
            b.iter(|| {
                read_buf.extend_from_slice(&bytes);
                broker.handle_read(publisher, &mut read_buf, 1);
                drain(&mut broker)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_check, bench_fanout);
criterion_main!(benches);
