//! The native io_uring backend: one event loop per shard, directly on the
//! `io-uring` crate, driving every connection of the shard without a task
//! per connection (DESIGN.md section 3; the monoio driver in [`crate::conn`]
//! stays the portable fallback).
//!
//! ```text
//!   shard loop turn (crate `ringmq`, shard::native):
//!     mesh, auth verdicts, engine timer ... ─▶ Handler calls ─▶ DriverHandle::transmit/close
//!                                                                 │ (slot queued once)
//!     Driver::flush: for each queued connection take_outgoing() ─▶ one SEND SQE each
//!     Driver::submit_and_wait(deadline): ONE io_uring_enter submits them all and sleeps
//!     Driver::complete: CQEs ─▶ accept (multishot) ─▶ Event::Accepted
//!                              recv (multishot, provided buffer) ─▶ Handler::on_bytes
//!                              send done ─▶ next batch (appended meanwhile) or close step
//!                              eventfd read ─▶ the loop looks at its rings again
//!     Driver::fire_timers(now): packet-complete, close flush/linger, accept back-off
//! ```
//!
//! - Receive: one multishot `IORING_OP_RECV` per connection, selecting
//!   from the shard's provided-buffer ring ([`bufring`]); the bytes are
//!   copied into a shard-wide scratch buffer for the engine and the kernel
//!   buffer is recycled at once. Only a partial frame the engine leaves
//!   stays with the connection. An idle connection holds no buffer and no
//!   task: a slab entry ([`conn`]), its `DriverHandle` and its handler.
//! - Send: at most one `IORING_OP_SEND` in flight per connection; while it
//!   is, new output accumulates in the engine's buffer for that connection
//!   and leaves as one batch when the send completes. The `Bytes` of a send
//!   stay in the slab entry until its completion arrives.
//! - Timers: one heap of deadlines for the whole shard (entries only while
//!   a packet is half-received or a connection is closing); the loop sleeps
//!   in `io_uring_enter` with the earliest deadline as its timeout
//!   (`IORING_ENTER_EXT_ARG`), so keep-alive and idle connections cost
//!   nothing per connection.
//! - Close: the same graceful sequence as the monoio driver (`conn` module
//!   docs): flush (bounded by `close_flush_timeout_ms`), `shutdown(SHUT_WR)`,
//!   discard input until EOF or `close_linger_ms`, then `shutdown(SHUT_RD)`
//!   ends the receive; the fd is closed only once no operation on it is in
//!   flight, and [`Handler::on_closed`] is called exactly once. Its steps
//!   (the closing flush, the FIN, the report and free) are paced as on
//!   monoio: at most `CLOSE_STEPS_PER_TURN` per loop turn, the rest wait
//!   in order for the next turns ([`close`] module).
//! - Hand-off: a handler that asks to be detached
//!   ([`Handler::detach_requested`], the routing step of a new connection)
//!   gets its receive cancelled; once nothing is in flight the fd, the
//!   bytes read and the TLS session come back as [`Event::Detached`].
//! - TLS rides the same byte transform as the monoio driver
//!   ([`crate::conn::ConnTls`]: decrypt what a receive delivered, encrypt
//!   each batch); a server handshake's steps go to the helper threads
//!   (`crate::tls::offload`) and come back through the driver's
//!   `StepInbox`, taken in [`Driver::complete`] ([`tls`] module). An
//!   established session leaves with a detached fd.
//! - WebSocket is the handler adapter both backends share
//!   ([`crate::conn::websocket_handler`]); its session leaves with a
//!   detached fd too ([`Handler::take_ws_session`]).
//!
//! Requirements (checked by [`Driver::new`], which the shard reports and
//! falls back from): Linux 6.0 or later (multishot receive), provided
//! buffer rings (5.19), `IORING_FEAT_EXT_ARG` (5.11).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use bytes::BytesMut;
use io_uring::{opcode, squeue, types, IoUring};
use ringmq_chunked::ChunkedVec;

use crate::conn::pace::CLOSE_STEPS_PER_TURN;
use crate::conn::{ConnTls, DriverConfig, DriverHandle, Handler};
use crate::tls::offload::{Step, StepInbox};
use crate::tls::TlsSession;
use crate::ws::WsSession;

mod accept;
mod bufring;
mod close;
mod conn;
mod direct;
mod enter;
mod hold;
mod memory;
#[cfg(test)]
mod tests;
mod tls;
mod waker;

