//! The shard's provided-buffer ring (`IORING_REGISTER_PBUF_RING`): a fixed
//! set of receive buffers the kernel picks from when a multishot receive
//! completes, so a connection holds no receive buffer while it is idle.
//!
//! The driver copies each completion's bytes out (into the connection's
//! partial-frame buffer, or straight to the engine) and gives the buffer
//! back at once with [`BufRing::recycle`]; the new tail is published to
//! the kernel once per batch ([`BufRing::publish`]). Both the ring of
//! descriptors and the buffers are anonymous mappings: pages the kernel
//! never wrote to cost no RSS.
//!
//! Giving the pages back: the kernel takes the buffers in ring order, so
//! traffic cycles through all of them and every page of the mapping
//! becomes resident (4 MiB per shard with the default 256 x 16 KiB), and
//! stays so after the connections have gone. After a burst of closes the
//! shard calls [`Driver::release_receive_buffers`] (through
//! `Driver::shrink_memory`), which gives them back with `MADV_DONTNEED`:
//! the mapping stays, and the next receive into a buffer faults in a
//! zeroed page. That is only sound while no buffer holds bytes we have
//! not taken yet and the kernel cannot be writing into one, which holds
//! between two `io_uring_enter` calls of this thread when:
//!
//! - the ring runs its deferred work only when we ask
//!   (`IORING_SETUP_DEFER_TASKRUN`, with `SINGLE_ISSUER`): a multishot
//!   receive copies into a buffer when its socket's poll wake-up has
//!   queued task work and that work runs, and with deferred task work it
//!   runs only inside `io_uring_enter` of the submitter task
//!   (`io_uring/tw.c`, `__io_run_local_work`: `WARN_ON_ONCE(
//!   ctx->submitter_task != current)`), or inline when the receive is
//!   submitted, also inside our `io_uring_enter`. Without it, task work
//!   also runs whenever this thread returns to user space from any
//!   syscall or interrupt, so a buffer could be filled between our check
//!   and the `madvise`: no release then;
//! - no multishot receive runs on an io-wq worker (a request goes there
//!   when its poll cannot be armed, e.g. an atomic allocation failed):
//!   `io_wq_submit_work` only re-arms a multishot request's poll on a
//!   pollable non-blocking file (a socket) and never issues it there
//!   ("Don't allow any multishot execution from io-wq", `io_uring.c`).
//!   Read in a 6.13+ source (it has the minimum-wait timeout); older
//!   kernels may issue the receive on io-wq, so the release needs 6.13;
//! - the completion queue is empty and has not overflowed: every
//!   completion that handed us a buffer has been taken, and its buffer
//!   copied out and recycled (`on_recv` recycles at once).
//!
//! Otherwise the pages stay resident (the release is skipped, not
//! forced).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use super::Driver;

