//! One connection of the native loop: its slab entry ([`Conn`]) and the
//! driver's handling of its receives, sends, close and timers (module
//! docs of `uring`).

use std::io;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use io_uring::{cqueue, opcode};

use super::direct::{on_fd, ConnFd};
use super::tls::NativeTls;
use super::{token, Driver, Op, TimerKind, PARTIAL_COPY_MAX_BYTES, SCRATCH_BYTES};
use crate::conn::tls_output;
use crate::conn::{CloseReason, ConnTls, DriverHandle, Handler};
use crate::os::Shutdown;

/// The state of a connection's multishot receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Recv {
    /// None in flight.
    Idle,
    Armed,
    /// A cancel was submitted (paused reads or a hand-off).
    Cancelling,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Open,
    /// Closing: flushing the last output (bounded by the flush deadline).
    Flushing,
    /// FIN sent; discarding input until EOF or the linger deadline.
    Lingering,
    /// `on_closed` was called; freed once nothing is in flight.
    Ended,
}

/// A connection's slab entry: what an idle plain-TCP connection needs,
/// with the rest boxed behind [`Conn::rare`] (docs/benchmarks.md, memory
/// per idle connection; `a_connection_slot_stays_small`).
pub(super) struct Conn {
    /// A process descriptor or a slot of the direct table.
    pub(super) fd: ConnFd,
    pub(super) handler: Rc<dyn Handler>,
    pub(super) handle: DriverHandle,
    /// What is left of the batch being sent (advanced past what the
    /// kernel took: 32 bytes, not 40 with an offset beside it); kept here
    /// until the send's completion arrives.
    pub(super) sending: Option<Bytes>,
    /// The partial frame, its clock and the TLS state: made on first use,
    /// dropped again by [`Conn::put_buf`] once it holds nothing.
    pub(super) rare: Option<Box<ConnRare>>,
    pub(super) recv: Recv,
    pub(super) phase: Phase,
    /// The handler asked to be detached (hand-off); no more deliveries.
    pub(super) detaching: bool,
    /// Reads are paused (the handler said so); input is kept in the
    /// partial-frame buffer.
    pub(super) paused: bool,
    pub(super) write_failed: Option<io::ErrorKind>,
    /// Ended, the report to the handler waiting for its close step.
    pub(super) unreported: Option<CloseReason>,
    /// Queued in the driver's `close_waiting` for its next close step.
    pub(super) close_waiting: bool,
    /// Detaching: the process descriptor for its direct slot is being
    /// made (`direct` module).
    pub(super) installing: bool,
    /// Shutdowns of a direct socket in flight (`direct` module).
    pub(super) shutdowns: u8,
}

/// The parts of a connection's slab entry that an idle plain-TCP
/// connection does not hold (boxed behind [`Conn::rare`]).
#[derive(Default)]
pub(super) struct ConnRare {
    /// The partial frame the handler left (plaintext).
    pub(super) buf: BytesMut,
    pub(super) tls: Option<NativeTls>,
    /// When the packet left incomplete in `buf` started (ms).
    pub(super) packet_started_ms: Option<u64>,
}

impl Conn {
    pub(super) fn new(
        fd: ConnFd,
        handler: Rc<dyn Handler>,
        handle: DriverHandle,
        tls: Option<ConnTls>,
    ) -> Conn {
        Conn {
            fd,
            handler,
            handle,
            sending: None,
            rare: tls.map(|tls| {
                Box::new(ConnRare {
                    tls: Some(NativeTls::new(tls)),
                    ..ConnRare::default()
                })
            }),
            recv: Recv::Idle,
            phase: Phase::Open,
            detaching: false,
            paused: false,
            write_failed: None,
            unreported: None,
            close_waiting: false,
            installing: false,
            shutdowns: 0,
        }
    }

