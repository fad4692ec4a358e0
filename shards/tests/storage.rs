//! `storage = "disk"` from the outside: an unusable data directory stops the
//! start with a message naming it; what a broker stored is shown by
//! `ringmq storage inspect` / `export` after it stopped, and refused while
//! it runs; a clean restart brings back a retained message and a
//! persistent session's queued message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ringmq_tests::packet::{connect_v311, publish_v311, subscribe_v311};
use ringmq_tests::{binary, disk_storage_config, run_to_exit, Broker, RawClient};

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmq-storage-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn config(dir: &Path, data_dir: &Path) -> PathBuf {
    disk_storage_config(dir, data_dir, "")
}

#[test]
fn an_unusable_data_dir_stops_the_start_and_is_named() {
    let dir = scratch("unusable");
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
    let cfg = config(&dir, &file);
    let (status, _, stderr) = run_to_exit(
        &bin(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "-c",
            cfg.to_str().unwrap_or_default(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("storage.data_dir") && stderr.contains("not-a-dir"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn stored_state_survives_a_restart_and_the_tools_show_it() {
    let dir = scratch("restart");
    let data = dir.join("data");
    let cfg = config(&dir, &data);
    let cfg = cfg.to_str().unwrap_or_default();
    let broker = Broker::start(&bin(), &["-c", cfg]);
    // A persistent subscriber, then offline; a retained message and a QoS 1
    // message for it, both acknowledged.
    RawClient::park_subscriber(broker.addr(), "keeper", "kept/#");
    let mut p = RawClient::connect(broker.addr());
    p.send(&connect_v311("writer", true, 60));
    p.expect(&[0x20, 0x02, 0x00, 0x00]);
    p.send(&publish_v311("kept/retained", b"r1", 1, 1, true));
    p.expect(&[0x40, 0x02, 0x00, 0x01]);
    p.send(&publish_v311("kept/queued", b"q1", 1, 2, false));
    p.expect(&[0x40, 0x02, 0x00, 0x02]);
    // The tools refuse the directory while the broker holds it.
    let data_arg = data.to_str().unwrap_or_default();
    let (status, _, stderr) = run_to_exit(
        &bin(),
        &["storage", "inspect", "--data-dir", data_arg],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    let (status, _) = broker.stop();
    assert!(status.success());

    let (status, out, stderr) = run_to_exit(
        &bin(),
        &["storage", "inspect", "--data-dir", data_arg],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stderr}");
    assert!(out.contains("sessions: 1"), "{out}");
    // Both publishes matched kept/#: two queued messages.
    assert!(out.contains("keeper  2 messages"), "{out}");
    assert!(out.contains("retained messages: 1"), "{out}");
    assert!(out.contains("kept/retained"), "{out}");
    let (status, out, stderr) = run_to_exit(
        &bin(),
        &["storage", "export", "-c", cfg],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stderr}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        stderr.contains(&format!("exported {} records", lines.len())),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"topic\":\"kept/retained\"")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"keyspace\":\"messages\"")
                && l.contains("\"client_id\":\"keeper\"")),
        "{out}"
    );
    let (status, out, stderr) = run_to_exit(
        &bin(),
        &["storage", "compact", "--data-dir", data_arg],
        Duration::from_secs(60),
    );
    assert!(
        status.success() && out.contains("bytes on disk before"),
        "{out}{stderr}"
    );

    // Restart: the session gets its queued message, a new subscriber the
    // retained one.
    let broker = Broker::start(&bin(), &["-c", cfg]);
    assert!(broker.log().contains("storage opened"), "{}", broker.log());
    let mut sub = RawClient::connect(broker.addr());
    sub.send(&connect_v311("keeper", false, 60));
    sub.expect(&[0x20, 0x02, 0x01, 0x00]);
    let first = sub.read_packet();
    let second = sub.read_packet();
    assert!(
        first.ends_with(b"r1") && first[0] & 0xf0 == 0x30,
        "{first:02x?}"
    );
    assert!(
        second.ends_with(b"q1") && second[0] & 0xf0 == 0x30,
        "{second:02x?}"
    );
    let mut fresh = RawClient::connect(broker.addr());
    fresh.send(&connect_v311("fresh", true, 60));
    fresh.expect(&[0x20, 0x02, 0x00, 0x00]);
    fresh.send(&subscribe_v311(1, "kept/retained", 0));
    fresh.expect(&[0x90, 0x03, 0x00, 0x01, 0x00]);
    let retained = fresh.read_packet();
    assert_eq!(retained[0], 0x31, "retained flag: {retained:02x?}");
    assert!(retained.ends_with(b"r1"));
    let (status, _) = broker.stop();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}
