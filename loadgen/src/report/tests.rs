//! Tests of the HTML report: metadata, charts, table columns.

use super::*;

#[test]
fn nines_axis() {
    assert_eq!(nines(0.0), Some(0.0));
    assert!((nines(90.0).unwrap_or(0.0) - 1.0).abs() < 1e-9);
    assert!((nines(99.9).unwrap_or(0.0) - 3.0).abs() < 1e-9);
    assert_eq!(nines(100.0), None);
    assert_eq!(percentile_label(0), "0%");
    assert_eq!(percentile_label(1), "90%");
    assert_eq!(percentile_label(2), "99%");
    assert_eq!(percentile_label(4), "99.99%");
    assert_eq!(latency_label(0), "1 µs");
    assert_eq!(latency_label(3), "1 ms");
}

#[test]
fn page_is_self_contained() {
    let summary = Summary {
        scenario: "pubsub".into(),
        label: Some("a <b>".into()),
        latency_samples: 3,
        latency_us_percentiles: vec![(0.0, 10.0), (90.0, 20.0), (99.0, 40.0), (100.0, 50.0)],
        ..Summary::default()
    };
    let runs = vec![Run {
        name: "a <b>".into(),
        color: 0,
        summary,
    }];
    let html = page("t", &runs);
    assert!(html.contains("<svg"));
    assert!(html.contains("<polyline"));
    assert!(html.contains("a &lt;b&gt;"));
    assert!(
        !html.contains("http://") || html.matches("http://").count() == 1,
        "only the SVG namespace"
    );
    assert!(!html.contains("<script"));
}

fn described(name: &str, version: u8, qos: u8) -> Run {
    let mut summary = Summary {
        scenario: "pubsub".into(),
        broker: "127.0.0.1:1883".into(),
        transport: "tcp".into(),
        mqtt_version: version,
        qos,
        latency_samples: 10,
        lost: Some(3),
        duplicated: 2,
        reordered: 1,
        latency_us_percentiles: vec![(0.0, 10.0), (99.0, 40.0)],
        per_second: (0..3)
            .map(|i| crate::series::SecondPoint {
                second: i,
                msgs_sent: 1000,
                msgs_received: 10_000,
                latency_samples: 10_000,
                latency_us_p50: Some(80.0),
                latency_us_p99: Some(400.0),
            })
            .collect(),
        ..Summary::default()
    };
    summary.meta.date_utc = "2026-11-30T01:53:12Z".into();
    summary.meta.command = "loadgen pubsub --qos 1 --label 'a b'".into();
    summary.meta.loadgen_version = "0.1.0".into();
    summary.meta.broker_version = Some("mosquitto version 2.0.11".into());
    summary.meta.machine = crate::meta::Machine {
        cores: 8,
        cpu_model: "AMD EPYC 7B13".into(),
        kernel: "6.1.0".into(),
    };
    summary
        .meta
        .parameters
        .insert("inflight".into(), "64".into());
    Run {
        name: name.into(),
        color: usize::from(version),
        summary,
    }
}

#[test]
fn page_has_metadata_both_time_charts_and_the_table_columns() {
    let html = page(
        "cmp",
        &[described("ringmq", 5, 1), described("mosquitto", 4, 0)],
    );
    for needle in [
        "2026-11-30T01:53:12Z",
        "loadgen pubsub --qos 1 --label 'a b'",
        "mosquitto version 2.0.11",
        "8 cores, AMD EPYC 7B13, Linux 6.1.0",
        "5.0 (protocol level 5), QoS 1",
        "inflight=64",
        "lost 3 · duplicated 2 · reordered 1",
        "class=\"chart latency-percentiles\" width=\"100%\"",
        "class=\"chart throughput-over-time\"",
        "class=\"chart latency-over-time\"",
        "<th>MQTT</th><th>QoS</th>",
        "<td>5.0</td><td>1</td>",
        "<td>3.1.1</td><td>0</td>",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    // One throughput line per run, two latency lines (p50, p99) per run.
    let dashed = html.matches("stroke-dasharray").count();
    assert_eq!(dashed, 2);
}

#[test]
fn older_files_say_unknown_and_draw_no_time_charts() {
    let mut old = described("old", 4, 0);
    old.summary.meta = crate::meta::Meta::default();
    old.summary.per_second.clear();
    let html = page("old", &[old]);
    assert!(html.contains("unknown (older file)"));
    assert!(!html.contains("throughput-over-time"));
    assert!(html.contains("latency-percentiles"));
}

#[test]
fn metadata_shows_scenario_figures_and_the_self_check() {
    let mut run = described("ringmq", 5, 1);
    run.summary.per_subscriber_received = vec![40, 60];
    run.summary.self_check = Some(SelfCheck::judge(vec![97.0], None, None));
    let html = metadata(&run);
    assert!(
        html.contains("shared group: 2 consumers received min 40, max 60 (max/min 1.50)"),
        "{html}"
    );
    assert!(html.contains("loadgen was the bottleneck"), "{html}");
    assert!(html.contains("thread 0 was 97% busy"), "{html}");
    run.summary.self_check = Some(SelfCheck::judge(vec![12.0], Some(50.0), None));
    let html = metadata(&run);
    assert!(
        html.contains("kept up (threads busy 12%; send lag p99 50 µs)"),
        "{html}"
    );
    run.summary.self_check = None;
    assert!(metadata(&run).contains("not recorded (older file)"));
}