    /// Not closing: input still goes to the handler.
    pub(super) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Bytes of a partial frame held.
    pub(super) fn buffered(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.buf.len())
    }

    /// The partial-frame buffer (the rare part is made if need be).
    pub(super) fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.rare.get_or_insert_with(Box::default).buf
    }

    /// Takes the partial frame held (empty if none).
    pub(super) fn take_buf(&mut self) -> BytesMut {
        self.rare
            .as_mut()
            .map_or_else(BytesMut::new, |r| std::mem::take(&mut r.buf))
    }

    /// Keeps `buf` as the partial frame if it holds bytes; an empty one is
    /// dropped with its allocation, and the rare part too once it holds
    /// nothing else.
    pub(super) fn put_buf(&mut self, buf: BytesMut) {
        if !buf.is_empty() {
            let held = self.buf_mut();
            if held.is_empty() {
                *held = buf;
            } else {
                held.unsplit(buf);
            }
            return;
        }
        if let Some(r) = &mut self.rare {
            r.buf = BytesMut::new();
            if r.tls.is_none() && r.packet_started_ms.is_none() {
                self.rare = None;
            }
        }
    }

    /// The TLS state, if the connection runs TLS.
    pub(super) fn tls(&self) -> Option<&NativeTls> {
        self.rare.as_ref()?.tls.as_ref()
    }

    /// When the packet left incomplete started (ms), if one is.
    pub(super) fn packet_started_ms(&self) -> Option<u64> {
        self.rare.as_ref()?.packet_started_ms
    }

    /// Sets (or clears) the clock of the partial frame.
    pub(super) fn set_packet_started_ms(&mut self, started: Option<u64>) {
        match (&mut self.rare, started) {
            (Some(r), _) => r.packet_started_ms = started,
            (None, None) => {}
            (None, Some(_)) => {
                self.rare.get_or_insert_with(Box::default).packet_started_ms = started;
            }
        }
    }
}

impl Driver {
    pub(super) fn conn(&mut self, slot: u32, gen: u32) -> Option<&mut Conn> {
        let entry = self.slots.get_mut(slot as usize)?;
        if entry.gen != gen {
            return None;
        }
        entry.conn.as_mut()
    }

