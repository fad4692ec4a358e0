//! New connections on the native loop: accept them in the engine, route
//! them to the shard that owns their client id (the same rule as the
//! monoio path in `crate::conn`, module docs there), adopt hand-offs.
//!
//! Routing runs inside the driver: [`Routing`] wraps the connection's
//! handler and looks at the first bytes (plaintext after the TLS
//! handshake, MQTT bytes after the WebSocket layer, which wraps it in
//! turn: `ringmq_net::conn::websocket_handler`) with `route_connect`
//! before the engine sees anything. When another shard owns the client id
//! it asks the driver to detach the connection; `uring::Event::Detached`
//! then brings back the socket, the bytes read and the TLS and WebSocket
//! sessions, and [`hand_off`] closes the connection in this engine and
//! pushes `RingMsg::Handoff` to the owner. When the driver cannot detach
//! it (no process descriptor for the socket: `EMFILE`), [`Routing`]
//! refuses the CONNECT here (CONNACK 0x89 Server busy, v3 return code 3)
//! and the connection closes on this shard.

use std::cell::Cell;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use ringmq_engine::broker::{route_connect, Route, ShardId};
use ringmq_net::conn::{websocket_handler, CloseReason, ConnTls, Handler};
use ringmq_net::tls::{TlsError, TlsSession};
use ringmq_net::uring::{Driver, Socket};
use ringmq_net::ws::WsSession;

use crate::conn::{accept, start_tls, ConnCtx, ListenerCtx, NewConn};
use crate::mesh::HandoffTls;
use crate::shard::state::Shard;

/// A connection's handler while its owner shard is not known yet.
pub struct Routing {
    ctx: Rc<ConnCtx>,
    /// Routing is over: the connection stays here.
    settled: Cell<bool>,
    /// The owner shard, once known to be another one.
    owner: Cell<Option<ShardId>>,
}

impl Handler for Routing {
    fn on_bytes(&self, buf: &mut BytesMut) {
        if self.settled.get() {
            return self.ctx.on_bytes(buf);
        }
        let shard = &self.ctx.shard;
        let packet_size_max_bytes = shard.broker.borrow().config().packet_size_max_bytes;
        match route_connect(buf, shard.id, shard.count, packet_size_max_bytes) {
            Route::NeedMore if buf.len() < shard.settings.route_buffer_max_bytes => {}
            Route::Shard(owner) if owner != shard.id && owner < shard.count => {
                self.owner.set(Some(owner));
            }
            Route::NeedMore | Route::Local | Route::Shard(_) => {
                self.settled.set(true);
                self.ctx.on_bytes(buf);
            }
        }
    }

    fn take_outgoing(&self) -> Option<Bytes> {
        self.ctx.take_outgoing()
    }

    fn reads_paused(&self) -> bool {
        self.ctx.reads_paused()
    }

    fn on_closed(&self, reason: CloseReason) {
        self.ctx.on_closed(reason);
    }

    fn on_tls_established(&self, session: &TlsSession) {
        self.ctx.on_tls_established(session);
    }

    fn on_tls_failed(&self, error: &TlsError) {
        self.ctx.on_tls_failed(error);
    }

    fn detach_requested(&self) -> bool {
        self.owner.get().is_some()
    }