use accept::Listener;
use bufring::BufRing;
use conn::Conn;
use direct::DirectTable;
pub use direct::{DirectFd, Socket};
use enter::{build_ring, kernel_supports_multishot_recv, kernel_version, supports_min_wait};
use waker::EventFd;

/// Slots per chunk of the slab: as many as fit
/// [`ringmq_chunked::CLASS_CHUNK_MAX_BYTES`] (139 of 88 bytes, 12,232
/// bytes, in mimalloc's 12,288-byte size class). The default chunk, 128
/// slots (11,264 bytes), sat in the same class with 1 KiB of it unused: 8
/// bytes per connection (docs/benchmarks.md, "Table chunks that fill their
/// size class").
const SLOT_CHUNK_LEN: usize = ringmq_chunked::CLASS_CHUNK_MAX_BYTES / std::mem::size_of::<Slot>();

/// Sizes of one shard's ring and receive buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UringLimits {
    /// Submission queue entries (the completion queue gets twice as many).
    pub ring_entries: u32,
    /// Provided receive buffers per shard (a power of two, at most 32768).
    pub recv_buffers: u16,
    /// Size of each provided receive buffer, in bytes.
    pub recv_buffer_bytes: u32,
    /// Gathering (kernels with io_uring's minimum-wait timeout, 6.13+): a
    /// loop that sleeps wakes once this many completions are pending...
    pub gather_completions: u32,
    /// ... or, if fewer, once this many microseconds have passed since it
    /// went to sleep and at least one is (0: wake for every completion).
    /// A completion arriving later than this into a sleep wakes the loop at
    /// once, so the delay added to any message is at most this, and an idle
    /// loop is not woken by it.
    pub gather_wait_us: u32,
    /// Holding (`hold` module): a busy shard's fan-out output waits for
    /// the input expected next, at most this many microseconds, to leave
    /// in fewer sends (0: never).
    pub hold_us: u32,
    /// Slots of the shard's table of direct descriptors (`direct` module;
    /// lowered to the open-file limit; 0: process descriptors only).
    pub direct_fds: u32,
}

impl Default for UringLimits {
    fn default() -> Self {
        UringLimits {
            ring_entries: 4096,
            recv_buffers: 256,
            recv_buffer_bytes: 16 * 1024,
            gather_completions: GATHER_COMPLETIONS_DEFAULT,
            gather_wait_us: GATHER_WAIT_US_DEFAULT,
            hold_us: HOLD_US_DEFAULT,
            direct_fds: DIRECT_FDS_DEFAULT,
        }
    }
}

/// Default [`UringLimits::gather_completions`].
pub const GATHER_COMPLETIONS_DEFAULT: u32 = 32;
/// Default [`UringLimits::gather_wait_us`], in microseconds.
pub const GATHER_WAIT_US_DEFAULT: u32 = 100;
/// Default [`UringLimits::hold_us`], in microseconds.
pub const HOLD_US_DEFAULT: u32 = 500;
/// Default [`UringLimits::direct_fds`], in table slots (the kernel keeps
/// about 8 bytes per slot).
pub const DIRECT_FDS_DEFAULT: u32 = 65_536;
/// Largest [`UringLimits::direct_fds`] (the kernel's
/// `IORING_MAX_FIXED_FILES`).
pub const DIRECT_FDS_MAX: u32 = 1 << 20;
/// Completions one turn must have taken for the next sleep to gather.
/// A lightly loaded loop (a few completions per wake-up: request/response
/// round trips, shard-to-shard hand-offs) wakes for each completion:
/// gathering there only adds its wait to every hop, and on a core shared
/// with other busy threads each such sleep costs a scheduler round as
/// well (measured: a QoS 1 pairs flow's p50 rose 5-7x, a tiny-ring
/// cross-shard flood ran 20x longer).
pub const GATHER_BUSY_COMPLETIONS: u32 = 4;
/// Longest single sleep when nothing has a deadline, in milliseconds (the
/// minimum-wait timeout needs a finite timeout not to end the sleep).
const SLEEP_MAX_MS: u64 = 60_000;

/// Scratch buffer the engine reads from, in bytes (holds one receive).
const SCRATCH_BYTES: usize = 64 * 1024;
/// A partial frame up to this size is copied into its own exact buffer;
/// a larger one keeps the scratch allocation it arrived in (bytes).
const PARTIAL_COPY_MAX_BYTES: usize = 4 * 1024;
/// The buffer group id of the shard's provided buffers.
const BUF_GROUP: u16 = 0;

