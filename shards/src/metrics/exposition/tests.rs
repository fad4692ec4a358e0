//! The page is valid 0.0.4 text and sums the shards as documented.

use super::*;
use crate::mesh::RingStats;

fn snapshots() -> Vec<ShardSnapshot> {
    let mut a = ShardSnapshot {
        shard: 0,
        fresh: true,
        sockets_accepted: 3,
        ..ShardSnapshot::default()
    };
    a.stats.messages_received = [5, 1, 0];
    a.stats.latency.record(0);
    a.stats.latency.record(7);
    a.gauges.retained_messages = 2;
    a.gauges.sessions_online = 1;
    a.rings.push(RingStats {
        peer: 1,
        occupied_slots: 4,
        capacity_slots: 16,
        overflow_messages: 0,
        overflowed: 9,
        over_limit: 1,
    });
    let mut b = ShardSnapshot {
        shard: 1,
        fresh: false,
        sockets_accepted: 1,
        ..ShardSnapshot::default()
    };
    b.stats.messages_received = [2, 0, 0];
    b.stats.latency.record(20_000);
    b.gauges.retained_messages = 2;
    b.gauges.sessions_online = 4;
    vec![a, b]
}

fn page() -> String {
    render(
        &snapshots(),
        &Meta {
            uptime_s: 12,
            ring_capacity_slots: 16,
        },
    )
}

/// The value of the sample written exactly as `series` (name and labels).
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{page}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

#[test]
fn every_family_has_help_and_type_before_its_samples() {
    let page = page();
    let mut current: Option<(String, String)> = None;
    let mut seen = std::collections::HashSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(seen.insert(name.to_string()), "{name} described twice");
            current = None;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(seen.contains(name), "TYPE {name} without HELP");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{kind}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name}");
            } else {
                assert!(!name.ends_with("_total"), "{kind} {name}");
            }
            current = Some((name.to_string(), kind.to_string()));
            continue;
        }
        let (name, kind) = current
            .clone()
            .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        let ok = if kind == "histogram" {
            [
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
            ]
            .contains(&sample.to_string())
        } else {
            sample == name
        };
        assert!(ok, "{sample} under family {name}");
        let v = line.rsplit(' ').next().unwrap_or("");
        assert!(v.parse::<f64>().is_ok(), "value of {line}");
    }
    assert!(seen.len() > 30, "{} families", seen.len());
}

#[test]
fn values_are_broker_wide_sums_with_shard_labels_where_per_shard() {
    let page = page();
    for (series, want) in [
        ("ringmq_messages_received_total{qos=\"0\"}", 7.0),
        ("ringmq_messages_received_total{qos=\"1\"}", 1.0),
        ("ringmq_connections_accepted_total", 4.0),
        ("ringmq_sessions{state=\"online\"}", 5.0),
        // A replica, not a sum.
        ("ringmq_retained_messages", 2.0),
        ("ringmq_shard_up{shard=\"0\"}", 1.0),
        ("ringmq_shard_up{shard=\"1\"}", 0.0),
        ("ringmq_shard_messages_received_total{shard=\"1\"}", 2.0),
        ("ringmq_ring_occupied_slots{from=\"0\",to=\"1\"}", 4.0),
        ("ringmq_ring_overflowed_total{from=\"0\",to=\"1\"}", 9.0),
        ("ringmq_uptime_seconds", 12.0),
    ] {
        assert_eq!(value(&page, series), want, "{series}");
    }
}

#[test]
fn the_latency_histogram_is_cumulative_and_ends_with_inf() {
    let page = page();
    let name = "ringmq_publish_latency_seconds";
    assert_eq!(value(&page, &format!("{name}_bucket{{le=\"0.001\"}}")), 1.0);
    assert_eq!(value(&page, &format!("{name}_bucket{{le=\"0.005\"}}")), 1.0);
    assert_eq!(value(&page, &format!("{name}_bucket{{le=\"0.01\"}}")), 2.0);
    assert_eq!(value(&page, &format!("{name}_bucket{{le=\"10\"}}")), 2.0);
    assert_eq!(value(&page, &format!("{name}_bucket{{le=\"+Inf\"}}")), 3.0);
    assert_eq!(value(&page, &format!("{name}_count")), 3.0);
    assert_eq!(value(&page, &format!("{name}_sum")), 20.007);
    let mut last = 0.0;
    for line in page
        .lines()
        .filter(|l| l.starts_with("ringmq_publish_latency_seconds_bucket"))
    {
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0);
        assert!(v >= last, "not cumulative at {line}");
        last = v;
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}
