//! The driver's vocabulary: its limits ([`DriverConfig`]), why a reader
//! stopped ([`CloseReason`]), what it asks of the runtime ([`Handler`]),
//! and the runtime's handle on a driven connection ([`DriverHandle`]) with
//! the flags the two tasks share.

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::tls::{TlsError, TlsSession};
use crate::wake::WakerSlot;
use crate::ws::{WsError, WsSession};

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
    /// The TLS session failed (certificate refused, alert, bad record);
    /// the connection closes with [`CloseReason::TlsError`] next. A client
    /// keeps the error to say why connecting failed.
    fn on_tls_failed(&self, _error: &TlsError) {}
    /// The WebSocket session failed (a refused upgrade, a bad frame); the
    /// connection closes next. A client keeps the error to say why
    /// connecting failed.
    fn on_ws_failed(&self, _error: &WsError) {}
    /// The native backend only: after [`Handler::on_bytes`], whether the
    /// connection must leave this driver (a hand-off to another shard).
    /// The driver then stops delivering, and once nothing is in flight
    /// returns the socket and the bytes read (`uring::Event::Detached`).
    fn detach_requested(&self) -> bool {
        false
    }
    /// The native backend only: the hand-off that
    /// [`Handler::detach_requested`] asked for cannot happen (the process
    /// has no descriptor left to move the socket with: `EMFILE`,
    /// `ENFILE`). `bytes` are the MQTT bytes read so far, which routing
    /// left unconsumed (the CONNECT). `true`: the handler answered the
    /// client (a refusal) and asked for the close through its
    /// [`DriverHandle`]; the connection stays in this driver until that
    /// answer is flushed. `false` (the default): the driver closes it.
    fn on_detach_failed(&self, _bytes: &[u8]) -> bool {
        false
    }
    /// The handler as `Any`, so that the runtime can recognise its own
    /// handler type in a detached connection (native backend; a byte
    /// transform's handler answers with the handler it wraps).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
    /// The native backend only: when the connection is detached, the
    /// WebSocket session a transform handler runs (`ws_io`), to travel
    /// with the socket.
    fn take_ws_session(&self) -> Option<Box<WsSession>> {
        None
    }
}

/// The flags and wake-ups the reader, the writer and [`DriverHandle`]
/// share for one connection.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) transmit: Cell<bool>,
    pub(super) closing: Cell<bool>,
    /// The reader has ended and `on_closed` was called.
    pub(super) ended: Cell<bool>,
    /// The writer has flushed (or given up) and shut the socket down.
    pub(super) writer_done: Cell<bool>,
    pub(super) write_failed: Cell<Option<io::ErrorKind>>,
    /// The reader closed the connection because its TLS session failed.
    pub(super) tls_failed: Cell<bool>,
    /// The monoio tasks' wake-ups, made when a task first waits: the
    /// native loop has no tasks, so its connections never make them
    /// (32 bytes less per connection; docs/benchmarks.md).
    wakers: std::cell::OnceCell<Box<Wakers>>,
    /// Native backend: where to queue this connection for attention (set
    /// once, by `link_native`).
    #[cfg(target_os = "linux")]
    pub(super) native: Cell<Option<NativeLink>>,
    /// Native backend: already queued since the last attention.
    #[cfg(target_os = "linux")]
    pub(super) queued: Cell<bool>,
}

/// The wake-ups of a monoio-driven connection's two tasks.
#[derive(Default)]
struct Wakers {
    writer: WakerSlot,
    reader: WakerSlot,
}

/// A native-loop connection's place: its slab slot and generation (8
/// bytes; the loop's ready list is its thread's, `uring::READY`, so the
/// shared flags fit in 24 bytes and their `Rc` in mimalloc's 40-byte class,
/// not 48; docs/benchmarks.md, memory per idle connection).
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
pub(super) struct NativeLink {
    slot: u32,
    gen: std::num::NonZeroU32,
}

/// The runtime's side of a driven connection: cheap to clone, `!Send`.
/// It may be created (and signalled) before the driver is spawned: a
/// transmit or close requested early is acted on when the driver starts.
#[derive(Clone, Default)]
pub struct DriverHandle {
    pub(super) shared: Rc<Shared>,
}

