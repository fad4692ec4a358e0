//! The loadgen binary from the outside: `--version`, and the progress
//! output when stderr is not a terminal (a pipe here, as in a log file),
//! against a minimal scripted MQTT server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

#[test]
fn version_prints_loadgens_version() {
    for flag in ["--version", "-V"] {
        let out = Command::new(LOADGEN)
            .arg(flag)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "{flag}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout, format!("loadgen {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn protocol_version_is_a_long_option() {
    let out = Command::new(LOADGEN)
        .args(["pub", "--protocol-version", "6"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--protocol-version"), "{stderr}");
}

/// Bytes of the first whole MQTT packet at the front of `buf`, if complete.
fn first_packet_len(buf: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    for (i, b) in buf.iter().skip(1).take(4).enumerate() {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let total = 1 + i + 1 + len;
            return (buf.len() >= total).then_some(total);
        }
    }
    None
}

/// Answers CONNECT with a v3.1.1 CONNACK (accepted), then reads and drops
/// whatever comes (QoS 0 publishes, DISCONNECT) until the client closes.
fn serve_one(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut connected = false;
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if connected {
            continue;
        }
        buf.extend_from_slice(&chunk[..n]);
        if first_packet_len(&buf).is_some() {
            assert_eq!(buf[0] >> 4, 1, "first packet is CONNECT");
            if s.write_all(&[0x20, 0x02, 0x00, 0x00]).is_err() {
                return;
            }
            connected = true;
        }
    }
}

fn scripted_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve_one(s));
        }
    });
    addr
}

#[test]
fn progress_without_a_terminal_is_plain_lines_with_phase_and_time_left() {
    let addr = scripted_server();
    let port = addr.port().to_string();
    let mut child = Command::new(LOADGEN)
        .args([
            "pub",
            "--port",
            &port,
            "--threads",
            "1",
            "--rate",
            "50",
            "--warmup",
            "2.5",
            "--duration",
            "1.5",
            "--drain",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(!stderr.contains('\r'), "carriage return in {stderr:?}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert!(progress.len() >= 2, "{stderr}");
    assert!(
        progress.iter().any(|l| l.contains("] warm-up ")),
        "{stderr}"
    );
    assert!(
        progress.iter().any(|l| l.contains("] measuring ")),
        "{stderr}"
    );
    for line in &progress {
        assert!(line.contains("s left  sent "), "{line}");
    }
    // No blank line where a terminal would need the progress line ended.
    assert!(!stderr.contains("\n\n"), "{stderr:?}");
}
