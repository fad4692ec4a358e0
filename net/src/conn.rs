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
//! an await. A handshake step first waits for the shard's
//! [`HandshakeBudget`]. The session moves with the fd in a hand-off (it is
//! `Send`).
//!
//! See the crate docs for how a native io_uring backend (multishot receive,
//! provided buffers) would replace this module behind the same seam.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::SliceMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::os::{self, Shutdown};
use crate::tls::{HandshakeBudget, TlsError, TlsRead, TlsSession};
use crate::wake::WakerSlot;

/// Limits of the connection driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Most bytes one read asks the kernel for.
    pub read_chunk_bytes: usize,
    /// Most bytes the read buffer may hold before a read (the partial frame
    /// the engine left behind). Set it to the largest packet plus one chunk.
    pub read_buffer_max_bytes: usize,
    /// How long a closing connection may take to flush its last bytes
    /// before it is shut down anyway, in milliseconds.
    pub close_flush_timeout_ms: u64,
    /// After a closing connection's last bytes are written and its write
    /// side shut down, how long to keep reading (and discarding) until the
    /// peer closes too, in milliseconds (module docs: graceful close).
    pub close_linger_ms: u64,
    /// How long a packet the handler left incomplete in the buffer may take
    /// to complete, in milliseconds; past it the connection is closed
    /// ([`CloseReason::PacketTimeout`]).
    pub packet_complete_timeout_ms: u64,
}

/// The broker's defaults (`config/ringmq.toml`: `read_chunk_bytes`,
/// `packet_size_max_bytes` plus one chunk, `close_flush_timeout_ms`,
/// `close_linger_ms`, `packet_complete_timeout_ms`); a test of the `ringmq` crate checks that the two agree.
impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            read_chunk_bytes: 16 * 1024,
            read_buffer_max_bytes: 1024 * 1024 + 16 * 1024,
            close_flush_timeout_ms: 2_000,
            close_linger_ms: 2_000,
            packet_complete_timeout_ms: 30_000,
        }
    }
}

/// Why the reader of a connection stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed the connection (EOF).
    PeerClosed,
    /// We closed it ([`DriverHandle::close`]).
    Local,
    /// A read failed with this error kind (reset, ...).
    ReadError(io::ErrorKind),
    /// The partial frame left in the read buffer reached
    /// `read_buffer_max_bytes` (the engine should have refused it earlier).
    ReadBufferFull,
    /// A write failed or the close flush timed out.
    WriteError(io::ErrorKind),
    /// A packet the handler left incomplete was not completed within
    /// `packet_complete_timeout_ms`.
    PacketTimeout,
    /// The TLS session failed (handshake refused, bad record, ...); the
    /// alert was sent before the socket was shut down.
    TlsError,
}

/// What the driver asks of the runtime that owns the connection. The
/// methods are synchronous and called from the connection's tasks on the
/// shard thread; none of them is called re-entrantly by the driver.
pub trait Handler {
    /// Bytes arrived: consume complete frames from `buf`, leave a partial
    /// one. Called again only after the next read.
    fn on_bytes(&self, buf: &mut BytesMut);
    /// The next batch to write: everything accumulated, or `None`.
    fn take_outgoing(&self) -> Option<Bytes>;
    /// Backpressure: while true the reader does not read; it waits for
    /// [`DriverHandle::resume_reads`] and asks again.
    fn reads_paused(&self) -> bool {
        false
    }
    /// The reader ended; called exactly once per driven connection.
    fn on_closed(&self, reason: CloseReason);
    /// A TLS connection's handshake is done (called once, before the first
    /// [`Handler::on_bytes`]; never for plain TCP). The session tells the
    /// negotiated parameters and the client certificate's identity.
    fn on_tls_established(&self, _session: &TlsSession) {}
}

#[derive(Default)]
struct Shared {
    transmit: Cell<bool>,
    closing: Cell<bool>,
    /// The reader has ended and `on_closed` was called.
    ended: Cell<bool>,
    /// The writer has flushed (or given up) and shut the socket down.
    writer_done: Cell<bool>,
    write_failed: Cell<Option<io::ErrorKind>>,
    /// The reader closed the connection because its TLS session failed.
    tls_failed: Cell<bool>,
    writer: WakerSlot,
    reader: WakerSlot,
}

/// The runtime's side of a driven connection: cheap to clone, `!Send`.
/// It may be created (and signalled) before the driver is spawned: a
/// transmit or close requested early is acted on when the driver starts.
#[derive(Clone, Default)]
pub struct DriverHandle {
    shared: Rc<Shared>,
}

