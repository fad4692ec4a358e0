//! Black-box tests of WebSocket listeners: the real binary with a plain
//! MQTT listener, a ws and a wss listener (two shards, so connections are
//! handed off with their WebSocket session), a small WebSocket client here
//! (RFC 6455 client side: masked frames, split as a test chooses), over
//! TCP and over rustls with certificates made by rcgen; and MQTT.js in
//! Node over ws:// and wss://, and in headless Chromium over ws://
//! (`tests/node`, installed by `.ci/run` with `npm ci`, and Debian's
//! `chromium`; with CI=true a missing node, MQTT.js or chromium fails the
//! test).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use ringmq_tests::{binary, client_id_on_shard, fds, packet, Broker, RawClient};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const SHARDS: u16 = 2;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e:?}"))
}

struct Setup {
    broker: Broker,
    plain: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    dir: PathBuf,
}

/// A broker with mqtt, ws (path /mqtt, an Origin allow-list, a 64 KiB
/// frame limit) and wss listeners.
fn start(test: &str) -> Setup {
    start_shards(test, SHARDS)
}

fn start_shards(test: &str, shard_count: u16) -> Setup {
    let dir = std::env::temp_dir().join(format!("ringmq-ws-{}-{test}", std::process::id()));
    ok(std::fs::create_dir_all(&dir));
    let key = ok(KeyPair::generate());
    let params = ok(CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ]));
    let cert = ok(params.self_signed(&key));
    ok(std::fs::write(dir.join("server.pem"), cert.pem()));
    ok(std::fs::write(dir.join("server.key"), key.serialize_pem()));
    let config = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\npath = \"/mqtt\"\n\
         allowed_origins = [\"https://ok.example\"]\nws_frame_max_bytes = 65536\n\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n\
         [listener.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        dir.join("server.pem").display().to_string(),
        dir.join("server.key").display().to_string(),
    );
    let path = dir.join("ringmq.toml");
    ok(std::fs::write(&path, config));
    let path = path.display().to_string();
    let shards = shard_count.to_string();
    let mut args = vec!["serve", "--config", &path, "--shards", &shards];
    // tests/run-all.sh runs the black-box tests again on epoll.
    let io = std::env::var("RINGMQ_TEST_IO").ok();
    if let Some(io) = io.as_deref() {
        args.extend_from_slice(&["--io", io]);
    }
    let broker = Broker::start_with_args(&binary(env!("CARGO_BIN_EXE_ringmq")), &args);
    let addrs = broker.addrs().to_vec();
    assert_eq!(addrs.len(), 3, "three listeners; log:\n{}", broker.log());
    Setup {
        plain: addrs[0],
        ws: addrs[1],
        wss: addrs[2],
        broker,
        ca_der: cert.der().clone(),
        dir,
    }
}

/// The client side of RFC 6455 over any stream.
struct WsClient<S: Read + Write> {
    stream: S,
    /// Decoded payload not yet returned as packets.
    pending: Vec<u8>,
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads an HTTP response head.
fn read_head<S: Read>(stream: &mut S) -> io::Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut b)?;
        head.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0xa1, 0x5b, 0x3c, 0x07];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

impl<S: Read + Write> WsClient<S> {
    /// Upgrades; returns the client and the 101 response head.
    fn upgrade(mut stream: S, extra: &str) -> (WsClient<S>, String) {
        ok(stream.write_all(upgrade_request("/mqtt", extra).as_bytes()));
        let head = ok(read_head(&mut stream));
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        (
            WsClient {
                stream,
                pending: Vec::new(),
            },
            head,
        )
    }

