//! Black-box tests of `ringmq acl add|remove|list|check` and of the broker
//! started with `[auth] acl_file`.

use std::path::PathBuf;
use std::time::Duration;

use ringmq_tests::{binary, run_to_exit};

const EXIT_LIMIT: Duration = Duration::from_secs(20);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

/// A fresh directory for one test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmq-acl-test-{}-{test}", std::process::id()));
    // Left over from an earlier run with the same pid: start clean.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn acl(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["acl"];
    all.extend_from_slice(args);
    let (status, out, err) = run_to_exit(&bin(), &all, EXIT_LIMIT);
    (status.code(), out, err)
}

#[test]
fn add_list_check_remove() {
    let dir = temp_dir("edit");
    let file = dir.join("acl");
    let f = file.to_str().unwrap_or_default();

    let (code, out, err) = acl(&["add", f, "--user", "alice", "readwrite", "alice/#"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("added for user alice: topic readwrite alice/#"),
        "{out}"
    );
    let (code, _, err) = acl(&["add", f, "--user", "alice", "deny", "alice/secret/#"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = acl(&["add", f, "--pattern", "read", "devices/%c/#"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = acl(&["add", f, "read", "public/#"]);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        text,
        "topic read public/#\nuser alice\ntopic readwrite alice/#\ntopic deny alice/secret/#\npattern read devices/%c/#\n"
    );

    let (code, out, _) = acl(&["list", f]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("    3  user alice"), "{out}");
    let (_, out, _) = acl(&["list", f, "--user", "alice"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out, _) = acl(&["list", f, "--anonymous"]);
    assert_eq!(
        out.trim_end(),
        format!("{:>5}  {:<24}  topic read public/#", 1, "anonymous clients")
    );

    // check: exit 0 allowed, 1 denied; the deciding rule and its line.
    let (code, out, _) = acl(&["check", f, "--user", "alice", "write", "alice/x"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("allowed: write alice/x"), "{out}");
    assert!(out.contains("by line 3: topic readwrite alice/#"), "{out}");
    let (code, out, _) = acl(&["check", f, "--user", "alice", "read", "alice/secret/k"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("denied") && out.contains("by line 4: topic deny alice/secret/#"),
        "{out}"
    );
    let (code, out, _) = acl(&["check", f, "--client", "d1", "read", "devices/d1/t"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("by line 5: pattern read devices/%c/#"),
        "{out}"
    );
    let (code, out, _) = acl(&["check", f, "--user", "bob", "write", "public/x"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no rule grants it"), "{out}");
    let (code, out, _) = acl(&["check", f, "--user", "alice", "subscribe", "#"]);
    assert_eq!(code, Some(1), "{out}");

    let (code, out, err) = acl(&["remove", f, "--user", "alice", "deny", "alice/secret/#"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("removed line 4"), "{out}");
    let (code, _, _) = acl(&["check", f, "--user", "alice", "read", "alice/secret/k"]);
    assert_eq!(code, Some(0));
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn errors_are_clear() {
    let dir = temp_dir("errors");
    let file = dir.join("acl");
    let f = file.to_str().unwrap_or_default();
    std::fs::write(&file, "topic read a\nuser bob\ntopik write b\n")
        .unwrap_or_else(|e| panic!("{e}"));

    let (code, _, err) = acl(&["check", f, "read", "a"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("ACL file {f}: line 3: unknown keyword `topik`")),
        "{err}"
    );
    let (code, _, err) = acl(&["add", f, "read", "x"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("the file is invalid, fix it first: line 3"),
        "{err}"
    );

    std::fs::write(&file, "topic read a\n").unwrap_or_else(|e| panic!("{e}"));
    let (code, _, err) = acl(&["add", f, "reed", "x"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown access `reed`"), "{err}");
    let (code, _, err) = acl(&["add", f, "read", "x/#/y"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("rule refused: invalid topic filter `x/#/y`"),
        "{err}"
    );
    let (code, _, err) = acl(&["add", f, "read", "a"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("already there (line 1"), "{err}");
    let (code, _, err) = acl(&["remove", f, "--user", "zed", "read", "a"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no rule `topic read a` for user zed"), "{err}");
    let (code, _, err) = acl(&["check", f, "publish", "a"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown action `publish`"), "{err}");
    let (code, _, err) = acl(&["add", f, "--user", "a", "--pattern", "read", "a"]);
    assert_eq!(code, Some(2), "{err}");
    let missing = dir.join("missing");
    let (code, _, err) = acl(&["list", missing.to_str().unwrap_or_default()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read ACL file"), "{err}");
    // A failed edit leaves the file as it was.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "topic read a\n"
    );
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}

// ------------------------------------------------- the broker with an ACL

use ringmq_tests::{client_id_on_shard, packet, Broker, RawClient};

const BROKER_ACL: &str = "\
user root
topic readwrite #
user alice
topic readwrite alice/#
topic deny alice/secret/#
user watcher
topic subscribe #
topic read alice/#
topic deny alice/secret/#
";

/// CONNECT v3.1.1 with a user name; expects CONNACK accepted.
fn connect_user(addr: std::net::SocketAddr, client_id: &str, user: &str) -> RawClient {
    let string = |s: &str| {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut body = string("MQTT");
    body.extend_from_slice(&[4, 0x80 | 0x02, 0, 60]);
    body.extend(string(client_id));
    body.extend(string(user));
    let mut c = RawClient::connect(addr);
    c.send(&packet::frame(0x10, &body));
    c.expect(&[0x20, 0x02, 0x00, 0x00]);
    c
}

/// SUBSCRIBE one filter at QoS 0; the SUBACK return code.
fn subscribe(c: &mut RawClient, pid: u16, filter: &str) -> u8 {
    c.send(&packet::subscribe_v311(pid, filter, 0));
    let ack = c.read_packet();
    assert_eq!(
        ack.get(..4),
        Some(&[0x90, 3, (pid >> 8) as u8, pid as u8][..]),
        "SUBACK"
    );
    ack[4]
}

/// PUBLISH at QoS 1, expects PUBACK (v3.1.1 acknowledges denied ones too).
fn publish_qos1(c: &mut RawClient, pid: u16, topic: &str, retain: bool) {
    c.send(&packet::publish_v311(topic, b"m", 1, pid, retain));
    c.expect(&[0x40, 0x02, (pid >> 8) as u8, pid as u8]);
}

/// Topics of the PUBLISH packets received up to and including `last`.
fn topics_until(c: &mut RawClient, last: &str) -> Vec<String> {
    let mut topics = Vec::new();
    loop {
        let p = c.read_packet();
        assert_eq!(p[0] & 0xf0, 0x30, "PUBLISH expected, got {:02x?}", p);
        // Remaining length is one byte in these tests (short packets).
        let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
        let topic = String::from_utf8_lossy(&p[4..4 + len]).into_owned();
        topics.push(topic.clone());
        if topic == last {
            return topics;
        }
    }
}

#[test]
fn broker_applies_the_acl_and_reloads_it_on_sighup() {
    let dir = temp_dir("broker");
    let acl_path = dir.join("acl");
    std::fs::write(&acl_path, BROKER_ACL).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("ringmq.toml");
    std::fs::write(
        &config,
        format!("[auth]\nacl_file = {:?}\n", acl_path.display().to_string()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let broker = Broker::start(&bin(), &["--config", config.to_str().unwrap_or_default()]);
    let addr = broker.addr();

    // Retained messages, one the watcher may read and one it may not; QoS 1
    // so PUBACK means every shard stored them.
    let mut root = connect_user(addr, "root", "root");
    publish_qos1(&mut root, 1, "alice/r", true);
    publish_qos1(&mut root, 2, "alice/secret/r", true);

    // Watchers on both shards subscribe to `#`: allowed (subscribe #), and
    // only readable topics arrive, retained ones included.
    let mut watchers: Vec<RawClient> = (0..2)
        .map(|shard| connect_user(addr, &client_id_on_shard("w", shard, 2), "watcher"))
        .collect();
    for w in &mut watchers {
        assert_eq!(subscribe(w, 1, "#"), 0);
        assert_eq!(topics_until(w, "alice/r"), ["alice/r"]);
        assert_eq!(
            subscribe(w, 2, "$SYS/#"),
            0x80,
            "not covered by `subscribe #`"
        );
    }

    // alice: her own denied topic is dropped (PUBACK all the same, v3.1.1),
    // the connection stays; a subscribe outside her rules gets 0x80.
    let mut alice = connect_user(addr, &client_id_on_shard("alice", 0, 2), "alice");
    assert_eq!(subscribe(&mut alice, 1, "bob/#"), 0x80);
    publish_qos1(&mut alice, 2, "alice/secret/x", false);
    publish_qos1(&mut alice, 3, "alice/x", false);
    // root may write anything; the watchers may not read alice/secret/...
    publish_qos1(&mut root, 3, "alice/secret/y", false);
    publish_qos1(&mut root, 4, "alice/end", false);
    for w in &mut watchers {
        assert_eq!(topics_until(w, "alice/end"), ["alice/x", "alice/end"]);
    }

    // Reload: a bad file is refused and the ACL in force stays.
    std::fs::write(&acl_path, "user watcher\ntopic raed #\n").unwrap_or_else(|e| panic!("{e}"));
    broker.signal(libc::SIGHUP);
    wait_for_log(&broker, "reload refused");
    assert!(broker.log().contains("line 2"), "{}", broker.log());
    // A good file opens alice/secret/# to the watchers.
    std::fs::write(
        &acl_path,
        format!("{BROKER_ACL}user watcher\ntopic read alice/secret/#\n").replace(
            "user watcher\ntopic subscribe #\ntopic read alice/#\ntopic deny alice/secret/#\n",
            "",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    broker.signal(libc::SIGHUP);
    wait_for_log(&broker, "reload: applied");
    // Each shard picks it up at its next look (every ACL_RELOAD_POLL_MS,
    // 250 ms) and says so; the messages below are judged by the new rules
    // only after both did.
    wait_for_log_lines(&broker, "ACL reloaded", 2);
    publish_qos1(&mut root, 5, "alice/secret/z", false);
    publish_qos1(&mut root, 6, "alice/end2", false);
    for w in &mut watchers {
        // Connected watchers are checked against the new rules: they may
        // read alice/secret/ now, and no longer alice/end2 (no grant left).
        let got = topics_until(w, "alice/secret/z");
        assert_eq!(got, ["alice/secret/z"]);
        w.send(&packet::PINGREQ);
        w.expect(&packet::PINGRESP);
    }
    alice.send(&packet::PINGREQ);
    alice.expect(&packet::PINGRESP);
    let (status, _) = broker.stop();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}

fn wait_for_log(broker: &Broker, needle: &str) {
    wait_for_log_lines(broker, needle, 1);
}

/// Waits until `count` lines of the broker's log contain `needle`.
fn wait_for_log_lines(broker: &Broker, needle: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.log().lines().filter(|l| l.contains(needle)).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {count} lines with `{needle}` in the log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bad_acl_file_stops_the_start_with_its_line() {
    let dir = temp_dir("bad-start");
    let acl_path = dir.join("acl");
    std::fs::write(&acl_path, "user a\ntopic read a/#/b\n").unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("ringmq.toml");
    std::fs::write(
        &config,
        format!("[auth]\nacl_file = {:?}\n", acl_path.display().to_string()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (status, _, err) = run_to_exit(
        &bin(),
        &[
            "--config",
            config.to_str().unwrap_or_default(),
            "--listen",
            "127.0.0.1:0",
        ],
        EXIT_LIMIT,
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("auth.acl_file: ACL file")
            && err.contains("line 2: invalid topic filter `a/#/b`"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}

/// The ACL matrix as mosquitto_pub / mosquitto_sub (MQTT 5 and 3.1.1)
/// see it: a denied publish is reported "Not authorized" in v5 and
/// silently dropped in v3.1.1, denied subscriptions are refused, a `#`
/// subscriber gets only what it may read (retained included), and a `%c`
/// pattern gives a client its own subtree.
#[test]
fn mosquitto_clients_see_the_acl() {
    use std::process::Command;
    let installed = Command::new("mosquitto_pub").arg("--help").output().is_ok();
    if !installed {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mosquitto_pub is not installed; .ci/run must install mosquitto-clients"
        );
        eprintln!("SKIPPED (not in CI): mosquitto_pub not installed");
        return;
    }
    let dir = temp_dir("mosquitto");
    let acl_path = dir.join("acl");
    std::fs::write(
        &acl_path,
        format!("{BROKER_ACL}pattern readwrite devices/%c/#\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("ringmq.toml");
    std::fs::write(
        &config,
        format!("[auth]\nacl_file = {:?}\n", acl_path.display().to_string()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let broker = Broker::start(&bin(), &["--config", config.to_str().unwrap_or_default()]);
    let port = broker.port().to_string();
    let run = |program: &str, version: &str, args: &[&str]| {
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-V", version];
        all.extend_from_slice(args);
        let out = Command::new(program)
            .args(&all)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let publish = |version: &str, user: &str, topic: &str, retain: bool| {
        let mut args = vec!["-u", user, "-t", topic, "-m", "m", "-q", "1"];
        if retain {
            args.push("-r");
        }
        run("mosquitto_pub", version, &args)
    };

    for topic in ["alice/r", "alice/secret/r"] {
        let (code, _, err) = publish("mqttv5", "root", topic, true);
        assert_eq!(code, Some(0), "{err}");
    }
    let (code, _, err) = publish("mqttv5", "alice", "alice/secret/x", false);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("Not authorized"), "v5 PUBACK 0x87: {err:?}");
    let (code, _, err) = publish("mqttv311", "alice", "alice/secret/x", false);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("failed"), "v3.1.1: dropped silently: {err:?}");

    for version in ["mqttv5", "mqttv311"] {
        let (_, _, err) = run(
            "mosquitto_sub",
            version,
            &["-u", "alice", "-t", "bob/#", "-W", "2"],
        );
        assert!(
            err.contains("All subscription requests were denied"),
            "{version}: {err:?}"
        );
        // Retained: only the readable one, then nothing until the timeout.
        let (_, out, err) = run(
            "mosquitto_sub",
            version,
            &["-u", "watcher", "-t", "#", "-v", "-W", "2"],
        );
        assert_eq!(out, "alice/r m\n", "{version}: {err}");
    }
    let (code, _, err) = run(
        "mosquitto_pub",
        "mqttv5",
        &[
            "-i",
            "dev9",
            "-t",
            "devices/dev9/state",
            "-m",
            "up",
            "-r",
            "-q",
            "1",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let (_, out, err) = run(
        "mosquitto_sub",
        "mqttv5",
        &[
            "-i",
            "dev9",
            "-t",
            "devices/dev9/#",
            "-v",
            "-C",
            "1",
            "-W",
            "5",
        ],
    );
    assert_eq!(out, "devices/dev9/state up\n", "{err}");
    let (_, _, err) = run(
        "mosquitto_sub",
        "mqttv5",
        &["-i", "dev8", "-t", "devices/dev9/#", "-W", "2"],
    );
    assert!(
        err.contains("All subscription requests were denied"),
        "{err:?}"
    );
    let (status, _) = broker.stop();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}
