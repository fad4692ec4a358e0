//! The end of a native-loop connection: write failures, the end of its
//! receive, the report to the handler (exactly once), freeing the slab
//! entry once nothing is in flight, detaching for a hand-off, and the
//! per-connection deadlines (`uring` module docs: close, hand-off).
//!
//! Pacing: the expensive steps of a close (the closing flush with its TLS
//! close_notify, the FIN, the report to the handler with the slab entry's
//! drop) each take one unit of the turn's budget,
//! [`CLOSE_STEPS_PER_TURN`](crate::conn::pace::CLOSE_STEPS_PER_TURN);
//! without one the connection waits, in order, in `close_waiting`, and the
//! next turns' [`Driver::flush`] resumes it before anything else. A burst
//! of closes then costs the connections that stay open at most one
//! budget's worth of close work per turn (`crate::conn::pace` explains
//! why).

use std::io;

use bytes::BytesMut;

use super::conn::{Phase, Recv};
use super::direct::FdRef;
use super::tls::NativeTls;
use super::{Driver, Event, TimerKind};
use crate::conn::CloseReason;
use crate::os::Shutdown;
use std::cmp::Reverse;

impl Driver {
    /// Whether connections wait for [`Driver::flush`] (attention asked,
    /// or a close step left for the next turn).
    pub fn has_ready(&self) -> bool {
        super::ready_waiting() || !self.close_waiting.is_empty()
    }

    /// Close steps that waited for a later turn so far (`close` module).
    pub fn close_steps_deferred(&self) -> u64 {
        self.close_steps_deferred
    }

    /// Fires the timers due at `now_ms`.
    pub fn fire_timers(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        while let Some(Reverse((at, slot, gen, kind))) = self.timers.peek().copied() {
            if at > now_ms {
                break;
            }
            self.timers.pop();
            if kind == TimerKind::AcceptRetry {
                self.retry_accept(slot as usize);
                continue;
            }
            self.on_timer(slot, gen, kind);
        }
        self.shrink_timers_if_sparse();
    }

