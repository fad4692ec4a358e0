//! Harness for the black-box tests of the real `ringmq` binary.
//!
//! # Where the tests live, and why
//!
//! The tests themselves are in `shards/tests/` (integration tests of the
//! `ringmq` package), and use this crate as a dev-dependency. Cargo gives
//! integration tests of a package the path of that package's freshly built
//! binary (`env!("CARGO_BIN_EXE_ringmq")`) and rebuilds the binary before
//! running them; a test in another package would have to guess
//! `target/{debug,release}/ringmq` and could run a stale build. So:
//! `cargo test -p ringmq` builds the binary and runs every black-box test
//! against it. [`binary`] lets `RINGMQ_BIN` point at another build (for
//! example a release binary) instead.
//!
//! # What is here
//!
//! - [`Broker`]: starts the binary on an ephemeral port (`--listen
//!   127.0.0.1:0`), learns the port from its "listening" log line, stops it
//!   with SIGTERM and reports the exit status; killed on drop.
//! - [`RawClient`]: a blocking TCP client with read timeouts for raw-packet
//!   tests with byte-exact expectations.
//! - [`packet`]: builders for the MQTT packets those tests send.
//! - [`wire`]: a protocol-aware blocking client (3.1.1 and 5.0: packet ids,
//!   Session Present, reason codes) for tests that play a client across
//!   broker restarts.
//! - [`client_id_on_shard`]: client ids that hash to a chosen shard.
//! - [`fds`]: a running broker's open-file limit, lowered until it has no
//!   descriptor left and raised again (`prlimit(2)` on its process).
//!
//! `RINGMQ_TEST_IO=epoll` (or `uring`, `native`) runs the suites on that
//! I/O backend instead of `auto`; with `auto` (the default: the native
//! loop where io_uring allows it) or `native`, [`Broker::start_with_args`]
//! checks that the shards really run the native loop.
//!
//! Every wait is bounded ([`STARTUP_TIMEOUT`], [`READ_TIMEOUT`],
//! [`STOP_TIMEOUT`]), so a broken broker fails a test instead of hanging it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod fds;
pub mod http;
pub mod packet;
pub mod wire;

