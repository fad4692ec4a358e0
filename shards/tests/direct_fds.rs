//! Direct descriptors on the native loop (`runtime.native_direct_fds`,
//! `ringmq_net::uring::direct`): a broker whose open-file limit is far
//! below its connection count still serves them all, because each shard's
//! ring table holds up to the limit and the process's descriptor table
//! holds none of them; the same broker without the tables cannot.
//! Connections are spread over both shards by their client ids, so about
//! half of them are handed to the other shard (a process descriptor for the
//! hand-off, then the owner's table). Every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ringmq_tests::{binary, packet, Broker, READ_TIMEOUT};

/// The broker's open-file limit (soft and hard).
const FD_LIMIT: u64 = 256;
/// Connections held at once: more than the limit, fewer than two shards'
/// tables of `FD_LIMIT` slots plus the process descriptors left.
const CONNECTIONS: usize = 600;
/// How long the CONNACKs may take, all together.
const CONNACK_WAIT: Duration = Duration::from_secs(5);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

/// Opens [`CONNECTIONS`] connections, sends each a CONNECT, and counts
/// the CONNACKs (return code 0) that arrive within [`CONNACK_WAIT`]; the
/// connections stay open until then.
fn connect_all(broker: &Broker) -> usize {
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let mut s = TcpStream::connect_timeout(&broker.addr(), READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {i}: {e}"));
        s.write_all(&packet::connect_v311(&format!("direct-{i}"), true, 600))
            .unwrap_or_else(|e| panic!("CONNECT {i}: {e}"));
        clients.push(s);
    }
    let deadline = Instant::now() + CONNACK_WAIT;
    let mut accepted = 0;
    for s in &mut clients {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(left))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut connack = [0u8; 4];
        if s.read_exact(&mut connack).is_ok() && connack == [0x20, 2, 0, 0] {
            accepted += 1;
        }
    }
    accepted
}

#[test]
fn a_broker_serves_more_connections_than_its_open_file_limit_with_direct_descriptors() {
    if let Err(e) = ringmq_net::os::raise_fd_limit(CONNECTIONS as u64 * 2 + 256) {
        panic!("the test needs {CONNECTIONS} client sockets: {e}");
    }
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--io",
        "native",
    ];
    let broker = Broker::start_with_fd_limit(&bin(), &args, FD_LIMIT);
    if !broker.native_with_direct_fds() {
        return;
    }
    let accepted = connect_all(&broker);
    let log = broker.log();
    eprintln!("direct descriptors: {accepted} of {CONNECTIONS} served under a limit of {FD_LIMIT}");
    assert_eq!(
        accepted, CONNECTIONS,
        "with direct descriptors every connection is served under a limit of {FD_LIMIT}; log:\n{log}"
    );
    assert!(
        !log.contains("accept failed"),
        "no accept failed; log:\n{log}"
    );
    drop(broker);

    // The same broker with the tables off runs out of descriptors.
    let dir = std::env::temp_dir().join(format!("ringmq-direct-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("off.toml");
    std::fs::write(&config, "[runtime]\nnative_direct_fds = 0\n").unwrap_or_else(|e| panic!("{e}"));
    let config = config.display().to_string();
    let mut off_args = args.to_vec();
    off_args.extend_from_slice(&["--config", &config]);
    let broker = Broker::start_with_fd_limit(&bin(), &off_args, FD_LIMIT);
    let accepted = connect_all(&broker);
    let log = broker.log();
    eprintln!(
        "process descriptors: {accepted} of {CONNECTIONS} served under a limit of {FD_LIMIT}"
    );
    assert!(
        accepted < CONNECTIONS && accepted > 0,
        "without direct descriptors at most about {FD_LIMIT} are served, not {accepted}; log:\n{log}"
    );
    assert!(
        log.contains("accept failed"),
        "the limit shows as failed accepts; log:\n{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}
