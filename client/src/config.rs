//! How to open a client connection ([`ClientConfig`]), what CONNACK said
//! ([`Connected`]) and why connecting failed ([`ConnectError`]).

use std::io;
use std::net::IpAddr;

use ringmq_engine::client::{DisconnectReason, ProtocolError};
use ringmq_engine::codec::{ConnAckProperties, ReasonCode};
use ringmq_net::conn::DriverConfig;

use crate::transport::Transport;

/// How to open a connection.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Reader/writer limits of the connection driver.
    pub driver: DriverConfig,
    /// Source address to bind before connecting (to open more connections
    /// to one server than one source address has ephemeral ports).
    pub bind_ip: Option<IpAddr>,
    /// `TCP_NODELAY` (on by default: MQTT packets are small and latency counts).
    pub nodelay: bool,
    /// TCP connect + CONNACK must finish within this many ms.
    pub connect_timeout_ms: u64,
    /// Reads pause while this many events wait for the consumer (at least 1).
    pub events_pause_at: usize,
    /// Plain TCP or TLS.
    pub transport: Transport,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            driver: DriverConfig::default(),
            bind_ip: None,
            nodelay: true,
            connect_timeout_ms: 10_000,
            events_pause_at: 1,
            transport: Transport::Tcp,
        }
    }
}

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
            ConnectError::Tls(e) => write!(f, "connect: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Io(e)
    }
}

/// What CONNACK said.
#[derive(Clone, Debug)]
pub struct Connected {
    pub session_present: bool,
    pub properties: Box<ConnAckProperties>,
}