    /// Sends `bytes` as one binary message in frames of at most `per_frame`.
    fn send_split(&mut self, bytes: &[u8], per_frame: usize) {
        let chunks: Vec<&[u8]> = bytes.chunks(per_frame.max(1)).collect();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let opcode = if i == 0 { 2 } else { 0 };
            out.extend(masked_frame(i + 1 == chunks.len(), opcode, c));
        }
        ok(self.stream.write_all(&out));
    }

    fn send(&mut self, bytes: &[u8]) {
        self.send_split(bytes, usize::MAX);
    }

    /// Reads one frame: (opcode, payload). Server frames are unmasked.
    fn read_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h)?;
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b)?;
                usize::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b)?;
                u64::from_be_bytes(b) as usize
            }
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        Ok((h[0] & 0x0f, payload))
    }

    /// The next MQTT packet from binary frames (a close frame is an error
    /// carrying its code).
    fn read_packet(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = whole_packet(&self.pending) {
                return self.pending.drain(..n).collect();
            }
            let (op, payload) = ok(self.read_frame());
            match op {
                0 | 2 => self.pending.extend(payload),
                other => panic!("unexpected frame opcode {other}: {payload:?}"),
            }
        }
    }

    fn connect(&mut self, client_id: &str) {
        self.send(&packet::connect_v311(client_id, true, 60));
        assert_eq!(self.read_packet(), CONNACK_OK);
    }
}

/// Length of the first whole MQTT packet in `b`, if complete.
fn whole_packet(b: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let byte = *b.get(1 + i)?;
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let n = 2 + i + remaining;
            return (b.len() >= n).then_some(n);
        }
    }
    None
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = ok(TcpStream::connect(addr));
    ok(s.set_read_timeout(Some(IO_TIMEOUT)));
    ok(s.set_write_timeout(Some(IO_TIMEOUT)));
    s
}

