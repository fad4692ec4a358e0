//! Black-box tests of authentication with a password file: the real
//! binary, raw MQTT bytes, `ringmq passwd` to make the file. Right and
//! wrong passwords, unknown users and anonymous clients in v3.1.1 and v5,
//! start-up errors, SIGHUP reload, and the `ringmq passwd` command itself.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ringmq_tests::{binary, packet, run_to_exit, Broker, RawClient};

const EXIT_LIMIT: Duration = Duration::from_secs(30);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringmq-auth-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    d
}

fn path_of(name: &str) -> PathBuf {
    let p = dir().join(name);
    if p.exists() {
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("{e}"));
    }
    p
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `ringmq passwd ARGS` -> (exit code, stderr).
fn passwd(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["passwd"];
    all.extend_from_slice(args);
    let (status, _out, err) = run_to_exit(&bin(), &all, EXIT_LIMIT);
    (status.code(), err)
}

/// `ringmq passwd --password-stdin ARGS` with `input` on stdin.
fn passwd_stdin(args: &[&str], input: &str) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .arg("passwd")
        .arg("--password-stdin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    child
        .stdin
        .take()
        .map(|mut i| i.write_all(input.as_bytes()))
        .transpose()
        .unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A password file with alice/secret and bob/hunter2.
fn password_file(name: &str) -> PathBuf {
    let f = path_of(name);
    let (code, err) = passwd(&["-c", "-b", &s(&f), "alice", "secret"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = passwd_stdin(&[&s(&f), "bob"], "hunter2\n");
    assert_eq!(code, Some(0), "{err}");
    f
}

fn config(name: &str, text: &str) -> String {
    let p = path_of(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
    s(&p)
}

fn closed_broker(name: &str) -> (Broker, PathBuf) {
    let f = password_file(&format!("{name}.passwd"));
    let cfg = config(
        &format!("{name}.toml"),
        &format!(
            "[auth]\nallow_anonymous = false\npassword_file = \"{}\"\n",
            s(&f)
        ),
    );
    (Broker::start(&bin(), &["--config", &cfg]), f)
}

/// How long a login may wait for its CONNACK.
const LOGIN_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// CONNACK's return code (v3.1.1) or reason code (v5) for a login.
fn login(broker: &Broker, level: u8, id: &str, user: Option<&str>, pw: Option<&str>) -> u8 {
    let mut c = RawClient::connect(broker.addr());
    c.send(&packet::connect_login(level, id, user, pw));
    // The argon2 check runs on a helper thread at the lowest priority: on
    // a loaded machine it waited past the usual 5 s once.
    let ack = c.read_packet_within(LOGIN_ANSWER_WAIT);
    assert_eq!(ack.first(), Some(&0x20), "CONNACK: {ack:02x?}");
    let code = ack.get(3).copied().unwrap_or(0xff);
    if code == 0 {
        c.send(&packet::PINGREQ);
        c.expect(&packet::PINGRESP);
    } else {
        // A refused login is closed ([MQTT-3.1.4-2] / 3.1.1 section 3.2.2.3).
        assert!(c.expect_closed().is_empty());
    }
    code
}

#[test]
fn v311_right_password_accepted_wrong_unknown_and_anonymous_refused() {
    let (broker, _) = closed_broker("v311");
    assert_eq!(login(&broker, 4, "c1", Some("alice"), Some("secret")), 0);
    assert_eq!(login(&broker, 4, "c2", Some("bob"), Some("hunter2")), 0);
    // 3.1.1 section 3.2.2.3: 4 = bad user name or password, 5 = not authorized.
    assert_eq!(login(&broker, 4, "c3", Some("alice"), Some("wrong")), 4);
    assert_eq!(login(&broker, 4, "c4", Some("mallory"), Some("secret")), 4);
    assert_eq!(login(&broker, 4, "c5", Some("alice"), None), 4);
    assert_eq!(login(&broker, 4, "c6", None, None), 5);
    wait_for_log(&broker, "login refused");
    wait_for_log(&broker, "client_id=c3");
    // The log names the remote address.
    wait_for_log(&broker, "peer=Some(127.0.0.1:");
}

#[test]
fn v5_right_password_accepted_wrong_unknown_and_anonymous_refused() {
    let (broker, _) = closed_broker("v5");
    assert_eq!(login(&broker, 5, "c1", Some("alice"), Some("secret")), 0);
    assert_eq!(login(&broker, 5, "c3", Some("alice"), Some("wrong")), 0x86);
    assert_eq!(login(&broker, 5, "c4", Some("mallory"), Some("x")), 0x86);
    assert_eq!(login(&broker, 5, "c6", None, None), 0x87);
}

#[test]
fn sighup_reloads_the_password_file() {
    let (broker, file) = closed_broker("reload");
    assert_eq!(login(&broker, 4, "c1", Some("carol"), Some("pw3")), 4);
    let (code, err) = passwd(&["-b", &s(&file), "carol", "pw3"]);
    assert_eq!(code, Some(0), "{err}");
    broker.signal(libc::SIGHUP);
    wait_for_log(&broker, "3 users");
    assert_eq!(login(&broker, 4, "c2", Some("carol"), Some("pw3")), 0);
    // A bad file is refused and the old one kept.
    std::fs::write(&file, "carol:not-a-hash\n").unwrap_or_else(|e| panic!("{e}"));
    broker.signal(libc::SIGHUP);
    wait_for_log(&broker, "reload refused");
    assert_eq!(login(&broker, 4, "c3", Some("carol"), Some("pw3")), 0);
}

#[test]
fn allow_anonymous_false_without_a_password_file_is_a_startup_error() {
    let cfg = config("closed.toml", "[auth]\nallow_anonymous = false\n");
    let (status, _out, err) = run_to_exit(&bin(), &["--config", &cfg], EXIT_LIMIT);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("auth.allow_anonymous = false, but no way to authenticate"),
        "{err}"
    );
    assert!(err.contains("auth.password_file"), "{err}");
}

#[test]
fn a_bad_or_missing_password_file_stops_the_start_naming_the_line() {
    let bad = path_of("bad.passwd");
    std::fs::write(&bad, "# ok\nalice\n").unwrap_or_else(|e| panic!("{e}"));
    let cfg = config(
        "bad.toml",
        &format!("[auth]\npassword_file = \"{}\"\n", s(&bad)),
    );
    let (status, _out, err) = run_to_exit(&bin(), &["--config", &cfg], EXIT_LIMIT);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("password file {}: line 2", s(&bad))),
        "{err}"
    );
    let cfg = config(
        "missing.toml",
        "[auth]\npassword_file = \"/nonexistent/ringmq.passwd\"\n",
    );
    let (status, _out, err) = run_to_exit(&bin(), &["--config", &cfg], EXIT_LIMIT);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot read password file /nonexistent/ringmq.passwd"),
        "{err}"
    );
}