/// How long the broker may take to print its "listening" line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a raw read waits for bytes.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker binary: `RINGMQ_BIN` if set, else `default` (pass
/// `env!("CARGO_BIN_EXE_ringmq")`).
pub fn binary(default: &str) -> PathBuf {
    std::env::var_os("RINGMQ_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// `io_uring_setup`'s system call number (the same on every architecture:
/// io_uring came after the numbers were unified).
#[cfg(target_os = "linux")]
const NR_IO_URING_SETUP: u32 = 425;

/// Installs a seccomp filter on the calling process that fails
/// `io_uring_setup` with EPERM and allows every other system call.
#[cfg(target_os = "linux")]
fn refuse_io_uring_setup() -> io::Result<()> {
    // Classic BPF: load the syscall number (offset 0 of seccomp_data),
    // EPERM for io_uring_setup, allow the rest.
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let filter = [
        libc::sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JEQ_K,
            jt: 0,
            jf: 1,
            k: NR_IO_URING_SETUP,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain prctl calls; `prog` points at `filter`, both alive for
    // the call (the kernel copies the program).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A running broker process.
pub struct Broker {
    child: Option<Child>,
    addr: SocketAddr,
    addrs: Vec<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Broker {
    /// Starts `bin` with `--listen 127.0.0.1:0 --shards 2` and `extra`
    /// arguments, and waits until it listens.
    ///
    /// `RINGMQ_TEST_IO=epoll|uring|native|auto` adds `--io` (unless `extra` has
    /// one), to run a whole suite on one I/O driver.
    pub fn start(bin: &PathBuf, extra: &[&str]) -> Broker {
        let mut args: Vec<&str> = vec!["serve", "--listen", "127.0.0.1:0", "--shards", "2"];
        let io = std::env::var("RINGMQ_TEST_IO").ok();
        if let Some(io) = io.as_deref() {
            if !extra.contains(&"--io") {
                args.extend_from_slice(&["--io", io]);
            }
        }
        args.extend_from_slice(extra);
        Broker::start_with_args(bin, &args)
    }

    /// Starts `bin` with exactly `args`; they must make it listen on one
    /// address whose "listening addresses=..." log line gives the port.
    pub fn start_with_args(bin: &PathBuf, args: &[&str]) -> Broker {
        Broker::start_command(Command::new(bin), bin, args)
    }

    /// [`Broker::start_with_args`] in a sandbox that refuses io_uring: a
    /// seccomp filter makes `io_uring_setup` fail with EPERM, as Docker's
    /// default profile and `kernel.io_uring_disabled` do, so the broker
    /// must fall back to monoio on epoll.
    #[cfg(target_os = "linux")]
    pub fn start_with_io_uring_refused(bin: &PathBuf, args: &[&str]) -> Broker {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(bin);
        // SAFETY: the hook runs in the forked child before exec and only
        // makes two prctl calls on data it owns (async-signal-safe).
        unsafe {
            cmd.pre_exec(refuse_io_uring_setup);
        }
        Broker::start_command(cmd, bin, args)
    }

    /// [`Broker::start_with_args`] with the broker's open-file limit (soft
    /// and hard `RLIMIT_NOFILE`) set to `limit` descriptors before exec.
    #[cfg(target_os = "linux")]
    pub fn start_with_fd_limit(bin: &PathBuf, args: &[&str], limit: u64) -> Broker {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(bin);
        let rlimit = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: limit as libc::rlim_t,
        };
        // SAFETY: the hook runs in the forked child before exec and makes
        // one setrlimit call on a struct it owns (async-signal-safe).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Broker::start_command(cmd, bin, args)
    }

    fn start_command(mut cmd: Command, bin: &std::path::Path, args: &[&str]) -> Broker {
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<Vec<SocketAddr>>();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    // Logged before the address is reported, so a test that
                    // reads the log right after start-up sees this line.
                    let addrs = listening_addrs(&line);
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                    if let Some(addrs) = addrs {
                        let _ = tx.send(addrs);
                    }
                }
            });
        }
        let addrs = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(100));
                let log = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                panic!("broker did not report listening within {STARTUP_TIMEOUT:?}; log:\n{log}");
            }
        };
        let broker = Broker {
            child: Some(child),
            addr: addrs[0],
            addrs,
            log,
        };
        broker.check_native_loop(args);
        broker
    }

    /// With `--io native` or `auto` (the default: no `--io`), every shard
    /// must run the native loop (it serves every listener kind and storage
    /// mode), unless the kernel refused io_uring, which the broker logs: a
    /// suite run on the native loop must not pass on the monoio fallback
    /// unnoticed.
    fn check_native_loop(&self, args: &[&str]) {
        let io = args
            .windows(2)
            .filter(|w| w[0] == "--io")
            .map(|w| w[1])
            .next_back();
        let native = matches!(io, None | Some("native" | "auto"))
            && !args.iter().any(|a| *a == "--config" || *a == "-c");
        let log = self.log();
        if !native || log.contains("the native io_uring loop was refused") {
            return;
        }
        assert!(
            log.contains("native io_uring") && !log.contains("this shard runs on monoio"),
            "the native loop must serve (io = auto or native); log:\n{log}"
        );
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every listener's address, in configuration order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The broker's process id, while it runs (`prlimit(2)` on it in the
    /// open-file limit tests).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Whether the broker runs the native loop with direct descriptors
    /// (Linux 6.8+). On a kernel or sandbox without them the broker logs
    /// why: this prints SKIPPED and returns `false`, except on CI
    /// (`CI=true`), where it fails.
    pub fn native_with_direct_fds(&self) -> bool {
        let log = self.log();
        let direct = log.contains("native io_uring") && !log.contains("no direct descriptors");
        if !direct {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "direct descriptors unavailable on CI; log:\n{log}"
            );
            eprintln!("SKIPPED: no native loop with direct descriptors here; log:\n{log}");
        }
        direct
    }

    /// The stderr lines so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            let pid = libc::pid_t::try_from(child.id()).unwrap_or(0);
            if pid > 0 {
                // SAFETY: kill(2) on our own child's pid; no memory involved.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }

    /// SIGTERM, then waits (at most [`STOP_TIMEOUT`]) for the exit status;
    /// kills it and panics if it does not exit in time.
    pub fn stop(mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(STOP_TIMEOUT);
        (status, started.elapsed())
    }

    /// Waits for the process to exit by itself, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("already stopped")
        };
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("broker did not exit within {limit:?}; log:\n{}", self.log());
                }
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses `... listening addresses=127.0.0.1:1234,127.0.0.1:1235 ...`
/// (or the JSON form, `"addresses":"127.0.0.1:1234"`, of `log_format =
/// "json"`).
fn listening_addrs(line: &str) -> Option<Vec<SocketAddr>> {
    if !line.contains("listening") {
        return None;
    }
    let list = match line.split("addresses=").nth(1) {
        Some(rest) => rest.split(' ').next()?,
        None => line.split("\"addresses\":\"").nth(1)?.split('"').next()?,
    };
    let addrs: Vec<SocketAddr> = list.split(',').filter_map(|a| a.parse().ok()).collect();
    (!addrs.is_empty()).then_some(addrs)
}

