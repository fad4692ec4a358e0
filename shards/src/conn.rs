//! A client connection on a shard: accept it in the engine, route it to the
//! shard that owns its client id (hand-off), then drive it with
//! `ringmq_net::conn`, with [`ConnCtx`] as the driver's handler.
//!
//! Routing (DESIGN.md section 3, session ownership): with more than one
//! shard, a new connection's first bytes are read *before* the engine sees
//! them and given to `route_connect`. If another shard owns the client id,
//! the accepting shard closes the connection in its engine (it saw only
//! `accept`), gives up the socket (no operation in flight) and pushes
//! `RingMsg::Handoff { fd, bytes }` to the owner, which adopts the socket,
//! accepts it in its engine and feeds it those bytes first. The owner does
//! not route again, so a connection moves at most once.
//!
//! TLS: the accepting shard runs the handshake during routing (the route
//! depends on the client id inside the encrypted CONNECT), so a hand-off
//! carries the rustls session with the fd and the plaintext bytes
//! (`HandoffTls`; a session is `Send`). The owner continues the same
//! session; nothing is renegotiated. With one shard, or when the
//! connection stays, the driver runs the handshake.
//!
//! Routing is bounded: by the engine's CONNECT timeout (it closes the
//! connection, which ends the routing read) and by
//! `route_buffer_max_bytes` (past it the connection is served locally and
//! the engine judges the oversize or malformed CONNECT).

use std::os::fd::OwnedFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use ringmq_engine::broker::{route_connect, ConnId, Route};
use ringmq_net::conn::{CloseReason, ConnTls, Connection, DriverHandle, Handler};
use ringmq_net::tls::{LoadedTls, TlsSession};

use crate::mesh::RingMsg;
use crate::reload::Cached;
use crate::shard::state::{Origin, Shard};

/// A listener as one shard's connections see it.
pub struct ListenerCtx {
    /// `mqtt://ADDR` or `mqtts://ADDR`, for logs.
    pub name: String,
    pub nodelay: bool,
    pub tls: Option<ListenerTls>,
}

/// A TLS listener's certificates (this shard's view, reloadable) and its
/// identity setting.
pub struct ListenerTls {
    pub files: Cached<LoadedTls>,
    pub use_identity_as_username: bool,
}

/// The TLS part of a hand-off: the established session and the listener
/// setting the owner needs.
#[derive(Debug)]
pub struct HandoffTls {
    pub session: Box<TlsSession>,
    pub use_identity_as_username: bool,
}

/// The runtime side of one accepted connection: the driver's handler. The
/// shard keeps only the driver handle (`Shard::register`), so this holds
/// the shard and nothing holds this but the driver's tasks.
pub struct ConnCtx {
    pub shard: Rc<Shard>,
    pub id: ConnId,
    /// The driver handle and the overflow pause, lent to the shard while
    /// it handles this connection's input.
    pub origin: Origin,
    /// Take the user name from the client certificate (TLS listeners with
    /// `use_identity_as_username`).
    pub use_identity_as_username: bool,
}

impl Handler for ConnCtx {
    fn on_bytes(&self, buf: &mut BytesMut) {
        let now = self.shard.now_ms();
        self.shard
            .broker
            .borrow_mut()
            .handle_read(self.id, buf, now);
        self.shard.drain_events(Some(&self.origin));
    }

    fn take_outgoing(&self) -> Option<Bytes> {
        let mut broker = self.shard.broker.borrow_mut();
        let out = broker.outgoing(self.id)?;
        if out.is_empty() {
            return None;
        }
        Some(out.split().freeze())
    }

    fn reads_paused(&self) -> bool {
        match self.origin.blocked_on.get() {
            Some(peer) if self.shard.over_limit(peer) => true,
            Some(_) => {
                self.origin.blocked_on.set(None);
                false
            }
            None => false,
        }
    }

    fn on_closed(&self, reason: CloseReason) {
        self.shard.connection_closed(self.id, reason);
    }

    fn on_tls_established(&self, session: &TlsSession) {
        tracing::debug!(shard = self.shard.id, conn = self.id, tls = %session.describe(), "TLS established");
        if !self.use_identity_as_username {
            return;
        }
        match session.peer_identity() {
            Some(name) => self
                .shard
                .broker
                .borrow_mut()
                .set_certificate_identity(self.id, &name),
            None => {
                // The listener promised a user name from the certificate;
                // letting the CONNECT's own user name through instead would
                // bypass the certificate.
                tracing::warn!(
                    shard = self.shard.id,
                    conn = self.id,
                    "client certificate has no subject CN or SAN to use as user name; closing"
                );
                self.origin.handle.close();
            }
        }
    }
}

