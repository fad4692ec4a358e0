//! The shard's wake-up eventfd: other threads (ring-mesh peers, password
//! verification helpers) wake a sleeping native loop through a [`Waker`]
//! that writes to it; the loop keeps one read of it in flight.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::task::{Wake, Waker};

/// An eventfd written by [`Waker::wake`] (one 8-byte `write`).
pub(super) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(super) fn new() -> io::Result<Arc<EventFd>> {
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Arc::new(EventFd { fd }))
    }

    pub(super) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A waker for other threads (`Send + Sync`: it only writes the fd).
    pub(super) fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(self.clone())
    }
}

impl Wake for EventFd {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to a descriptor this Arc
        // keeps open. EAGAIN (counter saturated) means a wake is already
        // pending, which is all a wake has to achieve.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n < 0 {
            tracing::trace!(error = %io::Error::last_os_error(), "eventfd wake");
        }
    }
}
