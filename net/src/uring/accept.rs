//! Accepting on the native loop: one multishot accept per listener into
//! process descriptors, or, with a direct table (`direct` module),
//! [`ACCEPTS_IN_FLIGHT`] single-shot accepts per listener, each into a
//! slot reserved for it and with its own buffer for the peer's address
//! (a multishot accept reports no address, and a direct socket has no
//! descriptor to ask `getpeername` with). When the table is full an accept
//! takes a process descriptor instead; accept errors that mean "no room"
//! (EMFILE, ENFILE, ENOBUFS, ENOMEM) back off for
//! [`ACCEPT_ERROR_BACKOFF_MS`] either way.

use std::cmp::Reverse;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, types};

use super::direct::Socket;
use super::{token, Driver, Event, Op, TimerKind};

/// Single-shot accepts in flight per listener with a direct table: the
/// accepts one loop turn can complete (a multishot accept has no bound).
pub(super) const ACCEPTS_IN_FLIGHT: usize = 16;
/// Back-off after an accept error such as EMFILE, in milliseconds.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

pub(super) struct Listener {
    fd: RawFd,
    /// Its address: a direct socket's local address.
    local: Option<SocketAddr>,
    /// The multishot accept is in flight (no direct table).
    armed: bool,
    stopped: bool,
    /// Backing off after an accept error: nothing is re-armed (nor
    /// another error reported) until the retry timer.
    backing_off: bool,
    /// With a direct table: the single-shot accepts.
    pending: Vec<PendingAccept>,
}

/// One single-shot accept of a listener (module docs).
struct PendingAccept {
    /// Written by the kernel while the accept is in flight: boxed, so it
    /// stays where it is as the listener list grows.
    addr: Box<AcceptAddr>,
    armed: bool,
    /// The direct slot it accepts into (`None`: a process descriptor).
    slot: Option<u32>,
}