impl DriverHandle {
    /// A handle for a connection not yet driven.
    pub fn new() -> Self {
        Self::default()
    }

    /// Output is waiting: wake the writer (coalesces with earlier calls).
    pub fn transmit(&self) {
        self.shared.transmit.set(true);
        self.shared.writer.wake();
    }

    /// Flush what is waiting, then shut the socket; the reader then ends and
    /// calls [`Handler::on_closed`].
    pub fn close(&self) {
        self.shared.closing.set(true);
        self.shared.writer.wake();
        self.shared.reader.wake();
    }

    /// Backpressure lifted: the reader asks [`Handler::reads_paused`] again.
    pub fn resume_reads(&self) {
        self.shared.reader.wake();
    }

    /// [`DriverHandle::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.get()
    }

    /// The reader has ended.
    pub fn is_ended(&self) -> bool {
        self.shared.ended.get()
    }

    /// Resolves once [`DriverHandle::close`] has been called.
    pub async fn closed(&self) {
        self.shared
            .reader
            .wait_until(|| self.shared.closing.get())
            .await;
    }
}

/// The TLS side of a connection: its session and its shard's budget.
pub struct ConnTls {
    pub session: Box<TlsSession>,
    pub budget: Rc<HandshakeBudget>,
}

/// An accepted TCP connection before it is split into the driver's tasks.
pub struct Connection {
    stream: TcpStream,
    /// A read future was dropped before completing (its operation may still
    /// hold the fd): the fd can no longer be handed off.
    read_in_flight: bool,
    tls: Option<ConnTls>,
}

impl Connection {
    /// Wraps a stream accepted by monoio (plain TCP).
    pub fn new(stream: TcpStream) -> Self {
        Connection {
            stream,
            read_in_flight: false,
            tls: None,
        }
    }

    /// Wraps a stream accepted on a TLS listener.
    pub fn with_tls(stream: TcpStream, tls: ConnTls) -> Self {
        Connection {
            stream,
            read_in_flight: false,
            tls: Some(tls),
        }
    }

