//! HTTP for the black-box tests of the operator endpoints: a broker with
//! an MQTT and an `http` listener, requests as raw bytes (so malformed
//! ones can be sent), answers read to the end, and sample values out of a
//! Prometheus text page.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use crate::{Broker, READ_TIMEOUT};

/// A broker started from a config file with one MQTT listener and one
/// `http` listener (both on 127.0.0.1, free ports), and what the test
/// added to that file.
pub struct HttpBroker {
    pub broker: Broker,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub dir: PathBuf,
}

/// Starts `bin` with `shards` shards; `extra` is appended to the config
/// file (sections such as `[runtime]`).
pub fn start(bin: &Path, test: &str, shards: u16, extra: &str) -> HttpBroker {
    let dir = std::env::temp_dir().join(format!("ringmq-http-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let config = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\n{extra}\n"
    );
    let path = dir.join("ringmq.toml");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let path = path.display().to_string();
    let shards = shards.to_string();
    let mut args = vec!["serve", "--config", &path, "--shards", &shards];
    let io = std::env::var("RINGMQ_TEST_IO").ok();
    if let Some(io) = io.as_deref() {
        args.extend_from_slice(&["--io", io]);
    }
    let broker = Broker::start_with_args(&bin.to_path_buf(), &args);
    let addrs = broker.addrs().to_vec();
    assert_eq!(addrs.len(), 2, "two listeners; log:\n{}", broker.log());
    HttpBroker {
        mqtt: addrs[0],
        http: addrs[1],
        broker,
        dir,
    }
}

/// An answer: status code, head (status line and headers) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A connection to the HTTP listener with bounded reads.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(READ_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    s
}

/// Reads one answer from `stream` (its `Content-Length` bytes of body;
/// none after a `HEAD`).
pub fn read_answer(stream: &mut TcpStream, head_only: bool) -> Answer {
    let mut bytes = Vec::new();
    let mut b = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        match stream.read(&mut b) {
            Ok(1) => bytes.push(b[0]),
            other => panic!(
                "answer head cut short ({other:?}) after {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    let head = String::from_utf8_lossy(&bytes).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let mut answer = Answer {
        status,
        head,
        body: String::new(),
    };
    let length: usize = answer
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {:?}", answer.head));
    if !head_only {
        let mut body = vec![0u8; length];
        stream
            .read_exact(&mut body)
            .unwrap_or_else(|e| panic!("body of {length} bytes: {e}"));
        answer.body = String::from_utf8_lossy(&body).into_owned();
    }
    answer
}

/// Sends `request` (raw bytes) on a new connection and reads one answer.
pub fn send(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut s = connect(addr);
    s.write_all(request).unwrap_or_else(|e| panic!("send: {e}"));
    read_answer(&mut s, request.starts_with(b"HEAD "))
}

/// `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    send(addr, request.as_bytes())
}

/// Whether the server closed `stream` (EOF, or a reset) within the read
/// timeout, after whatever it still sent.
pub fn closed(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// The value of the sample written exactly as `series` (metric name and
/// labels, e.g. `ringmq_sessions{state="online"}`) in a text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}