fn tls(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let mut roots = RootCertStore::empty();
    ok(roots.add(ca.clone()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config =
        ok(ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions())
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ok(ServerName::try_from("localhost".to_string()));
    let conn = ok(ClientConnection::new(Arc::new(config), name));
    StreamOwned::new(conn, tcp(addr))
}

#[test]
fn pub_sub_across_ws_wss_and_tcp_on_two_shards() {
    let s = start("pubsub");
    // Subscribers on both shards, one per transport.
    let (mut sub_ws, head) = WsClient::upgrade(
        tcp(s.ws),
        "Sec-WebSocket-Protocol: mqtt\r\nOrigin: https://ok.example\r\n",
    );
    assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
    sub_ws.connect(&client_id_on_shard("sw", 0, SHARDS));
    sub_ws.send(&packet::subscribe_v311(1, "t/ws", 0));
    assert_eq!(sub_ws.read_packet(), [0x90, 0x03, 0x00, 0x01, 0x00]);
    let (mut sub_wss, _) = WsClient::upgrade(
        tls(s.wss, &s.ca_der),
        "Sec-WebSocket-Protocol: mqttv3.1\r\n",
    );
    sub_wss.connect(&client_id_on_shard("sx", 1, SHARDS));
    sub_wss.send(&packet::subscribe_v311(1, "t/ws", 0));
    assert_eq!(sub_wss.read_packet(), [0x90, 0x03, 0x00, 0x01, 0x00]);
    let mut sub_tcp = RawClient::connect_v311(s.plain, &client_id_on_shard("st", 1, SHARDS));
    sub_tcp.send(&packet::subscribe_v311(1, "t/ws", 0));
    assert_eq!(sub_tcp.read_packet(), [0x90, 0x03, 0x00, 0x01, 0x00]);

    // A ws publisher on the other shard: one packet split over many
    // frames, then two packets in one frame.
    let (mut publisher, _) = WsClient::upgrade(tcp(s.ws), "Sec-WebSocket-Protocol: mqtt\r\n");
    publisher.connect(&client_id_on_shard("pw", 1, SHARDS));
    let first = packet::publish_v311("t/ws", b"split over frames", 0, 0, false);
    publisher.send_split(&first, 3);
    let second = packet::publish_v311("t/ws", b"two", 0, 0, false);
    let third = packet::publish_v311("t/ws", b"in one frame", 0, 0, false);
    publisher.send(&[second.clone(), third.clone()].concat());
    for expected in [&first, &second, &third] {
        assert_eq!(&sub_ws.read_packet(), expected);
        assert_eq!(&sub_wss.read_packet(), expected);
        assert_eq!(&sub_tcp.read_packet(), expected);
    }

    // Ping gets a pong with the same payload.
    ok(publisher
        .stream
        .write_all(&masked_frame(true, 9, b"are you there")));
    assert_eq!(ok(publisher.read_frame()), (10, b"are you there".to_vec()));

    // DISCONNECT, then the client's close frame is echoed.
    ok(publisher
        .stream
        .write_all(&masked_frame(true, 8, &1000u16.to_be_bytes())));
    assert_eq!(
        ok(publisher.read_frame()),
        (8, 1000u16.to_be_bytes().to_vec())
    );
    drop(s.broker);
}

#[test]
fn broker_closes_with_status_code() {
    let s = start("close");
    // A second CONNECT is a protocol violation: the broker closes, and the
    // last frame is a close frame with status 1000.
    let (mut c, _) = WsClient::upgrade(tcp(s.ws), "Sec-WebSocket-Protocol: mqtt\r\n");
    c.connect(&client_id_on_shard("twice", 1, SHARDS));
    c.send(&packet::connect_v311("twice", true, 60));
    loop {
        let (op, payload) = ok(c.read_frame());
        if op == 8 {
            assert_eq!(payload, 1000u16.to_be_bytes());
            break;
        }
    }
    // An oversize frame is refused with 1009.
    let (mut c, _) = WsClient::upgrade(tcp(s.ws), "Sec-WebSocket-Protocol: mqtt\r\n");
    c.connect(&client_id_on_shard("big", 0, SHARDS));
    c.send(&packet::publish_v311(
        "t/big",
        &vec![b'x'; 70_000],
        0,
        0,
        false,
    ));
    let (op, payload) = ok(c.read_frame());
    assert_eq!((op, payload), (8, 1009u16.to_be_bytes().to_vec()));
    // An unmasked client frame is refused with 1002.
    let (mut c, _) = WsClient::upgrade(tcp(s.ws), "");
    let connect = packet::connect_v311("unmasked", true, 60);
    let mut frame = vec![0x82, connect.len() as u8];
    frame.extend_from_slice(&connect);
    ok(c.stream.write_all(&frame));
    assert_eq!(ok(c.read_frame()), (8, 1002u16.to_be_bytes().to_vec()));
    drop(s.broker);
}

fn refused(addr: SocketAddr, request: &str) -> String {
    let mut stream = tcp(addr);
    ok(stream.write_all(request.as_bytes()));
    ok(read_head(&mut stream))
}

#[test]
fn bad_upgrades_are_refused_with_http_status() {
    let s = start("refused");
    let head = refused(s.ws, &upgrade_request("/other", ""));
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let head = refused(
        s.ws,
        &upgrade_request("/mqtt", "Origin: https://evil.example\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    let head = refused(
        s.ws,
        &upgrade_request("/mqtt", "Sec-WebSocket-Protocol: chat\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let head = refused(s.ws, "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let big = format!("GET /mqtt HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    let head = refused(s.ws, &big);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    // The plain MQTT listener is unaffected.
    let mut c = RawClient::connect_v311(s.plain, "still-fine");
    c.send(&[0xc0, 0x00]);
    assert_eq!(c.read_packet(), [0xd0, 0x00]);
    drop(s.broker);
}

/// `tests/node` with MQTT.js installed, or why not.
fn node_dir() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/node");
    let version = Command::new("node").arg("--version").output();
    match version {
        Ok(out) if out.status.success() => {}
        _ => return Err("node is not installed".into()),
    }
    if !dir.join("node_modules/mqtt/package.json").exists() {
        return Err(format!(
            "MQTT.js is not installed in {} (run: npm ci --prefix tests/node)",
            dir.display()
        ));
    }
    Ok(dir)
}

#[test]
fn mqtt_js_over_ws_and_wss() {
    let dir = match node_dir() {
        Ok(dir) => dir,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; .ci/run must install node and run npm ci --prefix tests/node"
            );
            eprintln!("SKIPPED (not in CI): {why}");
            return;
        }
    };
    let s = start("mqttjs");
    let ca = s.dir.join("server.pem").display().to_string();
    let runs = [
        (format!("ws://127.0.0.1:{}/mqtt", s.ws.port()), None),
        (format!("wss://127.0.0.1:{}/mqtt", s.wss.port()), Some(ca)),
    ];
    for (url, ca) in runs {
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("ws_pubsub.mjs")).arg(&url);
        if let Some(ca) = &ca {
            cmd.arg(ca);
        }
        let out = ok(cmd.output());
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
            "MQTT.js over {url}: {}\nstdout: {}\nstderr: {}\nbroker log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            s.broker.log()
        );
    }
}

/// Debian's Chromium, which `.ci/run` installs.
const CHROMIUM: &str = "/usr/bin/chromium";

/// MQTT.js's browser build in a real browser: headless Chromium loads a
/// page served by `tests/node/browser_pubsub.mjs` (driven through the
/// DevTools protocol), which connects to the ws listener (two shards, so
/// connections are routed and handed off), subscribes, publishes QoS 0 and
/// 1 and checks what it receives. The listener's Origin allow-list names
/// the page's origin, as a deployment serving a web app would.
#[test]
fn mqtt_js_in_headless_chromium_over_ws() {
    let dir = node_dir().and_then(|dir| {
        if Path::new(CHROMIUM).exists() {
            Ok(dir)
        } else {
            Err(format!("{CHROMIUM} is not installed"))
        }
    });
    let dir = match dir {
        Ok(dir) => dir,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; .ci/run must install chromium, node and run npm ci --prefix tests/node"
            );
            eprintln!("SKIPPED (not in CI): {why}");
            return;
        }
    };
    // A free port for the page (the broker must know its origin).
    let http_port = ok(ok(std::net::TcpListener::bind("127.0.0.1:0")).local_addr()).port();
    let test_dir = std::env::temp_dir().join(format!("ringmq-ws-{}-browser", std::process::id()));
    ok(std::fs::create_dir_all(&test_dir));
    let config = test_dir.join("ringmq.toml");
    ok(std::fs::write(
        &config,
        format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\npath = \"/mqtt\"\n\
             allowed_origins = [\"http://127.0.0.1:{http_port}\"]\n"
        ),
    ));
    let config = config.display().to_string();
    let mut args = vec!["serve", "--config", &config, "--shards", "2"];
    let io = std::env::var("RINGMQ_TEST_IO").ok();
    if let Some(io) = io.as_deref() {
        args.extend_from_slice(&["--io", io]);
    }
    let broker = Broker::start_with_args(&binary(env!("CARGO_BIN_EXE_ringmq")), &args);
    let url = format!("ws://127.0.0.1:{}/mqtt", broker.addr().port());
    let out = ok(Command::new("node")
        .arg(dir.join("browser_pubsub.mjs"))
        .arg(&url)
        .arg(http_port.to_string())
        .arg(CHROMIUM)
        .output());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("HeadlessChrome") && stdout.ends_with("OK\n"),
        "MQTT.js in Chromium over {url}: {}\nstdout: {stdout}\nstderr: {}\nbroker log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        broker.log()
    );
    // The browser's connections reached the broker as MQTT 5 and 3.1.1.
    let log = broker.log();
    assert!(log.contains("browser-sub"), "no connect line; log:\n{log}");
}

