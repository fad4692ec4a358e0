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
//! connection, which ends the routing read), by the configured maximum
//! packet size (`route_connect` serves a CONNECT announcing more locally
//! at once, and the engine refuses it) and by `route_buffer_max_bytes`
//! (past it the connection is served locally and the engine judges the
//! malformed CONNECT).

use std::os::fd::OwnedFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use ringmq_engine::broker::{route_connect, ConnId, Route, ShardId};
use ringmq_engine::codec::{check_frame, FrameCheck, ReasonCode};
use ringmq_net::conn::{CloseReason, ConnTls, Connection, DriverHandle, Handler};
use ringmq_net::tls::{LoadedTls, TlsSession};
use ringmq_net::ws::WsSession;

use crate::mesh::{HandoffTls, RingMsg};
use crate::reload::Cached;
use crate::shard::state::{Origin, Shard};

/// A listener as one shard's connections see it.
pub struct ListenerCtx {
    /// `mqtt://ADDR` or `mqtts://ADDR`, for logs.
    pub name: String,
    pub nodelay: bool,
    pub tls: Option<ListenerTls>,
    /// WebSocket listeners: their settings (each connection gets a session).
    pub ws: Option<std::sync::Arc<ringmq_net::ws::WsSettings>>,
}

/// A TLS listener's certificates (this shard's view, reloadable) and its
/// identity setting.
pub struct ListenerTls {
    pub files: Cached<LoadedTls>,
    pub use_identity_as_username: bool,
}

/// The runtime side of one accepted connection: the driver's handler. The
/// shard keeps only the driver handle (`Shard::register`), so this holds
/// the shard and nothing holds this but the driver's tasks.
pub struct ConnCtx {
    pub shard: Rc<Shard>,
    /// The driver handle and the overflow pause, lent to the shard while
    /// it handles this connection's input, with the connection's engine id
    /// and its `use_identity_as_username` flag (24 bytes in all, an `Rc`
    /// in mimalloc's 40-byte class: 56 while the id took 8 bytes and the
    /// flag its own; docs/benchmarks.md, memory per idle connection).
    pub origin: Origin,
}

impl ConnCtx {
    /// The connection's engine id.
    pub fn id(&self) -> ConnId {
        self.origin.conn()
    }

    /// The CONNECT in `bytes` belongs to another shard but the connection
    /// cannot be handed over (native loop, no process descriptor left):
    /// the engine refuses it with 0x89 Server busy (v3: return code 3) and
    /// closes it.
    pub fn refuse_unrouted(&self, bytes: &[u8]) {
        let now = self.shard.now_ms();
        self.shard.broker.borrow_mut().refuse_unrouted(
            self.id(),
            bytes,
            ReasonCode::SERVER_BUSY,
            now,
        );
        self.shard.drain_events(Some(&self.origin));
    }
}

impl Handler for ConnCtx {
    fn on_bytes(&self, buf: &mut BytesMut) {
        let now = self.shard.now_ms();
        let packet_size_max_bytes = {
            let mut broker = self.shard.broker.borrow_mut();
            broker.handle_read(self.id(), buf, now);
            broker.config().packet_size_max_bytes
        };
        if !buf.is_empty() {
            let chunk = self.shard.settings.driver.read_chunk_bytes;
            reserve_for_partial_packet(buf, packet_size_max_bytes, chunk);
        }
        self.shard.drain_events(Some(&self.origin));
    }

    fn take_outgoing(&self) -> Option<Bytes> {
        // The socket took the previous batch: the engine refills the buffer
        // from what waited behind it (retained messages on SUBSCRIBE, a
        // burst of QoS 0) and asks, with a Transmit, to be called again.
        let now = self.shard.now_ms();
        let batch = {
            let mut broker = self.shard.broker.borrow_mut();
            broker.handle_writable(self.id(), now);
            broker.take_outgoing(self.id())
        };
        self.shard.drain_events(None);
        batch
    }

    fn reads_paused(&self) -> bool {
        // A CONNECT waiting for its password verification: nothing after it
        // is read until the verdict ([MQTT-3.1.4-6]); `Shard::apply_auth`
        // resumes the reads.
        if self.shard.broker.borrow().auth_pending(self.id()) {
            return true;
        }
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
        self.shard.connection_closed(self.id(), reason);
    }

