//! Shared subscriptions (MQTT 5.0 section 4.8.2): the member-choosing
//! policies (`round_robin`, `random`, `sticky`, `hash_clientid`,
//! `hash_topic`, `least_inflight`), broker-wide over several shards, the
//! default and the per-group override (issue 9 item 16).

mod sim;

use std::collections::HashMap;

use ringmq_engine::broker::{owner_shard, BrokerConfig, SharedPolicy};
use sim::*;

/// A client id owned by `shard` of `shards`.
fn id_on(prefix: &str, shard: usize, shards: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| owner_shard(id.as_bytes(), shards as u16) as usize == shard)
        .unwrap_or_default()
}

fn with_policy(policy: SharedPolicy) -> BrokerConfig {
    BrokerConfig {
        shared_policy: policy,
        ..base()
    }
}

/// Members connected on the given shards, subscribed to `$share/g/t/#`.
fn members(sim: &mut Sim, on: &[usize], qos: u8) -> Vec<C> {
    let shards = sim.brokers.len();
    let mut out = Vec::new();
    for (i, shard) in on.iter().enumerate() {
        let c = sim.connect(V5, &id_on(&format!("m{i}"), *shard, shards), true);
        assert_eq!(sim.subscribe(c, "$share/g/t/#", qos).0, qos);
        out.push(c);
    }
    out
}

fn publishers(sim: &mut Sim) -> Vec<C> {
    let shards = sim.brokers.len();
    (0..shards)
        .map(|s| sim.connect(V5, &id_on("pub", s, shards), true))
        .collect()
}

#[test]
fn round_robin_is_exact_broker_wide_whatever_shard_publishes() {
    // Two members on different shards, publishers on every shard: each
    // member gets every other message (it used to be 6/4, 5/5, 3/7).
    for (shards, on) in [
        (1, vec![0, 0]),
        (2, vec![0, 1]),
        (3, vec![1, 2]),
        (4, vec![0, 3, 3]),
        (3, vec![0, 1, 2, 2]),
    ] {
        let mut sim = Sim::new(shards);
        let ms = members(&mut sim, &on, 0);
        let pubs = publishers(&mut sim);
        let rounds = 5;
        let n = ms.len() * rounds;
        for i in 0..n {
            let p = pubs[(i * 7 + i / 3) % pubs.len()];
            sim.pub_simple(p, "t/x", &i.to_string(), 0);
        }
        let mut seen = Vec::new();
        for m in &ms {
            let got: Vec<usize> = sim
                .payloads(*m)
                .iter()
                .map(|x| x.parse().unwrap_or(usize::MAX))
                .collect();
            assert_eq!(
                got.len(),
                rounds,
                "{shards} shards, members on {on:?}: {got:?}"
            );
            // Strict rotation: one member gets every len()-th message.
            let first = got[0];
            assert!(
                got.iter()
                    .enumerate()
                    .all(|(k, x)| *x == first + k * ms.len()),
                "{shards} shards, members on {on:?}: {got:?}"
            );
            seen.extend(got);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
    }
}

#[test]
fn round_robin_qos1_across_shards_is_five_five() {
    let mut sim = Sim::new(3);
    let ms = members(&mut sim, &[0, 2], 1);
    let pubs = publishers(&mut sim);
    for i in 0..10 {
        sim.pub_simple(pubs[i % 3], "t/q", &i.to_string(), 1);
    }
    assert_eq!(sim.payloads(ms[0]).len(), 5);
    assert_eq!(sim.payloads(ms[1]).len(), 5);
}

#[test]
fn random_spreads_each_message_once_over_all_members() {
    let mut sim = Sim::with_config(3, with_policy(SharedPolicy::Random));
    let ms = members(&mut sim, &[0, 1, 2, 2], 0);
    let pubs = publishers(&mut sim);
    let n = 800;
    for i in 0..n {
        sim.pub_simple(pubs[i % 3], "t/r", &i.to_string(), 0);
    }
    let mut all = Vec::new();
    let mut counts = Vec::new();
    for m in &ms {
        let got = sim.payloads(*m);
        counts.push(got.len());
        all.extend(got);
    }
    assert_eq!(all.len(), n, "each message exactly once: {counts:?}");
    // Uniform: 200 expected each; far from the bounds by chance.
    assert!(counts.iter().all(|c| (120..=280).contains(c)), "{counts:?}");
    // Not a rotation: some member got two messages in a row.
    let mut sim = Sim::with_config(1, with_policy(SharedPolicy::Random));
    let ms = members(&mut sim, &[0, 0], 0);
    let p = sim.connect(V5, "p", true);
    for i in 0..40 {
        sim.pub_simple(p, "t/r", &format!("{i:02}"), 0);
    }
    let got = sim.payloads(ms[0]);
    assert!(
        got.windows(2)
            .any(|w| w[0].parse::<u32>().ok().map(|x| x + 1) == w[1].parse::<u32>().ok()),
        "{got:?}"
    );
}

#[test]
fn hash_clientid_keeps_one_publisher_on_one_member() {
    let mut sim = Sim::with_config(3, with_policy(SharedPolicy::HashClientId));
    let ms = members(&mut sim, &[0, 1, 2], 0);
    let pubs: Vec<C> = (0..30)
        .map(|i| sim.connect(V5, &format!("publisher-{i}"), true))
        .collect();
    for round in 0..4 {
        for (i, p) in pubs.iter().enumerate() {
            sim.pub_simple(*p, "t/h", &format!("{i}:{round}"), 0);
        }
    }
    let mut member_of: HashMap<String, usize> = HashMap::new();
    let mut used = [false; 3];
    let mut total = 0;
    for (k, m) in ms.iter().enumerate() {
        for payload in sim.payloads(*m) {
            total += 1;
            let publisher = payload.split(':').next().unwrap_or_default().to_string();
            let prev = member_of.insert(publisher.clone(), k);
            assert!(prev.is_none_or(|p| p == k), "publisher {publisher} split");
            used[k] = true;
        }
    }
    assert_eq!(total, 120);
    assert!(
        used.iter().all(|u| *u),
        "30 publishers over 3 members: {used:?}"
    );
}

#[test]
fn hash_topic_keeps_one_topic_on_one_member() {
    let mut sim = Sim::with_config(2, with_policy(SharedPolicy::HashTopic));
    let ms = members(&mut sim, &[0, 1, 1], 0);
    let pubs = publishers(&mut sim);
    for round in 0..4 {
        for t in 0..30 {
            sim.pub_simple(pubs[(t + round) % 2], &format!("t/{t}"), &format!("{t}"), 0);
        }
    }
    let mut member_of: HashMap<String, usize> = HashMap::new();
    let mut used = [false; 3];
    let mut total = 0;
    for (k, m) in ms.iter().enumerate() {
        for p in sim.messages(*m) {
            total += 1;
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            let prev = member_of.insert(topic.clone(), k);
            assert!(prev.is_none_or(|p| p == k), "topic {topic} split");
            used[k] = true;
        }
    }
    assert_eq!(total, 120);
    assert!(
        used.iter().all(|u| *u),
        "30 topics over 3 members: {used:?}"
    );
}

#[test]
fn sticky_stays_with_one_member_until_it_leaves() {
    let mut sim = Sim::with_config(3, with_policy(SharedPolicy::Sticky));
    let ms = members(&mut sim, &[0, 1, 2], 1);
    let pubs = publishers(&mut sim);
    for i in 0..12 {
        sim.pub_simple(pubs[i % 3], "t/s", &i.to_string(), 1);
    }
    let counts: Vec<usize> = ms.iter().map(|m| sim.payloads(*m).len()).collect();
    let Some(chosen) = counts.iter().position(|c| *c == 12) else {
        panic!("not sticky: {counts:?}")
    };
    sim.disconnect(ms[chosen]);
    for i in 0..12 {
        sim.pub_simple(pubs[i % 3], "t/s", &i.to_string(), 1);
    }
    let counts: Vec<usize> = ms
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != chosen)
        .map(|(_, m)| sim.payloads(*m).len())
        .collect();
    counts
        .iter()
        .find(|c| **c == 12)
        .unwrap_or_else(|| panic!("{counts:?}"));
    assert_eq!(counts.iter().sum::<usize>(), 12);
}