/// Runs the binary to completion (for CLI error tests), at most `limit`.
/// Returns (exit status, stdout, stderr).
pub fn run_to_exit(bin: &PathBuf, args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} {args:?} did not exit within {limit:?}", bin.display());
            }
        }
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// A blocking raw MQTT connection with bounded reads.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    /// Connects (no MQTT CONNECT is sent).
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .unwrap_or_else(|e| panic!("{e}"));
        stream.set_nodelay(true).unwrap_or_else(|e| panic!("{e}"));
        RawClient { stream }
    }

    /// Sends bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("read {n} bytes: {e}"));
        buf
    }

    /// Reads `expected.len()` bytes and asserts they equal `expected`.
    pub fn expect(&mut self, expected: &[u8]) {
        let got = self.read_exact(expected.len());
        assert_eq!(hex(&got), hex(expected), "bytes from the broker");
    }

    /// [`RawClient::expect`] with `limit` instead of [`READ_TIMEOUT`], for
    /// an answer that comes after a bulk of work whose time grows with the
    /// machine's load (a debug broker storing thousands of messages).
    pub fn expect_within(&mut self, expected: &[u8], limit: Duration) {
        self.within(limit, |c| c.expect(expected));
    }

    /// Runs `read` with reads waiting up to `limit`, then back to
    /// [`READ_TIMEOUT`].
    fn within<T>(&mut self, limit: Duration, read: impl FnOnce(&mut Self) -> T) -> T {
        self.stream
            .set_read_timeout(Some(limit))
            .unwrap_or_else(|e| panic!("{e}"));
        let out = read(self);
        self.stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    /// Reads packets until one that is not a PUBLISH, which must be
    /// `expected` (a SUBACK); returns the PUBLISH packets read before it.
    /// A server may send PUBLISH packets matching a new subscription
    /// before its SUBACK (MQTT 3.1.1 section 3.8.4, MQTT 5 section 3.8.4):
    /// a `$SYS` tick that falls between the subscription going live here
    /// and the other shards acknowledging it does.
    pub fn expect_after_publishes(&mut self, expected: &[u8]) -> Vec<Vec<u8>> {
        let mut publishes = Vec::new();
        loop {
            let packet = self.read_packet();
            if packet.first().is_some_and(|b| b & 0xf0 == 0x30) {
                publishes.push(packet);
                continue;
            }
            assert_eq!(
                packet,
                expected,
                "after {} PUBLISH packets",
                publishes.len()
            );
            return publishes;
        }
    }

    /// [`Self::read_packet`] waiting up to `limit` (an answer that takes
    /// work a loaded machine may delay: an argon2 check on a helper
    /// thread at the lowest priority).
    pub fn read_packet_within(&mut self, limit: Duration) -> Vec<u8> {
        self.within(limit, Self::read_packet)
    }

    /// Reads one whole MQTT packet (fixed header included).
    pub fn read_packet(&mut self) -> Vec<u8> {
        self.try_read_packet()
            .unwrap_or_else(|e| panic!("read packet: {e}"))
    }

    /// Reads one whole MQTT packet, or the I/O error (EOF included).
    pub fn try_read_packet(&mut self) -> io::Result<Vec<u8>> {
        let mut packet = vec![0u8; 1];
        self.stream.read_exact(&mut packet)?;
        let mut remaining: usize = 0;
        for i in 0..4 {
            let mut b = [0u8; 1];
            self.stream.read_exact(&mut b)?;
            packet.push(b[0]);
            remaining |= usize::from(b[0] & 0x7f) << (7 * i);
            if b[0] & 0x80 == 0 {
                let mut body = vec![0u8; remaining];
                self.stream.read_exact(&mut body)?;
                packet.extend_from_slice(&body);
                return Ok(packet);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "remaining length longer than 4 bytes",
        ))
    }

    /// Asserts the broker closes the connection (EOF or reset) within
    /// [`READ_TIMEOUT`], possibly after sending some packets (returned).
    pub fn expect_closed(&mut self) -> Vec<Vec<u8>> {
        let mut before = Vec::new();
        loop {
            match self.try_read_packet() {
                Ok(p) => before.push(p),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("connection still open after {READ_TIMEOUT:?}")
                }
                Err(_) => return before,
            }
        }
    }

    /// Asserts nothing arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        self.stream
            .set_read_timeout(Some(wait))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => panic!("connection closed, expected it open and silent"),
            Ok(_) => panic!("unexpected byte {:02x}", b[0]),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
        self.stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// CONNECT (v3.1.1, clean session, keep-alive 60 s), expects CONNACK
    /// `20 02 00 00`.
    pub fn connect_v311(addr: SocketAddr, client_id: &str) -> RawClient {
        let mut c = RawClient::connect(addr);
        c.send(&packet::connect_v311(client_id, true, 60));
        c.expect(&[0x20, 0x02, 0x00, 0x00]);
        c
    }

    /// Leaves a persistent v3.1.1 session (clean session off) subscribed to
    /// `filter` at QoS 1 and disconnects, so that messages queue for it.
    pub fn park_subscriber(addr: SocketAddr, client_id: &str, filter: &str) {
        let mut c = RawClient::connect(addr);
        c.send(&packet::connect_v311(client_id, false, 60));
        c.expect(&[0x20, 0x02, 0x00, 0x00]);
        c.send(&packet::subscribe_v311(1, filter, 1));
        c.expect(&[0x90, 0x03, 0x00, 0x01, 0x01]);
        c.send(&packet::DISCONNECT);
    }
}

