//! Black-box tests of the `http` listener: `/health`, `/ready` (and its
//! 503 while shutting down), `/metrics` after known traffic on two shards
//! (every family present, values as sent), and malformed requests (their
//! 4xx, the connection closed, the broker unaffected).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringmq_tests::http::{self, closed, connect, get, metric, read_answer, send, HttpBroker};
use ringmq_tests::{binary, client_id_on_shard, packet, RawClient};

const SHARDS: u16 = 2;

fn start(test: &str, extra: &str) -> HttpBroker {
    let bin = binary(env!("CARGO_BIN_EXE_ringmq"));
    http::start(&bin, test, SHARDS, extra)
}

/// The families `/metrics` must always show (docs/operations.md).
const FAMILIES: [&str; 41] = [
    "ringmq_build_info",
    "ringmq_uptime_seconds",
    "ringmq_shards",
    "ringmq_shard_up",
    "ringmq_connections",
    "ringmq_connections_accepted_total",
    "ringmq_connections_refused_total",
    "ringmq_connects_total",
    "ringmq_sessions",
    "ringmq_sessions_expired_total",
    "ringmq_subscriptions",
    "ringmq_retained_messages",
    "ringmq_retained_bytes",
    "ringmq_retained_refused_total",
    "ringmq_messages_received_total",
    "ringmq_messages_sent_total",
    "ringmq_message_bytes_received_total",
    "ringmq_message_bytes_sent_total",
    "ringmq_packets_received_total",
    "ringmq_packets_sent_total",
    "ringmq_bytes_received_total",
    "ringmq_bytes_sent_total",
    "ringmq_messages_dropped_total",
    "ringmq_publishes_not_authorized_total",
    "ringmq_auth_failures_total",
    "ringmq_protocol_errors_total",
    "ringmq_inflight_messages",
    "ringmq_queued_messages",
    "ringmq_backlog_messages",
    "ringmq_publish_latency_seconds",
    "ringmq_shard_connections",
    "ringmq_shard_sessions_online",
    "ringmq_shard_messages_received_total",
    "ringmq_shard_messages_sent_total",
    "ringmq_shard_inflight_messages",
    "ringmq_shard_queued_messages",
    "ringmq_ring_capacity_slots",
    "ringmq_ring_occupied_slots",
    "ringmq_ring_overflow_messages",
    "ringmq_ring_overflowed_total",
    "ringmq_ring_publisher_pauses_total",
];

fn value(page: &str, series: &str) -> f64 {
    metric(page, series).unwrap_or_else(|| panic!("no {series} in:\n{page}"))
}

#[test]
fn health_ready_not_found_methods_head_and_keep_alive() {
    let b = start("basic", "");
    let health = get(b.http, "/health");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = get(b.http, "/ready");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(get(b.http, "/nope").status, 404);
    assert_eq!(
        get(b.http, "/metrics?x=1").status,
        200,
        "the query is ignored"
    );

    // Another method: 405 with Allow, and the connection is closed.
    let mut s = connect(b.http);
    let post = b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
    assert!(s.write_all(post).is_ok());
    let a = read_answer(&mut s, false);
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("GET, HEAD"));
    assert_eq!(a.header("connection"), Some("close"));
    assert!(closed(&mut s));

    // HEAD: the headers of GET, no body.
    let head = send(
        b.http,
        b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        head.header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
            > Some(1000)
    );
    assert!(head.body.is_empty());

    // HTTP/1.1 keeps the connection: two requests in one write
    // (pipelined), then a third, each answered in order.
    let mut s = connect(b.http);
    let two = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    assert!(s.write_all(two).is_ok());
    let first = read_answer(&mut s, false);
    assert_eq!(
        (first.status, first.header("connection")),
        (200, Some("keep-alive"))
    );
    assert_eq!(read_answer(&mut s, false).status, 404);
    assert!(s
        .write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_ok());
    let last = read_answer(&mut s, false);
    assert_eq!(
        (last.status, last.header("connection")),
        (200, Some("close"))
    );
    assert!(closed(&mut s), "closed after Connection: close");

    // HTTP/1.0 closes unless asked to keep the connection.
    let mut s = connect(b.http);
    assert!(s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_ok());
    assert_eq!(read_answer(&mut s, false).status, 200);
    assert!(closed(&mut s));
    let (status, _) = b.broker.stop();
    assert!(status.success(), "{status:?}");
}

