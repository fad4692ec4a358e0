//! The raw OS calls the runtime needs, each wrapped in a safe function:
//! the CPU affinity mask, process signal masks and synchronous signal
//! waiting, and `shutdown(2)` on a socket. Linux (and other Unix) only.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::Duration;

/// The CPUs this process may run on (its affinity mask), in ascending order.
/// Falls back to `0..available_parallelism` if the mask cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is a plain bit array; all-zero is a valid value.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable cpu_set_t of the size we pass;
        // pid 0 means the calling thread.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if rc == 0 {
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                // SAFETY: `cpu` is below CPU_SETSIZE, the bit array's length.
                .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
                .collect();
            if !cpus.is_empty() {
                return cpus;
            }
        }
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n).collect()
}

/// A set of signals blocked in the calling thread (and in every thread it
/// spawns afterwards, which inherit the mask), to be received synchronously
/// with [`SignalSet::wait`] instead of by an asynchronous handler.
pub struct SignalSet {
    set: libc::sigset_t,
}

impl SignalSet {
    /// Blocks `signals` in the calling thread. Call it on the main thread
    /// before spawning any other thread, so that no thread receives them
    /// asynchronously.
    pub fn block(signals: &[libc::c_int]) -> io::Result<SignalSet> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given.
        if unsafe { libc::sigemptyset(set.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialised by sigemptyset above.
        let mut set = unsafe { set.assume_init() };
        for &sig in signals {
            // SAFETY: `set` is an initialised sigset_t.
            if unsafe { libc::sigaddset(&mut set, sig) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(SignalSet { set })
    }

    /// Waits for one of the blocked signals, at most `timeout` (forever if
    /// `None`). Returns the signal number, or `None` on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<libc::c_int>> {
        loop {
            let rc = match timeout {
                None => {
                    let mut sig: libc::c_int = 0;
                    // SAFETY: `self.set` is initialised; `sig` is writable.
                    let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
                    if rc == 0 {
                        return Ok(Some(sig));
                    }
                    if rc == libc::EINTR {
                        continue;
                    }
                    return Err(io::Error::from_raw_os_error(rc));
                }
                Some(t) => {
                    let ts = libc::timespec {
                        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
                        tv_nsec: t.subsec_nanos() as libc::c_long,
                    };
                    // SAFETY: `self.set` and `ts` are initialised; a null
                    // siginfo pointer is allowed.
                    unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) }
                }
            };
            if rc >= 0 {
                return Ok(Some(rc));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(None),
                Some(libc::EINTR) => continue,
                _ => return Err(err),
            }
        }
    }
}

/// Sends `signal` to this process (it is then received by whichever thread
/// waits for it with [`SignalSet::wait`]).
pub fn signal_self(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) with our own pid has no memory-safety preconditions.
    if unsafe { libc::kill(libc::getpid(), signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `shutdown(fd, SHUT_RDWR)`: the peer sees EOF, and a receive pending on
/// the socket (io_uring or epoll) completes with 0 bytes.
///
/// The caller must own a live handle to `fd` (so the number cannot have
/// been closed and reused); errors such as `ENOTCONN` are returned.
pub fn shutdown_both(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown(2) takes a plain integer and touches no memory of
    // ours; the caller guarantees `fd` is a socket it holds open.
    if unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_cpus_is_not_empty_and_sorted() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }
}