/// One shard: no routing read, so the upgrade, frames and refusals all go
/// through the driver's WebSocket transform.
#[test]
fn single_shard_upgrade_frames_and_refusals_in_the_driver() {
    let s = start_shards("single", 1);
    let (mut sub, _) = WsClient::upgrade(tcp(s.ws), "Sec-WebSocket-Protocol: mqtt\r\n");
    sub.connect("one-sub");
    sub.send_split(&packet::subscribe_v311(1, "t/one", 0), 2);
    assert_eq!(sub.read_packet(), [0x90, 0x03, 0x00, 0x01, 0x00]);
    let (mut publisher, _) = WsClient::upgrade(tls(s.wss, &s.ca_der), "");
    publisher.connect("one-pub");
    let a = packet::publish_v311("t/one", b"a", 0, 0, false);
    let b = packet::publish_v311("t/one", &vec![b'b'; 1000], 0, 0, false);
    publisher.send(&[a.clone(), b.clone()].concat());
    assert_eq!(sub.read_packet(), a);
    assert_eq!(sub.read_packet(), b);
    ok(sub.stream.write_all(&masked_frame(true, 9, b"p")));
    assert_eq!(ok(sub.read_frame()), (10, b"p".to_vec()));
    let head = refused(s.ws, &upgrade_request("/nope", ""));
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let head = refused(
        s.ws,
        &upgrade_request("/mqtt", "Origin: https://evil.example\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    // The broker's close (second CONNECT) ends with a close frame 1000.
    publisher.send(&packet::connect_v311("one-pub", true, 60));
    loop {
        let (op, payload) = ok(publisher.read_frame());
        if op == 8 {
            assert_eq!(payload, 1000u16.to_be_bytes());
            break;
        }
    }
    // An oversize frame: 1009.
    sub.send(&packet::publish_v311(
        "t/one",
        &vec![b'x'; 70_000],
        0,
        0,
        false,
    ));
    assert_eq!(ok(sub.read_frame()), (8, 1009u16.to_be_bytes().to_vec()));
}

/// Connections tried at most for one that must be handed off (about half
/// are).
const HANDOFF_ATTEMPTS_MAX: usize = 64;

/// The native loop with its descriptors exhausted: a WebSocket connection
/// whose client id the other shard owns cannot be handed over; the
/// WebSocket layer passes the refusal on with the MQTT bytes it decoded,
/// so the client gets CONNACK 0x89 Server busy in a binary frame, then a
/// close frame (`shards/tests/fd_limit.rs` covers TCP).
#[test]
fn ws_connection_that_cannot_be_handed_off_is_refused_server_busy() {
    let dir = std::env::temp_dir().join(format!("ringmq-ws-{}-emfile", std::process::id()));
    ok(std::fs::create_dir_all(&dir));
    let path = dir.join("ringmq.toml");
    let config = "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\npath = \"/mqtt\"\n";
    ok(std::fs::write(&path, config));
    let path = path.display().to_string();
    let args = [
        "serve", "--config", &path, "--shards", "2", "--io", "native",
    ];
    let broker = Broker::start_with_args(&binary(env!("CARGO_BIN_EXE_ringmq")), &args);
    if !broker.native_with_direct_fds() {
        ok(std::fs::remove_dir_all(&dir));
        return;
    }
    let addr = broker.addr();
    let limit = fds::exhaust(&broker);
    let mut refused = false;
    for i in 0..HANDOFF_ATTEMPTS_MAX {
        let (mut ws, _) = WsClient::upgrade(tcp(addr), "");
        ws.send(&packet::connect_v5(&format!("ws-emfile-{i}"), true, 60));
        // v5 CONNACK: type, remaining length (< 128), flags, reason code.
        let connack = ws.read_packet();
        assert!(connack.len() > 3 && connack[0] == 0x20, "{connack:02x?}");
        if connack[3] == 0x00 {
            continue; // its owner accepted it
        }
        assert_eq!(connack[3], 0x89, "v5 CONNACK Server busy: {connack:02x?}");
        let (op, _) = ok(ws.read_frame());
        assert_eq!(op, 8, "a close frame after the refusal");
        refused = true;
        break;
    }
    assert!(
        refused,
        "no connection was handed off in {HANDOFF_ATTEMPTS_MAX}; log:\n{}",
        broker.log()
    );
    fds::set_soft_limit(&broker, limit);
    let (status, _) = broker.stop();
    assert!(status.success());
    ok(std::fs::remove_dir_all(&dir));
}
