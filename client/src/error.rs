//! Why connecting failed ([`ConnectError`]). Below `config.rs`,
//! `transport.rs` and `connection.rs`, which all return it.

use std::io;

use ringmq_engine::client::{DisconnectReason, ProtocolError};
use ringmq_engine::codec::ReasonCode;

/// Why [`MqttConnection::connect`](crate::MqttConnection::connect) failed.
#[derive(Debug)]
pub enum ConnectError {
    /// Socket, bind or TCP connect failed.
    Io(io::Error),
    /// TCP connect + CONNACK took longer than `connect_timeout_ms`.
    Timeout,
    /// The server answered CONNACK with this failure code.
    Refused(ReasonCode),
    /// The server broke the protocol before or in CONNACK.
    Protocol(ProtocolError),
    /// The connection ended before CONNACK (EOF, reset, ...).
    Closed(DisconnectReason),
    /// The TLS handshake failed (untrusted certificate, wrong name, the
    /// server refused our certificate, ...): rustls's error.
    Tls(String),
    /// The WebSocket upgrade or a frame was refused: what was wrong.
    WebSocket(String),
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Timeout => write!(f, "connect: timed out"),
            ConnectError::Refused(r) => {
                write!(f, "connect: refused by CONNACK (reason 0x{:02X})", r.0)
            }
            ConnectError::Protocol(e) => write!(f, "connect: protocol error: {e}"),
            ConnectError::Closed(r) => write!(f, "connect: closed before CONNACK ({r:?})"),
            ConnectError::Tls(e) | ConnectError::WebSocket(e) => write!(f, "connect: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Io(e)
    }
}