/// Subscriber on shard 0, publisher on shard 1: 3 QoS 0 and 2 QoS 1
/// messages cross the ring, one retained message is stored, one CONNECT
/// is refused.
fn traffic(mqtt: SocketAddr) -> (RawClient, RawClient) {
    let mut bad = RawClient::connect(mqtt);
    let mut connect = packet::connect_v311("bad-level", true, 60);
    connect[8] = 9; // protocol level 9: CONNACK 0x01, close
    bad.send(&connect);
    assert_eq!(bad.expect_closed(), vec![vec![0x20, 0x02, 0x00, 0x01]]);

    let mut sub = RawClient::connect_v311(mqtt, &client_id_on_shard("sub", 0, SHARDS));
    sub.send(&packet::subscribe_v311(1, "t/#", 1));
    assert_eq!(sub.read_packet(), [0x90, 0x03, 0x00, 0x01, 0x01]);
    let mut publisher = RawClient::connect_v311(mqtt, &client_id_on_shard("pub", 1, SHARDS));
    for _ in 0..3 {
        publisher.send(&packet::publish_v311("t/a", b"abc", 0, 0, false));
    }
    for id in 1..=2u16 {
        publisher.send(&packet::publish_v311("t/b", b"hello", 1, id, false));
        let [hi, lo] = id.to_be_bytes();
        assert_eq!(publisher.read_packet(), [0x40, 0x02, hi, lo]);
    }
    publisher.send(&packet::publish_v311("keep/1", b"r", 0, 0, true));
    for _ in 0..3 {
        let p = sub.read_packet();
        assert_eq!(p[0], 0x30, "QoS 0 publish: {p:02x?}");
    }
    for _ in 0..2 {
        let p = sub.read_packet();
        assert_eq!(p[0] & 0xf6, 0x32, "QoS 1 publish: {p:02x?}");
        // Topic "t/b" (2 + 3 bytes) after the 2-byte fixed header, then the id.
        sub.send(&[0x40, 0x02, p[7], p[8]]);
    }
    (sub, publisher)
}