    /// A new connection's first steps: TLS established already (hand-off),
    /// the bytes read before it came here, the first receive.
    pub(super) fn start_conn(&mut self, slot: u32, gen: u32, initial: BytesMut) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if let Some(NativeTls::Ready(tls)) = c.tls() {
            let session = tls.session.borrow();
            if !session.is_handshaking() {
                c.handler.on_tls_established(&session);
            }
        }
        if !initial.is_empty() && !c.handle.is_closing() {
            c.put_buf(initial);
            self.deliver_buf(slot, gen);
        }
        self.attend(slot, gen);
    }

    /// Acts on whatever the connection's handle asked for (flush docs).
    pub(super) fn attend(&mut self, slot: u32, gen: u32) {
        let now = self.now_ms;
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        c.handle.clear_queued();
        if c.phase == Phase::Ended {
            return;
        }
        if c.handle.is_closing() && c.phase == Phase::Open {
            c.phase = Phase::Flushing;
            let at = now + self.config.close_flush_timeout_ms;
            self.timers
                .push(std::cmp::Reverse((at, slot, gen, TimerKind::CloseFlush)));
        }
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.phase == Phase::Open && c.paused && !c.detaching && !c.handler.reads_paused() {
            c.paused = false;
            // Frames left unread while paused go first (reader docs).
            if c.buffered() > 0 {
                self.deliver_buf(slot, gen);
            }
        }
        self.pump_send(slot, gen);
        self.arm_recv(slot, gen);
    }

    /// Starts the next send if none is in flight and output waits; when a
    /// closing connection has nothing left, sends FIN and lingers.
    fn pump_send(&mut self, slot: u32, gen: u32) {
        let now = self.now_ms;
        let linger_ms = self.config.close_linger_ms;
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.sending.is_some() || c.phase == Phase::Ended || c.phase == Phase::Lingering {
            return;
        }
        let closing = c.phase == Phase::Flushing;
        // A closing connection's next send (its last bytes, close_notify)
        // or its FIN is a close step (`close` module: pacing).
        if closing && !self.close_step(slot, gen) {
            return;
        }
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let batch = match c.rare.as_deref_mut().and_then(|r| r.tls.as_mut()) {
            // Handshaking: only the session's own flight (or alert) leaves;
            // the handler's output, if any, waits for the session.
            Some(NativeTls::Handshake(h)) => Ok(h.flight()),
            _ if !c.handle.take_transmit() && !closing => return,
            None => Ok(c.handler.take_outgoing()),
            Some(NativeTls::Ready(tls)) => tls_output(tls, &*c.handler, closing),
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::debug!(error = %e, "TLS encryption failed; closing the connection");
                self.write_failed(slot, gen, io::ErrorKind::InvalidData);
                return;
            }
        };
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        match batch {
            Some(batch) if !batch.is_empty() => {
                c.sending = Some(batch);
                self.submit_send(slot, gen);
            }
            _ if closing => {
                // Everything flushed: FIN, then discard until EOF or linger.
                c.phase = Phase::Lingering;
                self.shutdown_conn(slot, gen, Shutdown::Write);
                self.timers.push(std::cmp::Reverse((
                    now + linger_ms,
                    slot,
                    gen,
                    TimerKind::CloseLinger,
                )));
            }
            _ => {}
        }
    }

    fn submit_send(&mut self, slot: u32, gen: u32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let Some(rest) = &c.sending else {
            return;
        };
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        // SAFETY (buffer lifetime): `rest` points into the `Bytes` held in
        // this slab entry's `sending` until this send's completion is
        // handled (`on_send`), and a slab entry is never freed while a send
        // is in flight (`try_free`); `Bytes` never moves its heap data.
        let sqe = on_fd!(&c.fd, |fd| opcode::Send::new(fd, rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build())
        .user_data(token(Op::Send, slot, gen));
        self.push(sqe);
    }

    pub(super) fn on_send(&mut self, slot: u32, gen: u32, result: i32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let Some(rest) = c.sending.as_mut() else {
            return;
        };
        if result < 0 {
            c.sending = None;
            let kind = io::Error::from_raw_os_error(-result).kind();
            self.write_failed(slot, gen, kind);
            self.try_free(slot, gen);
            return;
        }
        // The kernel took at most what was asked for (`submit_send`).
        rest.advance((result as usize).min(rest.len()));
        if !rest.is_empty() && result > 0 {
            self.submit_send(slot, gen);
            return;
        }
        c.sending = None;
        if c.phase == Phase::Ended {
            self.try_free(slot, gen);
            return;
        }
        if c.detaching {
            // The last bytes of this shard's session (a TLS ticket) are
            // out: the connection may leave now.
            self.try_detach(slot, gen);
            return;
        }
        // The engine asked to be called again if more waited behind it.
        if c.phase == Phase::Open {
            c.handle.mark_transmit();
        }
        if !self.sent_during_hold(slot, gen) {
            self.pump_send(slot, gen);
        }
        self.arm_recv(slot, gen);
    }

    /// Keeps a multishot receive in flight while the connection wants input.
    pub(super) fn arm_recv(&mut self, slot: u32, gen: u32) {
        let group = self.bufs.group;
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let wanted = match c.phase {
            Phase::Open => !c.paused && !c.detaching,
            Phase::Flushing | Phase::Lingering => true,
            Phase::Ended => false,
        };
        if !wanted || c.recv != Recv::Idle {
            return;
        }
        c.recv = Recv::Armed;
        // The receive selects a buffer of the provided ring (no pointer
        // into the slab entry); the fd stays open until it completes
        // (`try_free`).
        let sqe = on_fd!(&c.fd, |fd| opcode::RecvMulti::new(fd, group).build()).user_data(token(
            Op::Recv,
            slot,
            gen,
        ));
        self.push(sqe);
    }

    pub(super) fn cancel_recv(&mut self, slot: u32, gen: u32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.recv != Recv::Armed {
            return;
        }
        c.recv = Recv::Cancelling;
        let sqe = opcode::AsyncCancel::new(token(Op::Recv, slot, gen))
            .build()
            .user_data(token(Op::Cancel, slot, gen));
        self.push(sqe);
    }

    pub(super) fn on_recv(&mut self, slot: u32, gen: u32, result: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let data_len = usize::try_from(result).unwrap_or(0);
        // Copy the kernel buffer out and recycle it at once, whatever
        // happens to the connection.
        let mut chunk = std::mem::take(&mut self.scratch);
        chunk.clear();
        let stale = self.conn(slot, gen).is_none();
        if let Some(bid) = bid {
            self.received = true;
            if !stale {
                self.note_received(data_len);
                if let Some(data) = self.bufs.filled(bid, data_len) {
                    // Reuses the scratch allocation unless the engine still
                    // holds frames of it.
                    chunk.reserve(SCRATCH_BYTES.max(data.len()));
                    chunk.extend_from_slice(data);
                }
            }
            self.bufs.recycle(bid);
        }
        let Some(c) = self.conn(slot, gen) else {
            self.scratch = chunk;
            return;
        };
        if !cqueue::more(flags) {
            c.recv = Recv::Idle;
        }
        if result <= 0 {
            self.scratch = chunk;
            self.recv_ended(slot, gen, result);
            return;
        }
        match c.phase {
            Phase::Open => {}
            // Input after a close is discarded (graceful close).
            _ => {
                self.scratch = chunk;
                self.after_recv(slot, gen);
                return;
            }
        }
        match c.tls() {
            None => {
                if c.buffered() == 0 && !c.detaching && !c.paused {
                    // The common case: the engine reads the scratch buffer
                    // and only a partial frame it leaves stays behind.
                    let mut buf = std::mem::take(&mut chunk);
                    self.deliver(slot, gen, &mut buf);
                    chunk = keep_partial(&mut buf);
                    if let Some(c) = self.conn(slot, gen) {
                        c.put_buf(buf);
                    }
                } else {
                    c.buf_mut().extend_from_slice(&chunk);
                    self.deliver_buf(slot, gen);
                }
            }
            Some(NativeTls::Ready(tls)) => {
                let tls = Rc::clone(tls);
                self.decrypt_into(slot, gen, &tls, &chunk);
            }
            Some(NativeTls::Handshake(_)) => self.handshake_input(slot, gen, &chunk),
        }
        chunk.clear();
        self.scratch = chunk;
        self.after_recv(slot, gen);
    }

    /// After a receive: pause or detach if the handler asked, enforce the
    /// buffer limit, keep the receive armed.
    pub(super) fn after_recv(&mut self, slot: u32, gen: u32) {
        let max = self.config.read_buffer_max_bytes;
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.phase == Phase::Open && c.buffered() >= max {
            self.end(slot, gen, CloseReason::ReadBufferFull);
            return;
        }
        if c.phase == Phase::Open && (c.paused || c.detaching) {
            self.cancel_recv(slot, gen);
            self.try_detach(slot, gen);
            return;
        }
        if !self.wait_for_release(slot, gen) {
            self.attend(slot, gen);
        }
    }

    /// Hands the connection's partial-frame buffer to its handler
    /// ([`Driver::deliver`]) and keeps what it leaves.
    pub(super) fn deliver_buf(&mut self, slot: u32, gen: u32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let mut buf = c.take_buf();
        self.deliver(slot, gen, &mut buf);
        if let Some(c) = self.conn(slot, gen) {
            c.put_buf(buf);
        }
    }

    /// Hands `buf` (the connection's input) to its handler (reader docs:
    /// the started-packet clock), unless paused or detaching; the caller
    /// keeps what is left as the connection's partial frame.
    pub(super) fn deliver(&mut self, slot: u32, gen: u32, buf: &mut BytesMut) {
        let now = self.now_ms;
        let timeout = self.config.packet_complete_timeout_ms;
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.detaching || c.phase != Phase::Open {
            return;
        }
        if c.handler.reads_paused() {
            c.paused = true;
            return;
        }
        let before = buf.len();
        c.handler.on_bytes(buf);
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.handler.detach_requested() {
            // Leaving for its owner shard, where the clock of what is left
            // runs: a timer here would only wake this loop once, for
            // nothing (every hand-off's, packet_complete_timeout_ms later).
            c.detaching = true;
            return;
        }
        let started = match (c.packet_started_ms(), buf.len()) {
            (_, 0) => None,
            (Some(started), left) if left >= before => Some(started),
            _ => Some(now),
        };
        if started.is_some() && started != c.packet_started_ms() {
            self.timers.push(std::cmp::Reverse((
                now + timeout,
                slot,
                gen,
                TimerKind::PacketComplete,
            )));
        }
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        c.set_packet_started_ms(started);
        if c.handler.reads_paused() {
            c.paused = true;
        }
    }
}

/// After the engine read from the scratch buffer now in `buf`: keeps only
/// the partial frame it left (a small one copied into its own buffer, so
/// an idle connection does not pin the scratch allocation) and returns the
/// scratch buffer for the next receive (empty).
fn keep_partial(buf: &mut BytesMut) -> BytesMut {
    let mut used = std::mem::take(buf);
    if used.is_empty() {
        return used;
    }
    if used.len() <= PARTIAL_COPY_MAX_BYTES && used.capacity() <= SCRATCH_BYTES {
        *buf = BytesMut::from(&used[..]);
        used.clear();
        return used;
    }
    // A large partial frame keeps the allocation, as does one the handler
    // gave an exact buffer for the rest of its packet.
    *buf = used;
    BytesMut::new()
}