/// One descriptor of the ring, as `struct io_uring_buf` (16 bytes). The
/// first descriptor's `resv` field doubles as the ring's tail.
#[repr(C)]
struct BufDesc {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// An anonymous, private, read-write mapping of `len` bytes.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; the result is checked against MAP_FAILED.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and the owner
        // (BufRing) unregisters the ring from the kernel before dropping
        // (io_uring's teardown also drops its reference first).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The provided-buffer ring of one shard (module docs).
pub(super) struct BufRing {
    descs: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_bytes: u32,
    /// Our tail (published to the kernel by `publish`).
    tail: u16,
    pub(super) group: u16,
}

impl BufRing {
    /// Maps `entries` (a power of two, at most 32768) buffers of
    /// `buf_bytes` each and registers them as buffer group `group`.
    pub(super) fn new(
        submitter: &io_uring::Submitter<'_>,
        entries: u16,
        buf_bytes: u32,
        group: u16,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32_768 || buf_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: count must be a power of two <= 32768, size > 0",
            ));
        }
        let descs = Mapping::new(usize::from(entries) * std::mem::size_of::<BufDesc>())?;
        let bufs = Mapping::new(usize::from(entries) * buf_bytes as usize)?;
        let mut ring = BufRing {
            descs,
            bufs,
            entries,
            buf_bytes,
            tail: 0,
            group,
        };
        for bid in 0..entries {
            ring.recycle(bid);
        }
        ring.publish();
        // SAFETY: the descriptor mapping is page-aligned (mmap), holds
        // `entries` descriptors and lives as long as `self`; `Drop`
        // unregisters it before unmapping.
        unsafe { submitter.register_buf_ring(ring.descs.ptr.as_ptr() as u64, entries, group)? };
        Ok(ring)
    }

    /// The first `len` bytes of buffer `bid`, which a completion just
    /// handed to us (the kernel no longer writes to it until recycled).
    /// `None` if the completion's values are out of range.
    pub(super) fn filled(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.entries || len > self.buf_bytes as usize {
            return None;
        }
        let offset = usize::from(bid) * self.buf_bytes as usize;
        // SAFETY: `bid < entries` and `len <= buf_bytes`, so the range lies
        // inside the buffer mapping; the kernel handed this buffer to us
        // with the completion and does not touch it until `recycle`
        // publishes it again, which needs `&mut self` (this borrow ends
        // first).
        Some(unsafe { std::slice::from_raw_parts(self.bufs.ptr.as_ptr().add(offset), len) })
    }

    /// Gives buffer `bid` back (visible to the kernel after `publish`).
    pub(super) fn recycle(&mut self, bid: u16) {
        if bid >= self.entries {
            return;
        }
        let mask = self.entries - 1;
        let slot = usize::from(self.tail & mask);
        let addr = self.bufs.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_bytes);
        // SAFETY: `slot < entries` descriptors fit in the mapping. The
        // kernel only reads descriptors between its head and the published
        // tail; this one is past the tail (we own it) until `publish`.
        // Writing only addr/len/bid leaves `resv` (the tail, for slot 0)
        // alone.
        unsafe {
            let desc = self.descs.ptr.as_ptr().cast::<BufDesc>().add(slot);
            std::ptr::addr_of_mut!((*desc).addr).write(addr);
            std::ptr::addr_of_mut!((*desc).len).write(self.buf_bytes);
            std::ptr::addr_of_mut!((*desc).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the recycled buffers to the kernel (one release store).
    pub(super) fn publish(&self) {
        // SAFETY: the tail is the `resv` u16 of descriptor 0 (offset 14 of
        // the page-aligned mapping, so 2-byte aligned); the kernel reads it
        // with acquire semantics, as liburing's io_uring_buf_ring_advance
        // writes it with a release store.
        let tail = unsafe {
            let desc = self.descs.ptr.as_ptr().cast::<BufDesc>();
            &*(std::ptr::addr_of_mut!((*desc).resv).cast::<AtomicU16>())
        };
        tail.store(self.tail, Ordering::Release);
    }

    /// Gives every buffer's pages back to the kernel (`MADV_DONTNEED` over
    /// the buffer mapping; the descriptors stay). A buffer read after this
    /// holds zeros until the kernel writes into it again.
    ///
    /// # Safety
    ///
    /// No buffer may hold bytes not yet taken with [`BufRing::filled`],
    /// and the kernel must not be writing into any buffer during the call
    /// (module docs: when that holds).
    pub(super) unsafe fn release_pages(&self) -> io::Result<()> {
        // SAFETY: `ptr`/`len` are the buffer mapping mmap returned
        // (private, anonymous: DONTNEED only drops its pages, the range
        // stays mapped and reads back as zeros); the caller guarantees no
        // content of it is still needed or being written.
        let rc = unsafe {
            libc::madvise(
                self.bufs.ptr.as_ptr().cast(),
                self.bufs.len,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Pages of the buffer mapping resident now (`mincore`).
    #[cfg(test)]
    pub(super) fn resident_pages(&self) -> usize {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let mut vec = vec![0u8; self.bufs.len.div_ceil(page)];
        // SAFETY: the range is our mapping; `vec` has one byte per page.
        let rc = unsafe {
            libc::mincore(
                self.bufs.ptr.as_ptr().cast(),
                self.bufs.len,
                vec.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// Unregisters the ring (before the mappings go).
    pub(super) fn unregister(&self, submitter: &io_uring::Submitter<'_>) {
        if let Err(e) = submitter.unregister_buf_ring(self.group) {
            tracing::debug!(error = %e, "unregister provided buffers");
        }
    }
}

impl Driver {
    /// Gives the provided buffers' pages back to the kernel where that is
    /// sound (module docs); returns whether it did. Called by
    /// [`Driver::shrink_memory`], after a burst of closes: a busy shard
    /// touches the pages again as the ring cycles (a page fault per page,
    /// at most once per release).
    pub(super) fn release_receive_buffers(&mut self) -> bool {
        if !self.recv_copy_in_enter {
            return false;
        }
        // Every completion naming a buffer has been taken (its buffer
        // recycled), and none waits in the kernel's overflow list. Nothing
        // between this check and the madvise enters io_uring.
        if !self.ring.completion().is_empty() || self.ring.submission().cq_overflow() {
            return false;
        }
        // SAFETY: `recv_copy_in_enter`: this ring runs receives (and their
        // copies into buffers) only inside this thread's io_uring_enter,
        // never on io-wq, and this thread is here, not there; the queue is
        // empty, so every buffer the kernel filled has been taken and
        // recycled (module docs).
        match unsafe { self.bufs.release_pages() } {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "madvise(MADV_DONTNEED) on the receive buffers");
                false
            }
        }
    }
}
