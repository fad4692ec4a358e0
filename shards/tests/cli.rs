//! Black-box tests of the `ringmq` binary's command line, configuration
//! errors, start-up failures and signal handling. Every test is bounded in
//! time (see `ringmq_tests` timeouts) and stops the broker it started.

use std::path::PathBuf;
use std::time::Duration;

use ringmq_tests::{binary, packet, run_to_exit, Broker, RawClient};

const EXIT_LIMIT: Duration = Duration::from_secs(20);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmq-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

#[test]
fn port_in_use_is_a_clear_error_not_a_panic() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = holder
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let (status, _out, err) =
        run_to_exit(&bin(), &["--listen", &addr, "--shards", "2"], EXIT_LIMIT);
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&format!("cannot listen on {addr}")),
        "stderr: {err}"
    );
    assert!(err.to_lowercase().contains("in use"), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
}

#[test]
fn unknown_config_key_names_key_file_and_choices() {
    let path = temp_config("typo.toml", "[limts]\nconnections_max = 5\n");
    let path_s = path.display().to_string();
    let (status, _out, err) = run_to_exit(&bin(), &["--config", &path_s], EXIT_LIMIT);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains(&format!("unknown key `limts` in config {path_s}")),
        "stderr: {err}"
    );
    assert!(
        err.contains("expected one of `listener`, `limits`, `runtime`, `auth`"),
        "stderr: {err}"
    );
}

#[test]
fn wrong_config_type_names_key_and_expected_type() {
    let path = temp_config("type.toml", "[runtime]\nshards = \"two\"\n");
    let path_s = path.display().to_string();
    let (status, _out, err) = run_to_exit(&bin(), &["--config", &path_s], EXIT_LIMIT);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains("wrong type for key `runtime.shards`"),
        "stderr: {err}"
    );
    assert!(err.contains("expected u16"), "stderr: {err}");
}

#[test]
fn missing_config_file_is_reported() {
    let (status, _out, err) = run_to_exit(
        &bin(),
        &["--config", "/nonexistent/ringmq.toml"],
        EXIT_LIMIT,
    );
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains("cannot read config /nonexistent/ringmq.toml"),
        "stderr: {err}"
    );
}

#[test]
fn bad_flag_value_is_a_usage_error() {
    let (status, _out, err) = run_to_exit(&bin(), &["--io", "kqueue"], EXIT_LIMIT);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
}

#[test]
fn default_config_prints_the_embedded_file() {
    let (status, out, _err) = run_to_exit(&bin(), &["default-config"], EXIT_LIMIT);
    assert!(status.success());
    assert_eq!(out, include_str!("../../config/ringmq.toml"));
}

#[test]
fn sigterm_disconnects_v5_clients_with_0x8b_and_exits_0() {
    let broker = Broker::start(&bin(), &[]);
    let mut v5 = RawClient::connect(broker.addr());
    v5.send(&packet::connect_v5("bye-v5", true, 60));
    let connack = v5.read_packet();
    assert_eq!(connack[0], 0x20, "CONNACK");
    let mut v3 = RawClient::connect_v311(broker.addr(), "bye-v3");
    let (status, took) = broker.stop();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(7), "shutdown took {took:?}");
    // v5: DISCONNECT with reason 0x8B (Server shutting down), then EOF.
    let before_close = v5.expect_closed();
    let disconnect = before_close
        .last()
        .unwrap_or_else(|| panic!("no DISCONNECT before close"));
    assert_eq!(disconnect[0], 0xe0, "DISCONNECT");
    assert_eq!(
        disconnect.get(2),
        Some(&0x8b),
        "reason Server shutting down"
    );
    // v3.1.1 has no server DISCONNECT: just closed.
    assert!(v3.expect_closed().is_empty());
}