/// The peer-address buffer of an accept.
struct AcceptAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Driver {
    /// Starts accepting on `fd` (a listening socket the caller keeps open
    /// until [`Driver::stop_accepting`] and the loop's end); returns its
    /// index for [`Event::Accepted`].
    pub fn add_listener(&mut self, fd: RawFd) -> usize {
        // SAFETY: `fd` is a socket the caller keeps open (see above); the
        // borrowed handle lives only for this call.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let local = socket2::SockRef::from(&borrowed)
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket());
        let pending = match self.direct {
            None => Vec::new(),
            Some(_) => (0..ACCEPTS_IN_FLIGHT)
                .map(|_| PendingAccept {
                    // SAFETY: an all-zero sockaddr_storage is a valid value.
                    addr: Box::new(AcceptAddr {
                        storage: unsafe { std::mem::zeroed() },
                        len: 0,
                    }),
                    armed: false,
                    slot: None,
                })
                .collect(),
        };
        self.listeners.push(Listener {
            fd,
            local,
            armed: false,
            stopped: false,
            backing_off: false,
            pending,
        });
        let index = self.listeners.len() - 1;
        self.arm_accept(index);
        index
    }

    /// Stops accepting on every listener (pending accepts are cancelled;
    /// sockets accepted meanwhile are closed).
    pub fn stop_accepting(&mut self) {
        for index in 0..self.listeners.len() {
            let listener = &mut self.listeners[index];
            listener.stopped = true;
            let mut tokens = Vec::new();
            if listener.armed {
                tokens.push(token(Op::Accept, index as u32, 0));
            }
            for (k, p) in listener.pending.iter().enumerate() {
                if p.armed {
                    tokens.push(token(Op::Accept, index as u32, k as u32));
                }
            }
            for target in tokens {
                let cancel =
                    opcode::AsyncCancel::new(target)
                        .build()
                        .user_data(token(Op::Cancel, 0, 0));
                self.push(cancel);
            }
        }
    }

    pub(super) fn on_accept(&mut self, index: usize, k: u32, result: i32, flags: u32) {
        let Some(listener) = self.listeners.get_mut(index) else {
            return;
        };
        let stopped = listener.stopped;
        let local = listener.local;
        let (socket, direct_slot) = match listener.pending.get_mut(k as usize) {
            None => {
                if !cqueue::more(flags) {
                    listener.armed = false;
                }
                (None, None)
            }
            Some(p) => {
                p.armed = false;
                let peer = (result >= 0).then(|| peer_addr(&p.addr)).flatten();
                (Some(peer), p.slot.take())
            }
        };
        if result >= 0 {
            let socket = match (direct_slot, &self.direct) {
                (Some(slot), Some(table)) => {
                    Socket::Direct(table.socket(slot, socket.flatten(), local))
                }
                _ => {
                    // SAFETY: a successful accept completion's result
                    // (without a direct slot) is a new descriptor that
                    // nothing else owns.
                    Socket::Plain(unsafe { OwnedFd::from_raw_fd(result) })
                }
            };
            if stopped {
                return; // dropping it closes it
            }
            self.events.push(Event::Accepted {
                listener: index,
                socket,
            });
        } else {
            if let (Some(slot), Some(table)) = (direct_slot, &mut self.direct) {
                table.release(slot);
            }
            let errno = -result;
            let backing_off = self.listeners[index].backing_off;
            if errno != libc::ECANCELED && !stopped && !backing_off {
                self.events.push(Event::AcceptFailed {
                    listener: index,
                    error: io::Error::from_raw_os_error(errno),
                });
                if matches!(
                    errno,
                    libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
                ) {
                    // One report and one retry for all the accepts in
                    // flight that fail alike.
                    self.listeners[index].backing_off = true;
                    let at = self.now_ms + ACCEPT_ERROR_BACKOFF_MS;
                    self.timers
                        .push(Reverse((at, index as u32, 0, TimerKind::AcceptRetry)));
                    return;
                }
            }
        }
        self.arm_accept(index);
    }

    /// The back-off after an accept error is over: accept again.
    pub(super) fn retry_accept(&mut self, index: usize) {
        if let Some(listener) = self.listeners.get_mut(index) {
            listener.backing_off = false;
        }
        self.arm_accept(index);
    }

    /// Arms the listener's accepts that are not in flight (unless it was
    /// stopped or backs off).
    pub(super) fn arm_accept(&mut self, index: usize) {
        let Some(listener) = self.listeners.get_mut(index) else {
            return;
        };
        if listener.stopped || listener.backing_off {
            return;
        }
        let fd = listener.fd;
        if listener.pending.is_empty() {
            if listener.armed {
                return;
            }
            listener.armed = true;
            let sqe = opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(token(Op::Accept, index as u32, 0));
            self.push(sqe);
            return;
        }
        for k in 0..ACCEPTS_IN_FLIGHT {
            if !matches!(self.listeners[index].pending.get(k), Some(p) if !p.armed) {
                continue;
            }
            let slot = self.direct.as_mut().and_then(|t| t.take());
            // Slots are below the table's size (at most 2^20): always a
            // valid target.
            let dest = slot.and_then(|s| types::DestinationSlot::try_from_slot_target(s).ok());
            if let (Some(slot), None, Some(table)) = (slot, dest, &mut self.direct) {
                table.release(slot);
            }
            let p = &mut self.listeners[index].pending[k];
            p.armed = true;
            p.slot = dest.and(slot);
            p.addr.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let addr: *mut libc::sockaddr_storage = &mut p.addr.storage;
            let len: *mut libc::socklen_t = &mut p.addr.len;
            // SAFETY (pointers): the address buffer is boxed in the
            // listener's entry, which lives (at the same address) as long
            // as the driver; the ring is torn down first (`ring` is the
            // driver's first field), so no accept writes after it is freed.
            // A direct socket has no descriptor to close on exec (and the
            // kernel refuses the flag with a slot).
            let flags = if dest.is_some() {
                0
            } else {
                libc::SOCK_CLOEXEC
            };
            let sqe = opcode::Accept::new(types::Fd(fd), addr.cast(), len)
                .flags(flags)
                .file_index(dest)
                .build()
                .user_data(token(Op::Accept, index as u32, k as u32));
            self.push(sqe);
        }
    }
}

/// The peer address an accept wrote.
fn peer_addr(addr: &AcceptAddr) -> Option<SocketAddr> {
    // SAFETY: the kernel wrote a socket address of `len` bytes (at most
    // the storage's size, which it was told) into `storage`.
    let sock = unsafe { socket2::SockAddr::new(addr.storage, addr.len) };
    sock.as_socket()
}

#[cfg(test)]
impl Driver {
    /// Direct slots reserved by the accepts in flight.
    pub(super) fn accept_reserved(&self) -> u32 {
        let reserved = self
            .listeners
            .iter()
            .flat_map(|l| &l.pending)
            .filter(|p| p.slot.is_some())
            .count();
        u32::try_from(reserved).unwrap_or(u32::MAX)
    }
}