#[test]
fn least_inflight_prefers_the_member_that_acknowledges() {
    let mut sim = Sim::with_config(1, with_policy(SharedPolicy::LeastInflight));
    let ms = members(&mut sim, &[0, 0], 1);
    let (stuck, fast) = (ms[0], ms[1]);
    let p = sim.connect(V5, "p", true);
    let mut stuck_got = 0;
    for i in 0..20 {
        sim.pub_simple(p, "t/l", &i.to_string(), 1);
        // `stuck` reads but never acknowledges; `fast` acknowledges all.
        stuck_got += sim.recv(stuck).len();
        sim.messages(fast);
    }
    assert!(stuck_got <= 1, "stuck member got {stuck_got}");
}

#[test]
fn per_group_policy_overrides_the_default() {
    let config = BrokerConfig {
        shared_policy: SharedPolicy::RoundRobin,
        shared_group_policies: vec![("pinned".into(), SharedPolicy::Sticky)],
        ..base()
    };
    let mut sim = Sim::with_config(2, config);
    let shards = 2;
    let mut rr = Vec::new();
    let mut pinned = Vec::new();
    for s in 0..2 {
        let a = sim.connect(V5, &id_on(&format!("rr{s}"), s, shards), true);
        sim.subscribe(a, "$share/rr/x", 0);
        rr.push(a);
        let b = sim.connect(V5, &id_on(&format!("pin{s}"), s, shards), true);
        sim.subscribe(b, "$share/pinned/x", 0);
        pinned.push(b);
    }
    let pubs = publishers(&mut sim);
    for i in 0..10 {
        sim.pub_simple(pubs[i % 2], "x", &i.to_string(), 0);
    }
    let rr_counts: Vec<usize> = rr.iter().map(|m| sim.payloads(*m).len()).collect();
    let pin_counts: Vec<usize> = pinned.iter().map(|m| sim.payloads(*m).len()).collect();
    assert_eq!(rr_counts, [5, 5]);
    let mut sorted = pin_counts.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 10], "{pin_counts:?}");
}

#[test]
fn policy_names_round_trip() {
    for p in SharedPolicy::ALL {
        assert_eq!(SharedPolicy::from_name(p.name()), Some(p));
    }
    assert_eq!(SharedPolicy::from_name("roundrobin"), None);
}
