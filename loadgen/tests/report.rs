//! Self-describing results and the HTML report, against the real broker:
//! `--json` carries the date, command line, versions (loadgen's and the
//! broker's `$SYS/broker/version`), machine, parameters and the per-second
//! series; `loadgen report a.json b.json -o cmp.html` compares two runs
//! with metadata, the percentile chart, throughput and latency over time
//! and the summary table; headless Chromium renders it to a screenshot
//! (required when CI=true).
//!
//! The broker binary is `RINGMQ_BIN`, else the `ringmq` built next to this
//! loadgen; a missing binary fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{ok, ringmq, LOADGEN};
use ringmq_tests::Broker;
use serde_json::Value;
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long Chromium may take to render the screenshot, in s.
const CHROMIUM_TIMEOUT_S: u64 = 60;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-report-{name}-{}", std::process::id()));
    ok(std::fs::create_dir_all(&dir));
    dir
}

/// A broker that publishes `$SYS` every second (so it answers the probe).
fn broker(dir: &Path) -> Broker {
    let config = dir.join("ringmq.toml");
    ok(std::fs::write(
        &config,
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[runtime]\nsys_interval_s = 1\n",
    ));
    let config = config.display().to_string();
    let b = Broker::start_with_args(&ringmq(), &["serve", "--config", &config, "--shards", "2"]);
    // A shard's first $SYS publication comes one interval after its first
    // activity: one connection, then a little more than the interval.
    let port = b.port().to_string();
    let out = loadgen(&[
        "conn",
        "--port",
        &port,
        "--count",
        "1",
        "--duration",
        "0",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(1_500));
    b
}

fn loadgen(args: &[&str]) -> Output {
    ok(Command::new(LOADGEN).args(args).output())
}

/// Runs a short pubsub with `extra` and returns its JSON line.
fn run(port: &str, label: &str, extra: &[&str]) -> (String, Value) {
    let mut args = vec![
        "pubsub",
        "--port",
        port,
        "--threads",
        "1",
        "--pubs",
        "1",
        "--subs",
        "2",
        "--rate",
        "300",
        "--warmup",
        "0.2",
        "--duration",
        "2",
        "--label",
        label,
        "--json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = loadgen(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let v = ok(serde_json::from_str(&line));
    (line, v)
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn json_is_self_describing_and_the_report_compares_runs() {
    let dir = scratch("compare");
    let broker = broker(&dir);
    let port = broker.port().to_string();
    let (line_a, a) = run(&port, "run-a", &[]);
    let (line_b, b) = run(&port, "run-b", &["--protocol-version", "5", "--qos", "1"]);

    // Self-describing JSON.
    let meta = &a["meta"];
    let date = meta["date_utc"].as_str().unwrap_or_default();
    assert!(is_rfc3339_utc(date), "{date}");
    let command = meta["command"].as_str().unwrap_or_default();
    assert!(
        command.contains("pubsub --port") && command.ends_with("--label run-a --json --quiet"),
        "{command}"
    );
    assert_eq!(meta["loadgen_version"], env!("CARGO_PKG_VERSION"), "{meta}");
    // The broker answered by the second run at the latest (its $SYS
    // timer starts with the first activity of a shard).
    let version = b["meta"]["broker_version"].as_str().unwrap_or_default();
    assert!(version.starts_with("ringmq "), "{}", b["meta"]);
    assert!(meta["machine"]["cores"].as_u64().unwrap_or(0) > 0, "{meta}");
    assert!(!meta["machine"]["kernel"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert!(!meta["machine"]["cpu_model"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    let params = &meta["parameters"];
    for (key, want) in [
        ("inflight", "64"),
        ("retain", "false"),
        ("subs", "2"),
        ("rate_msgs_per_s_per_pub", "300"),
        ("duration_s", "2"),
        ("topology", "fanout"),
    ] {
        assert_eq!(params[key], want, "{key} in {params}");
    }
    assert_eq!(
        (a["mqtt_version"].as_u64(), a["qos"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(
        (b["mqtt_version"].as_u64(), b["qos"].as_u64()),
        (Some(5), Some(1))
    );

    // The per-second series: one entry per measured second, no more.
    let series = a["per_second"].as_array().cloned().unwrap_or_default();
    assert_eq!(series.len(), 2, "{series:?}");
    let received: u64 = series
        .iter()
        .map(|p| p["msgs_received"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(received, a["msgs_received"].as_u64().unwrap_or(0), "{a}");
    assert!(series
        .iter()
        .all(|p| p["latency_us_p99"].as_f64().unwrap_or(0.0)
            >= p["latency_us_p50"].as_f64().unwrap_or(f64::MAX)));
    assert!(
        series[0]["msgs_sent"].as_u64().unwrap_or(0) >= 250,
        "{series:?}"
    );

    // The comparison page.
    let (fa, fb, html_path) = (dir.join("a.json"), dir.join("b.json"), dir.join("cmp.html"));
    ok(std::fs::write(&fa, line_a + "\n"));
    ok(std::fs::write(&fb, line_b + "\n"));
    let out = loadgen(&[
        "report",
        &fa.display().to_string(),
        &fb.display().to_string(),
        "-o",
        &html_path.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = ok(std::fs::read_to_string(&html_path));
    for needle in [
        date,
        "run-a",
        "run-b",
        version,
        "<th>MQTT</th>",
        "<th>QoS</th>",
        "<td>3.1.1</td>",
        "<td>5.0</td>",
        "class=\"chart latency-percentiles\"",
        "class=\"chart throughput-over-time\"",
        "class=\"chart latency-over-time\"",
        "inflight=64",
        "lost 0 · duplicated 0 · reordered 0",
    ] {
        assert!(html.contains(needle), "{needle} missing from the report");
    }
    assert!(!html.contains("<script") && !html.contains("https://"));

    screenshot(&dir, &html_path);
    drop(broker);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("cannot remove {}: {e}", dir.display());
    }
}

/// Headless Chromium renders the page; the PNG must be a real picture
/// (several KiB: a blank page compresses to almost nothing).
fn screenshot(dir: &Path, html: &Path) {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{CHROMIUM} is missing (CI=true): install Debian's `chromium` (.ci/run does)"
        );
        eprintln!("note: {CHROMIUM} not installed; the screenshot check did not run");
        return;
    }
    let png = dir.join("report.png");
    let out = ok(Command::new("timeout")
        .arg(CHROMIUM_TIMEOUT_S.to_string())
        .arg(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,2600",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output());
    assert!(
        out.status.success(),
        "chromium: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = ok(std::fs::read(&png));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 30_000,
        "PNG of {} bytes: a blank page?",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("LOADGEN_REPORT_PNG") {
        ok(std::fs::copy(&png, keep));
    }
}
