//! The per-connection I/O driver over monoio.
//!
//! A connection is driven by two tasks on its shard:
//!
//! ```text
//!            socket
//!   reader task  ──read (≤ read_chunk_bytes)──▶ Handler::on_bytes(&mut buf)
//!        │                                       (engine consumes complete frames,
//!        │                                        leaves a partial one in buf)
//!        └─ EOF / error / close ──▶ Handler::on_closed (exactly once)
//!
//!   writer task  ◀── DriverHandle::transmit() ── runtime (engine said Transmit)
//!        └─ Handler::take_outgoing() -> one Bytes batch ──write_all──▶ socket
//! ```
//!
//! - Reads are bounded: at most `read_chunk_bytes` per read, and the buffer
//!   never grows past `read_buffer_max_bytes` (a partial frame the engine
//!   left must fit; past it the connection is closed with
//!   [`CloseReason::ReadBufferFull`]).
//! - Writes are batched: a wake-up takes *everything* that accumulated since
//!   the last write as one `Bytes` and writes it with one `write_all`. While
//!   that write is in flight new output accumulates in the engine's buffer,
//!   where the engine can see it and apply its own limit
//!   (`outgoing_buffer_max_bytes`). So the driver holds at most one batch.
//! - Close ([`DriverHandle::close`]) is graceful, so that the peer reads
//!   the last packet (a DISCONNECT or refusing CONNACK with its reason
//!   code) instead of a reset:
//!
//!   ```text
//!   writer: flush ─▶ shutdown(SHUT_WR) ─▶ linger ≤ close_linger_ms ─▶ shutdown(SHUT_RD)
//!   reader:            read and discard what the peer still sends ─▶ EOF ─▶ on_closed
//!   ```
//!
//!   Closing a socket whose receive queue holds unread bytes (or that
//!   receives more) makes the kernel send RST; a peer still writing (for
//!   example PUBRELs in reply to the PUBRECs it is reading) then gets
//!   "broken pipe" or "connection reset" and may never read the reason
//!   code. So the writer sends FIN after the last byte and the reader keeps
//!   reading, discarding, until the peer closes too (EOF) or the linger
//!   ends: the writer then calls `shutdown(SHUT_RD)`, which completes the
//!   pending receive with 0 bytes. The flush is bounded by
//!   `close_flush_timeout_ms` (a peer that does not read cannot keep a
//!   closing connection alive; that close is abrupt, `SHUT_RDWR`), the
//!   linger by `close_linger_ms`.
//! - A started packet must complete: when [`Handler::on_bytes`] leaves a
//!   partial frame, the reader gives the rest `packet_complete_timeout_ms`
//!   from the read that delivered the frame's first byte (time spent with
//!   reads paused does not count), then closes the connection with
//!   [`CloseReason::PacketTimeout`]. A peer that sends half a packet and
//!   stalls cannot hold its buffer for ever, whatever its keep-alive.
//! - Once the reader has ended, the writer never calls the handler again
//!   (the engine may already reuse the connection id).
//!
//! The fd hand-off between shards is [`Connection::into_owned_fd`] on the
//! accepting shard and [`Connection::from_owned_fd`] on the owner.
//!
//! TLS ([`crate::tls`]) sits inside the driver as a byte transform: the
//! reader feeds ciphertext to the connection's [`TlsSession`] and hands the
//! plaintext to [`Handler::on_bytes`]; the writer encrypts the handler's
//! batch and writes the records, together with whatever the session queued
//! on its own (handshake flights, alerts, session tickets, close_notify).
//! Both tasks share the session through a `RefCell` never borrowed across
//! an await. A server session arrives established: before routing or
//! driving, [`Connection::handshake`] runs the handshake's steps on the
//! helper threads ([`crate::tls::offload`]); the driver finishes a
//! handshake itself only for client sessions. The session moves with the
//! fd in a hand-off (it is `Send`).
//!
//! - Close work is paced: each close step (the closing flush, the FIN, the
//!   report to [`Handler::on_closed`]) first asks the shard's
//!   [`pace::ClosePacer`] for a turn, which admits at most
//!   [`pace::CLOSE_STEPS_PER_TURN`] per turn of the runtime, so that a
//!   burst of closes cannot hold up the connections that stay open.
//!
//! Files: this one has [`Connection`] (accept, routing reads, hand-off,
//! spawning the tasks); `handle` the driver's types and [`DriverHandle`];
//! `reader` and `writer` the two tasks; `tls_io` TLS inside the driver;
//! `pace` the close budget both backends use.
//!
//! See the crate docs for how a native io_uring backend (multishot receive,
//! provided buffers) would replace this module behind the same seam.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;

