//! loadgen's scenarios against the real broker, each small and bounded:
//! fan-in, shared-subscription distribution, QoS 2 with an inflight window,
//! connection storms at a target rate, connection churn (connect,
//! subscribe, disconnect), request/response round trips,
//! retained-message storms, subscribers' topic aliases (bytes on the wire),
//! several pinned threads and the self-check; subscribers on the receiving
//! thread with kernel receive times (`--rx-thread`).

mod common;

use common::{loadgen, ringmq, summary, u64_of};
use ringmq_tests::Broker;
use serde_json::Value;

fn broker() -> Broker {
    Broker::start(&ringmq(), &[])
}

/// A run with `args` plus the common options; its JSON summary.
fn run(broker: &Broker, args: &[&str]) -> Value {
    let port = broker.port().to_string();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--port", &port, "--json", "--quiet"]);
    summary(&loadgen(&all))
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Everything expected arrived once.
fn complete(s: &Value) {
    let received = u64_of(s, "msgs_received_total");
    assert!(received > 0, "{s}");
    assert_eq!(Some(received), s["msgs_expected_total"].as_u64(), "{s}");
    assert_eq!(u64_of(s, "lost"), 0, "{s}");
    assert_eq!(u64_of(s, "errors"), 0, "{s}");
}

const SHORT: [&str; 6] = ["--warmup", "0.2", "--duration", "1", "--threads", "1"];

#[test]
fn fan_in_delivers_every_publishers_messages_to_the_consumer() {
    let b = broker();
    let mut args = vec![
        "pubsub",
        "--topology",
        "fanin",
        "--pubs",
        "8",
        "--rate",
        "50",
    ];
    args.extend_from_slice(&SHORT);
    let s = run(&b, &args);
    complete(&s);
    assert_eq!((u64_of(&s, "pubs"), u64_of(&s, "subs")), (8, 1), "{s}");
}

#[test]
fn shared_consumers_report_their_distribution() {
    let b = broker();
    let mut args = vec![
        "pubsub",
        "--topology",
        "shared",
        "--subs",
        "3",
        "--rate",
        "300",
    ];
    args.extend_from_slice(&SHORT);
    let s = run(&b, &args);
    complete(&s);
    let counts: Vec<u64> = s["per_subscriber_received"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert_eq!(counts.len(), 3, "{s}");
    assert_eq!(
        counts.iter().sum::<u64>(),
        u64_of(&s, "msgs_received_total")
    );
    assert!(counts.iter().all(|c| *c > 0), "every member got some: {s}");
}

#[test]
fn qos2_with_an_inflight_window_acknowledges_everything() {
    let b = broker();
    let args = [
        "pubsub",
        "--qos",
        "2",
        "--inflight",
        "4",
        "--rate",
        "0",
        "--count",
        "300",
        "--pubs",
        "2",
        "--subs",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
    ];
    let s = run(&b, &args);
    complete(&s);
    assert_eq!(u64_of(&s, "msgs_sent_total"), 600, "{s}");
    assert_eq!(u64_of(&s, "acked"), 600, "{s}");
    assert_eq!(s["meta"]["parameters"]["inflight"], "4", "{s}");
}

#[test]
fn connection_storm_reports_target_and_achieved_rate() {
    let b = broker();
    let args = [
        "conn",
        "--count",
        "100",
        "--rate",
        "500",
        "--duration",
        "0.1",
        "--threads",
        "2",
    ];
    let s = run(&b, &args);
    assert_eq!(u64_of(&s, "conns_opened"), 100, "{s}");
    assert_eq!(f64_of(&s, "conns_target_per_s"), 500.0, "{s}");
    let achieved = f64_of(&s, "conns_per_s");
    // 100 at 500/s take 0.2 s: the achieved rate cannot beat the target.
    assert!(achieved > 0.0 && achieved <= 520.0, "{s}");
    assert_eq!(u64_of(&s, "latency_samples"), 100, "{s}");
    assert!(f64_of(&s, "latency_us_p99") >= f64_of(&s, "latency_us_p50"));
}

#[test]
fn churn_cycles_connect_subscribe_and_disconnect() {
    let b = broker();
    let args = [
        "conn",
        "--churn",
        "--count",
        "200",
        "--rate",
        "0",
        "--concurrency",
        "8",
        "--threads",
        "1",
    ];
    let s = run(&b, &args);
    // Every cycle completed: CONNACK, SUBACK without a refusal, and the
    // close after DISCONNECT (a failed step counts in conns_failed).
    assert_eq!(u64_of(&s, "conns_opened"), 200, "{s}");
    assert_eq!(u64_of(&s, "conns_failed"), 0, "{s}");
    assert_eq!(s["latency_kind"], "churn_cycle", "{s}");
    assert_eq!(s["meta"]["parameters"]["churn"], "true", "{s}");
    assert_eq!(u64_of(&s, "latency_samples"), 200, "{s}");
    assert!(f64_of(&s, "conns_per_s") > 0.0, "{s}");
    // The broker still serves afterwards.
    let mut c = ringmq_tests::RawClient::connect_v311(b.addr(), "after-churn");
    c.send(&ringmq_tests::packet::PINGREQ);
    c.expect(&ringmq_tests::packet::PINGRESP);
}

#[test]
fn request_response_round_trips_carry_correlation_data() {
    let b = broker();
    let mut args = vec![
        "reqresp",
        "--requesters",
        "3",
        "--responders",
        "2",
        "--rate",
        "100",
        "--qos",
        "1",
    ];
    args.extend_from_slice(&SHORT);
    let s = run(&b, &args);
    complete(&s);
    assert_eq!(s["scenario"], "reqresp", "{s}");
    assert_eq!(s["mqtt_version"], 5, "{s}");
    assert_eq!(s["latency_kind"], "round_trip", "{s}");
    assert_eq!(
        u64_of(&s, "msgs_received_total"),
        u64_of(&s, "msgs_sent_total")
    );
    assert!(u64_of(&s, "latency_samples") > 0, "{s}");
}

#[test]
fn retained_storm_times_subscribers_and_clears_its_topics() {
    let b = broker();
    let args = [
        "retained",
        "--topics",
        "300",
        "--subs",
        "3",
        "--threads",
        "2",
    ];
    let s = run(&b, &args);
    assert_eq!(s["latency_kind"], "retained_all", "{s}");
    assert_eq!(
        u64_of(&s, "latency_samples"),
        3,
        "one time per subscriber: {s}"
    );
    assert_eq!(u64_of(&s, "lost"), 0, "{s}");
    assert_eq!(u64_of(&s, "msgs_received_total"), 900, "{s}");
    assert_eq!(u64_of(&s, "errors"), 0, "{s}");
    // Cleared: a smaller run under the same prefix sees none of the old
    // topics (they would arrive as unknown sequence numbers).
    let s = run(&b, &["retained", "--topics", "100", "--subs", "1"]);
    assert_eq!(u64_of(&s, "foreign"), 0, "{s}");
    assert_eq!(u64_of(&s, "msgs_received_total"), 100, "{s}");
}

#[test]
fn topic_aliases_shrink_what_subscribers_receive() {
    let b = broker();
    // A 60-byte topic name.
    let topic = format!("plant-7/line-3/{}/temperature", "x".repeat(33));
    assert_eq!(topic.len(), 60);
    let per_message = |alias_max: &str| {
        let args = [
            "pubsub",
            "--protocol-version",
            "5",
            "--topic",
            &topic,
            "--subs",
            "2",
            "--rate",
            "0",
            "--count",
            "500",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--topic-alias-max",
            alias_max,
        ];
        let s = run(&b, &args);
        complete(&s);
        u64_of(&s, "mqtt_bytes_received_total") as f64 / u64_of(&s, "msgs_received_total") as f64
    };
    let without = per_message("0");
    let with = per_message("16");
    // The topic (60 B + 2 B length) becomes a 3-byte alias property.
    assert!(with <= without - 55.0, "{without:.1} -> {with:.1} B/msg");
    assert!(with > 64.0, "the payload is still there: {with:.1}");
}

#[test]
fn pinned_threads_and_the_self_check_are_reported() {
    let b = broker();
    let cpus = ringmq_net::os::allowed_cpus();
    let pin = cpus
        .iter()
        .take(2)
        .map(|c| c.to_string())
        .collect::<Vec<_>>();
    let pin = pin.join(",");
    let args = [
        "pubsub",
        "--pubs",
        "2",
        "--subs",
        "4",
        "--rate",
        "200",
        "--warmup",
        "0.3",
        "--duration",
        "1",
        "--pin",
        &pin,
    ];
    let s = run(&b, &args);
    complete(&s);
    let threads = cpus.len().min(2) as u64;
    assert_eq!(u64_of(&s, "threads"), threads, "{s}");
    assert_eq!(s["meta"]["parameters"]["pin"], pin.as_str(), "{s}");
    let check = &s["self_check"];
    let busy = check["thread_busy_pct"].as_array().map_or(0, Vec::len);
    assert_eq!(busy as u64, threads, "{s}");
    assert!(check["send_lag_us_p99"].as_f64().is_some(), "{s}");
    assert!(check["recv_backlog_us_p99"].as_f64().is_some(), "{s}");

    // Two million messages a second from one publisher: loadgen cannot
    // keep that schedule, and says so.
    let args = [
        "pubsub",
        "--pubs",
        "1",
        "--subs",
        "1",
        "--rate",
        "2000000",
        "--warmup",
        "0",
        "--duration",
        "1",
        "--threads",
        "1",
    ];
    let port = b.port().to_string();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--port", &port, "--quiet"]);
    let out = loadgen(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("self-check: LOADGEN WAS THE BOTTLENECK"),
        "{text}"
    );
    assert!(text.contains("publishers ran late"), "{text}");
}

#[test]
fn bad_scenario_options_are_refused() {
    for (args, expected) in [
        (
            vec!["pubsub", "--topic-alias-max", "5"],
            "--topic-alias-max needs --protocol-version 5",
        ),
        (vec!["pubsub", "--pin", "0-x"], "--pin \"0-x\""),
        (
            vec!["pubsub", "--pin", "4000"],
            "not one this process may run on",
        ),
        (
            vec!["reqresp", "--responders", "0"],
            "--responders must be at least 1",
        ),
        (
            vec!["retained", "--topic-prefix", "a/#"],
            "without wildcards",
        ),
        (
            vec!["pubsub", "--rx-thread", "--transport", "ws"],
            "--rx-thread needs --transport tcp",
        ),
    ] {
        let out = loadgen(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn the_receiving_thread_measures_to_the_kernel_receive_time() {
    let b = broker();
    // QoS 0 fan-out in bursts, and QoS 1 (the thread sends the PUBACKs).
    for qos in ["0", "1"] {
        let args = [
            "pubsub",
            "--rx-thread",
            "--qos",
            qos,
            "--pubs",
            "2",
            "--subs",
            "20",
            "--rate",
            "200",
            "--burst",
            "5",
            "--warmup",
            "0.3",
            "--duration",
            "1",
            "--threads",
            "1",
        ];
        let s = run(&b, &args);
        complete(&s);
        assert_eq!(s["receive_time"], "kernel", "{s}");
        assert_eq!(
            u64_of(&s, "msgs_expected_total"),
            u64_of(&s, "msgs_sent_total") * 20,
            "{s}"
        );
        assert!(u64_of(&s, "latency_samples") > 0, "{s}");
        let (p50, max) = (f64_of(&s, "latency_us_p50"), f64_of(&s, "latency_us_max"));
        // On loopback, well under the run; never negative or zero.
        assert!(p50 > 0.0 && max < 1_000_000.0, "{s}");
        assert_eq!(u64_of(&s, "duplicated") + u64_of(&s, "reordered"), 0, "{s}");
        // The worker thread and the receiving thread.
        let busy = s["self_check"]["thread_busy_pct"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(busy, 2, "{s}");
        assert!(
            s["self_check"]["recv_backlog_us_p99"].as_f64().is_some(),
            "{s}"
        );
    }
}
