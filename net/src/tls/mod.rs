//! TLS as a byte transform between the socket and the engine.
//!
//! ```text
//!   socket ──ciphertext──▶ TlsSession::read ──plaintext──▶ Handler::on_bytes
//!   socket ◀─ciphertext── TlsSession::take_output ◀── encrypt ◀── take_outgoing
//! ```
//!
//! [`TlsSession`] wraps a rustls connection (the broker's server side, or
//! the client side loadgen and the client crate use, [`client`]) and works on buffers
//! only (`read_tls` / `process_new_packets` / `reader` in, `writer` /
//! `write_tls` out): it does no I/O, so the monoio driver (module `conn`)
//! and a native io_uring loop can both use it, and the engine keeps seeing
//! plaintext MQTT bytes.
//!
//! A session is `Send`: a connection handed to its owner shard after the
//! handshake (routing needs the decrypted CONNECT) carries its session
//! with the socket.
//!
//! Server handshakes run on helper threads ([`offload::HandshakePool`]), so
//! a burst of new TLS clients cannot stall established connections on the
//! same shard (docs/architecture.md, "TLS").

pub mod client;
pub mod config;
pub mod identity;
pub mod offload;

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

pub use config::{
    load, LoadedTls, SniCertificate, TlsConfigError, TlsSettings, TlsVersion, ALPN_HTTP_1_1,
    ALPN_MQTT,
};

/// Why a TLS session failed; the alert for the peer (if any) is queued in
/// the session's output.
#[derive(Debug)]
pub struct TlsError(pub rustls::Error);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for TlsError {}

/// What reading some ciphertext produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRead {
    /// Go on reading (plaintext, if any, was appended).
    Open,
    /// The peer sent close_notify: treat as end of stream.
    PeerClosed,
}

/// One TLS session (server or client side) over caller-owned buffers.
pub struct TlsSession {
    conn: Connection,
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A session for a newly accepted connection.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, TlsError> {
        let mut conn = ServerConnection::new(config).map_err(TlsError)?;
        // rustls would otherwise cap buffered output at 64 KiB and make
        // `encrypt` fail; the engine already bounds a connection's output
        // (`outgoing_buffer_max_bytes`), and the driver writes each batch
        // out before it takes the next.
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn: Connection::Server(conn),
        })
    }

    /// A client session to `server_name` (checked against the server's
    /// certificate unless `config` says otherwise). Its first output is the
    /// ClientHello: the driver's first write sends it, and plaintext
    /// encrypted before the handshake is done waits in the session.
    pub fn client(
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<TlsSession, TlsError> {
        let mut conn = ClientConnection::new(config, server_name).map_err(TlsError)?;
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn: Connection::Client(conn),
        })
    }

    /// Feeds `cipher` (all of it is consumed) and appends the plaintext it
    /// carried to `plain`. Handshake messages, alerts and session tickets
    /// to send back are queued: check [`TlsSession::wants_write`].
    ///
    /// The work is bounded by `cipher.len()`: rustls processes the records
    /// it holds, plaintext is never longer than its ciphertext, and a
    /// handshake flight costs at most one signature and one key exchange.
    pub fn read(&mut self, cipher: &[u8], plain: &mut BytesMut) -> Result<TlsRead, TlsError> {
        let mut input = cipher;
        while !input.is_empty() {
            let n = match self.conn.read_tls(&mut input) {
                Ok(n) => n,
                // Only "buffer full", which processing below prevents.
                Err(e) => {
                    return Err(TlsError(rustls::Error::General(format!(
                        "reading records: {e}"
                    ))))
                }
            };
            let state = self.conn.process_new_packets().map_err(TlsError)?;
            let pending = state.plaintext_bytes_to_read();
            if pending > 0 {
                let start = plain.len();
                plain.resize(start + pending, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut plain[start..]) {
                    plain.truncate(start);
                    return Err(TlsError(rustls::Error::General(format!(
                        "reading plaintext: {e}"
                    ))));
                }
            }
            if state.peer_has_closed() {
                return Ok(TlsRead::PeerClosed);
            }
            if n == 0 {
                break;
            }
        }
        Ok(TlsRead::Open)
    }

    /// Encrypts `plain` into records (queued until the handshake is done).
    pub fn encrypt(&mut self, plain: &[u8]) -> Result<(), TlsError> {
        self.conn
            .writer()
            .write_all(plain)
            .map_err(|e| TlsError(rustls::Error::General(format!("encrypting: {e}"))))
    }

    /// Whether records are waiting to be sent.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Appends every queued record to `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) => break,
                Ok(_) => {}
                // Writing to a Vec cannot fail.
                Err(_) => break,
            }
        }
    }

    /// Queues a close_notify alert (sent with the last output).
    pub fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// Whether this is the server side of a connection.
    pub fn is_server(&self) -> bool {
        matches!(self.conn, Connection::Server(_))
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The client certificate's identity (subject CN, else first SAN),
    /// once the handshake is done and the client presented a certificate.
    pub fn peer_identity(&self) -> Option<String> {
        let certs = self.conn.peer_certificates()?;
        identity::certificate_identity(certs.first()?.as_ref())
    }

    /// Negotiated version, cipher suite, SNI name and ALPN, for logs.
    pub fn describe(&self) -> String {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
            _ => "?",
        };
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let sni = match &self.conn {
            Connection::Server(c) => c.server_name().unwrap_or("-"),
            Connection::Client(_) => "-",
        };
        let alpn = self
            .conn
            .alpn_protocol()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_else(|| "-".into());
        format!("tls={version} suite={suite} sni={sni} alpn={alpn}")
    }
}

#[cfg(test)]
pub(crate) mod tests;