/// What the operation behind a completion was (low byte of `user_data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Cancel = 4,
    Wake = 5,
    /// Not an io_uring operation: the tag of a TLS handshake step on a
    /// helper thread (`tls` module).
    Handshake = 6,
    /// A direct socket's process descriptor for a hand-off (`direct`).
    Install = 7,
    /// The close of a direct table's slot (`slot`: the table's slot).
    Close = 8,
    /// A direct socket's `shutdown` (it runs on io-wq, and looks the slot
    /// up only there: the slot is not closed before it completes).
    Shutdown = 9,
}

/// `user_data`: generation (32 bits) | slot (24 bits) | op (8 bits). A
/// completion for a slot reused since carries the old generation and is
/// ignored.
fn token(op: Op, slot: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | (u64::from(slot & 0x00FF_FFFF) << 8) | op as u64
}

fn untoken(data: u64) -> (u8, u32, u32) {
    (
        (data & 0xFF) as u8,
        ((data >> 8) & 0x00FF_FFFF) as u32,
        (data >> 32) as u32,
    )
}

/// Most connections one shard's slab addresses (24-bit slot numbers).
pub const CONNECTIONS_MAX_PER_SHARD: usize = 0x00FF_FFFF;

/// What the loop must act on after [`Driver::complete`].
pub enum Event {
    /// A listener accepted a connection.
    Accepted { listener: usize, socket: Socket },
    /// An accept failed (logged by the caller); retried after a back-off.
    AcceptFailed { listener: usize, error: io::Error },
    /// A connection whose handler asked to be detached, with nothing in
    /// flight any more: its socket, the plaintext read so far (MQTT bytes,
    /// decoded from WebSocket frames on a WebSocket connection), its TLS
    /// session and its WebSocket session. Its handler's `on_closed` was
    /// not called.
    Detached {
        handler: Rc<dyn Handler>,
        fd: OwnedFd,
        bytes: BytesMut,
        tls: Option<Box<TlsSession>>,
        ws: Option<Box<WsSession>>,
    },
}

/// Kinds of per-connection deadline in the timer heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    PacketComplete,
    CloseFlush,
    CloseLinger,
    AcceptRetry,
}

/// One shard's native loop state (module docs).
pub struct Driver {
    ring: IoUring,
    bufs: BufRing,
    wake: Arc<EventFd>,
    /// Target of the in-flight eventfd read (8 bytes, boxed: stable).
    wake_buf: Box<u64>,
    wake_armed: bool,
    listeners: Vec<Listener>,
    /// The connection slab, in chunks: it grows without reallocating and
    /// [`Driver::shrink_memory`] frees whole chunks of its vacant tail
    /// (`memory` module).
    slots: ChunkedVec<Slot, SLOT_CHUNK_LEN>,
    free: Vec<u32>,
    live: usize,
    /// The ready list's other allocation (`hold::attend_ready`).
    ready_spare: Vec<(u32, u32)>,
    timers: BinaryHeap<Reverse<(u64, u32, u32, TimerKind)>>,
    scratch: BytesMut,
    cqes: Vec<(u64, i32, u32)>,
    events: Vec<Event>,
    /// TLS handshake steps the helper threads finished (`tls` module).
    steps_inbox: Arc<StepInbox>,
    steps: Vec<(u64, Step)>,
    config: DriverConfig,
    now_ms: u64,
    /// Close steps this turn may still run (`close` module: pacing);
    /// reset by [`Driver::flush`].
    close_steps_left: u32,
    /// Connections whose next close step waits for a later turn, in
    /// order.
    close_waiting: VecDeque<(u32, u32)>,
    /// Close steps that waited for a later turn so far.
    close_steps_deferred: u64,
    /// (completions, µs) of [`UringLimits`]' gathering, where the kernel
    /// has the minimum-wait timeout; `None`: wake for every completion.
    gather: Option<(u32, u32)>,
    /// Completions the last [`Driver::complete`] took: the loop gathers
    /// only after a turn that took at least [`GATHER_BUSY_COMPLETIONS`].
    last_completions: u32,
    /// Receives copy into the provided buffers only inside this thread's
    /// `io_uring_enter` (deferred task work, no multishot on io-wq): their
    /// pages may be given back between turns (`bufring` module docs).
    recv_copy_in_enter: bool,
    /// A receive took a provided buffer since the last
    /// [`Driver::take_receive_activity`].
    received: bool,
    /// Output held while the shard is busy (`hold` module).
    hold: hold::Hold,
    /// The ring's table of direct descriptors (`direct` module).
    direct: Option<DirectTable>,
    /// Why the table asked for is not there.
    direct_error: Option<io::Error>,
    /// Hand-offs refused for want of a process descriptor: one warning
    /// per interval while it lasts (`direct::Driver::install_failed`).
    install_warn: crate::throttle::WarnThrottle,
    /// The highest generation of a slot dropped from the slab's tail: a
    /// slot pushed again starts there (`memory` module: generations).
    gen_floor: u32,
}