    fn on_tls_established(&self, session: &TlsSession) {
        tracing::debug!(shard = self.shard.id, conn = self.id(), tls = %session.describe(), "TLS established");
        if !self.origin.use_identity_as_username() {
            return;
        }
        match session.peer_identity() {
            Some(name) => self
                .shard
                .broker
                .borrow_mut()
                .set_certificate_identity(self.id(), &name),
            None => {
                // The listener promised a user name from the certificate;
                // letting the CONNECT's own user name through instead would
                // bypass the certificate.
                tracing::warn!(
                    shard = self.shard.id,
                    conn = self.id(),
                    "client certificate has no subject CN or SAN to use as user name; closing"
                );
                self.origin.handle.close();
            }
        }
    }
}

/// Makes room, in one allocation, for the rest of a packet the engine left
/// incomplete in `buf` when it is larger than one read: exactly what the
/// packet still needs plus one read (`read_chunk_bytes`), so that the
/// driver's reads never grow the buffer again. Left to grow by doubling, a
/// 1 MiB packet arriving in reads would end in a 2 MiB buffer after
/// copying through 1 MiB, 512 KiB, ... buffers that the allocator keeps:
/// 2 MB and more per stalled connection instead of the documented bound of
/// `packet_size_max_bytes + read_chunk_bytes`. A remainder within one read
/// is left to the driver's usual reserve.
fn reserve_for_partial_packet(buf: &mut BytesMut, packet_size_max_bytes: u32, chunk_bytes: usize) {
    // The engine accepted this header (it clears the buffer of a
    // connection it closes), so `needed_bytes` is within the packet limit.
    let Ok(FrameCheck::Incomplete { needed_bytes }) = check_frame(buf, packet_size_max_bytes)
    else {
        return;
    };
    let wanted = needed_bytes.saturating_add(chunk_bytes);
    if needed_bytes <= chunk_bytes || buf.capacity() - buf.len() >= wanted {
        return;
    }
    let mut exact = BytesMut::with_capacity(buf.len() + wanted);
    exact.extend_from_slice(buf);
    *buf = exact;
}

/// What the engine and the connection log learn about a new connection.
pub struct NewConn {
    pub peer: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
    pub tls: bool,
    pub websocket: bool,
    /// Take the user name from the client certificate.
    pub use_identity_as_username: bool,
}

impl NewConn {
    fn of(conn: &Connection, use_identity_as_username: bool) -> NewConn {
        NewConn {
            peer: conn.peer_addr(),
            local: conn.local_addr(),
            tls: conn.is_tls(),
            websocket: conn.is_websocket(),
            use_identity_as_username,
        }
    }
}

/// Accepts a connection in the engine and registers its runtime side.
/// `None`: the engine refused it (connection limit) or the shard stops;
/// dropping the connection closes the socket.
pub fn accept(shard: &Rc<Shard>, new: NewConn) -> Option<Rc<ConnCtx>> {
    if shard.is_stopping() {
        return None;
    }
    let now = shard.now_ms();
    let accepted = shard.broker.borrow_mut().accept(now);
    let Some(id) = accepted else {
        tracing::debug!(shard = shard.id, peer = ?new.peer, "connection refused: connections_max reached");
        shard.drain_events(None);
        return None;
    };
    let handle = DriverHandle::new();
    // Engine ids are slab keys below the shard's connection count.
    let Some(origin) = Origin::new(handle.clone(), id, new.use_identity_as_username) else {
        tracing::warn!(
            shard = shard.id,
            "connection refused: connection id of 2^31 or more"
        );
        shard.broker.borrow_mut().handle_closed(id, now);
        shard.drain_events(None);
        return None;
    };
    shard
        .connlog
        .accepted(id, new.peer, new.local, new.tls, new.websocket);
    shard.register(id, handle);
    shard.remember_peer(id, new.peer);
    let ctx = Rc::new(ConnCtx {
        shard: shard.clone(),
        origin,
    });
    shard.drain_events(None);
    Some(ctx)
}