#[test]
fn passwd_creates_changes_deletes_with_mode_0600_and_clear_errors() {
    let f = path_of("cli.passwd");
    let (code, err) = passwd(&["-b", &s(&f), "alice", "pw"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("does not exist (use -c to create it)"),
        "{err}"
    );

    let (code, err) = passwd(&["-c", "-b", &s(&f), "alice", "pw"]);
    assert_eq!(code, Some(0), "{err}");
    let mode = std::fs::metadata(&f)
        .map(|m| m.permissions().mode() & 0o777)
        .ok();
    assert_eq!(mode, Some(0o600));
    let text = std::fs::read_to_string(&f).unwrap_or_default();
    assert!(text.starts_with("alice:$argon2id$v=19$"), "{text}");

    let (code, err) = passwd(&["-b", "--scram", &s(&f), "bob", "pw2"]);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&f).unwrap_or_default();
    assert!(
        text.contains("\nbob:$argon2id$") && text.contains(":scram-sha-256$4096$"),
        "{text}"
    );

    let (code, err) = passwd(&["-D", &s(&f), "alice"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = passwd(&["-D", &s(&f), "alice"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("user \"alice\" is not in"), "{err}");

    let (code, err) = passwd(&["-b", &s(&f), "a:b", "pw"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad user name \"a:b\""), "{err}");
    // No terminal (stdin is /dev/null here) and no --password-stdin / -b.
    let (code, err) = passwd(&[&s(&f), "carol"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no terminal"), "{err}");
    let (code, err) = passwd_stdin(&[&s(&f), "carol"], "\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("empty password refused"), "{err}");
    // -c with a password but without -b is refused before touching the file.
    let (code, err) = passwd(&["-c", &s(&f), "carol", "pw"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs -b"), "{err}");
    let text = std::fs::read_to_string(&f).unwrap_or_default();
    assert!(text.starts_with("bob:"), "file unchanged: {text}");
}

#[test]
fn repeated_failures_from_one_address_are_slowed_down() {
    let (broker, _) = closed_broker("throttle");
    // The first failures (engine::auth::throttle::FREE_FAILURES = 3) are
    // answered at once; from then on each answer is held back, doubling
    // from 250 ms.
    for i in 0..3 {
        assert_eq!(
            login(&broker, 4, &format!("f{i}"), Some("alice"), Some("x")),
            4
        );
    }
    let start = std::time::Instant::now();
    assert_eq!(login(&broker, 4, "f3", Some("alice"), Some("x")), 4);
    let fourth = start.elapsed();
    assert!(fourth >= Duration::from_millis(250), "{fourth:?}");
    let start = std::time::Instant::now();
    assert_eq!(login(&broker, 4, "f4", Some("alice"), Some("x")), 4);
    let fifth = start.elapsed();
    assert!(fifth >= Duration::from_millis(500), "{fifth:?}");
    wait_for_log(&broker, "delayed_ms=500");
}

/// Waits (bounded) until the broker's log, read by another thread, has `text`.
fn wait_for_log(broker: &Broker, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !broker.log().contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