    /// Adopts a socket handed over by another shard: non-blocking mode, then
    /// registration with this thread's monoio driver; `tls` is the session
    /// that came with it (and this shard's budget).
    pub fn from_owned_fd(fd: OwnedFd, tls: Option<ConnTls>) -> io::Result<Self> {
        let std_stream = std::net::TcpStream::from(fd);
        std_stream.set_nonblocking(true)?;
        Ok(Connection {
            stream: TcpStream::from_std(std_stream)?,
            read_in_flight: false,
            tls,
        })
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

    /// Reads once, appending at most `chunk_bytes` to `buf`. `Ok(0)` is EOF.
    /// Used before the driver starts (routing a new connection). On a TLS
    /// connection it runs the handshake (reads and writes) until plaintext
    /// arrives, and appends only plaintext; a TLS failure is an
    /// `InvalidData` error (the alert was sent).
    pub async fn read_chunk(
        &mut self,
        buf: BytesMut,
        chunk_bytes: usize,
    ) -> (io::Result<usize>, BytesMut) {
        self.read_in_flight = true;
        let out = match &mut self.tls {
            None => read_bounded(&mut self.stream, buf, chunk_bytes).await,
            Some(tls) => read_tls_chunk(&mut self.stream, tls, buf, chunk_bytes).await,
        };
        self.read_in_flight = false;
        out
    }

    /// Gives up the socket (and its TLS session) for a hand-off to another
    /// shard. Refused (the connection is returned) if a read was abandoned
    /// mid-flight, because its operation may still reference the fd.
    #[allow(clippy::type_complexity)]
    pub fn into_owned_fd(self) -> Result<(OwnedFd, Option<Box<TlsSession>>), Connection> {
        if self.read_in_flight {
            return Err(self);
        }
        let raw = self.stream.into_raw_fd();
        // SAFETY: `into_raw_fd` released the descriptor from monoio (no
        // operation referenced it: `read_in_flight` is false and reads take
        // `&mut self`), so we are its only owner from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok((fd, self.tls.map(|t| t.session)))
    }

    /// Starts the reader and writer tasks on the current monoio runtime.
    /// `initial` holds bytes already read (they are handed to
    /// [`Handler::on_bytes`] before the first read).
    pub fn spawn_driver<H: Handler + 'static>(
        self,
        initial: BytesMut,
        handler: Rc<H>,
        handle: DriverHandle,
        config: DriverConfig,
    ) {
        let fd = self.stream.as_raw_fd();
        let tls = self.tls.map(|t| {
            Rc::new(DriverTls {
                session: RefCell::new(t.session),
                budget: t.budget,
                close_notify_queued: Cell::new(false),
            })
        });
        let (read_half, write_half) = self.stream.into_split();
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
}

/// The TLS state both driver tasks share.
struct DriverTls {
    session: RefCell<Box<TlsSession>>,
    budget: Rc<HandshakeBudget>,
    close_notify_queued: Cell<bool>,
}

/// Feeds one read's ciphertext to the session, charging the handshake
/// budget while the handshake runs (the caller waited for
/// [`HandshakeBudget::wait_turn`] first). Returns the outcome and whether
/// the handshake finished with this read.
fn decrypt(
    session: &mut TlsSession,
    budget: &HandshakeBudget,
    cipher: &[u8],
    plain: &mut BytesMut,
) -> (Result<TlsRead, TlsError>, bool) {
    if !session.is_handshaking() {
        return (session.read(cipher, plain), false);
    }
    let result = budget.charge(|| session.read(cipher, plain));
    let established = result.is_ok() && !session.is_handshaking();
    (result, established)
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
        if tls.session.is_handshaking() {
            tls.budget.wait_turn().await;
        }
        let (result, _) = decrypt(&mut tls.session, &tls.budget, &cipher, &mut plain);
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

/// Smallest read (bytes): what an idle connection's pending read holds.
const READ_CHUNK_MIN_BYTES: usize = 512;

/// Read size (bytes) while a closing connection discards the peer's input.
const LINGER_READ_BYTES: usize = 4096;

async fn read_bounded<R: AsyncReadRent>(
    reader: &mut R,
    mut buf: BytesMut,
    chunk_bytes: usize,
) -> (io::Result<usize>, BytesMut) {
    let chunk_bytes = chunk_bytes.max(1);
    buf.reserve(chunk_bytes);
    let start = buf.len();
    // `reserve` guarantees capacity >= start + chunk_bytes, which is what
    // SliceMut::new asserts.
    let slice = SliceMut::new(buf, start, start + chunk_bytes);
    let (result, slice) = reader.read(slice).await;
    (result, slice.into_inner())
}

async fn reader_task<H: Handler>(
    mut read_half: OwnedReadHalf<TcpStream>,
    initial: BytesMut,
    handler: Rc<H>,
    handle: DriverHandle,
    config: DriverConfig,
    tls: Option<Rc<DriverTls>>,
) {
    let reason = read_loop(
        &mut read_half,
        initial,
        &*handler,
        &handle,
        config,
        tls.as_deref(),
    )
    .await;
    handle.shared.ended.set(true);
    handle.shared.writer.wake();
    drop(read_half);
    handler.on_closed(reason);
}

async fn read_loop<H: Handler>(
    read_half: &mut OwnedReadHalf<TcpStream>,
    mut buf: BytesMut,
    handler: &H,
    handle: &DriverHandle,
    config: DriverConfig,
    tls: Option<&DriverTls>,
) -> CloseReason {
    let shared = &handle.shared;
    if let Some(tls) = tls {
        // Handshake finished while routing (or on the shard that handed
        // the connection over).
        let session = tls.session.borrow();
        if !session.is_handshaking() {
            handler.on_tls_established(&session);
        }
    }
    // TLS: ciphertext is read into `cipher`, plaintext goes to `buf`.
    let mut cipher = BytesMut::new();
    let packet_timeout = Duration::from_millis(config.packet_complete_timeout_ms);
    // When the packet left incomplete in `buf` started (module docs).
    let mut packet_started: Option<Instant> = None;
    if !buf.is_empty() && !shared.closing.get() {
        deliver(handler, &mut buf, &mut packet_started);
    }
    // Adaptive read size: an idle connection keeps only a small buffer in
    // its pending read (io_uring holds it until data arrives); a busy one
    // doubles up to `read_chunk_bytes`.
    let chunk_max = config.read_chunk_bytes.max(1);
    let mut chunk = READ_CHUNK_MIN_BYTES.min(chunk_max);
    loop {
        if shared.closing.get() {
            drop(buf);
            return linger(read_half, shared).await;
        }
        if handler.reads_paused() {
            shared
                .reader
                .wait_until(|| shared.closing.get() || !handler.reads_paused())
                .await;
            // The peer cannot complete a packet we do not read: its time
            // starts again.
            if packet_started.is_some() {
                packet_started = Some(Instant::now());
            }
            continue;
        }
        if buf.len() >= config.read_buffer_max_bytes {
            return CloseReason::ReadBufferFull;
        }
        if buf.is_empty() && buf.capacity() > 2 * chunk {
            // Drop a large buffer a burst left behind (it may still be shared
            // with frames the engine holds; a new one is allocated on demand).
            buf = BytesMut::new();
        }
        // Plain TCP reads into `buf`; TLS reads ciphertext into `cipher`
        // (`buf` keeps the plaintext partial frame meanwhile).
        let target = match tls {
            None => std::mem::take(&mut buf),
            Some(_) => {
                if cipher.capacity() > 2 * chunk {
                    cipher = BytesMut::new();
                }
                std::mem::take(&mut cipher)
            }
        };
        let read = read_bounded(read_half, target, chunk);
        let completed = match packet_started {
            None => Some(read.await),
            Some(started) => monoio::select! {
                r = read => Some(r),
                _ = monoio::time::sleep_until(started + packet_timeout) => None,
            },
        };
        let Some((result, returned)) = completed else {
            // The read (and its buffer) was abandoned.
            if shared.closing.get() {
                continue;
            }
            return CloseReason::PacketTimeout;
        };
        match tls {
            None => buf = returned,
            Some(_) => cipher = returned,
        }
        if shared.closing.get() {
            // Bytes after a close are not handed to the engine.
            continue;
        }
        let n = match result {
            Ok(0) => return CloseReason::PeerClosed,
            Ok(n) => n,
            Err(e) => return CloseReason::ReadError(e.kind()),
        };
        chunk = if n >= chunk {
            (chunk * 2).min(chunk_max)
        } else {
            (chunk / 2).max(READ_CHUNK_MIN_BYTES.min(chunk_max))
        };
        let Some(tls) = tls else {
            deliver(handler, &mut buf, &mut packet_started);
            continue;
        };
        if tls.session.borrow().is_handshaking() {
            tls.budget.wait_turn().await;
            if shared.closing.get() {
                continue;
            }
        }
        let (result, established) = decrypt(
            &mut tls.session.borrow_mut(),
            &tls.budget,
            &cipher,
            &mut buf,
        );
        cipher.clear();
        if tls.session.borrow().wants_write() {
            // Handshake flight, alert or ticket: the writer sends it.
            shared.transmit.set(true);
            shared.writer.wake();
        }
        let peer_closed = match result {
            Ok(state) => state == TlsRead::PeerClosed,
            Err(e) => {
                tracing::debug!(error = %e, "TLS session failed; closing the connection");
                shared.tls_failed.set(true);
                handle.close();
                continue;
            }
        };
        if established {
            handler.on_tls_established(&tls.session.borrow());
        }
        if shared.closing.get() {
            continue;
        }
        if !buf.is_empty() {
            deliver(handler, &mut buf, &mut packet_started);
        }
        if peer_closed {
            return CloseReason::PeerClosed;
        }
    }
}

/// Hands `buf` to the handler and notes when the packet it leaves
/// incomplete started: unchanged if it consumed nothing (the same packet is
/// still arriving), now if it consumed frames (what is left began in this
/// read).
fn deliver<H: Handler>(handler: &H, buf: &mut BytesMut, packet_started: &mut Option<Instant>) {
    let before = buf.len();
    handler.on_bytes(buf);
    *packet_started = match (*packet_started, buf.len()) {
        (_, 0) => None,
        (Some(started), left) if left >= before => Some(started),
        _ => Some(Instant::now()),
    };
}

/// The reader's part of a graceful close (module docs): read and discard
/// until the peer closes or the writer's linger shuts the read side, then
/// wait for the writer and report.
async fn linger(read_half: &mut OwnedReadHalf<TcpStream>, shared: &Shared) -> CloseReason {
    let mut buf = BytesMut::new();
    loop {
        buf.clear();
        let (result, returned) = read_bounded(read_half, buf, LINGER_READ_BYTES).await;
        buf = returned;
        match result {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    shared.reader.wait_until(|| shared.writer_done.get()).await;
    if shared.tls_failed.get() {
        return CloseReason::TlsError;
    }
    shared
        .write_failed
        .get()
        .map_or(CloseReason::Local, CloseReason::WriteError)
}

async fn writer_task<H: Handler>(
    mut write_half: OwnedWriteHalf<TcpStream>,
    fd: RawFd,
    handler: Rc<H>,
    handle: DriverHandle,
    config: DriverConfig,
    tls: Option<Rc<DriverTls>>,
) {
    let shared = &handle.shared;
    loop {
        shared
            .writer
            .wait_until(|| shared.transmit.get() || shared.closing.get() || shared.ended.get())
            .await;
        if shared.ended.get() {
            // The reader called on_closed: the id may be reused; hands off.
            return;
        }
        shared.transmit.set(false);
        let batch = match &tls {
            None => handler.take_outgoing(),
            Some(tls) => match tls_output(tls, &*handler, shared.closing.get()) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS encryption failed; closing the connection");
                    shared.write_failed.set(Some(io::ErrorKind::InvalidData));
                    shared.closing.set(true);
                    shut_down(fd, Shutdown::Both);
                    writer_done(shared);
                    return;
                }
            },
        };
        if let Some(batch) = batch {
            let result = monoio::select! {
                (r, _) = write_half.write_all(batch) => r.map(|_| ()).map_err(|e| e.kind()),
                kind = abort_write(&handle, config.close_flush_timeout_ms) => Err(kind),
            };
            if let Err(kind) = result {
                shared.write_failed.set(Some(kind));
                shared.closing.set(true);
                // Abrupt: the peer is gone or does not read.
                shut_down(fd, Shutdown::Both);
                writer_done(shared);
                return;
            }
            continue;
        }
        if shared.closing.get() {
            close_gracefully(shared, fd, config.close_linger_ms).await;
            return;
        }
    }
}

/// The next TLS batch: the handler's plaintext encrypted, plus whatever the
/// session queued itself; on close, a close_notify alert once.
fn tls_output<H: Handler>(
    tls: &DriverTls,
    handler: &H,
    closing: bool,
) -> Result<Option<Bytes>, TlsError> {
    let plain = handler.take_outgoing();
    let mut session = tls.session.borrow_mut();
    if let Some(plain) = plain {
        session.encrypt(&plain)?;
    }
    if closing && !tls.close_notify_queued.replace(true) {
        session.send_close_notify();
    }
    if !session.wants_write() {
        return Ok(None);
    }
    let mut out = Vec::new();
    session.take_output(&mut out);
    Ok(Some(Bytes::from(out)))
}

/// Resolves when an in-flight write must be abandoned: the reader ended, or
/// the connection is closing and the flush took `close_flush_timeout_ms`.
async fn abort_write(handle: &DriverHandle, close_flush_timeout_ms: u64) -> io::ErrorKind {
    let shared = &handle.shared;
    shared
        .reader_or_writer_wait(|| shared.closing.get() || shared.ended.get())
        .await;
    if shared.ended.get() {
        return io::ErrorKind::ConnectionAborted;
    }
    monoio::select! {
        _ = monoio::time::sleep(Duration::from_millis(close_flush_timeout_ms)) => io::ErrorKind::TimedOut,
        _ = shared.reader_or_writer_wait(|| shared.ended.get()) => io::ErrorKind::ConnectionAborted,
    }
}

impl Shared {
    /// The writer task waits here while its write is in flight; it is woken
    /// through the writer slot like any other writer wait.
    async fn reader_or_writer_wait(&self, ready: impl FnMut() -> bool) {
        self.writer.wait_until(ready).await;
    }
}

/// Everything is flushed: send FIN, let the reader discard the peer's input
/// until it closes or `close_linger_ms` pass, then end the reader's pending
/// receive (module docs: graceful close).
async fn close_gracefully(shared: &Shared, fd: RawFd, close_linger_ms: u64) {
    shut_down(fd, Shutdown::Write);
    writer_done(shared);
    monoio::select! {
        _ = monoio::time::sleep(Duration::from_millis(close_linger_ms)) => {
            // The reader still holds its half, so `fd` is open.
            shut_down(fd, Shutdown::Read);
        }
        _ = shared.writer.wait_until(|| shared.ended.get()) => {}
    }
}

/// Tells the reader the writer is done (it may report the close).
fn writer_done(shared: &Shared) {
    shared.writer_done.set(true);
    shared.reader.wake();
}

fn shut_down(fd: RawFd, how: Shutdown) {
    // The writer task calls this while it still owns its half of the
    // stream, so `fd` is open. ENOTCONN (peer already gone) is expected.
    if let Err(e) = os::shutdown(fd, how) {
        tracing::trace!(fd, ?how, error = %e, "shutdown");
    }
}

#[cfg(test)]
mod tests;