    /// A write failed (or timed out): abrupt close, reported once the
    /// receive has ended.
    pub(super) fn write_failed(&mut self, slot: u32, gen: u32, kind: io::ErrorKind) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.phase == Phase::Ended {
            return;
        }
        c.write_failed.get_or_insert(kind);
        c.handle.mark_closing();
        c.phase = Phase::Lingering;
        let idle = c.recv == Recv::Idle;
        self.shutdown_conn(slot, gen, Shutdown::Both);
        if idle {
            self.finish(slot, gen);
        }
    }

    /// A receive ended with EOF (0) or an error.
    pub(super) fn recv_ended(&mut self, slot: u32, gen: u32, result: i32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let errno = -result;
        if result < 0 && (errno == libc::ENOBUFS || errno == libc::ECANCELED) {
            // Out of provided buffers (recycled by now: re-arm), or the
            // cancel of a pause or hand-off.
            if c.recv == Recv::Idle && c.phase != Phase::Ended {
                self.after_recv(slot, gen);
            }
            self.try_detach(slot, gen);
            self.try_free(slot, gen);
            return;
        }
        if c.recv != Recv::Idle {
            return; // a multishot receive reports its end without MORE
        }
        match c.phase {
            Phase::Open => {
                let reason = if result == 0 {
                    CloseReason::PeerClosed
                } else {
                    CloseReason::ReadError(io::Error::from_raw_os_error(errno).kind())
                };
                if c.detaching {
                    // The peer left while routing: still detach (the owner
                    // reads EOF) would waste a hand-off; end here.
                    c.detaching = false;
                }
                self.end(slot, gen, reason);
            }
            Phase::Flushing => {
                // The peer closed while we flush: the flush deadline or the
                // send's completion ends it; report once the send is done.
                if c.sending.is_none() {
                    self.finish(slot, gen);
                }
            }
            Phase::Lingering => self.finish(slot, gen),
            Phase::Ended => self.try_free(slot, gen),
        }
    }

    /// A graceful or abrupt close is complete: report it.
    pub(super) fn finish(&mut self, slot: u32, gen: u32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let reason = if c.handle.tls_failed() {
            CloseReason::TlsError
        } else {
            c.write_failed
                .map_or(CloseReason::Local, CloseReason::WriteError)
        };
        self.end(slot, gen, reason);
    }

    /// Reports the close to the handler (once) and frees the entry when no
    /// operation is in flight.
    pub(super) fn end(&mut self, slot: u32, gen: u32, reason: CloseReason) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.phase == Phase::Ended {
            return;
        }
        c.phase = Phase::Ended;
        c.put_buf(BytesMut::new());
        // End whatever is in flight (a receive completes with 0, a send
        // fails); the peer gets FIN after the bytes already queued.
        let in_flight = c.recv != Recv::Idle || c.sending.is_some();
        c.handle.mark_ended();
        c.unreported = Some(reason);
        if in_flight {
            self.shutdown_conn(slot, gen, Shutdown::Both);
        }
        self.report(slot, gen);
    }

    /// Reports an ended connection's close to its handler and frees the
    /// entry: a close step (module docs), else queued for a later turn.
    fn report(&mut self, slot: u32, gen: u32) {
        if !self.close_step(slot, gen) {
            return;
        }
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let Some(reason) = c.unreported.take() else {
            return;
        };
        let handler = c.handler.clone();
        handler.on_closed(reason);
        self.try_free(slot, gen);
    }

    /// Takes one close step of this turn's budget for the connection, or
    /// queues it (once) for a later turn and returns `false`.
    pub(super) fn close_step(&mut self, slot: u32, gen: u32) -> bool {
        if self.close_steps_left > 0 {
            self.close_steps_left -= 1;
            return true;
        }
        let Some(c) = self.conn(slot, gen) else {
            return false;
        };
        if !c.close_waiting {
            c.close_waiting = true;
            self.close_waiting.push_back((slot, gen));
            self.close_steps_deferred += 1;
        }
        false
    }

    /// Runs the close steps that waited, in order, while the turn's budget
    /// lasts (called by [`Driver::flush`] first).
    pub(super) fn resume_closes(&mut self) {
        while self.close_steps_left > 0 {
            let Some((slot, gen)) = self.close_waiting.pop_front() else {
                break;
            };
            let Some(c) = self.conn(slot, gen) else {
                continue;
            };
            c.close_waiting = false;
            if c.unreported.is_some() {
                self.report(slot, gen);
            } else {
                self.attend(slot, gen);
            }
        }
    }

    /// Frees an ended entry once nothing is in flight (closing its fd).
    pub(super) fn try_free(&mut self, slot: u32, gen: u32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if c.phase != Phase::Ended
            || c.recv != Recv::Idle
            || c.sending.is_some()
            || c.unreported.is_some()
            || c.installing
            || c.shutdowns > 0
        {
            return;
        }
        if let Some(c) = self.slots[slot as usize].conn.take() {
            if let FdRef::Direct(direct) = c.fd.get() {
                self.close_direct(direct);
            }
        }
        self.free.push(slot);
        self.live -= 1;
    }

    /// Detaches a connection whose handler asked for it once nothing is in
    /// flight (module docs: hand-off).
    pub(super) fn try_detach(&mut self, slot: u32, gen: u32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        if !c.detaching
            || c.phase != Phase::Open
            || c.recv != Recv::Idle
            || c.sending.is_some()
            || c.installing
        {
            return;
        }
        if let FdRef::Direct(direct) = c.fd.get() {
            // The owner shard needs a process descriptor (`direct` module).
            c.installing = true;
            self.install(slot, gen, direct);
            return;
        }
        let Some(c) = self.slots[slot as usize].conn.take() else {
            return;
        };
        let Ok(fd) = c.fd.into_plain() else {
            return;
        };
        self.free.push(slot);
        self.live -= 1;
        let (bytes, tls) = match c.rare {
            Some(r) => (r.buf, r.tls.and_then(NativeTls::into_session)),
            None => (BytesMut::new(), None),
        };
        let ws = c.handler.take_ws_session();
        self.events.push(Event::Detached {
            handler: c.handler,
            fd,
            bytes,
            tls,
            ws,
        });
    }

    pub(super) fn on_timer(&mut self, slot: u32, gen: u32, kind: TimerKind) {
        let now = self.now_ms;
        let timeout = self.config.packet_complete_timeout_ms;
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        match (kind, c.phase) {
            (TimerKind::PacketComplete, Phase::Open) => {
                let due = c.packet_started_ms().is_some_and(|s| s + timeout <= now);
                if due && !c.paused {
                    self.end(slot, gen, CloseReason::PacketTimeout);
                } else if let Some(started) = c.packet_started_ms() {
                    // Paused time does not count: look again later.
                    let at = if c.paused {
                        now + timeout
                    } else {
                        started + timeout
                    };
                    if c.paused {
                        c.set_packet_started_ms(Some(now));
                    }
                    self.timers.push(std::cmp::Reverse((
                        at,
                        slot,
                        gen,
                        TimerKind::PacketComplete,
                    )));
                }
            }
            (TimerKind::CloseFlush, Phase::Flushing) => {
                self.write_failed(slot, gen, io::ErrorKind::TimedOut);
            }
            (TimerKind::CloseLinger, Phase::Lingering) => {
                if c.recv == Recv::Idle {
                    self.finish(slot, gen);
                } else {
                    // Ends the pending receive with 0 bytes.
                    self.shutdown_conn(slot, gen, Shutdown::Read);
                }
            }
            _ => {}
        }
    }
}
