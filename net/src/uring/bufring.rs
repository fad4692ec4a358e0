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

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

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

    /// Unregisters the ring (before the mappings go).
    pub(super) fn unregister(&self, submitter: &io_uring::Submitter<'_>) {
        if let Err(e) = submitter.unregister_buf_ring(self.group) {
            tracing::debug!(error = %e, "unregister provided buffers");
        }
    }
}
