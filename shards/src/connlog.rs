//! The operator's connection log: one line per connect (client id, remote
//! address, listener, protocol version, keep-alive, clean start, session
//! present, user name) and per disconnect with its reason, at info;
//! protocol violations at warn with what was wrong and the reason code
//! sent. The engine reports these as data (`ConnectionRecord`); this module
//! adds what only the runtime knows (address, listener, transport errors)
//! and writes the lines.
//!
//! Rate limit (`runtime.log_connections_max_lines_per_s`, per shard): past
//! it in a one-second window, lines are dropped and counted; the first line
//! after the window says `N connection log lines suppressed`. A connection
//! storm costs a counter increment per line, not a write.
//! `runtime.log_connections = false`: the engine records nothing and this
//! module writes nothing.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use ringmq_engine::broker::{CloseCause, ConnId, ConnectionRecord, ShardId};
use ringmq_engine::codec::Protocol;
use ringmq_net::conn::CloseReason;

use crate::conn_table::ConnTable;

/// Length of the rate limit's window, in ms.
const WINDOW_MS: u64 = 1000;

/// Where a connection came from, kept as addresses (no allocation per
/// connection; the text is made only for a line that is written). An IPv4
/// peer is kept here whole; an IPv6 one's address (without flow label or
/// scope id) in [`ConnLog::v6`], by connection. The local address is one
/// of the few the shard's listeners answer on, kept once in
/// [`ConnLog::locals`]: 12 bytes per connection, not 24 with an
/// IPv6-capable address inline (`a_connection_entry_stays_small...`).
struct Meta {
    /// The IPv4 address with [`Peer::V4`].
    ip4: [u8; 4],
    port: u16,
    /// Its index in `ConnLog::locals` plus one; 0: unknown.
    local: u16,
    peer: Peer,
    tls: bool,
    websocket: bool,
}

/// What a [`Meta`] knows of the peer's address.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    Unknown,
    V4,
    /// The address is in [`ConnLog::v6`].
    V6,
}

/// Most distinct local addresses one shard's log keeps (listeners times
/// the host addresses they answer on); a connection on another one is
/// logged with an unknown listener address.
const LOCALS_MAX: usize = 1024;

fn compact(addr: Option<SocketAddr>) -> Option<(IpAddr, u16)> {
    addr.map(|a| (a.ip(), a.port()))
}

impl Meta {
    /// The remote address and the listener's URL, as the lines say them
    /// (`v6`: the connection's entry in [`ConnLog::v6`]).
    fn text(
        meta: Option<&Meta>,
        v6: Option<&[u8; 16]>,
        locals: &[(IpAddr, u16)],
    ) -> (String, String) {
        let Some(m) = meta else {
            return ("unknown".into(), "unknown".into());
        };
        let scheme = match (m.websocket, m.tls) {
            (false, false) => "mqtt",
            (false, true) => "mqtts",
            (true, false) => "ws",
            (true, true) => "wss",
        };
        let ip = match (m.peer, v6) {
            (Peer::V4, _) => Some(IpAddr::from(m.ip4)),
            (Peer::V6, Some(v6)) => Some(IpAddr::from(*v6)),
            (Peer::V6 | Peer::Unknown, _) => None,
        };
        let peer = ip.map_or_else(
            || "unknown".to_string(),
            |ip| SocketAddr::from((ip, m.port)).to_string(),
        );
        let local = usize::from(m.local)
            .checked_sub(1)
            .and_then(|i| locals.get(i));
        let listener = match local {
            Some(&l) => format!("{scheme}://{}", SocketAddr::from(l)),
            None => format!("{scheme}://unknown"),
        };
        (peer, listener)
    }
}

/// One shard's connection log.
pub struct ConnLog {
    shard: ShardId,
    enabled: bool,
    max_lines_per_s: u32,
    window_start_ms: Cell<u64>,
    lines_in_window: Cell<u32>,
    suppressed: Cell<u64>,
    meta: RefCell<ConnTable<Meta>>,
    /// IPv6 peers' addresses, by connection (`Meta`).
    v6: RefCell<ConnTable<[u8; 16]>>,
    /// The local addresses connections arrived on, each once (at most
    /// [`LOCALS_MAX`]).
    locals: RefCell<Vec<(IpAddr, u16)>>,
}

impl ConnLog {
    pub fn new(shard: ShardId, enabled: bool, max_lines_per_s: u32) -> ConnLog {
        ConnLog {
            shard,
            enabled,
            max_lines_per_s,
            window_start_ms: Cell::new(0),
            lines_in_window: Cell::new(0),
            suppressed: Cell::new(0),
            meta: RefCell::new(ConnTable::default()),
            v6: RefCell::new(ConnTable::default()),
            locals: RefCell::new(Vec::new()),
        }
    }