#[test]
fn sigint_exits_0() {
    let mut broker = Broker::start(&bin(), &[]);
    let _client = RawClient::connect_v311(broker.addr(), "ctrl-c");
    broker.signal(libc::SIGINT);
    let status = broker.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn epoll_driver_serves_and_says_so() {
    let broker = Broker::start(&bin(), &["--io", "epoll"]);
    let mut c = RawClient::connect_v311(broker.addr(), "epoll-client");
    c.send(&packet::PINGREQ);
    c.expect(&packet::PINGRESP);
    assert!(broker.log().contains("io=epoll"), "log: {}", broker.log());
    let (status, _) = broker.stop();
    assert!(status.success());
}

#[test]
fn auto_driver_logs_what_each_shard_uses_and_why() {
    let broker = Broker::start(&bin(), &["--io", "auto"]);
    let log = broker.log();
    let started = log.lines().filter(|l| l.contains("shard started")).count();
    assert_eq!(started, 2, "log: {log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("shard started"))
            .all(|l| l.contains("io=")),
        "log: {log}"
    );
    // One line for the whole broker says which backend and why: the
    // native loop, or the fallback with the kernel's refusal.
    let choice: Vec<&str> = log.lines().filter(|l| l.contains("I/O backend")).collect();
    assert_eq!(choice.len(), 1, "log: {log}");
    assert!(choice[0].contains("runtime_io=auto"), "log: {log}");
    assert!(
        (choice[0].contains("io=native io_uring") && choice[0].contains("accepted"))
            || (choice[0].contains("was refused") && choice[0].contains("refused=")),
        "log: {log}"
    );
    let (status, _) = broker.stop();
    assert!(status.success());
}

#[test]
fn the_default_backend_is_the_native_loop_where_io_uring_allows_it() {
    // No `--io`, no config file: `auto`. Broker::start checks that every
    // shard runs the native loop unless the broker logged a refusal.
    let broker = Broker::start_with_args(
        &bin(),
        &["serve", "--listen", "127.0.0.1:0", "--shards", "2"],
    );
    let mut c = RawClient::connect_v311(broker.addr(), "default-backend");
    c.send(&packet::PINGREQ);
    c.expect(&packet::PINGRESP);
    assert!(
        broker.log().contains("runtime_io=auto"),
        "log: {}",
        broker.log()
    );
    let (status, _) = broker.stop();
    assert!(status.success());
}

#[test]
fn where_io_uring_is_refused_auto_falls_back_to_monoio_epoll_with_one_warning() {
    // A sandbox that refuses io_uring_setup (seccomp, as Docker's default
    // profile does): the native loop and monoio's io_uring are refused,
    // monoio on epoll serves, and one line says so with the kernel's answer.
    let broker = Broker::start_with_io_uring_refused(
        &bin(),
        &["serve", "--listen", "127.0.0.1:0", "--shards", "2"],
    );
    let log = broker.log();
    let choice: Vec<&str> = log.lines().filter(|l| l.contains("I/O backend")).collect();
    assert_eq!(choice.len(), 1, "log: {log}");
    assert!(choice[0].contains("WARN"), "log: {log}");
    assert!(choice[0].contains("was refused"), "log: {log}");
    assert!(choice[0].contains("io=epoll"), "log: {log}");
    assert!(choice[0].contains("runtime_io=auto"), "log: {log}");
    assert!(choice[0].contains("Operation not permitted"), "log: {log}");
    // It serves: a publish crosses from one client to another (the clients
    // land on either shard, so hand-off and rings run on epoll too).
    let mut sub = RawClient::connect_v311(broker.addr(), "fallback-sub");
    sub.send(&packet::subscribe_v311(1, "fallback/t", 0));
    sub.expect(&[0x90, 0x03, 0x00, 0x01, 0x00]);
    let mut publisher = RawClient::connect_v311(broker.addr(), "fallback-pub");
    let publish = packet::publish_v311("fallback/t", b"hello", 0, 0, false);
    publisher.send(&publish);
    sub.expect(&publish);
    let (status, _) = broker.stop();
    assert!(status.success());
}

#[test]
fn native_refused_falls_back_with_a_warning_per_shard() {
    let broker = Broker::start_with_io_uring_refused(
        &bin(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--io",
            "native",
        ],
    );
    let log = broker.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("io_uring refused a feature the native loop needs"))
        .count();
    assert_eq!(warnings, 2, "log: {log}");
    assert!(log.contains("runtime_io=native"), "log: {log}");
    let mut c = RawClient::connect_v311(broker.addr(), "native-refused");
    c.send(&packet::PINGREQ);
    c.expect(&packet::PINGRESP);
    let (status, _) = broker.stop();
    assert!(status.success());
}

