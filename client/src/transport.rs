//! How a connection's bytes travel: plain TCP, or TLS as a byte transform
//! in the connection driver (`ringmq_net::tls`). A WebSocket transport
//! would be one more variant, wrapped the same way around the TCP stream.

use std::rc::Rc;
use std::sync::Arc;

use monoio::net::TcpStream;
use ringmq_net::conn::{ConnTls, Connection};
use ringmq_net::tls::{HandshakeBudget, TlsSession};
use rustls::pki_types::ServerName;

use crate::error::ConnectError;

/// Handshake work a client connection may do per millisecond, in µs: all
/// of it (the budget exists to protect a broker shard's other clients).
const CLIENT_HANDSHAKE_BUDGET_US_PER_MS: u64 = 1_000;

/// The transport of a client connection.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    /// MQTT directly over TCP.
    #[default]
    Tcp,
    /// MQTT over TLS.
    Tls(TlsTransport),
}

/// A TLS client's settings, shared by every connection that uses them.
#[derive(Clone, Debug)]
pub struct TlsTransport {
    /// Built with `ringmq_net::tls::client::client_config`.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate is checked against (and SNI).
    pub server_name: ServerName<'static>,
}

impl Transport {
    /// Short name for reports: `tcp`, `tls`.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls(_) => "tls",
        }
    }

    /// Wraps a connected stream for the driver (a TLS session starts its
    /// handshake with the driver's first write).
    pub(crate) fn wrap(&self, stream: TcpStream) -> Result<Connection, ConnectError> {
        match self {
            Transport::Tcp => Ok(Connection::new(stream)),
            Transport::Tls(tls) => {
                let session = TlsSession::client(tls.config.clone(), tls.server_name.clone())
                    .map_err(|e| ConnectError::Tls(e.to_string()))?;
                let budget = Rc::new(HandshakeBudget::new(CLIENT_HANDSHAKE_BUDGET_US_PER_MS));
                Ok(Connection::with_tls(
                    stream,
                    ConnTls {
                        session: Box::new(session),
                        budget,
                    },
                ))
            }
        }
    }
}
