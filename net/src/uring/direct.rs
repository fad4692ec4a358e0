//! Direct descriptors: the native loop's connections live in the ring's
//! registered file table, not in the process's descriptor table.
//!
//! Each shard's ring registers a sparse table of
//! [`UringLimits::direct_fds`](super::UringLimits) slots (at most the
//! soft open-file limit: the kernel refuses a larger table). Accepts name
//! a free slot of it (`IORING_OP_ACCEPT` with a file index: the socket
//! never gets a process descriptor), and every later operation names the
//! slot: receive, send, shutdown, close (`IOSQE_FIXED_FILE`). The open-file
//! limit then caps each shard's table, not the process, so a broker with
//! N shards holds N times as many connections, and the kernel skips the
//! descriptor lookup on every operation.
//!
//! ```text
//!   accept (slot k reserved) ─▶ Socket::Direct(k) ─▶ Driver::add ─▶ ConnFd (slot k)
//!   hand-off out:  FIXED_FD_INSTALL(k) ─▶ process fd ─▶ close slot k ─▶ Event::Detached
//!                  (EMFILE: the handler refuses it, CONNACK 0x89 / 3, and it
//!                  closes on the slot, with a warning)
//!   hand-off in:   process fd ─▶ register into a free slot (one io_uring_register) ─▶ fd closed
//!   table full:    the accept takes a process fd (ENFILE/EMFILE back off as before)
//! ```
//!
//! The slots are managed here (a counter and a free list of returned
//! ones as ranges, no per-slot memory up front); a slot goes back to the
//! free list when the close naming it has completed. The shard's memory
//! release after closes merges the list's ranges ([`DirectTable::shrink`]):
//! after a burst of closes, a few ranges instead of one entry per slot.
//! A [`DirectFd`] that the loop drops without driving it (the engine
//! refused the connection) is closed at the next
//! [`Driver::flush`](super::Driver::flush).
//!
//! What a direct descriptor cannot give: `getsockname`/`getpeername` (the
//! peer address comes with the accept; the local address is the
//! listener's) and socket options (`TCP_NODELAY` is set on the listener,
//! which Linux copies to every socket it accepts).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::{token, Driver, Op};

/// `IORING_OP_FIXED_FD_INSTALL` (Linux 6.8; the `io-uring` crate 0.6 has
/// no builder for it).
const IORING_OP_FIXED_FD_INSTALL: u8 = 54;
/// `IOSQE_FIXED_FILE`: the SQE's fd is a slot of the registered table.
const IOSQE_FIXED_FILE: u8 = 1;

/// The open-file limit (soft), the largest table the kernel registers
/// (0 where unknown).
fn open_file_limit() -> u32 {
    crate::os::fd_limit().map_or(0, |limit| u32::try_from(limit.rlim_cur).unwrap_or(u32::MAX))
}

/// One shard's table of direct descriptors (module docs).
pub(super) struct DirectTable {
    /// Slots registered.
    size: u32,
    /// Slots below this were handed out at least once.
    pub(super) next: u32,
    /// Slots handed out and given back (their close completed), as
    /// ranges `start..end` (each release pushes one slot's; `shrink`
    /// merges them).
    free: Vec<(u32, u32)>,
    /// Slots of [`DirectFd`]s dropped without being driven: closed at the
    /// next flush.
    orphans: Rc<RefCell<Vec<u32>>>,
}