#[test]
fn sighup_reloads_without_stopping_the_broker() {
    let broker = Broker::start(&bin(), &[]);
    broker.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !broker.log().contains("reload done") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload line; log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still serving after the reload.
    let mut client = RawClient::connect_v311(broker.addr(), "after-hup");
    client.send(&[0xC0, 0x00]); // PINGREQ
    client.expect(&[0xD0, 0x00]); // PINGRESP
    let (status, _) = broker.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn reload_subcommand_signals_the_broker_through_its_pid_file() {
    let dir = std::env::temp_dir().join(format!("ringmq-cli-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let pid_file = dir.join("ringmq.pid");
    let config = temp_config(
        "reload.toml",
        &format!(
            "[runtime]\npid_file = {:?}\n",
            pid_file.display().to_string()
        ),
    );
    let config = config.display().to_string();
    let broker = Broker::start(&bin(), &["--config", &config]);
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("pid file: {e}"));
    assert!(pid.trim().parse::<u32>().is_ok(), "pid file holds {pid:?}");
    let (status, out, err) = run_to_exit(&bin(), &["reload", "--config", &config], EXIT_LIMIT);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(out.contains("sent SIGHUP"), "stdout: {out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !broker.log().contains("reload done") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload line; log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = broker.stop();
    assert_eq!(status.code(), Some(0));
    assert!(!pid_file.exists(), "the pid file outlived the broker");
    // Nothing running: a clear error, exit 1.
    let (status, _out, err) = run_to_exit(&bin(), &["reload", "--config", &config], EXIT_LIMIT);
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("cannot read pid file"), "stderr: {err}");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

#[test]
fn mosquitto_short_flags_serve_on_the_port_with_debug_logs() {
    let port = free_port();
    let path = temp_config("short.toml", "[limits]\nconnections_max = 50\n");
    let path_s = path.display().to_string();
    let port_s = port.to_string();
    let broker = Broker::start_with_args(
        &bin(),
        &["-c", &path_s, "-p", &port_s, "-v", "--shards", "2"],
    );
    assert_eq!(broker.port(), port);
    assert!(broker.addr().ip().is_loopback(), "{}", broker.addr());
    let mut c = RawClient::connect_v311(broker.addr(), "short-flags");
    c.send(&[0xE0, 0x00]);
    let log = broker.log();
    assert!(log.contains("DEBUG"), "-v gives debug lines; log:\n{log}");
    let (status, _) = broker.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn version_is_accepted_by_the_binary_and_every_subcommand() {
    // clap names the subcommand: "ringmq-serve 0.1.0".
    let want = format!(" {}\n", env!("CARGO_PKG_VERSION"));
    for args in [
        &["--version"][..],
        &["-V"],
        &["serve", "--version"],
        &["check-config", "--version"],
        &["default-config", "--version"],
        &["reload", "--version"],
        &["acl", "--version"],
        &["acl", "check", "--version"],
    ] {
        let (status, out, err) = run_to_exit(&bin(), args, EXIT_LIMIT);
        assert!(status.success(), "{args:?}: {err}");
        assert!(
            out.starts_with("ringmq") && out.ends_with(&want),
            "{args:?}: {out}"
        );
    }
}

#[test]
fn check_config_prints_the_effective_configuration_as_toml() {
    let path = temp_config(
        "effective.toml",
        "[limits]\nconnections_max = 77\n[runtime]\nshards = 3\n",
    );
    let path_s = path.display().to_string();
    let (status, out, err) = run_to_exit(
        &bin(),
        &["check-config", "-c", &path_s, "-p", "1999", "-v"],
        EXIT_LIMIT,
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(out.contains("[[listener]]\n"), "{out}");
    assert!(out.contains("bind = \"127.0.0.1:1999\""), "{out}");
    assert!(out.contains("[limits]\n"), "{out}");
    assert!(out.contains("connections_max = 77"), "{out}");
    assert!(out.contains("shards = 3"), "{out}");
    assert!(out.contains("log_level = \"debug\""), "{out}");
    assert!(!out.contains("Config {"), "no Rust debug output: {out}");
    // The output is itself a configuration file that gives the same values.
    let again = temp_config("effective-again.toml", &out);
    let again_s = again.display().to_string();
    let (status, out2, err) = run_to_exit(&bin(), &["check-config", "-c", &again_s], EXIT_LIMIT);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(out2, out);
}

#[test]
fn a_mosquitto_conf_gets_a_hint_to_the_mapping_table() {
    let path = temp_config(
        "mosquitto.conf",
        "# Place your local configuration in /etc/mosquitto/conf.d/\npid_file /run/mosquitto/mosquitto.pid\n\
         persistence true\nlistener 1883\nallow_anonymous true\n",
    );
    let path_s = path.display().to_string();
    for sub in [&["check-config"][..], &[]] {
        let mut args = sub.to_vec();
        args.extend_from_slice(&["-c", &path_s]);
        let (status, _out, err) = run_to_exit(&bin(), &args, EXIT_LIMIT);
        assert_eq!(status.code(), Some(2), "stderr: {err}");
        assert!(
            err.contains("looks like a Mosquitto configuration file (line 2: `pid_file /run/mosquitto/mosquitto.pid`)"),
            "stderr: {err}"
        );
        assert!(
            err.contains("\"Mapping Mosquitto options\" in docs/security.md"),
            "stderr: {err}"
        );
    }
}