/// Accepts a connection in the engine and registers its runtime side.
/// `None`: the engine refused it (connection limit) or the shard stops;
/// dropping the connection closes the socket.
fn accept(
    shard: &Rc<Shard>,
    conn: &Connection,
    use_identity_as_username: bool,
) -> Option<Rc<ConnCtx>> {
    if shard.is_stopping() {
        return None;
    }
    let now = shard.now_ms();
    let accepted = shard.broker.borrow_mut().accept(now);
    let Some(id) = accepted else {
        tracing::debug!(shard = shard.id, peer = ?conn.peer_addr(), "connection refused: connections_max reached");
        shard.drain_events(None);
        return None;
    };
    let handle = DriverHandle::new();
    shard.register(id, handle.clone());
    let ctx = Rc::new(ConnCtx {
        shard: shard.clone(),
        id,
        origin: Origin::new(handle),
        use_identity_as_username,
    });
    shard.drain_events(None);
    Some(ctx)
}

fn drive(conn: Connection, initial: BytesMut, ctx: Rc<ConnCtx>) {
    let handle = ctx.origin.handle.clone();
    let config = ctx.shard.settings.driver;
    conn.spawn_driver(initial, ctx, handle, config);
}

/// A socket from this shard's `listener`.
pub async fn serve_accepted(
    shard: Rc<Shard>,
    stream: monoio::net::TcpStream,
    listener: Rc<ListenerCtx>,
) {
    if let Err(e) = stream.set_nodelay(listener.nodelay) {
        tracing::debug!(shard = shard.id, error = %e, "TCP_NODELAY");
    }
    let (mut conn, use_identity_as_username) = match &listener.tls {
        None => (Connection::new(stream), false),
        Some(tls) => {
            // The certificates in force now: a reload applies to the
            // connections accepted after it.
            let files = tls.files.get();
            match TlsSession::new(files.config.clone()) {
                Ok(session) => (
                    Connection::with_tls(
                        stream,
                        ConnTls {
                            session: Box::new(session),
                            budget: shard.tls_budget.clone(),
                        },
                    ),
                    tls.use_identity_as_username,
                ),
                Err(e) => {
                    tracing::warn!(shard = shard.id, listener = %listener.name, error = %e, "cannot start a TLS session");
                    return;
                }
            }
        }
    };
    let Some(ctx) = accept(&shard, &conn, use_identity_as_username) else {
        return;
    };
    if shard.count <= 1 {
        drive(conn, BytesMut::new(), ctx);
        return;
    }
    let chunk = shard.settings.driver.read_chunk_bytes;
    let mut buf = BytesMut::new();
    let owner = loop {
        let read = monoio::select! {
            r = conn.read_chunk(buf, chunk) => Some(r),
            _ = ctx.origin.handle.closed() => None,
        };
        let Some((result, returned)) = read else {
            // Closed by the engine (CONNECT timeout, shutdown) while routing:
            // the driver flushes whatever the engine queued and shuts down.
            drive(conn, BytesMut::new(), ctx);
            return;
        };
        buf = returned;
        match result {
            Ok(0) => return ctx.on_closed(CloseReason::PeerClosed),
            Ok(_) => {}
            Err(e) => return ctx.on_closed(CloseReason::ReadError(e.kind())),
        }
        match route_connect(&buf, shard.id, shard.count) {
            Route::NeedMore if buf.len() < shard.settings.route_buffer_max_bytes => continue,
            Route::NeedMore | Route::Local => break None,
            Route::Shard(owner) if owner == shard.id || owner >= shard.count => break None,
            Route::Shard(owner) => break Some(owner),
        }
    };
    let Some(owner) = owner else {
        drive(conn, buf, ctx);
        return;
    };
    match conn.into_owned_fd() {
        Ok((fd, session)) => {
            tracing::trace!(
                shard = shard.id,
                owner,
                bytes = buf.len(),
                "handing connection to its owner"
            );
            ctx.on_closed(CloseReason::Local);
            let tls = session.map(|session| {
                Box::new(HandoffTls {
                    session,
                    use_identity_as_username,
                })
            });
            shard.send(
                owner,
                RingMsg::Handoff {
                    fd,
                    bytes: buf,
                    tls,
                },
                None,
            );
            shard.publish_wakeups();
        }
        Err(conn) => {
            // Unreachable by construction (no read is abandoned before a
            // hand-off); serving locally is still correct, only slower.
            tracing::error!(
                shard = shard.id,
                owner,
                "cannot hand off a socket with I/O in flight; serving locally"
            );
            drive(conn, buf, ctx);
        }
    }
}

/// A connection handed over by another shard: adopt the socket (and its
/// TLS session), accept it here, feed the engine the bytes already read.
pub fn adopt_handoff(
    shard: &Rc<Shard>,
    fd: OwnedFd,
    bytes: BytesMut,
    tls: Option<Box<HandoffTls>>,
) {
    if shard.is_stopping() {
        return; // dropping the fd closes the socket
    }
    let use_identity_as_username = tls.as_ref().is_some_and(|t| t.use_identity_as_username);
    let tls = tls.map(|t| ConnTls {
        session: t.session,
        budget: shard.tls_budget.clone(),
    });
    let conn = match Connection::from_owned_fd(fd, tls) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(shard = shard.id, error = %e, "cannot adopt a handed-off connection");
            return;
        }
    };
    if let Some(ctx) = accept(shard, &conn, use_identity_as_username) {
        drive(conn, bytes, ctx);
    }
}