impl DriverHandle {
    /// A handle for a connection not yet driven.
    pub fn new() -> Self {
        Self::default()
    }

    /// Output is waiting: wake the writer (coalesces with earlier calls).
    pub fn transmit(&self) {
        self.shared.transmit.set(true);
        self.shared.wake_writer();
        self.queue();
    }

    /// Flush what is waiting, then shut the socket; the reader then ends and
    /// calls [`Handler::on_closed`].
    pub fn close(&self) {
        self.shared.closing.set(true);
        self.shared.wake_writer();
        self.shared.wake_reader();
        self.queue();
    }

    /// Backpressure lifted: the reader asks [`Handler::reads_paused`] again.
    pub fn resume_reads(&self) {
        self.shared.wake_reader();
        self.queue();
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
            .reader()
            .wait_until(|| self.shared.closing.get())
            .await;
    }
}

/// The native loop's side of the handle (`crate::uring`).
#[cfg(target_os = "linux")]
impl DriverHandle {
    /// Ties the handle to a native loop's slab entry (generations are
    /// never 0: `uring::Driver::add`).
    pub(crate) fn link_native(&self, slot: u32, gen: u32) {
        let Some(gen) = std::num::NonZeroU32::new(gen) else {
            tracing::error!("a driver handle was linked with generation 0");
            return;
        };
        if self.shared.native.get().is_some() {
            tracing::error!("a driver handle was linked to a native loop twice");
            return;
        }
        self.shared.native.set(Some(NativeLink { slot, gen }));
        // Anything asked before the link is acted on at the next flush.
        self.shared.queued.set(false);
        self.queue();
    }

    /// Queues the connection for the native loop's next flush (once).
    pub(crate) fn queue(&self) {
        let Some(link) = self.shared.native.get() else {
            return;
        };
        if !self.shared.queued.replace(true) {
            crate::uring::queue_ready(link.slot, link.gen.get());
        }
    }

    /// Queued for the native loop's next flush and not yet attended.
    pub(crate) fn is_queued(&self) -> bool {
        self.shared.queued.get()
    }

    pub(crate) fn clear_queued(&self) {
        self.shared.queued.set(false);
    }

    /// Takes (clears) the transmit request.
    pub(crate) fn take_transmit(&self) -> bool {
        self.shared.transmit.replace(false)
    }

    pub(crate) fn mark_transmit(&self) {
        self.shared.transmit.set(true);
    }

    pub(crate) fn mark_closing(&self) {
        self.shared.closing.set(true);
    }

    pub(crate) fn mark_ended(&self) {
        self.shared.ended.set(true);
    }

    pub(crate) fn set_tls_failed(&self) {
        self.shared.tls_failed.set(true);
    }

    pub(crate) fn tls_failed(&self) -> bool {
        self.shared.tls_failed.get()
    }
}

impl Shared {
    /// Where the writer task waits (made on first use).
    pub(super) fn writer(&self) -> &WakerSlot {
        &self.wakers.get_or_init(Box::default).writer
    }

    /// Where the reader task waits (made on first use).
    pub(super) fn reader(&self) -> &WakerSlot {
        &self.wakers.get_or_init(Box::default).reader
    }

    /// Wakes the writer task, if one waits.
    pub(super) fn wake_writer(&self) {
        if let Some(w) = self.wakers.get() {
            w.writer.wake();
        }
    }

    /// Wakes the reader task, if one waits.
    pub(super) fn wake_reader(&self) {
        if let Some(w) = self.wakers.get() {
            w.reader.wake();
        }
    }

    /// The writer task waits here while its write is in flight; it is woken
    /// through the writer slot like any other writer wait.
    pub(super) async fn reader_or_writer_wait(&self, ready: impl FnMut() -> bool) {
        self.writer().wait_until(ready).await;
    }
}

/// Size of one connection's shared flags (`a_connection_slot_stays_small`).
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn shared_bytes() -> usize {
    std::mem::size_of::<Shared>()
}