fn drive(conn: Connection, initial: BytesMut, ctx: Rc<ConnCtx>) {
    let handle = ctx.origin.handle.clone();
    let config = ctx.shard.settings.driver;
    conn.spawn_driver(initial, ctx, handle, config);
}

/// The TLS session of a connection accepted on a TLS listener, with the
/// certificates in force now (a reload applies to the connections accepted
/// after it); `None` (logged) if it cannot start.
pub fn start_tls(shard: &Shard, listener: &str, tls: &ListenerTls) -> Option<ConnTls> {
    let files = tls.files.get();
    match TlsSession::new(files.config.clone()) {
        Ok(session) => Some(ConnTls {
            session: Box::new(session),
            pool: shard.tls_pool.clone(),
        }),
        Err(e) => {
            tracing::warn!(shard = shard.id, listener = %listener, error = %e, "cannot start a TLS session");
            None
        }
    }
}

/// A socket from this shard's `listener`.
pub async fn serve_accepted(
    shard: Rc<Shard>,
    stream: monoio::net::TcpStream,
    listener: Rc<ListenerCtx>,
) {
    shard.count_accepted_socket();
    if let Err(e) = stream.set_nodelay(listener.nodelay) {
        tracing::debug!(shard = shard.id, error = %e, "TCP_NODELAY");
    }
    let (mut conn, use_identity_as_username) = match &listener.tls {
        None => (Connection::new(stream), false),
        Some(tls) => match start_tls(&shard, &listener.name, tls) {
            Some(session) => (
                Connection::with_tls(stream, session),
                tls.use_identity_as_username,
            ),
            None => return,
        },
    };
    if let Some(ws) = &listener.ws {
        conn = conn.with_websocket(Box::new(WsSession::new(ws.clone())));
    }
    let Some(ctx) = accept(&shard, NewConn::of(&conn, use_identity_as_username)) else {
        return;
    };
    let chunk = shard.settings.driver.read_chunk_bytes;
    if conn.is_tls() {
        // The handshake's crypto runs on the helper threads; the engine's
        // CONNECT timeout (or a shutdown) cuts a handshake that drags on.
        let handshake = monoio::select! {
            r = conn.handshake(chunk) => Some(r),
            _ = ctx.origin.handle.closed() => None,
        };
        match handshake {
            Some(Ok(())) => {}
            // Closed by the engine: the driver flushes and shuts down (or
            // just closes, if the session was away on a helper thread).
            None => return drive(conn, BytesMut::new(), ctx),
            Some(Err(e)) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => CloseReason::PeerClosed,
                    std::io::ErrorKind::InvalidData => CloseReason::TlsError,
                    kind => CloseReason::ReadError(kind),
                };
                return ctx.on_closed(reason);
            }
        }
    }
    if shard.count <= 1 {
        drive(conn, BytesMut::new(), ctx);
        return;
    }
    let packet_size_max_bytes = shard.broker.borrow().config().packet_size_max_bytes;
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
        match route_connect(&buf, shard.id, shard.count, packet_size_max_bytes) {
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
        Ok((fd, session, ws)) => {
            let tls = session.map(|session| {
                Box::new(HandoffTls {
                    session,
                    use_identity_as_username,
                })
            });
            hand_off(&shard, owner, &*ctx, fd, buf, tls, ws);
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

/// Hands a routed connection to its `owner`: closes it in this engine
/// (through its `handler`) and pushes the socket, the bytes read and the
/// sessions to the owner over the ring.
pub fn hand_off(
    shard: &Shard,
    owner: ShardId,
    handler: &dyn Handler,
    fd: OwnedFd,
    bytes: BytesMut,
    tls: Option<Box<HandoffTls>>,
    ws: Option<Box<WsSession>>,
) {
    tracing::trace!(
        shard = shard.id,
        owner,
        bytes = bytes.len(),
        "handing connection to its owner"
    );
    handler.on_closed(CloseReason::Local);
    shard.send(owner, RingMsg::Handoff { fd, bytes, tls, ws }, None);
    shard.publish_wakeups();
}

/// A connection handed over by another shard: adopt the socket (and its
/// TLS session), accept it here, feed the engine the bytes already read.
pub fn adopt_handoff(
    shard: &Rc<Shard>,
    fd: OwnedFd,
    bytes: BytesMut,
    tls: Option<Box<HandoffTls>>,
    ws: Option<Box<WsSession>>,
) {
    if shard.is_stopping() {
        return; // dropping the fd closes the socket
    }
    let use_identity_as_username = tls.as_ref().is_some_and(|t| t.use_identity_as_username);
    let tls = tls.map(|t| ConnTls {
        session: t.session,
        pool: shard.tls_pool.clone(),
    });
    let conn = match Connection::from_owned_fd(fd, tls) {
        Ok(conn) => match ws {
            Some(ws) => conn.with_websocket(ws),
            None => conn,
        },
        Err(e) => {
            tracing::warn!(shard = shard.id, error = %e, "cannot adopt a handed-off connection");
            return;
        }
    };
    if let Some(ctx) = accept(shard, NewConn::of(&conn, use_identity_as_username)) {
        drive(conn, bytes, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: usize = 16 * 1024;
    const PACKET_MAX: u32 = 1024 * 1024;

    /// The first bytes of a PUBLISH whose frame is `frame_len` bytes.
    fn publish_start(frame_len: usize, have: usize) -> BytesMut {
        // 0x30, 3-byte remaining length (frame 16 KiB..2 MiB), then body.
        let remaining = frame_len - 4;
        let mut b = BytesMut::new();
        b.extend_from_slice(&[
            0x30,
            (remaining & 0x7f) as u8 | 0x80,
            ((remaining >> 7) & 0x7f) as u8 | 0x80,
            (remaining >> 14) as u8,
        ]);
        b.resize(have, b'p');
        b
    }

    #[test]
    fn a_large_partial_packet_gets_one_exact_buffer_that_never_grows() {
        let frame_len = 1024 * 1024;
        let mut buf = publish_start(frame_len, 600);
        reserve_for_partial_packet(&mut buf, PACKET_MAX, CHUNK);
        assert_eq!(buf.len(), 600, "content kept");
        assert_eq!(&buf[..1], &[0x30]);
        // Exactly the rest of the packet plus one read: the documented
        // bound packet_size_max_bytes + read_chunk_bytes.
        assert_eq!(buf.capacity(), frame_len + CHUNK);
        let start = buf.as_ptr();
        // The driver's reads (reserve one chunk, append) up to the last
        // byte never move the buffer, and asking again changes nothing.
        while buf.len() < frame_len - 1 {
            buf.reserve(CHUNK);
            let n = CHUNK.min(frame_len - 1 - buf.len());
            buf.resize(buf.len() + n, b'p');
            reserve_for_partial_packet(&mut buf, PACKET_MAX, CHUNK);
            assert_eq!(buf.as_ptr(), start, "reallocated at {} bytes", buf.len());
        }
        assert_eq!(buf.capacity(), frame_len + CHUNK);
    }

    #[test]
    fn a_remainder_within_one_read_or_an_unknown_length_is_left_alone() {
        // Needs fewer bytes than one read (10,000 of a 20,000-byte frame).
        let mut small = publish_start(20_000, 10_000);
        assert_eq!(
            check_frame(&small, PACKET_MAX),
            Ok(FrameCheck::Incomplete {
                needed_bytes: 10_000
            })
        );
        let capacity = small.capacity();
        reserve_for_partial_packet(&mut small, PACKET_MAX, CHUNK);
        assert_eq!(small.capacity(), capacity);
        // Remaining Length not complete yet.
        let mut header = BytesMut::from(&[0x30u8, 0x80][..]);
        let capacity = header.capacity();
        reserve_for_partial_packet(&mut header, PACKET_MAX, CHUNK);
        assert_eq!(header.capacity(), capacity);
    }

    /// One per connection, in an `Rc` (16 bytes of counts): 24 bytes keep
    /// it in mimalloc's 40-byte class.
    #[test]
    fn a_connection_context_stays_small() {
        let size = std::mem::size_of::<ConnCtx>();
        assert!(size <= 24, "ConnCtx is {size} bytes");
    }
}