    /// A connection accepted on this shard: its peer and listener
    /// (`scheme://local address`: mqtt, mqtts, ws or wss).
    pub fn accepted(
        &self,
        conn: ConnId,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        tls: bool,
        websocket: bool,
    ) {
        if !self.enabled {
            return;
        }
        let (peer, ip4, port) = match peer {
            None => (Peer::Unknown, [0; 4], 0),
            Some(SocketAddr::V4(a)) => (Peer::V4, a.ip().octets(), a.port()),
            Some(SocketAddr::V6(a)) => {
                self.v6.borrow_mut().insert(conn, a.ip().octets());
                (Peer::V6, [0; 4], a.port())
            }
        };
        let meta = Meta {
            ip4,
            port,
            local: compact(local).map_or(0, |l| self.local_index(l)),
            peer,
            tls,
            websocket,
        };
        if let Some(old) = self.meta.borrow_mut().insert(conn, meta) {
            // An id reused without its close recorded: no stale address.
            if old.peer == Peer::V6 && peer != Peer::V6 {
                self.v6.borrow_mut().remove(conn);
            }
        }
    }

    /// `local`'s index in [`ConnLog::locals`] plus one (added if new and
    /// there is room; 0 if not).
    fn local_index(&self, local: (IpAddr, u16)) -> u16 {
        let mut locals = self.locals.borrow_mut();
        let index = match locals.iter().position(|&l| l == local) {
            Some(i) => i,
            None if locals.len() < LOCALS_MAX => {
                locals.push(local);
                locals.len() - 1
            }
            None => return 0,
        };
        u16::try_from(index + 1).unwrap_or(0)
    }

    /// Gives back the spare capacity of the address table (after a burst
    /// of closes).
    pub fn shrink_memory(&self) {
        self.meta.borrow_mut().shrink_to_fit();
        self.v6.borrow_mut().shrink_to_fit();
    }

    /// Whether a line may be written now (the rate limit).
    fn admit(&self, now_ms: u64) -> bool {
        if now_ms.saturating_sub(self.window_start_ms.get()) >= WINDOW_MS {
            self.window_start_ms.set(now_ms);
            self.lines_in_window.set(0);
            let suppressed = self.suppressed.replace(0);
            if suppressed > 0 {
                tracing::warn!(
                    shard = self.shard,
                    suppressed,
                    limit_lines_per_s = self.max_lines_per_s,
                    "{suppressed} connection log lines suppressed (runtime.log_connections_max_lines_per_s)"
                );
            }
        }
        if self.lines_in_window.get() < self.max_lines_per_s {
            self.lines_in_window.set(self.lines_in_window.get() + 1);
            true
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            false
        }
    }

    /// Writes one record. `transport` is why the driver ended the
    /// connection, for a `Closed` record (`None` when not known here).
    pub fn write(&self, record: ConnectionRecord, transport: Option<CloseReason>, now_ms: u64) {
        if !self.enabled {
            return;
        }
        // The log formatter's line buffer (one per thread) grows to the
        // longest line and stays: in the lasting heap, not in a page of
        // the burst being logged (`ringmq_net::lasting`).
        ringmq_net::lasting::scope(|| self.write_record(record, transport, now_ms));
    }

    fn write_record(&self, record: ConnectionRecord, transport: Option<CloseReason>, now_ms: u64) {
        match record {
            ConnectionRecord::Connected {
                conn,
                client_id,
                protocol,
                keep_alive_s,
                clean_start,
                session_present,
                username,
            } => {
                if !self.admit(now_ms) {
                    return;
                }
                let (peer, listener) = Meta::text(
                    self.meta.borrow().get(conn),
                    self.v6.borrow().get(conn),
                    &self.locals.borrow(),
                );
                let (peer, listener) = (peer.as_str(), listener.as_str());
                let username = username.as_ref().map_or_else(|| "-".to_string(), text);
                tracing::info!(
                    shard = self.shard,
                    client_id = %text(&client_id),
                    peer,
                    listener,
                    protocol = version(protocol),
                    keep_alive_s,
                    clean_start,
                    session_present,
                    username = %username,
                    "client connected"
                );
            }
            ConnectionRecord::Closed {
                conn,
                client_id,
                cause,
            } => {
                let meta = self.meta.borrow_mut().remove(conn);
                let v6 = match &meta {
                    Some(m) if m.peer == Peer::V6 => self.v6.borrow_mut().remove(conn),
                    _ => None,
                };
                // A connection that never connected and that the engine did
                // not end (handed to another shard, a port probe) is no
                // operator's business.
                if client_id.is_none() && cause.is_none() {
                    return;
                }
                if !self.admit(now_ms) {
                    return;
                }
                let (peer, listener) =
                    Meta::text(meta.as_ref(), v6.as_ref(), &self.locals.borrow());
                let (peer, listener) = (peer.as_str(), listener.as_str());
                let client_id = client_id.as_ref().map_or_else(|| "-".to_string(), text);
                match cause {
                    Some(CloseCause::ProtocolViolation {
                        reason,
                        what,
                        decode,
                    }) => {
                        let detail = decode.map(|d| format!("{d:?}")).unwrap_or_default();
                        tracing::warn!(
                            shard = self.shard,
                            client_id = %client_id,
                            peer,
                            listener,
                            reason_code = %format!("0x{:02X}", reason.0),
                            what,
                            detail = %detail,
                            "protocol violation: client disconnected"
                        );
                    }
                    other => {
                        let reason = describe(other, transport);
                        tracing::info!(
                            shard = self.shard,
                            client_id = %client_id,
                            peer,
                            listener,
                            reason = %reason,
                            "client disconnected"
                        );
                    }
                }
            }
        }
    }
}

