//! How a connection's bytes travel: plain TCP, TLS, WebSocket or WebSocket
//! over TLS. TLS (`ringmq_net::tls`) and WebSocket (`ringmq_net::ws`, its
//! client side: upgrade with subprotocol `mqtt`, masked binary frames) are
//! byte transforms in the connection driver, wrapped around the TCP stream.

use std::sync::Arc;

use monoio::net::TcpStream;
use ringmq_net::conn::{ConnTls, Connection};
use ringmq_net::tls::TlsSession;
use ringmq_net::ws::client::WsClientSettings;
use ringmq_net::ws::WsSession;
use rustls::pki_types::ServerName;

use crate::error::ConnectError;

/// The transport of a client connection.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    /// MQTT directly over TCP.
    #[default]
    Tcp,
    /// MQTT over TLS.
    Tls(TlsTransport),
    /// MQTT over WebSocket (plain TCP below).
    Ws(WsClientSettings),
    /// MQTT over WebSocket over TLS.
    Wss(TlsTransport, WsClientSettings),
}

/// A TLS client's settings, shared by every connection that uses them.
#[derive(Clone, Debug)]
pub struct TlsTransport {
    /// Built with `ringmq_net::tls::client::client_config`.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate is checked against (and SNI).
    pub server_name: ServerName<'static>,
}

impl TlsTransport {
    fn connection(&self, stream: TcpStream) -> Result<Connection, ConnectError> {
        let session = TlsSession::client(self.config.clone(), self.server_name.clone())
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        Ok(Connection::with_tls(
            stream,
            ConnTls {
                session: Box::new(session),
                // A client runs its handshake in the driver.
                pool: None,
            },
        ))
    }
}

fn websocket(conn: Connection, ws: &WsClientSettings) -> Result<Connection, ConnectError> {
    let session =
        WsSession::client(ws.clone()).map_err(|e| ConnectError::WebSocket(e.to_string()))?;
    Ok(conn.with_websocket(Box::new(session)))
}

impl Transport {
    /// Short name for reports: `tcp`, `tls`, `ws`, `wss`.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls(_) => "tls",
            Transport::Ws(_) => "ws",
            Transport::Wss(..) => "wss",
        }
    }

    /// Wraps a connected stream for the driver (a TLS session starts its
    /// handshake with the driver's first write, a WebSocket session queues
    /// its upgrade request before the first MQTT bytes).
    pub(crate) fn wrap(&self, stream: TcpStream) -> Result<Connection, ConnectError> {
        match self {
            Transport::Tcp => Ok(Connection::new(stream)),
            Transport::Tls(tls) => tls.connection(stream),
            Transport::Ws(ws) => websocket(Connection::new(stream), ws),
            Transport::Wss(tls, ws) => websocket(tls.connection(stream)?, ws),
        }
    }
}
