//! loadgen over WebSocket: `--transport ws` and `wss` against the real
//! broker's ws and wss listeners (configured as in shards/tests/ws.rs), and
//! `--transport ws` against Mosquitto's websockets listener (Debian's
//! `mosquitto`; `.ci/run` installs it, with CI=true its absence fails).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ca, leaf, loadgen, ok, program, ringmq, summary, u64_of};
use ringmq_tests::Broker;
use serde_json::Value;

/// How long Mosquitto may take to accept connections.
const MOSQUITTO_START: Duration = Duration::from_secs(10);

struct Setup {
    dir: PathBuf,
    broker: Broker,
}

impl Setup {
    /// A broker with a ws listener (path /mqtt) and a wss one.
    fn new(test: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("loadgen-ws-{}-{test}", std::process::id()));
        ok(std::fs::create_dir_all(&dir));
        let server_ca = ca("loadgen ws test CA");
        leaf(&dir, "server", &server_ca, "broker", &["localhost"]);
        ok(std::fs::write(dir.join("ca.pem"), server_ca.cert.pem()));
        let path = |name: &str| dir.join(name).display().to_string();
        let config = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\npath = \"/mqtt\"\n\n\
             [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n\
             [listener.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            path("server.pem"),
            path("server.key"),
        );
        ok(std::fs::write(dir.join("ringmq.toml"), config));
        let config = path("ringmq.toml");
        let broker =
            Broker::start_with_args(&ringmq(), &["serve", "--config", &config, "--shards", "2"]);
        assert_eq!(broker.addrs().len(), 2, "log:\n{}", broker.log());
        Setup { dir, broker }
    }

    fn port(&self, i: usize) -> String {
        self.broker.addrs()[i].port().to_string()
    }

    fn ca(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// A short QoS 1 pubsub run with `extra` options; asserts nothing was lost.
fn pubsub(port: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "pubsub",
        "--port",
        port,
        "--qos",
        "1",
        "--pubs",
        "2",
        "--subs",
        "3",
        "--rate",
        "200",
        "--warmup",
        "0.2",
        "--duration",
        "1",
        "--threads",
        "1",
        "--json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let s = summary(&loadgen(&args));
    let received = u64_of(&s, "msgs_received_total");
    assert!(received > 0, "{s}");
    assert_eq!(Some(received), s["msgs_expected_total"].as_u64(), "{s}");
    assert_eq!(u64_of(&s, "lost"), 0, "{s}");
    assert_eq!(u64_of(&s, "duplicated"), 0, "{s}");
    assert_eq!(u64_of(&s, "errors"), 0, "{s}");
    s
}

#[test]
fn pubsub_over_ws_and_wss_delivers_everything() {
    let setup = Setup::new("pubsub");
    let s = pubsub(&setup.port(0), &["--transport", "ws"]);
    assert_eq!(s["transport"], "ws", "{s}");
    // 16-byte frames: every PUBLISH (64 B payload) spans several frames.
    let s = pubsub(
        &setup.port(0),
        &["--transport", "ws", "--ws-frame-max", "16", "--size", "100"],
    );
    assert!(u64_of(&s, "acked") > 0, "{s}");
    let ca = setup.ca();
    let s = pubsub(
        &setup.port(1),
        &[
            "--transport",
            "wss",
            "--cafile",
            &ca,
            "--server-name",
            "localhost",
        ],
    );
    assert_eq!(s["transport"], "wss", "{s}");
}

#[test]
fn conn_over_ws_opens_every_connection_and_a_wrong_path_says_404() {
    let setup = Setup::new("conn");
    let port = setup.port(0);
    let base = [
        "conn",
        "--port",
        &port,
        "--transport",
        "ws",
        "--count",
        "40",
        "--rate",
        "400",
        "--duration",
        "0.1",
        "--threads",
        "2",
        "--json",
        "--quiet",
    ];
    let s = summary(&loadgen(&base));
    assert_eq!(u64_of(&s, "conns_opened"), 40, "{s}");
    assert_eq!(u64_of(&s, "conns_failed"), 0, "{s}");
    assert_eq!(u64_of(&s, "latency_samples"), 40, "{s}");

    let mut args = base.to_vec();
    args.extend_from_slice(&["--ws-path", "/elsewhere"]);
    let s = summary(&loadgen(&args));
    assert_eq!(u64_of(&s, "conns_opened"), 0, "{s}");
    assert_eq!(u64_of(&s, "conns_failed"), 40, "{s}");
    let sample = s["error_samples"][0].as_str().unwrap_or_default();
    assert!(sample.contains("404"), "{s}");
}

/// A Mosquitto with a websockets listener (and a plain one: Mosquitto
/// 2.0.11 refuses to start with websockets listeners only), stopped on drop.
struct Mosquitto {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// A port no one listens on now (Mosquitto cannot report one it picked).
fn free_port() -> u16 {
    ok(ok(TcpListener::bind("127.0.0.1:0")).local_addr()).port()
}

impl Mosquitto {
    fn start(bin: &PathBuf) -> Mosquitto {
        let dir = std::env::temp_dir().join(format!("loadgen-ws-mosquitto-{}", std::process::id()));
        ok(std::fs::create_dir_all(&dir));
        let (plain, port) = (free_port(), free_port());
        let conf = dir.join("mosquitto.conf");
        ok(std::fs::write(
            &conf,
            format!(
                "listener {plain} 127.0.0.1\nlistener {port} 127.0.0.1\nprotocol websockets\n\
                 allow_anonymous true\nset_tcp_nodelay true\npersistence false\n"
            ),
        ));
        let child = ok(Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn());
        let mut m = Mosquitto { child, dir, port };
        let deadline = Instant::now() + MOSQUITTO_START;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = m.child.try_wait() {
                panic!("mosquitto exited: {status}");
            }
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("cannot stop mosquitto: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("mosquitto: {e}");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

#[test]
fn loadgen_drives_mosquittos_websockets_listener() {
    let Some(bin) = program(
        "mosquitto",
        "install Debian's `mosquitto` (.ci/run and ../shared/peers/install-peers.sh do)",
    ) else {
        return;
    };
    let m = Mosquitto::start(&bin);
    let port = m.port.to_string();
    let s = pubsub(&port, &["--transport", "ws", "--ws-frame-max", "32"]);
    assert_eq!(s["transport"], "ws", "{s}");
    let s = pubsub(&port, &["--transport", "ws", "--protocol-version", "5"]);
    assert_eq!(s["mqtt_version"], 5, "{s}");
}