    fn on_detach_failed(&self, bytes: &[u8]) -> bool {
        if self.owner.take().is_none() {
            return false;
        }
        // The owner is out of reach and this shard does not own the
        // client id: refused (v5 0x89 Server busy, v3 return code 3).
        self.settled.set(true);
        self.ctx.refuse_unrouted(bytes);
        true
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// A socket accepted on `listener`: start its TLS session, accept it in
/// the engine, drive it (through [`Routing`] with more than one shard,
/// under a WebSocket session on a WebSocket listener).
///
/// A direct socket (`ringmq_net::uring::Socket`) has its listener's
/// `TCP_NODELAY` (set on the listener by the loop), its peer address from
/// the accept and its listener's address as the local one.
pub fn serve_accepted(
    shard: &Rc<Shard>,
    driver: &mut Driver,
    socket: Socket,
    listener: &ListenerCtx,
) {
    if let Err(e) = socket.set_nodelay(listener.nodelay) {
        tracing::debug!(shard = shard.id, error = %e, "TCP_NODELAY");
    }
    let peer = socket.peer_addr();
    let local = socket.local_addr();
    let (tls, use_identity_as_username) = match &listener.tls {
        None => (None, false),
        Some(tls) => match start_tls(shard, &listener.name, tls) {
            Some(session) => (Some(session), tls.use_identity_as_username),
            None => return,
        },
    };
    let new = NewConn {
        peer,
        local,
        tls: tls.is_some(),
        websocket: listener.ws.is_some(),
        use_identity_as_username,
    };
    let Some(ctx) = accept(shard, new) else {
        return;
    };
    let mut handler: Rc<dyn Handler> = if shard.count <= 1 {
        ctx.clone()
    } else {
        Rc::new(Routing {
            ctx: ctx.clone(),
            settled: Cell::new(false),
            owner: Cell::new(None),
        })
    };
    if let Some(settings) = &listener.ws {
        let session = Box::new(WsSession::new(settings.clone()));
        handler = websocket_handler(handler, session, ctx.origin.handle.clone(), 0);
    }
    drive(shard, driver, socket, &ctx, handler, BytesMut::new(), tls);
}

/// Gives an accepted connection to the driver (closing it in the engine
/// if the shard's slab is full).
fn drive(
    shard: &Shard,
    driver: &mut Driver,
    socket: Socket,
    ctx: &ConnCtx,
    handler: Rc<dyn Handler>,
    bytes: BytesMut,
    tls: Option<ConnTls>,
) {
    let handle = ctx.origin.handle.clone();
    if !driver.add(socket, handler.clone(), handle, bytes, tls) {
        tracing::warn!(
            shard = shard.id,
            "connection refused: the shard's connection slab is full"
        );
        handler.on_closed(CloseReason::Local);
    }
}

/// A connection the driver detached because [`Routing`] found its owner:
/// close it in this engine and hand the socket (with its sessions) to the
/// owner.
pub fn hand_off(
    shard: &Rc<Shard>,
    handler: Rc<dyn Handler>,
    fd: OwnedFd,
    bytes: BytesMut,
    tls: Option<Box<TlsSession>>,
    ws: Option<Box<WsSession>>,
) {
    let routing = handler.as_any().and_then(|a| a.downcast_ref::<Routing>());
    let Some((owner, use_identity_as_username)) =
        routing.and_then(|r| Some((r.owner.get()?, r.ctx.origin.use_identity_as_username())))
    else {
        // Only `Routing` asks to be detached.
        tracing::error!(
            shard = shard.id,
            "a connection was detached without an owner; closing it"
        );
        handler.on_closed(CloseReason::Local);
        return;
    };
    let tls = tls.map(|session| {
        Box::new(HandoffTls {
            session,
            use_identity_as_username,
        })
    });
    crate::conn::hand_off(shard, owner, &*handler, fd, bytes, tls, ws);
}

/// A connection handed over by another shard: accept it here and drive it
/// with the bytes already read (decoded MQTT bytes on WebSocket) and the
/// sessions that came with it (the driver moves the socket into its direct
/// table if it has room: `ringmq_net::uring::Socket`).
pub fn adopt(
    shard: &Rc<Shard>,
    driver: &mut Driver,
    fd: OwnedFd,
    bytes: BytesMut,
    tls: Option<Box<HandoffTls>>,
    ws: Option<Box<WsSession>>,
) {
    if shard.is_stopping() {
        return; // dropping the fd closes the socket
    }
    let sock = socket2::SockRef::from(&fd);
    let use_identity_as_username = tls.as_ref().is_some_and(|t| t.use_identity_as_username);
    let tls = tls.map(|t| ConnTls {
        session: t.session,
        pool: shard.tls_pool.clone(),
    });
    let new = NewConn {
        peer: sock.peer_addr().ok().and_then(|a| a.as_socket()),
        local: sock.local_addr().ok().and_then(|a| a.as_socket()),
        tls: tls.is_some(),
        websocket: ws.is_some(),
        use_identity_as_username,
    };
    let Some(ctx) = accept(shard, new) else {
        return;
    };
    let handler: Rc<dyn Handler> = match ws {
        None => ctx.clone(),
        Some(session) => {
            let decoded = bytes.len();
            websocket_handler(ctx.clone(), session, ctx.origin.handle.clone(), decoded)
        }
    };
    drive(shard, driver, Socket::Plain(fd), &ctx, handler, bytes, tls);
}