/// Writes `dir/ringmq.toml` with `storage = "disk"` in `data_dir` and the
/// `storage_extra` lines (e.g. `fsync = "always"\n`) in the same table;
/// returns its path.
pub fn disk_storage_config(dir: &Path, data_dir: &Path, storage_extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("ringmq.toml");
    let text = format!(
        "[storage]\nstorage = \"disk\"\ndata_dir = \"{}\"\n{storage_extra}",
        data_dir.display()
    );
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Lower-case hex with spaces, for readable assertion failures.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A client id starting with `prefix` that `owner_shard` puts on `shard`
/// of `shard_count`.
pub fn client_id_on_shard(prefix: &str, shard: u16, shard_count: u16) -> String {
    (0u32..10_000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| ringmq_engine::broker::owner_shard(id.as_bytes(), shard_count) == shard)
        .unwrap_or_else(|| panic!("no id with prefix {prefix} lands on shard {shard}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let line = "2026-01-01T00:00:00Z  INFO main ringmq::server: listening addresses=127.0.0.1:41234,[::1]:5 shards=2 io=epoll";
        let expected: Vec<SocketAddr> = vec![
            "127.0.0.1:41234".parse().unwrap_or_else(|e| panic!("{e}")),
            "[::1]:5".parse().unwrap_or_else(|e| panic!("{e}")),
        ];
        assert_eq!(listening_addrs(line), Some(expected));
        assert_eq!(listening_addrs("shard started shard=0"), None);
    }

    #[test]
    fn ids_land_on_the_requested_shard() {
        for shard in 0..4 {
            let id = client_id_on_shard("t", shard, 4);
            assert_eq!(ringmq_engine::broker::owner_shard(id.as_bytes(), 4), shard);
        }
    }
}