/// A place in the slab; the default (generation 0, no connection) fills
/// a chunk's places until used.
#[derive(Default)]
struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

thread_local! {
    /// Connections whose handle asked for attention (transmit, close,
    /// resume reads) since the last flush: (slot, generation), each at most
    /// once. One per thread, not one per driver behind an `Rc` in every
    /// handle (8 bytes per connection): a thread runs at most one native
    /// loop ([`Driver::new`]).
    static READY: std::cell::RefCell<Vec<(u32, u32)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A [`Driver`] lives on this thread.
    static LOOP_ON_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Queues a connection of this thread's loop for its next flush.
#[inline]
pub(crate) fn queue_ready(slot: u32, gen: u32) {
    READY.with(|r| r.borrow_mut().push((slot, gen)));
}

/// Takes the ready list, leaving `spare` (empty) in its place; `spare`
/// back if the list is empty.
fn take_ready(spare: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    READY.with(|r| {
        let mut list = r.borrow_mut();
        if list.is_empty() {
            return spare;
        }
        std::mem::replace(&mut *list, spare)
    })
}

/// Whether a connection waits in the ready list.
fn ready_waiting() -> bool {
    READY.with(|r| !r.borrow().is_empty())
}

impl Driver {
    /// Sets up the ring, the provided buffers and the wake-up eventfd; an
    /// error says which io_uring feature the kernel (or a sandbox) refused.
    pub fn new(limits: UringLimits, config: DriverConfig) -> io::Result<Driver> {
        if LOOP_ON_THREAD.with(std::cell::Cell::get) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a native loop already runs on this thread (one per thread: its ready list is the thread's)",
            ));
        }
        if !kernel_supports_multishot_recv() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "multishot receive needs Linux 6.0 or later",
            ));
        }
        let (mut ring, deferred) = build_ring(&limits)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11)",
            ));
        }
        let gather = (limits.gather_wait_us > 0
            && limits.gather_completions > 1
            && supports_min_wait(&mut ring))
        .then_some((limits.gather_completions, limits.gather_wait_us));
        let bufs = BufRing::new(
            &ring.submitter(),
            limits.recv_buffers,
            limits.recv_buffer_bytes,
            BUF_GROUP,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("provided buffer ring: {e}")))?;
        let wake = EventFd::new()?;
        let (direct, direct_error) = match DirectTable::register(&ring, limits.direct_fds) {
            Ok(table) => (table, None),
            Err(e) => (None, Some(e)),
        };
        let mut driver = Driver {
            direct,
            direct_error,
            // `bufring` module docs: when the buffers' pages may be given back.
            recv_copy_in_enter: deferred && kernel_version() >= (6, 13),
            received: false,
            ring,
            bufs,
            steps_inbox: StepInbox::new(wake.waker()),
            steps: Vec::new(),
            wake,
            wake_buf: Box::new(0),
            wake_armed: false,
            listeners: Vec::new(),
            slots: ChunkedVec::new(),
            free: Vec::new(),
            live: 0,
            ready_spare: Vec::new(),
            timers: BinaryHeap::new(),
            scratch: BytesMut::new(),
            cqes: Vec::new(),
            events: Vec::new(),
            config,
            now_ms: 0,
            close_steps_left: CLOSE_STEPS_PER_TURN,
            close_waiting: VecDeque::new(),
            close_steps_deferred: 0,
            gather,
            last_completions: 0,
            hold: hold::Hold::new(limits.hold_us),
            install_warn: crate::throttle::WarnThrottle::default(),
            gen_floor: 0,
        };
        driver.arm_wake();
        LOOP_ON_THREAD.with(|on| on.set(true));
        READY.with(|r| r.borrow_mut().clear());
        Ok(driver)
    }

    /// A waker other threads call to end this loop's sleep.
    pub fn waker(&self) -> Waker {
        self.wake.waker()
    }

    /// Live connections (not yet freed).
    pub fn connections(&self) -> usize {
        self.live
    }

    /// Drives a new connection: `initial` holds bytes already read (given to
    /// the handler first). Returns `false` (dropping the socket) if the
    /// slab is full.
    pub fn add(
        &mut self,
        socket: Socket,
        handler: Rc<dyn Handler>,
        handle: DriverHandle,
        initial: BytesMut,
        tls: Option<ConnTls>,
    ) -> bool {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.slots.len() < CONNECTIONS_MAX_PER_SHARD => {
                self.slots.push(Slot {
                    gen: self.new_slot_gen(),
                    conn: None,
                });
                (self.slots.len() - 1) as u32
            }
            None => return false,
        };
        let entry = &mut self.slots[slot as usize];
        // Never 0 (`DriverHandle::link_native`).
        entry.gen = entry.gen.wrapping_add(1).max(1);
        let gen = entry.gen;
        handle.link_native(slot, gen);
        let fd = self.conn_fd(socket);
        let entry = &mut self.slots[slot as usize];
        entry.conn = Some(Conn::new(fd, handler, handle, tls));
        self.live += 1;
        self.start_conn(slot, gen, initial);
        true
    }

    /// Processes the connections whose handles asked for attention: sends
    /// their output, starts closes, resumes reads; a new turn's close
    /// budget goes first to the close steps that waited; a busy fan-out
    /// is held (`hold` module). Call once per turn, before sleeping.
    pub fn flush(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.close_orphans();
        self.close_steps_left = CLOSE_STEPS_PER_TURN;
        self.resume_closes();
        self.attend_ready();
        self.bufs.publish();
    }

    /// The earliest timer deadline, in ms on the caller's clock.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((at, ..))| *at)
    }

    /// Handles every completion that arrived; returns what the shard loop
    /// must act on (accepted sockets, detached connections).
    pub fn complete(&mut self, now_ms: u64) -> std::vec::Drain<'_, Event> {
        self.now_ms = now_ms;
        let mut taken: u32 = 0;
        loop {
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if cqes.is_empty() {
                self.cqes = cqes;
                break;
            }
            taken = taken.saturating_add(u32::try_from(cqes.len()).unwrap_or(u32::MAX));
            for (data, result, flags) in cqes.drain(..) {
                self.dispatch(data, result, flags);
            }
            self.cqes = cqes;
            self.bufs.publish();
        }
        self.last_completions = taken;
        self.take_steps();
        self.bufs.publish();
        self.events.drain(..)
    }

    fn dispatch(&mut self, data: u64, result: i32, flags: u32) {
        let (op, slot, gen) = untoken(data);
        match op {
            x if x == Op::Accept as u8 => self.on_accept(slot as usize, gen, result, flags),
            x if x == Op::Install as u8 => self.on_install(slot, gen, result),
            x if x == Op::Close as u8 => self.on_close(slot),
            x if x == Op::Shutdown as u8 => self.on_shutdown(slot, gen),
            x if x == Op::Recv as u8 => self.on_recv(slot, gen, result, flags),
            x if x == Op::Send as u8 => self.on_send(slot, gen, result),
            x if x == Op::Wake as u8 => {
                self.wake_armed = false;
                self.arm_wake();
            }
            _ => {} // cancellations: their target's completion says it all
        }
    }

    fn arm_wake(&mut self) {
        if self.wake_armed {
            return;
        }
        self.wake_armed = true;
        let buf: *mut u64 = &mut *self.wake_buf;
        // SAFETY: the read targets `wake_buf`, a boxed u64 that lives (at
        // the same address) as long as the driver, and the driver's ring is
        // torn down (ending the read) before the box is freed: `ring` is
        // declared before `wake_buf`, so it drops first.
        let sqe = opcode::Read::new(types::Fd(self.wake.raw()), buf.cast(), 8)
            .build()
            .user_data(token(Op::Wake, 0, 0));
        self.push(sqe);
    }

    /// Queues one SQE, submitting what is queued first if the queue is full.
    fn push(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: every SQE built in this module points only at memory
            // that outlives its completion (see each builder's SAFETY note:
            // send buffers stay in their slab entry, the eventfd target is
            // boxed, receives use the provided-buffer ring).
            let pushed = unsafe { self.ring.submission().push(&sqe) };
            if pushed.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::warn!(error = %e, "io_uring_enter (submission queue full)");
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.bufs.unregister(&self.ring.submitter());
        READY.with(|r| *r.borrow_mut() = Vec::new());
        LOOP_ON_THREAD.with(|on| on.set(false));
    }
}