use bytes::BytesMut;
use monoio::io::{AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use crate::tls::{TlsRead, TlsSession};
use crate::ws::{WsRead, WsSession};

mod handle;
pub mod pace;
mod reader;
mod tls_io;
mod writer;
mod ws_io;

#[cfg(all(test, target_os = "linux"))]
pub(crate) use handle::shared_bytes;
pub use handle::{CloseReason, DriverConfig, DriverHandle, Handler};
pub use tls_io::ConnTls;
pub use ws_io::websocket_handler;

use reader::{read_bounded, reader_task};
pub(crate) use tls_io::{decrypt, tls_output, DriverTls};
use writer::writer_task;
use ws_io::WsHandler;

/// An accepted TCP connection before it is split into the driver's tasks.
pub struct Connection {
    stream: TcpStream,
    /// A read future was dropped before completing (its operation may still
    /// hold the fd): the fd can no longer be handed off.
    read_in_flight: bool,
    tls: Option<ConnTls>,
    /// The TLS session is on a helper thread (a handshake step whose
    /// future was dropped): the connection can only be closed.
    tls_away: bool,
    /// Plaintext that arrived with the client's last handshake flight,
    /// handed out before anything read later.
    early_plain: BytesMut,
    ws: Option<Box<WsSession>>,
}

impl Connection {
    /// Wraps a stream accepted by monoio (plain TCP).
    pub fn new(stream: TcpStream) -> Self {
        Connection {
            stream,
            read_in_flight: false,
            tls: None,
            tls_away: false,
            early_plain: BytesMut::new(),
            ws: None,
        }
    }

    /// Wraps a stream accepted on a TLS listener.
    pub fn with_tls(stream: TcpStream, tls: ConnTls) -> Self {
        Connection {
            stream,
            read_in_flight: false,
            tls: Some(tls),
            tls_away: false,
            early_plain: BytesMut::new(),
            ws: None,
        }
    }

    /// Adopts a socket handed over by another shard: non-blocking mode, then
    /// registration with this thread's monoio driver; `tls` is the session
    /// that came with it.
    pub fn from_owned_fd(fd: OwnedFd, tls: Option<ConnTls>) -> io::Result<Self> {
        let std_stream = std::net::TcpStream::from(fd);
        std_stream.set_nonblocking(true)?;
        Ok(Connection {
            stream: TcpStream::from_std(std_stream)?,
            read_in_flight: false,
            tls,
            tls_away: false,
            early_plain: BytesMut::new(),
            ws: None,
        })
    }

    /// Speaks WebSocket on top of TCP (or TLS): `ws` is a new session
    /// (upgrade pending) or the one a hand-off carried.
    pub fn with_websocket(mut self, ws: Box<WsSession>) -> Self {
        self.ws = Some(ws);
        self
    }

    /// Whether this is a WebSocket connection.
    pub fn is_websocket(&self) -> bool {
        self.ws.is_some()
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.stream.set_nodelay(nodelay)
    }

    /// The peer's address, if the socket still knows it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// Our end's address (the listener's address and port).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// Runs a server TLS handshake to its end before the driver starts:
    /// reads ciphertext (at most `chunk_bytes` per read), hands each step
    /// to the session's helper threads
    /// ([`HandshakePool`](crate::tls::offload::HandshakePool); inline if it
    /// has none), and writes what the session queued (its flights, or the
    /// alert of a failure). Plaintext that came with the client's last
    /// flight is kept for the next read or the driver. Returns at once on
    /// a plain connection or an established session. The peer closing is
    /// `UnexpectedEof`; a TLS failure is `InvalidData`.
    ///
    /// Dropping the future while a step is on a helper thread leaves the
    /// connection without its session: it can then only be closed
    /// ([`Connection::spawn_driver`] closes it at once).
    pub async fn handshake(&mut self, chunk_bytes: usize) -> io::Result<()> {
        if self.tls_away {
            return Err(tls_lost());
        }
        self.read_in_flight = true;
        let out = self.run_handshake(chunk_bytes).await;
        self.read_in_flight = false;
        out
    }

    async fn run_handshake(&mut self, chunk_bytes: usize) -> io::Result<()> {
        loop {
            match &self.tls {
                Some(tls) if tls.session.is_handshaking() => {}
                _ => return Ok(()),
            }
            let (result, cipher) =
                read_bounded(&mut self.stream, BytesMut::new(), chunk_bytes).await;
            match result {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            let Some(mut tls) = self.tls.take() else {
                return Ok(());
            };
            self.tls_away = true;
            let result = match &tls.pool {
                None => decrypt(&mut tls.session, None, &cipher, &mut self.early_plain).0,
                Some(pool) => match pool.submit(tls.session, cipher) {
                    Ok(pending) => {
                        let step = pending.await;
                        tls.session = step.session;
                        self.early_plain.unsplit(step.plain);
                        step.result
                    }
                    Err((session, cipher)) => {
                        tls.session = session;
                        let stats = pool.stats().clone();
                        decrypt(
                            &mut tls.session,
                            Some(&stats),
                            &cipher,
                            &mut self.early_plain,
                        )
                        .0
                    }
                },
            };
            let mut out = Vec::new();
            tls.session.take_output(&mut out);
            self.tls = Some(tls);
            self.tls_away = false;
            if !out.is_empty() {
                let (written, _) = self.stream.write_all(out).await;
                written?;
            }
            match result {
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake refused");
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                Ok(TlsRead::PeerClosed) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(TlsRead::Open) => {}
            }
        }
    }

    /// Reads once, appending at most `chunk_bytes` to `buf`. `Ok(0)` is EOF.
    /// Used before the driver starts (routing a new connection). On a TLS
    /// connection it runs the handshake (reads and writes) until plaintext
    /// arrives, and appends only plaintext; a TLS failure is an
    /// `InvalidData` error (the alert was sent). Plaintext kept by
    /// [`Connection::handshake`] comes first.
    pub async fn read_chunk(
        &mut self,
        buf: BytesMut,
        chunk_bytes: usize,
    ) -> (io::Result<usize>, BytesMut) {
        if self.tls_away {
            return (Err(tls_lost()), buf);
        }
        self.read_in_flight = true;
        let out = if self.ws.is_some() {
            self.read_ws_chunk(buf, chunk_bytes).await
        } else {
            self.read_transport(buf, chunk_bytes).await
        };
        self.read_in_flight = false;
        out
    }

    /// One read of plaintext (TCP, or TLS with its handshake).
    async fn read_transport(
        &mut self,
        buf: BytesMut,
        chunk_bytes: usize,
    ) -> (io::Result<usize>, BytesMut) {
        match &mut self.tls {
            None => read_bounded(&mut self.stream, buf, chunk_bytes).await,
            Some(_) if !self.early_plain.is_empty() => {
                let mut buf = buf;
                let n = self.early_plain.len();
                buf.extend_from_slice(&self.early_plain);
                self.early_plain = BytesMut::new();
                (Ok(n), buf)
            }
            Some(tls) => read_tls_chunk(&mut self.stream, tls, buf, chunk_bytes).await,
        }
    }

    /// [`Connection::read_chunk`] on a WebSocket connection: runs the
    /// upgrade (writing the response) until MQTT bytes arrive, and
    /// appends only those; a refused upgrade or frame is an `InvalidData`
    /// error (the HTTP response or close frame was sent), a close frame
    /// from the client is EOF.
    async fn read_ws_chunk(
        &mut self,
        mut buf: BytesMut,
        chunk_bytes: usize,
    ) -> (io::Result<usize>, BytesMut) {
        let before = buf.len();
        loop {
            let (result, returned) = self.read_transport(buf, chunk_bytes).await;
            buf = returned;
            match result {
                Ok(0) => return (Ok(0), buf),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
            let Some(ws) = self.ws.as_mut() else {
                return (Ok(buf.len() - before), buf);
            };
            let state = ws.read(&mut buf, before);
            if ws.wants_write() {
                let mut out = Vec::new();
                ws.take_output(&mut out);
                if let Err(e) = self.write_plain(out).await {
                    return (Err(e), buf);
                }
            }
            let result = match state {
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket refused while routing");
                    Err(io::Error::new(io::ErrorKind::InvalidData, e))
                }
                Ok(WsRead::PeerClosed) if buf.len() == before => Ok(0),
                Ok(_) if buf.len() > before => Ok(buf.len() - before),
                Ok(_) => continue,
            };
            return (result, buf);
        }
    }

    /// Writes `plain` (encrypted on TLS) before the driver runs.
    async fn write_plain(&mut self, plain: Vec<u8>) -> io::Result<()> {
        let out = match &mut self.tls {
            None => plain,
            Some(tls) => {
                tls.session
                    .encrypt(&plain)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let mut out = Vec::new();
                tls.session.take_output(&mut out);
                out
            }
        };
        let (written, _) = self.stream.write_all(out).await;
        written.map(|_| ())
    }

    /// Gives up the socket (and its TLS and WebSocket sessions) for a
    /// hand-off to another shard. Refused (the connection is returned) if a read was abandoned
    /// mid-flight, because its operation may still reference the fd, or if
    /// plaintext read during the handshake is still unread.
    // The refusal hands the whole connection back (a move of a few
    // hundred bytes, on a path that by construction is not taken).
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    pub fn into_owned_fd(
        self,
    ) -> Result<(OwnedFd, Option<Box<TlsSession>>, Option<Box<WsSession>>), Connection> {
        if self.read_in_flight || self.tls_away || !self.early_plain.is_empty() {
            return Err(self);
        }
        let raw = self.stream.into_raw_fd();
        // SAFETY: `into_raw_fd` released the descriptor from monoio (no
        // operation referenced it: `read_in_flight` is false and reads take
        // `&mut self`), so we are its only owner from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok((fd, self.tls.map(|t| t.session), self.ws))
    }

    /// Starts the reader and writer tasks on the current monoio runtime.
    /// `initial` holds bytes already read (they are handed to
    /// [`Handler::on_bytes`] before the first read; on WebSocket, already
    /// decoded), followed by the plaintext the handshake kept. A
    /// connection whose session was lost in an abandoned handshake step
    /// is closed at once (`CloseReason::Local`).
    pub fn spawn_driver<H: Handler + 'static>(
        self,
        mut initial: BytesMut,
        handler: Rc<H>,
        handle: DriverHandle,
        config: DriverConfig,
    ) {
        if self.tls_away {
            drop(self);
            handler.on_closed(CloseReason::Local);
            return;
        }
        let fd = self.stream.as_raw_fd();
        let decoded = initial.len();
        initial.unsplit(self.early_plain);
        let tls = self.tls.map(|t| {
            Rc::new(DriverTls {
                session: RefCell::new(t.session),
                stats: t.pool.map(|p| p.stats().clone()),
                close_notify_queued: Cell::new(false),
            })
        });
        let (read_half, write_half) = self.stream.into_split();
        let Some(ws) = self.ws else {
            spawn_tasks(
                read_half, write_half, fd, initial, handler, handle, config, tls,
            );
            return;
        };
        let ws_handler = Rc::new(WsHandler {
            inner: handler,
            session: RefCell::new(Some(ws)),
            handle: handle.clone(),
            decoded: Cell::new(decoded),
        });
        spawn_tasks(
            read_half, write_half, fd, initial, ws_handler, handle, config, tls,
        );
    }
}

/// Spawns the writer and the reader of one connection.
#[allow(clippy::too_many_arguments)]
fn spawn_tasks<H: Handler + 'static>(
    read_half: monoio::io::OwnedReadHalf<TcpStream>,
    write_half: monoio::io::OwnedWriteHalf<TcpStream>,
    fd: std::os::fd::RawFd,
    initial: BytesMut,
    handler: Rc<H>,
    handle: DriverHandle,
    config: DriverConfig,
    tls: Option<Rc<DriverTls>>,
) {
    monoio::spawn(writer_task(
        write_half,
        fd,
        handler.clone(),
        handle.clone(),
        config,
        tls.clone(),
    ));
    monoio::spawn(reader_task(
        read_half, initial, handler, handle, config, tls,
    ));
}

