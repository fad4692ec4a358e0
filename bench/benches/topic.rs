//! Topic matching: one published topic against a trie of 10k and 1M
//! subscriptions shaped like a device fleet, plus topic-name validation.
//!
//! Filters (distinct keys; a real router keeps several subscribers per key):
//! - 70% exact: `site/{s}/device/{d}/{metric}`;
//! - 20% with `+`: `site/{s}/device/{d}/+`, `site/+/device/{d}/{metric}`,
//!   `site/{s}/device/+/{metric}`;
//! - 10% with `#`: `site/{s}/device/{d}/#`, `site/{s}/#`.
//!
//! Device ids are global (device `d` lives in site `d % sites`), so
//! `site/+/device/{d}/...` is as selective as it is in a real fleet.
//! Published topics are `site/{s}/device/{d}/{metric}` drawn from the same
//! universe, so a publish typically has a few matching filters, sometimes
//! none. Throughput is in published topics matched per second ("elements").

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmq_engine::topic::{validate_topic_name, TopicTrie};
use std::hint::black_box;

const METRICS: [&str; 10] = [
    "temp", "humidity", "pressure", "power", "voltage", "current", "rssi", "battery", "status",
    "uptime",
];

/// Topics matched per criterion iteration.
const TOPICS_PER_ITER: usize = 1024;

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Fleet {
    sites: usize,
    devices: usize,
}

impl Fleet {
    /// Sized so that every filter kind has about twice as many distinct
    /// candidates as it needs (sampling stays fast).
    fn for_subscriptions(subscriptions: usize) -> Fleet {
        let sites = (subscriptions / 10_000).clamp(10, 100);
        Fleet {
            sites,
            devices: subscriptions / 5,
        }
    }

    fn device(&self, rng: &mut Rng) -> (usize, usize) {
        let d = rng.below(self.devices);
        (d % self.sites, d)
    }

    fn topic(&self, rng: &mut Rng) -> String {
        let (s, d) = self.device(rng);
        format!("site/{s}/device/{d}/{}", METRICS[rng.below(METRICS.len())])
    }

    fn filter(&self, rng: &mut Rng) -> String {
        let (s, d) = self.device(rng);
        let m = METRICS[rng.below(METRICS.len())];
        match rng.below(100) {
            0..=69 => format!("site/{s}/device/{d}/{m}"),
            70..=79 => format!("site/{s}/device/{d}/+"),
            80..=87 => format!("site/+/device/{d}/{m}"),
            88..=89 => format!("site/{s}/device/+/{m}"),
            90..=98 => format!("site/{s}/device/{d}/#"),
            _ => format!("site/{s}/#"),
        }
    }
}

/// A trie of `subscriptions` distinct filters and a set of topics to publish.
fn setup(subscriptions: usize) -> (TopicTrie<u32>, Vec<Vec<u8>>) {
    let fleet = Fleet::for_subscriptions(subscriptions);
    let mut rng = Rng(0x5EED_0000 + subscriptions as u64);
    let mut trie = TopicTrie::<u32>::new();
    while trie.len() < subscriptions {
        *trie.get_or_insert(fleet.filter(&mut rng).as_bytes()) += 1;
    }
    let topics = (0..TOPICS_PER_ITER * 4)
        .map(|_| fleet.topic(&mut rng).into_bytes())
        .collect();
    (trie, topics)
}

fn topic_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic_match");
    group.throughput(Throughput::Elements(TOPICS_PER_ITER as u64));
    for (label, subscriptions) in [("10k", 10_000), ("1M", 1_000_000)] {
        let (trie, topics) = setup(subscriptions);
        let mut matched = 0u64;
        for t in &topics {
            trie.for_each_match(t, |_| matched += 1);
        }
        eprintln!(
            "topic_match/{label}: {} filters, {} nodes, {:.2} matching filters per topic",
            trie.len(),
            trie.node_count(),
            matched as f64 / topics.len() as f64
        );
        let mut next = 0usize;
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                let mut hits = 0u32;
                for _ in 0..TOPICS_PER_ITER {
                    let t = &topics[next];
                    next = (next + 1) % topics.len();
                    trie.for_each_match(black_box(t), |v| hits = hits.wrapping_add(*v));
                }
                hits
            })
        });
    }
    group.finish();
}

fn topic_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_topic_name");
    let topic = b"site/42/device/123456/temperature";
    group.throughput(Throughput::Bytes(topic.len() as u64));
    group.bench_function("fleet_topic", |b| {
        b.iter(|| validate_topic_name(black_box(topic), 128))
    });
    group.finish();
}

criterion_group!(benches, topic_match, topic_validate);
criterion_main!(benches);