/// Bytes from the wire as text (UTF-8 checked by the codec; lossy anyway).
fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn version(p: Protocol) -> &'static str {
    match p {
        Protocol::V3_1 => "3.1",
        Protocol::V3_1_1 => "3.1.1",
        Protocol::V5 => "5.0",
    }
}

/// A disconnect reason in words.
fn describe(cause: Option<CloseCause>, transport: Option<CloseReason>) -> String {
    match cause {
        Some(CloseCause::ClientDisconnect(rc)) => format!("client DISCONNECT 0x{:02X}", rc.0),
        Some(CloseCause::KeepAliveTimeout) => "keep-alive timeout".to_string(),
        Some(CloseCause::ConnectTimeout) => {
            "no CONNECT within limits.connect_timeout_ms".to_string()
        }
        Some(CloseCause::ConnectRefused(rc)) => format!("CONNECT refused with 0x{:02X}", rc.0),
        Some(CloseCause::TakenOver) => "session taken over by a new connection".to_string(),
        Some(CloseCause::ServerShutdown) => "server shutdown".to_string(),
        Some(CloseCause::Limit(rc)) => format!("broker limit, 0x{:02X} sent", rc.0),
        Some(CloseCause::StorageFailed) => {
            "durable storage failed, acknowledgement not sent".to_string()
        }
        Some(CloseCause::ProtocolViolation { reason, what, .. }) => {
            format!("protocol violation ({what}), 0x{:02X} sent", reason.0)
        }
        None => match transport {
            Some(CloseReason::PeerClosed) => "closed by the client without DISCONNECT".to_string(),
            Some(CloseReason::ReadError(k) | CloseReason::WriteError(k)) => {
                format!("I/O error: {k}")
            }
            Some(CloseReason::ReadBufferFull) => "read buffer full".to_string(),
            Some(CloseReason::PacketTimeout) => {
                "incomplete packet not completed within runtime.packet_complete_timeout_ms"
                    .to_string()
            }
            Some(CloseReason::TlsError) => "TLS error".to_string(),
            Some(CloseReason::Local) | None => "closed by the broker".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_connection_entry_stays_small_and_names_its_listener() {
        let entry = std::mem::size_of::<Option<Meta>>();
        assert!(entry <= 12, "a connection's log entry is {entry} bytes");
        let log = ConnLog::new(0, true, 100);
        let listener = addr("127.0.0.1:1883");
        log.accepted(
            1,
            Some(addr("127.0.0.5:40000")),
            Some(listener),
            false,
            false,
        );
        log.accepted(2, Some(addr("[::1]:40001")), Some(listener), true, false);
        log.accepted(3, None, Some(addr("[::1]:8883")), true, true);
        assert_eq!(log.locals.borrow().len(), 2, "each local address once");
        let text = |conn| {
            Meta::text(
                log.meta.borrow().get(conn),
                log.v6.borrow().get(conn),
                &log.locals.borrow(),
            )
        };
        assert_eq!(
            text(1),
            ("127.0.0.5:40000".into(), "mqtt://127.0.0.1:1883".into())
        );
        assert_eq!(
            text(2),
            ("[::1]:40001".into(), "mqtts://127.0.0.1:1883".into())
        );
        assert_eq!(text(3), ("unknown".into(), "wss://[::1]:8883".into()));
        assert_eq!(text(4), ("unknown".into(), "unknown".into()));
        // Only IPv6 peers take a place in the side table, and it is given
        // back with the connection (ids are reused).
        assert_eq!(log.v6.borrow().len(), 1);
        log.accepted(
            2,
            Some(addr("[2001:db8::7]:1234")),
            Some(listener),
            false,
            false,
        );
        assert_eq!(
            text(2),
            ("[2001:db8::7]:1234".into(), "mqtt://127.0.0.1:1883".into())
        );
        log.accepted(2, Some(addr("10.1.2.3:5")), Some(listener), false, false);
        assert_eq!(
            text(2),
            ("10.1.2.3:5".into(), "mqtt://127.0.0.1:1883".into())
        );
        assert!(log.v6.borrow().is_empty());
    }
}
