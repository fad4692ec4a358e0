//! Entering the kernel: the one `io_uring_enter` per loop turn (submit,
//! run deferred completions, wait with the gathering rules of
//! `UringLimits`), and what the running kernel supports.

use std::io;
use std::time::{Duration, Instant};

use io_uring::IoUring;

use super::{Driver, UringLimits, GATHER_BUSY_COMPLETIONS, SLEEP_MAX_MS};

/// Sets up the shard's ring; `true` with it if the ring defers its task
/// work to this thread's `io_uring_enter` (`IORING_SETUP_DEFER_TASKRUN`
/// with `SINGLE_ISSUER`, Linux 6.1), the setup tried first.
pub(super) fn build_ring(limits: &UringLimits) -> io::Result<(IoUring, bool)> {
    let cq = limits.ring_entries.saturating_mul(2);
    // Deferred task work (6.1): completions are run only when this
    // thread asks for them, and a sleeping loop is woken only once as
    // many as it waits for are pending (the gathering); the taskrun flag
    // tells it that some are pending before it sleeps.
    let deferred = IoUring::builder()
        .setup_cqsize(cq)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .build(limits.ring_entries);
    if let Ok(ring) = deferred {
        return Ok((ring, true));
    }
    IoUring::builder()
        .setup_cqsize(cq)
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build(limits.ring_entries)
        .or_else(|_| {
            IoUring::builder()
                .setup_cqsize(cq)
                .build(limits.ring_entries)
        })
        .map(|ring| (ring, false))
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring_setup: {e}")))
}

/// [`SLEEP_MAX_MS`] as a duration.
const SLEEP_MAX: Duration = Duration::from_millis(SLEEP_MAX_MS);

/// The running kernel's (major, minor) version; (0, 0) if unknown.
pub(super) fn kernel_version() -> (u32, u32) {
    // SAFETY: uname fills the zeroed struct it is given.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (0, 0);
    }
    // SAFETY: uname NUL-terminates `release`.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    let release = release.to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Whether this kernel is recent enough for the native loop (multishot
/// receive: Linux 6.0).
pub(super) fn kernel_supports_multishot_recv() -> bool {
    kernel_version() >= (6, 0)
}

/// `io_uring_enter` flags (linux/io_uring.h).
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_ENTER_EXT_ARG: u32 = 8;

/// `struct io_uring_getevents_arg` as of Linux 6.13, which turned the
/// padding the `io-uring` crate still has into `min_wait_usec`.
#[repr(C)]
struct GetEventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// `struct __kernel_timespec`.
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// `io_uring_enter` with `IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG`:
/// submits what is queued, runs deferred completions and waits for `want`
/// of them (the minimum-wait and timeout rules of `GetEventsArg`).
pub(super) fn enter(
    ring: &mut IoUring,
    want: u32,
    min_wait_us: u32,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let ts = timeout.map(|t| KernelTimespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let arg = GetEventsArg {
        sigmask: 0,
        sigmask_sz: 0,
        min_wait_usec: min_wait_us,
        ts: ts.as_ref().map_or(0, |t| t as *const KernelTimespec as u64),
    };
    let to_submit = ring.submission().len() as u32;
    // SAFETY: every queued SQE satisfies `Driver::push`'s contract; `arg`
    // and the timespec it points to live on this stack frame for the whole
    // call (the kernel copies them); `GetEventsArg` and `KernelTimespec`
    // have the kernel's layout.
    unsafe {
        ring.submitter().enter(
            to_submit,
            want,
            IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
            Some(&arg),
        )
    }
}

/// Whether `io_uring_enter` takes a minimum-wait timeout (Linux 6.13:
/// older kernels refuse a non-zero `min_wait_usec` with EINVAL). The probe
/// waits for nothing.
pub(super) fn supports_min_wait(ring: &mut IoUring) -> bool {
    kernel_version() >= (6, 13) && enter(ring, 0, 1, Some(Duration::ZERO)).is_ok()
}

impl Driver {
    /// Whether completions wait to be taken: deferred ones (the SQ ring's
    /// taskrun flag) or ones already in the CQ ring.
    fn work_pending(&mut self) -> bool {
        self.ring.submission().taskrun() || !self.ring.completion().is_empty()
    }

    /// Submits everything queued with one `io_uring_enter` and waits until
    /// a completion arrives or `timeout_ms` passes (`Some(0)`: no wait).
    /// With gathering (`UringLimits::gather_wait_us`), unless completions
    /// are already pending, the wait ends once `gather_completions` are
    /// pending, or `gather_wait_us` after it began with at least one
    /// pending, or at the first completion after that.
    /// Held output (`hold` module) ends the wait when the hold must be
    /// looked at again.
    pub fn submit_and_wait(&mut self, timeout_ms: Option<u64>) -> io::Result<()> {
        let queued = self.ring.submission().len();
        self.hold.entering(queued);
        let mut timeout = timeout_ms.map(Duration::from_millis);
        if let Some(due) = self.hold.due() {
            let left = due.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        let result = match (timeout, self.gather) {
            (Some(t), _) if t.is_zero() => enter(&mut self.ring, 0, 0, None),
            (ms, None) => enter(&mut self.ring, 1, 0, ms),
            // Completions already pending (deferred ones flag the SQ ring):
            // take them now; gathering more would only add a sleep while
            // the receivers go idle.
            (ms, Some(_)) if self.work_pending() => enter(&mut self.ring, 1, 0, ms),
            // A quiet turn: wake for the next completion (see
            // `GATHER_BUSY_COMPLETIONS`).
            (ms, Some(_)) if self.last_completions < GATHER_BUSY_COMPLETIONS => {
                enter(&mut self.ring, 1, 0, ms)
            }
            // A minimum wait without a finite timeout would end the sleep.
            (ms, Some((completions, us))) => enter(
                &mut self.ring,
                completions,
                us,
                Some(ms.map_or(SLEEP_MAX, |t| t.min(SLEEP_MAX))),
            ),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