impl DirectTable {
    /// Registers a sparse table of `wanted` slots, lowered to the open-file
    /// limit. `Ok(None)`: `wanted` is 0 (off). An error says why the kernel
    /// refused (the caller uses process descriptors instead).
    pub(super) fn register(ring: &IoUring, wanted: u32) -> io::Result<Option<DirectTable>> {
        let size = wanted.min(open_file_limit());
        if size == 0 {
            return Ok(None);
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(IORING_OP_FIXED_FD_INSTALL) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_OP_FIXED_FD_INSTALL (Linux 6.8)",
            ));
        }
        ring.submitter().register_files_sparse(size)?;
        Ok(Some(DirectTable {
            size,
            next: 0,
            free: Vec::new(),
            orphans: Rc::default(),
        }))
    }

    /// Slots registered.
    pub(super) fn size(&self) -> u32 {
        self.size
    }

    /// A free slot, if any (the caller gives it back with [`Self::release`]
    /// if it does not use it, or closes it).
    pub(super) fn take(&mut self) -> Option<u32> {
        if let Some(range) = self.free.last_mut() {
            let slot = range.0;
            range.0 += 1;
            if range.0 >= range.1 {
                self.free.pop();
            }
            return Some(slot);
        }
        if self.next < self.size {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }

    /// A slot is empty again.
    pub(super) fn release(&mut self, slot: u32) {
        if slot < self.size {
            self.free.push((slot, slot + 1));
        }
    }

    /// Gives back the free list's room after a burst of closes: its
    /// ranges sorted and merged (after every connection closed, one or
    /// a few instead of one per slot), a range that ends at [`Self::next`]
    /// lowering it instead, and the list's spare capacity freed. A list of
    /// one slot per entry, as before, kept 16,667 entries after 16,667
    /// closes on one shard (a 32,768-entry block, 128 KiB, allocated while
    /// the connections closed; docs/benchmarks.md, "Memory given back after
    /// 100,000 closes: `$SYS` room, the direct table's free list"). In
    /// place, O(n log n) in the list: the shard calls it at most about once
    /// a second, after closes.
    pub(super) fn shrink(&mut self) {
        self.free.sort_unstable();
        // `dedup_by` hands each range with the last one kept before it:
        // an overlapping or adjacent one joins that and goes.
        self.free.dedup_by(|next, kept| {
            let joins = kept.1 >= next.0;
            if joins {
                kept.1 = kept.1.max(next.1);
            }
            joins
        });
        if self.free.last().is_some_and(|last| last.1 >= self.next) {
            if let Some(last) = self.free.pop() {
                self.next = self.next.min(last.0);
            }
        }
        self.free.shrink_to_fit();
    }

    /// Slots in use (tests).
    #[cfg(test)]
    pub(super) fn in_use(&self) -> u32 {
        let free: u32 = self.free.iter().map(|r| r.1 - r.0).sum();
        self.next - free
    }

    /// Ranges in the free list, and the list's capacity (tests).
    #[cfg(test)]
    pub(super) fn free_ranges(&self) -> (usize, usize) {
        (self.free.len(), self.free.capacity())
    }

    /// A [`DirectFd`] for an accepted socket in `slot`.
    pub(super) fn socket(
        &self,
        slot: u32,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
    ) -> DirectFd {
        DirectFd {
            slot,
            driven: false,
            peer,
            local,
            orphans: self.orphans.clone(),
        }
    }
}

/// A socket in a slot of a shard's direct table, not yet driven.
pub struct DirectFd {
    slot: u32,
    /// Taken by [`Driver::add`](super::Driver::add): not an orphan.
    driven: bool,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    orphans: Rc<RefCell<Vec<u32>>>,
}

impl Drop for DirectFd {
    fn drop(&mut self) {
        if !self.driven {
            self.orphans.borrow_mut().push(self.slot);
        }
    }
}

/// An accepted (or handed-over) socket: a process descriptor, or a slot of
/// the accepting shard's direct table (module docs).
pub enum Socket {
    Plain(OwnedFd),
    Direct(DirectFd),
}

impl Socket {
    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Socket::Plain(fd) => socket2::SockRef::from(fd).peer_addr().ok()?.as_socket(),
            Socket::Direct(d) => d.peer,
        }
    }

    /// The local address (a direct socket's is its listener's).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Socket::Plain(fd) => socket2::SockRef::from(fd).local_addr().ok()?.as_socket(),
            Socket::Direct(d) => d.local,
        }
    }

    /// Sets `TCP_NODELAY` on a plain socket; a direct one has its
    /// listener's (module docs).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Socket::Plain(fd) => socket2::SockRef::from(fd).set_nodelay(nodelay),
            Socket::Direct(_) => Ok(()),
        }
    }

    /// Whether the socket is a slot of a direct table.
    pub fn is_direct(&self) -> bool {
        matches!(self, Socket::Direct(_))
    }
}

/// A driven connection's socket in 4 bytes (the slab entry's size is the
/// memory of an idle connection): a process descriptor it owns (closed on
/// drop), or a slot of the direct table ([`DIRECT_BIT`] set).
pub(super) struct ConnFd(u32);

/// Marks a [`ConnFd`] that is a slot (slots are below 2^20, descriptors
/// are not negative).
const DIRECT_BIT: u32 = 1 << 31;

/// What a [`ConnFd`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FdRef {
    Plain(RawFd),
    Direct(u32),
}

impl ConnFd {
    pub(super) fn plain(fd: OwnedFd) -> ConnFd {
        ConnFd(fd.into_raw_fd() as u32)
    }

    pub(super) fn direct(slot: u32) -> ConnFd {
        ConnFd(slot | DIRECT_BIT)
    }