#[test]
fn metrics_after_known_traffic_on_two_shards() {
    let b = start("traffic", "[runtime]\nsys_interval_s = 0\n");
    let (_sub, _publisher) = traffic(b.mqtt);
    // Counters are final once the subscriber read everything; gauges
    // (acknowledgements in flight, the retained replica on shard 0)
    // settle within a few scrapes.
    let deadline = Instant::now() + Duration::from_secs(5);
    let page = loop {
        let a = get(b.http, "/metrics");
        assert_eq!(a.status, 200);
        let settled = metric(&a.body, "ringmq_inflight_messages") == Some(0.0)
            && metric(&a.body, "ringmq_retained_messages") == Some(1.0);
        if settled || Instant::now() > deadline {
            break a.body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for family in FAMILIES {
        assert!(
            page.contains(&format!("\n# TYPE {family} ")),
            "{family} missing:\n{page}"
        );
    }
    // Every family served is in the metrics reference, with its type.
    let doc = include_str!("../../docs/operations.md");
    for line in page.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            doc.contains(&format!("| `{name}` | {kind} |")),
            "{name} ({kind}) is not in docs/operations.md's metrics reference"
        );
    }
    let expect = [
        ("ringmq_shards", 2.0),
        ("ringmq_shard_up{shard=\"0\"}", 1.0),
        ("ringmq_shard_up{shard=\"1\"}", 1.0),
        ("ringmq_connections_accepted_total", 3.0),
        (
            "ringmq_connections_refused_total{reason=\"connect_invalid\"}",
            1.0,
        ),
        (
            "ringmq_connections_refused_total{reason=\"connections_max\"}",
            0.0,
        ),
        ("ringmq_connections_refused_total{reason=\"auth\"}", 0.0),
        ("ringmq_connects_total", 2.0),
        ("ringmq_sessions{state=\"online\"}", 2.0),
        ("ringmq_sessions{state=\"offline\"}", 0.0),
        ("ringmq_subscriptions", 1.0),
        ("ringmq_retained_messages", 1.0),
        ("ringmq_retained_bytes", 1.0),
        ("ringmq_messages_received_total{qos=\"0\"}", 4.0),
        ("ringmq_messages_received_total{qos=\"1\"}", 2.0),
        ("ringmq_messages_received_total{qos=\"2\"}", 0.0),
        ("ringmq_message_bytes_received_total{qos=\"0\"}", 10.0),
        ("ringmq_message_bytes_received_total{qos=\"1\"}", 10.0),
        ("ringmq_messages_sent_total{qos=\"0\"}", 3.0),
        ("ringmq_messages_sent_total{qos=\"1\"}", 2.0),
        ("ringmq_message_bytes_sent_total{qos=\"0\"}", 9.0),
        ("ringmq_message_bytes_sent_total{qos=\"1\"}", 10.0),
        ("ringmq_shard_messages_received_total{shard=\"1\"}", 6.0),
        ("ringmq_shard_messages_sent_total{shard=\"0\"}", 5.0),
        ("ringmq_shard_sessions_online{shard=\"0\"}", 1.0),
        ("ringmq_shard_sessions_online{shard=\"1\"}", 1.0),
        ("ringmq_publish_latency_seconds_count", 5.0),
        ("ringmq_publish_latency_seconds_bucket{le=\"+Inf\"}", 5.0),
        ("ringmq_inflight_messages", 0.0),
        ("ringmq_queued_messages", 0.0),
        ("ringmq_messages_dropped_total{reason=\"queue_full\"}", 0.0),
        ("ringmq_auth_failures_total", 0.0),
        ("ringmq_ring_capacity_slots", 1024.0),
        ("ringmq_ring_overflowed_total{from=\"1\",to=\"0\"}", 0.0),
        (
            "ringmq_ring_publisher_pauses_total{from=\"0\",to=\"1\"}",
            0.0,
        ),
    ];
    for (series, want) in expect {
        assert_eq!(value(&page, series), want, "{series} in:\n{page}");
    }
    // CONNECT x2 (the third did not decode), SUBSCRIBE, PUBLISH x6,
    // PUBACK x2 from clients; CONNACK x3, SUBACK, PUBACK x2, PUBLISH x5 to
    // them.
    assert_eq!(value(&page, "ringmq_packets_received_total"), 11.0);
    assert_eq!(value(&page, "ringmq_packets_sent_total"), 11.0);
    assert!(value(&page, "ringmq_bytes_received_total") > 50.0);
    assert!(value(&page, "ringmq_bytes_sent_total") > 50.0);
    let (status, _) = b.broker.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn malformed_requests_get_their_status_and_the_broker_is_unaffected() {
    let b = start("malformed", "");
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let cases: [(&[u8], u16); 7] = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\n\r\n", 400),
        (
            b"GET /health HTTP/1.1\r\nHost: t\r\nbroken header\r\n\r\n",
            400,
        ),
        (
            b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody",
            400,
        ),
        (b"GET /health HTTP/3.0\r\nHost: t\r\n\r\n", 505),
        (long_header.as_bytes(), 431),
    ];
    for (request, status) in cases {
        let mut s = connect(b.http);
        if let Err(e) = s.write_all(request) {
            // Only the oversized head may be refused before it is all written.
            assert!(request.len() > 8192, "write: {e}");
        }
        let a = read_answer(&mut s, false);
        let shown = String::from_utf8_lossy(&request[..request.len().min(40)]).into_owned();
        assert_eq!(a.status, status, "{shown:?}");
        assert_eq!(a.header("connection"), Some("close"), "{shown:?}");
        assert!(closed(&mut s), "{shown:?} left the connection open");
    }
    // Binary junk and a client that closes mid-head get nothing, and harm nothing.
    let mut s = connect(b.http);
    assert!(s.write_all(&[0u8, 0xff, 0x13, 0x37]).is_ok());
    drop(s);
    let mut s = connect(b.http);
    assert!(s.write_all(b"GET /metr").is_ok());
    drop(s);
    // The endpoints and the MQTT listener still work.
    assert_eq!(get(b.http, "/health").status, 200);
    assert_eq!(get(b.http, "/metrics").status, 200);
    let mut c = RawClient::connect_v311(b.mqtt, "after-junk");
    c.send(&[0xc0, 0x00]);
    assert_eq!(c.read_packet(), [0xd0, 0x00]);
    let (status, _) = b.broker.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn ready_is_503_while_shutting_down_and_health_stays_200() {
    // A client that never closes keeps the shards draining for
    // close_linger_ms after the broker's DISCONNECT.
    let b = start(
        "shutdown",
        "[runtime]\nclose_linger_ms = 3000\nshutdown_grace_ms = 5000\n",
    );
    assert_eq!(get(b.http, "/ready").status, 200);
    let _stuck = RawClient::connect_v311(b.mqtt, "stays");
    b.broker.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    let ready = loop {
        let ready = get(b.http, "/ready");
        if ready.status == 503 || Instant::now() > deadline {
            break ready;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.starts_with("not ready"), "{ready:?}");
    assert_eq!(get(b.http, "/health").status, 200, "alive while stopping");
    let mut broker = b.broker;
    let status = broker.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn refusals_by_reason_are_counted() {
    let bin = binary(env!("CARGO_BIN_EXE_ringmq"));
    // One shard with room for one connection.
    let b = http::start(&bin, "refused", 1, "[limits]\nconnections_max = 1\n");
    let mut first = RawClient::connect_v311(b.mqtt, "first");
    let mut second = RawClient::connect(b.mqtt);
    assert!(
        second.expect_closed().is_empty(),
        "closed at once, no CONNACK"
    );
    let page = get(b.http, "/metrics").body;
    let series = "ringmq_connections_refused_total{reason=\"connections_max\"}";
    assert_eq!(value(&page, series), 1.0, "{page}");
    assert_eq!(value(&page, "ringmq_connections_accepted_total"), 2.0);
    assert_eq!(value(&page, "ringmq_connections"), 1.0);
    first.send(&[0xc0, 0x00]);
    assert_eq!(first.read_packet(), [0xd0, 0x00]);
    let (status, _) = b.broker.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn connections_over_the_limit_are_answered_503_and_the_rest_still_served() {
    const CONNECTIONS_MAX: usize = 64; // shards/src/http.rs
    let b = start("limit", "");
    let mut idle: Vec<_> = (0..CONNECTIONS_MAX).map(|_| connect(b.http)).collect();
    // The broker has taken them all once one of them is served.
    assert!(idle[0]
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .is_ok());
    assert_eq!(read_answer(&mut idle[0], false).status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let over = loop {
        let a = get(b.http, "/health");
        if a.status == 503 || Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(over.status, 503, "{over:?}");
    // The connections already open are still served, and closing some
    // makes room again.
    assert!(idle[1]
        .write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n")
        .is_ok());
    assert_eq!(read_answer(&mut idle[1], false).status, 200);
    idle.truncate(10);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(b.http, "/health").status != 200 {
        assert!(
            Instant::now() < deadline,
            "no room after closing connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(idle);
    let (status, _) = b.broker.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn refused_logins_are_auth_failures() {
    let bin = binary(env!("CARGO_BIN_EXE_ringmq"));
    let dir = std::env::temp_dir().join(format!("ringmq-http-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("passwd").display().to_string();
    let args = ["passwd", "-c", "-b", &file, "alice", "secret"];
    let (status, _, err) = ringmq_tests::run_to_exit(&bin, &args, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let b = http::start(
        &bin,
        "auth",
        SHARDS,
        &format!("[auth]\npassword_file = \"{file}\"\n"),
    );
    for (password, code) in [("wrong", 4u8), ("secret", 0)] {
        let mut c = RawClient::connect(b.mqtt);
        c.send(&packet::connect_login(
            4,
            "alice-1",
            Some("alice"),
            Some(password),
        ));
        assert_eq!(c.read_packet(), [0x20, 0x02, 0x00, code], "{password}");
    }
    let page = get(b.http, "/metrics").body;
    assert_eq!(value(&page, "ringmq_auth_failures_total"), 1.0, "{page}");
    let refused = "ringmq_connections_refused_total{reason=\"auth\"}";
    assert_eq!(value(&page, refused), 1.0);
    assert_eq!(value(&page, "ringmq_connects_total"), 1.0);
    let (status, _) = b.broker.stop();
    assert!(status.success(), "{status:?}");
}