/// [`Connection::read_chunk`] on a TLS connection.
async fn read_tls_chunk(
    stream: &mut TcpStream,
    tls: &mut ConnTls,
    mut plain: BytesMut,
    chunk_bytes: usize,
) -> (io::Result<usize>, BytesMut) {
    let before = plain.len();
    loop {
        let (result, cipher) = read_bounded(stream, BytesMut::new(), chunk_bytes).await;
        match result {
            Ok(0) => return (Ok(0), plain),
            Ok(_) => {}
            Err(e) => return (Err(e), plain),
        }
        let stats = tls.pool.as_ref().map(|p| p.stats().clone());
        let (result, _) = decrypt(&mut tls.session, stats.as_deref(), &cipher, &mut plain);
        if tls.session.wants_write() {
            let mut out = Vec::new();
            tls.session.take_output(&mut out);
            let (written, _) = stream.write_all(out).await;
            if let Err(e) = written {
                return (Err(e), plain);
            }
        }
        let result = match result {
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake or record refused");
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
            Ok(TlsRead::PeerClosed) => Ok(plain.len() - before),
            Ok(TlsRead::Open) if plain.len() > before => Ok(plain.len() - before),
            Ok(TlsRead::Open) => continue,
        };
        return (result, plain);
    }
}

fn tls_lost() -> io::Error {
    io::Error::other("TLS session lost in an abandoned handshake step")
}

#[cfg(test)]
mod tests;
