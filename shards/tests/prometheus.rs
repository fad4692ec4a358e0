//! A real Prometheus (Debian's `prometheus` package, installed by
//! `.ci/run`) scrapes ringmq's `/metrics` every second; the test reads
//! the scraped values back through Prometheus's HTTP API
//! (`/api/v1/query`) and compares them with the traffic it sent. With
//! `CI=true` a missing `prometheus` fails the test; elsewhere it prints
//! SKIPPED. Bounded: at most [`SCRAPED_WITHIN`] for the values to arrive.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringmq_tests::http;
use ringmq_tests::{binary, client_id_on_shard, packet, RawClient};

const SHARDS: u16 = 2;
/// How long Prometheus may take to start, scrape and answer with the values.
const SCRAPED_WITHIN: Duration = Duration::from_secs(60);

/// The `prometheus` program, or why not.
fn prometheus() -> Result<PathBuf, String> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .ok_or_else(|| "prometheus is not installed (Debian: apt-get install prometheus)".into())
}

/// Kills Prometheus when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            eprintln!("stopping prometheus: {e}");
        }
        if let Err(e) = self.0.wait() {
            eprintln!("waiting for prometheus: {e}");
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` over HTTP/1.0 (no chunked answer), the body, or an error
/// (Prometheus not up yet).
fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no head")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_string());
    }
    Ok(body.to_string())
}

/// The value of an instant query with one result, if it has one yet.
fn query(prom: SocketAddr, expr: &str) -> Option<f64> {
    let body = get(prom, &format!("/api/v1/query?query={}", encode(expr))).ok()?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = json.get("data")?.get("result")?.as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0].get("value")?.get(1)?.as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_what_was_sent() {
    let prometheus = match prometheus() {
        Ok(p) => p,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; .ci/run must install it"
            );
            eprintln!("SKIPPED (not in CI): {why}");
            return;
        }
    };
    let bin = binary(env!("CARGO_BIN_EXE_ringmq"));
    let b = http::start(
        &bin,
        "prometheus",
        SHARDS,
        "[runtime]\nsys_interval_s = 0\n",
    );

    // Known traffic: 7 QoS 0 and 3 QoS 1 messages of 4 bytes, from a
    // publisher on shard 1 to a subscriber on shard 0.
    let mut sub = RawClient::connect_v311(b.mqtt, &client_id_on_shard("psub", 0, SHARDS));
    sub.send(&packet::subscribe_v311(1, "m/#", 1));
    assert_eq!(sub.read_packet(), [0x90, 0x03, 0x00, 0x01, 0x01]);
    let mut publisher = RawClient::connect_v311(b.mqtt, &client_id_on_shard("ppub", 1, SHARDS));
    for _ in 0..7 {
        publisher.send(&packet::publish_v311("m/0", b"zero", 0, 0, false));
    }
    for id in 1..=3u16 {
        publisher.send(&packet::publish_v311("m/1", b"once", 1, id, false));
        let [hi, lo] = id.to_be_bytes();
        assert_eq!(publisher.read_packet(), [0x40, 0x02, hi, lo]);
    }
    for _ in 0..10 {
        let p = sub.read_packet();
        if p[0] & 0x06 == 0x02 {
            // Topic "m/1" (2 + 3 bytes) after the 2-byte header, then the id.
            sub.send(&[0x40, 0x02, p[7], p[8]]);
        }
    }

    let dir = b.dir.join("prometheus");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("prometheus.yml");
    let yml = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: ringmq\n    static_configs:\n      - targets: ['{}']\n",
        b.http
    );
    std::fs::write(&config, yml).unwrap_or_else(|e| panic!("{e}"));
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", prometheus.display()));
    let running = Running(child);

    let want = [
        ("up{job=\"ringmq\"}", 1.0),
        ("ringmq_messages_received_total{qos=\"0\"}", 7.0),
        ("ringmq_messages_received_total{qos=\"1\"}", 3.0),
        ("sum(ringmq_messages_sent_total)", 10.0),
        ("sum(ringmq_message_bytes_sent_total)", 40.0),
        ("ringmq_sessions{state=\"online\"}", 2.0),
        ("ringmq_subscriptions", 1.0),
        ("ringmq_publish_latency_seconds_count", 10.0),
        ("ringmq_publish_latency_seconds_bucket{le=\"+Inf\"}", 10.0),
        ("ringmq_shard_messages_received_total{shard=\"1\"}", 10.0),
        ("count(ringmq_ring_occupied_slots)", 2.0),
    ];
    let deadline = Instant::now() + SCRAPED_WITHIN;
    loop {
        let last: Vec<_> = want.iter().map(|(q, _)| (*q, query(prom, q))).collect();
        if want
            .iter()
            .zip(&last)
            .all(|((_, w), (_, got))| *got == Some(*w))
        {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "Prometheus did not report the values within {SCRAPED_WITHIN:?}: {last:?}\n\
                 prometheus log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // A quantile over the scraped histogram is a number (the buckets are
    // cumulative and end with +Inf, or Prometheus would give NaN).
    let p99 = query(
        prom,
        "histogram_quantile(0.99, ringmq_publish_latency_seconds_bucket)",
    );
    assert!(p99.is_some_and(|v| v.is_finite() && v >= 0.0), "{p99:?}");
    drop(running);
    let (status, _) = b.broker.stop();
    assert!(status.success(), "{status:?}");
    if let Err(e) = std::fs::remove_dir_all(Path::new(&b.dir)) {
        eprintln!("cleanup: {e}");
    }
}
