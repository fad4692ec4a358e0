//! Black-box tests of the connection log (issue 12): the lines the broker
//! writes to stderr for each connect and each disconnect reason, protocol
//! violations at warn, `log_connections = false`, `log_format = "json"`
//! and the rate limit. Every wait is bounded.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use ringmq_tests::{binary, packet, Broker, RawClient};

/// How long a line may take to reach the log.
const LOG_WAIT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn temp_config(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ringmq-logs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

/// The first log line containing every one of `parts`, waiting for it.
fn wait_line(broker: &Broker, parts: &[&str]) -> String {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let log = broker.log();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_string();
        }
        if Instant::now() >= deadline {
            panic!("no log line with {parts:?} within {LOG_WAIT:?}; log:\n{log}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connect_and_disconnect_reasons_are_logged_at_info() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    let listener = format!("listener=\"mqtt://127.0.0.1:{port}\"");

    // Connect with DISCONNECT.
    let mut c = RawClient::connect(broker.addr());
    c.send(&packet::connect_v311("log-a", true, 30));
    c.expect(&[0x20, 0x02, 0x00, 0x00]);
    let line = wait_line(&broker, &["client connected", "client_id=log-a "]);
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("peer=\"127.0.0.1:"), "{line}");
    assert!(line.contains(&listener), "{line}");
    assert!(line.contains("protocol=\"3.1.1\""), "{line}");
    assert!(line.contains("keep_alive_s=30"), "{line}");
    assert!(line.contains("clean_start=true"), "{line}");
    assert!(line.contains("session_present=false"), "{line}");
    assert!(line.contains("username=-"), "{line}");
    c.send(&[0xE0, 0x00]);
    let line = wait_line(&broker, &["client disconnected", "client_id=log-a "]);
    assert!(line.contains("reason=client DISCONNECT 0x00"), "{line}");
    assert!(line.contains(&listener), "{line}");

    // v5, closed by the client without DISCONNECT.
    let mut c = RawClient::connect(broker.addr());
    c.send(&packet::connect_v5("log-b", false, 0));
    let _connack = c.read_packet();
    wait_line(
        &broker,
        &[
            "client connected",
            "client_id=log-b ",
            "protocol=\"5.0\"",
            "clean_start=false",
        ],
    );
    drop(c);
    wait_line(
        &broker,
        &[
            "client disconnected",
            "client_id=log-b ",
            "reason=closed by the client without DISCONNECT",
        ],
    );

    // Keep-alive timeout (1 s keep-alive: closed after 1.5 s).
    let mut c = RawClient::connect(broker.addr());
    c.send(&packet::connect_v311("log-c", true, 1));
    c.expect(&[0x20, 0x02, 0x00, 0x00]);
    wait_line(
        &broker,
        &[
            "client disconnected",
            "client_id=log-c ",
            "reason=keep-alive timeout",
        ],
    );

    // Takeover.
    let _first = RawClient::connect_v311(broker.addr(), "log-d");
    let _second = RawClient::connect_v311(broker.addr(), "log-d");
    wait_line(
        &broker,
        &[
            "client disconnected",
            "client_id=log-d ",
            "reason=session taken over by a new connection",
        ],
    );

    // Protocol violation: a second CONNECT, at warn with what and the code.
    let mut c = RawClient::connect_v311(broker.addr(), "log-e");
    c.send(&packet::connect_v311("log-e", true, 30));
    let line = wait_line(&broker, &["protocol violation", "client_id=log-e "]);
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("reason_code=0x82"), "{line}");
    assert!(line.contains("what=\"packet not allowed now"), "{line}");
}

#[test]
fn shutdown_is_a_logged_reason() {
    let broker = Broker::start(&bin(), &[]);
    let _c = RawClient::connect_v311(broker.addr(), "log-shutdown");
    wait_line(&broker, &["client connected", "client_id=log-shutdown "]);
    broker.signal(libc::SIGTERM);
    wait_line(
        &broker,
        &[
            "client disconnected",
            "client_id=log-shutdown ",
            "reason=server shutdown",
        ],
    );
}

#[test]
fn log_connections_false_writes_no_connection_lines() {
    let config = temp_config("quiet.toml", "[runtime]\nlog_connections = false\n");
    let broker = Broker::start(&bin(), &["--config", &config]);
    let mut c = RawClient::connect_v311(broker.addr(), "quiet");
    c.send(&[0xE0, 0x00]);
    // A client that connects after it, on a broker that logs, would be
    // logged within milliseconds; give this one a generous second.
    thread::sleep(Duration::from_secs(1));
    let log = broker.log();
    assert!(!log.contains("client connected"), "{log}");
    assert!(!log.contains("client disconnected"), "{log}");
    assert!(!log.contains("quiet"), "{log}");
}

#[test]
fn json_format_writes_one_object_per_line_with_the_fields() {
    let config = temp_config("json.toml", "[runtime]\nlog_format = \"json\"\n");
    let broker = Broker::start(&bin(), &["--config", &config]);
    let mut c = RawClient::connect_v311(broker.addr(), "json-a");
    c.send(&[0xE0, 0x00]);
    let line = wait_line(&broker, &["client disconnected", "json-a"]);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{line}");
    assert_eq!(v["message"], "client disconnected", "{line}");
    assert_eq!(v["client_id"], "json-a", "{line}");
    assert_eq!(v["reason"], "client DISCONNECT 0x00", "{line}");
    let line = wait_line(&broker, &["client connected", "json-a"]);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["protocol"], "3.1.1", "{line}");
    assert_eq!(v["keep_alive_s"], 60, "{line}");
    for line in broker.log().lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON line: {line}"
        );
    }
}

#[test]
fn a_connection_storm_is_rate_limited_with_a_suppressed_summary() {
    let config = temp_config(
        "storm.toml",
        "[runtime]\nshards = 1\nlog_connections_max_lines_per_s = 3\n",
    );
    let broker = Broker::start_with_args(
        &bin(),
        &["serve", "--listen", "127.0.0.1:0", "--config", &config],
    );
    for i in 0..20 {
        let mut c = RawClient::connect_v311(broker.addr(), &format!("storm-{i}"));
        c.send(&[0xE0, 0x00]);
    }
    thread::sleep(Duration::from_millis(1200));
    let _late = RawClient::connect_v311(broker.addr(), "storm-late");
    let line = wait_line(&broker, &["connection log lines suppressed"]);
    assert!(line.contains(" WARN "), "{line}");
    let log = broker.log();
    let logged = log
        .lines()
        .filter(|l| l.contains("client connected") || l.contains("client disconnected"))
        .count();
    // 40 records in the first second, at most 3 written per window (the
    // storm may straddle two windows).
    assert!(logged <= 3 * 2 + 1, "{logged} lines:\n{log}");
    let suppressed: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("suppressed="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {line}"));
    assert!(suppressed >= 20, "{line}");
}
