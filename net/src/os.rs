//! The raw OS calls the runtime needs, each wrapped in a safe function:
//! the CPU affinity mask, process signal masks and synchronous signal
//! waiting, `shutdown(2)` on a socket, the open-file limit
//! ([`raise_fd_limit`]) and the descriptor table's size
//! ([`reserve_fd_table`]), free space on a filesystem ([`free_bytes`]), the clock tick of `/proc`'s CPU times
//! ([`clock_ticks_per_s`]) and a sub-millisecond `timerfd` sleep for pacing
//! ([`PreciseTimer`]). Linux (and other Unix) only.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use monoio::net::TcpStream;

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

/// Sends `signal` to process `pid` (`ringmq reload` signalling the running
/// broker). A `pid` of 0 or below is refused: kill(2) would signal a whole
/// process group.
pub fn signal_process(pid: i32, signal: libc::c_int) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{pid} is not a process id"),
        ));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // a positive pid names exactly one process.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes an exclusive, non-blocking advisory lock (`flock(2)`) on `file`,
/// held until the file is closed (or the process ends, however it ends).
/// `Ok(false)`: another open file description holds it (another process
/// uses the same data directory).
pub fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    // SAFETY: flock(2) takes plain integers; the descriptor is valid for
    // the duration of the call because `file` is borrowed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(err),
    }
}

/// Bytes an unprivileged user may still write on the filesystem holding
/// `path` (`statvfs(3)`: available blocks times the fragment size).
pub fn free_bytes(path: &std::path::Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call and
    // `st` points to writable memory of the size statvfs expects.
    if unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (u64 here, u32 on some).
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
    Ok(free)
}

/// The direction(s) [`shutdown`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// `SHUT_RD`: a receive pending on the socket (io_uring or epoll)
    /// completes with 0 bytes; the peer is told nothing.
    Read,
    /// `SHUT_WR`: the peer sees EOF once it has read everything sent
    /// before; we can still read what it sends.
    Write,
    /// `SHUT_RDWR`: both.
    Both,
}

