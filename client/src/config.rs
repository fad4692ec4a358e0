//! How to open a client connection ([`ClientConfig`]) and what CONNACK said
//! ([`Connected`]); why connecting failed is [`crate::error`].

use std::net::IpAddr;

use ringmq_engine::codec::ConnAckProperties;
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
    /// Plain TCP, TLS, WebSocket or WebSocket over TLS.
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

/// What CONNACK said.
#[derive(Clone, Debug)]
pub struct Connected {
    pub session_present: bool,
    pub properties: Box<ConnAckProperties>,
}