    pub(super) fn get(&self) -> FdRef {
        if self.0 & DIRECT_BIT != 0 {
            FdRef::Direct(self.0 & !DIRECT_BIT)
        } else {
            FdRef::Plain(self.0 as RawFd)
        }
    }

    /// The process descriptor, or (`Err`) the slot.
    pub(super) fn into_plain(self) -> Result<OwnedFd, u32> {
        let this = std::mem::ManuallyDrop::new(self);
        match this.get() {
            // SAFETY: a plain `ConnFd` owns its descriptor (made from an
            // `OwnedFd`), and `ManuallyDrop` keeps it from closing it.
            FdRef::Plain(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            FdRef::Direct(slot) => Err(slot),
        }
    }
}

impl Drop for ConnFd {
    fn drop(&mut self) {
        if let FdRef::Plain(fd) = self.get() {
            // SAFETY: as in `into_plain`; this is the owner's last use.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

/// An SQE on a connection's socket: `$build` gets `types::Fd` or
/// `types::Fixed`.
macro_rules! on_fd {
    ($fd:expr, |$target:ident| $build:expr) => {
        match $fd.get() {
            $crate::uring::direct::FdRef::Plain(fd) => {
                let $target = io_uring::types::Fd(fd);
                $build
            }
            $crate::uring::direct::FdRef::Direct(slot) => {
                let $target = io_uring::types::Fixed(slot);
                $build
            }
        }
    };
}
pub(super) use on_fd;

/// `IORING_OP_FIXED_FD_INSTALL` of `slot`: a process descriptor for the
/// socket (close-on-exec), the slot untouched.
fn fixed_fd_install(slot: u32) -> squeue::Entry {
    let nop = opcode::Nop::new().build();
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte
    // `io_uring_sqe` (the transmute checks the size), and a NOP entry has
    // every field zero but the opcode and fd. The fields written are the
    // kernel ABI's: opcode (byte 0), flags (byte 1), fd (bytes 4..8);
    // `install_fd_flags` stays 0 (close-on-exec), and the other fields
    // the opcode requires to be zero are.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute::<squeue::Entry, [u8; 64]>(nop) };
    raw[0] = IORING_OP_FIXED_FD_INSTALL;
    raw[1] = IOSQE_FIXED_FILE;
    raw[4..8].copy_from_slice(&i32::try_from(slot).unwrap_or(i32::MAX).to_ne_bytes());
    // SAFETY: as above, back to the type it came from.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

impl Driver {
    /// Slots of this shard's direct table (0: connections use process
    /// descriptors).
    pub fn direct_slots(&self) -> u32 {
        self.direct.as_ref().map_or(0, DirectTable::size)
    }

    /// Why the direct table is off although asked for (set at start-up).
    pub fn direct_error(&self) -> Option<&io::Error> {
        self.direct_error.as_ref()
    }

    /// A new connection's socket for the slab: a direct one's slot, or a
    /// process descriptor moved into a free slot if there is one (a
    /// hand-off from another shard), else kept as it is.
    pub(super) fn conn_fd(&mut self, socket: Socket) -> ConnFd {
        let fd = match socket {
            Socket::Direct(mut d) => {
                d.driven = true;
                return ConnFd::direct(d.slot);
            }
            Socket::Plain(fd) => fd,
        };
        let Some(table) = self.direct.as_mut() else {
            return ConnFd::plain(fd);
        };
        let Some(slot) = table.take() else {
            return ConnFd::plain(fd);
        };
        match self
            .ring
            .submitter()
            .register_files_update(slot, &[fd.as_raw_fd()])
        {
            // The table holds its own reference: the descriptor goes.
            Ok(1) => ConnFd::direct(slot),
            result => {
                tracing::debug!(?result, "cannot move a socket into the direct table");
                table.release(slot);
                ConnFd::plain(fd)
            }
        }
    }

    /// Closes a slot; it is reused once the close has completed.
    pub(super) fn close_direct(&mut self, slot: u32) {
        let sqe = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(token(Op::Close, slot, 0));
        self.push(sqe);
    }

    /// A close of a slot completed: the slot is free.
    pub(super) fn on_close(&mut self, slot: u32) {
        if let Some(table) = &mut self.direct {
            table.release(slot);
        }
    }

    /// Closes the slots of sockets dropped without being driven.
    pub(super) fn close_orphans(&mut self) {
        let orphans = match &self.direct {
            Some(table) if !table.orphans.borrow().is_empty() => {
                std::mem::take(&mut *table.orphans.borrow_mut())
            }
            _ => return,
        };
        for slot in orphans {
            self.close_direct(slot);
        }
    }

    /// Asks for a process descriptor for a detaching direct connection
    /// (`close::try_detach`).
    pub(super) fn install(&mut self, slot: u32, gen: u32, direct: u32) {
        let sqe = fixed_fd_install(direct).user_data(token(Op::Install, slot, gen));
        self.push(sqe);
    }

    /// The process descriptor for a detaching connection came (or not):
    /// the connection continues on it (its slot closed) and leaves; without
    /// one it is closed.
    pub(super) fn on_install(&mut self, slot: u32, gen: u32, result: i32) {
        let Some(c) = self.conn(slot, gen) else {
            if result >= 0 {
                // SAFETY: a successful install's result is a new
                // descriptor that nothing else owns; dropping closes it.
                drop(unsafe { OwnedFd::from_raw_fd(result) });
            }
            return;
        };
        c.installing = false;
        if result < 0 {
            self.install_failed(slot, gen, io::Error::from_raw_os_error(-result));
            return;
        }
        // SAFETY: as above.
        let fd = unsafe { OwnedFd::from_raw_fd(result) };
        if c.phase != super::conn::Phase::Open || c.shutdowns > 0 {
            // Closing began meanwhile (on the slot, whose shutdown may be
            // in flight): it ends there; the new descriptor goes.
            drop(fd);
            self.try_free(slot, gen);
            return;
        }
        if let FdRef::Direct(direct) = std::mem::replace(&mut c.fd, ConnFd::plain(fd)).get() {
            self.close_direct(direct);
        }
        self.try_detach(slot, gen);
        self.try_free(slot, gen);
    }

    /// No process descriptor for a detaching connection (`EMFILE`,
    /// `ENFILE`): it cannot reach its owner shard, and this one does not
    /// own its client id. Its handler refuses it in the protocol (a
    /// CONNACK 0x89 Server busy, v3 return code 3) and asks for the close,
    /// which then runs as any other (flush, FIN, linger) on the slot; a
    /// handler that cannot answer has it closed here. Either way the slot
    /// is closed (and reused) once nothing is in flight on it.
    fn install_failed(&mut self, slot: u32, gen: u32, error: io::Error) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        c.detaching = false;
        if c.phase != super::conn::Phase::Open || c.shutdowns > 0 {
            // Closing began meanwhile: it ends there.
            self.try_free(slot, gen);
            return;
        }
        let handler = c.handler.clone();
        // What routing read (the CONNECT): the refusal answers it, nothing
        // after it is delivered (the close discards further input).
        let bytes = c.take_buf();
        let answered = handler.on_detach_failed(&bytes);
        if let Some(suppressed) = self.install_warn.allow(std::time::Instant::now()) {
            let outcome = if answered {
                "refused it (server busy)"
            } else {
                "closing it"
            };
            tracing::warn!(%error, suppressed, "no descriptor to hand a connection to its owner shard; {outcome}");
        }
        if answered {
            self.attend(slot, gen);
        } else {
            self.end(slot, gen, crate::conn::CloseReason::Local);
        }
        self.try_free(slot, gen);
    }

    /// `shutdown(2)` of a connection's socket: a direct one's runs in the
    /// ring, on io-wq, which looks the slot up only when it runs: the slot
    /// is closed (and may be reused) only after it completed
    /// (`Conn::shutdowns`, `try_free`).
    pub(super) fn shutdown_conn(&mut self, slot: u32, gen: u32, how: crate::os::Shutdown) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let direct = match c.fd.get() {
            FdRef::Plain(fd) => {
                crate::os::shutdown_traced(fd, how);
                return;
            }
            FdRef::Direct(direct) => direct,
        };
        let how = match how {
            crate::os::Shutdown::Read => libc::SHUT_RD,
            crate::os::Shutdown::Write => libc::SHUT_WR,
            crate::os::Shutdown::Both => libc::SHUT_RDWR,
        };
        c.shutdowns = c.shutdowns.saturating_add(1);
        let sqe = opcode::Shutdown::new(types::Fixed(direct), how)
            .build()
            .user_data(token(Op::Shutdown, slot, gen));
        self.push(sqe);
    }

    /// A direct socket's shutdown completed (its result does not matter:
    /// the peer may be gone).
    pub(super) fn on_shutdown(&mut self, slot: u32, gen: u32) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        c.shutdowns = c.shutdowns.saturating_sub(1);
        self.try_free(slot, gen);
    }
}