/// `shutdown(2)` on a socket.
///
/// The caller must own a live handle to `fd` (so the number cannot have
/// been closed and reused); errors such as `ENOTCONN` are returned.
pub fn shutdown(fd: RawFd, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown(2) takes plain integers and touches no memory of
    // ours; the caller guarantees `fd` is a socket it holds open.
    if unsafe { libc::shutdown(fd, how) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [`shutdown`] whose failure is only traced (the peer may be gone
/// already); same contract.
pub fn shutdown_traced(fd: RawFd, how: Shutdown) {
    if let Err(e) = shutdown(fd, how) {
        tracing::trace!(?how, error = %e, "shutdown");
    }
}

/// A one-shot timer with nanosecond resolution for pacing (monoio's own
/// timer wheel has 1 ms granularity, and a task that re-wakes itself runs
/// again before anything else on monoio, so it cannot spin politely).
///
/// It is a Linux `timerfd` read through the runtime (an io_uring readv, or
/// epoll readiness on the legacy driver), wrapped in a monoio `TcpStream`
/// only because that type offers readiness-driven `readv` on any fd.
/// `sleep` must be awaited to completion: dropping it mid-way leaves a read
/// in flight on the fd, so later sleeps would be unreliable; the timer
/// refuses further use then ([`io::ErrorKind::Other`]).
pub struct PreciseTimer {
    stream: TcpStream,
    fd: std::os::fd::RawFd,
    /// The 8-byte expiration counter is read into this (reused) buffer.
    buf: Option<monoio::buf::VecBuf>,
}

impl PreciseTimer {
    /// A disarmed timer on `CLOCK_MONOTONIC` (the clock `Instant` uses).
    pub fn new() -> io::Result<Self> {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: timerfd_create takes plain integers and touches no memory.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let stream = TcpStream::from_std(std::net::TcpStream::from(owned))?;
        Ok(PreciseTimer {
            stream,
            fd,
            buf: Some(monoio::buf::VecBuf::from(vec![vec![0u8; 8]])),
        })
    }

    /// Waits `duration` (returns at once for zero).
    pub async fn sleep(&mut self, duration: Duration) -> io::Result<()> {
        use monoio::io::AsyncReadRent;
        if duration.is_zero() {
            return Ok(());
        }
        let Some(buf) = self.buf.take() else {
            return Err(io::Error::other(
                "PreciseTimer: an earlier sleep was abandoned",
            ));
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: duration.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(duration.subsec_nanos() as i32),
            },
        };
        // SAFETY: `self.fd` is the timerfd that `self.stream` keeps open;
        // `spec` is a valid itimerspec and the old value is not requested.
        if unsafe { libc::timerfd_settime(self.fd, 0, &spec, std::ptr::null_mut()) } != 0 {
            self.buf = Some(buf);
            return Err(io::Error::last_os_error());
        }
        let (result, buf) = self.stream.readv(buf).await;
        self.buf = Some(buf);
        result.map(|_| ())
    }
}

/// Nice value of helper threads that do slow work (password hashing) on
/// cores the shards also run on: the lowest CFS weight, so a waking shard
/// preempts them at once and they cannot raise its latency much, yet they
/// still progress when the shards are busy (no starvation, unlike
/// `SCHED_IDLE`).
pub const HELPER_THREAD_NICE: libc::c_int = 19;

/// Lowers the calling thread's scheduling priority to
/// [`HELPER_THREAD_NICE`]. On Linux the nice value is per thread, so the
/// shards keep theirs.
pub fn lower_thread_priority() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let id = libc::id_t::try_from(tid).map_err(|_| io::Error::other("negative thread id"))?;
        // SAFETY: setpriority only reads its integer arguments.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, id, HELPER_THREAD_NICE) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Clock ticks per second of the CPU times in `/proc/.../stat`
/// (`sysconf(_SC_CLK_TCK)`; 100, Linux's USER_HZ, if unknown).
pub fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf only reads its integer argument.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// CPU time of the calling thread, in microseconds (0 where unknown).
pub fn thread_cpu_us() -> u64 {
    thread_cpu_ns() / 1000
}

/// CPU time of the calling thread, in nanoseconds (0 where unknown).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Raises this process's open-file limit so that `wanted` descriptors fit:
/// the soft limit to the hard one, and the hard one too where the process
/// may (root, `CAP_SYS_RESOURCE`). Returns the resulting soft limit.
pub fn raise_fd_limit(wanted: u64) -> io::Result<u64> {
    let mut limit = fd_limit()?;
    if limit.rlim_max < wanted as libc::rlim_t {
        let higher = libc::rlimit {
            rlim_cur: wanted as libc::rlim_t,
            rlim_max: wanted as libc::rlim_t,
        };
        // SAFETY: setrlimit reads one rlimit struct, which `higher` is.
        // Failure (not privileged, above fs.nr_open) leaves the limit as is.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &higher) } == 0 {
            return Ok(wanted);
        }
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit struct, which `limit` is.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // rlim_t is u64 on Linux but not on every platform.
    #[allow(clippy::unnecessary_cast)]
    Ok(limit.rlim_cur as u64)
}

/// The open-file limit (soft and hard).
pub(crate) fn fd_limit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// Grows this process's descriptor table now so that `fds` descriptors
/// fit (at most the soft open-file limit); returns how many were reserved.
///
/// The kernel grows the table by doubling when a new descriptor does not
/// fit, and in a process with more than one thread each growth first waits
/// for an RCU grace period (`expand_fdtable`: `synchronize_rcu`), several
/// milliseconds in which the thread that opened the descriptor sleeps and
/// every other thread opening one waits too. For a broker that thread is a
/// shard accepting a connection: its established connections stalled for
/// 1.5-10 ms as the table grew past 64, 128, ..., 1,024 descriptors during
/// a storm of new TLS connections (docs/benchmarks.md, handshake storm); a
/// single-threaded server (Mosquitto) never waits. Called before the
/// process starts its threads, the growth happens once, without the wait.
/// The table never shrinks: it costs the kernel ~8 bytes per slot.
pub fn reserve_fd_table(fds: u64) -> io::Result<u64> {
    let limit = fd_limit()?;
    // rlim_t is u64 on Linux but not on every platform.
    #[allow(clippy::unnecessary_cast)]
    let fds = fds.min(limit.rlim_cur as u64);
    if fds < 2 {
        return Ok(fds);
    }
    let probe = std::fs::File::open("/dev/null")?;
    let highest = libc::c_int::try_from(fds - 1).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor (`probe`'s)
    // onto the lowest free number >= `highest`; nothing else is touched.
    let dup = unsafe { libc::fcntl(probe.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a new descriptor that nothing else owns; dropping
    // the OwnedFd closes it (the table keeps its size).
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) });
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn runtime() -> monoio::FusionRuntime<
        monoio::time::TimeDriver<monoio::IoUringDriver>,
        monoio::time::TimeDriver<monoio::LegacyDriver>,
    > {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    #[test]
    fn allowed_cpus_is_not_empty_and_sorted() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn precise_timer_sleeps_below_a_millisecond() {
        // monoio's timer rounds a 300 us sleep up to the next 1 ms tick
        // (~700 us late, every time); the median here is typically ~25 us.
        // A loaded machine can delay any single round of 21 sleeps, so the
        // check passes if one of a few rounds has a median under 300 us: a
        // timer that rounds to the millisecond tick fails every round.
        const ROUNDS_MAX: usize = 5;
        runtime().block_on(async {
            let mut timer = PreciseTimer::new().unwrap_or_else(|e| panic!("{e}"));
            let mut medians = Vec::new();
            for _ in 0..ROUNDS_MAX {
                let mut late_us = Vec::new();
                for _ in 0..21 {
                    let asked = Duration::from_micros(300);
                    let t0 = Instant::now();
                    timer.sleep(asked).await.unwrap_or_else(|e| panic!("{e}"));
                    let took = t0.elapsed();
                    assert!(took >= asked, "woke early: {took:?}");
                    late_us.push((took - asked).as_micros());
                }
                late_us.sort_unstable();
                let median = late_us[late_us.len() / 2];
                if median < 300 {
                    return;
                }
                medians.push(median);
            }
            panic!("median lateness over 300 us in every round: {medians:?} us");
        });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lower_thread_priority_changes_only_the_calling_thread() {
        fn nice_of(tid: libc::pid_t) -> libc::c_int {
            let id = libc::id_t::try_from(tid).unwrap_or_else(|e| panic!("{e}"));
            // SAFETY: getpriority only reads its integer arguments.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, id) }
        }
        // SAFETY: gettid has no preconditions.
        let main_tid = unsafe { libc::gettid() };
        let before = nice_of(main_tid);
        let helper = std::thread::spawn(|| {
            lower_thread_priority().unwrap_or_else(|e| panic!("{e}"));
            // SAFETY: as above.
            nice_of(unsafe { libc::gettid() })
        });
        let helper_nice = helper.join().unwrap_or_else(|_| panic!("helper panicked"));
        assert_eq!(helper_nice, HELPER_THREAD_NICE);
        assert_eq!(
            nice_of(main_tid),
            before,
            "the caller's siblings keep their priority"
        );
    }

    #[test]
    fn raise_fd_limit_reports_a_limit() {
        assert!(raise_fd_limit(64).unwrap_or(0) >= 64);
    }

    /// The table's size is what `/proc/self/status` calls `FDSize`.
    #[test]
    fn reserve_fd_table_grows_the_descriptor_table() {
        let fd_size = || -> u64 {
            let status = std::fs::read_to_string("/proc/self/status")
                .unwrap_or_else(|e| panic!("status: {e}"));
            status
                .lines()
                .find_map(|l| l.strip_prefix("FDSize:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no FDSize in {status}"))
        };
        let reserved = reserve_fd_table(2048).unwrap_or_else(|e| panic!("reserve: {e}"));
        assert!(fd_size() >= reserved, "FDSize {} < {reserved}", fd_size());
    }
}
