//! The system calls of loadgen's receiving thread (`--rx-thread`): an
//! epoll set, a read that returns the kernel's receive timestamp
//! (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`) with the bytes, the offset that
//! turns such a timestamp into a [`Clock`]'s time, and stepping a
//! real-time thread's priority down by one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::Clock;
use bytes::BytesMut;

/// An epoll set; each registered socket carries a `u64` token.
pub struct Epoll {
    fd: OwnedFd,
}

/// What a registered socket waits for: input always, output when asked.
fn interest(want_write: bool) -> u32 {
    let mut e = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
    if want_write {
        e |= libc::EPOLLOUT as u32;
    }
    e
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, want_write: bool) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest(want_write),
            u64: token,
        };
        // SAFETY: both descriptors are open; `ev` is a live epoll_event.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Registers `fd` for input.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, false)
    }

    /// Input only, or input and output.
    pub fn modify(&self, fd: RawFd, token: u64, want_write: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, want_write)
    }

    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, false)
    }

    /// Waits up to `timeout_ms` for ready sockets; fills `events` and
    /// returns how many.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is writable for `max` entries.
        let n =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Under SCHED_FIFO / SCHED_RR at a priority above 1, moves the calling
/// thread one priority lower (threads at the old priority then preempt
/// it); otherwise does nothing. Returns whether it did.
pub fn step_down_realtime_priority() -> io::Result<bool> {
    // SAFETY: sched_getscheduler only reads its argument (0: this thread).
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy != libc::SCHED_FIFO && policy != libc::SCHED_RR {
        return Ok(false);
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a live sched_param for the call to fill.
    if unsafe { libc::sched_getparam(0, &mut param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if param.sched_priority <= 1 {
        return Ok(false);
    }
    param.sched_priority -= 1;
    // SAFETY: `param` is a valid sched_param for `policy`.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Enables `SO_TIMESTAMPNS` on socket `fd`.
pub fn enable_rx_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is an open socket; the option value is a live c_int of
    // the length passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads what `fd` holds (without blocking) into `buf`'s spare capacity
/// (reserve first); returns the byte count (0: end of stream) and the
/// kernel's receive time of the last segment read, in ns since the Unix
/// epoch, when the kernel gave one.
pub fn recv_timestamped(fd: RawFd, buf: &mut BytesMut) -> io::Result<(usize, Option<i128>)> {
    // Room for one cmsghdr with a timespec (CMSG_SPACE(16) = 32 bytes),
    // aligned for cmsghdr.
    let mut control = [0u64; 8];
    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no buffers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (the spare capacity, writable for its
    // length) and `control`, both live for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare
    // capacity (n <= its length).
    unsafe { buf.set_len(buf.len() + n) };
    let mut stamp = None;
    // SAFETY: `msg` and its control buffer are as recvmsg left them;
    // CMSG_FIRSTHDR / CMSG_NXTHDR stay within msg_controllen, and the
    // timespec is read unaligned from a cmsg of that type.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                stamp = Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, stamp))
}

/// The wall clock (`CLOCK_REALTIME`, the kernel timestamps' clock) minus
/// the run's clock, in ns, read now: kernel time `k` was `k - offset` on
/// the run's clock. Read afresh at every wake-up, so clock adjustments
/// never accumulate.
pub fn realtime_offset_ns(clock: Clock) -> i128 {
    let before = clock.now_ns();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let after = clock.now_ns();
    wall - i128::from(before / 2 + after / 2)
}

/// Kernel receive time `stamp` (ns since the Unix epoch) on the run's
/// clock, never later than `now_ns` (nor earlier than 0).
pub fn to_clock_ns(stamp: i128, offset_ns: i128, now_ns: u64) -> u64 {
    let t = stamp - offset_ns;
    u64::try_from(t.max(0)).unwrap_or(u64::MAX).min(now_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn reads_carry_the_kernel_receive_time() -> Result<(), Box<dyn std::error::Error>> {
        let clock = Clock::new();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut tx = TcpStream::connect(listener.local_addr()?)?;
        let (rx, _) = listener.accept()?;
        enable_rx_timestamps(rx.as_raw_fd())?;
        // The kernel turns receive timestamping on through deferred work
        // (a static key) when the first socket asks: give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let epoll = Epoll::new()?;
        epoll.add(rx.as_raw_fd(), 7)?;
        let sent_ns = clock.now_ns();
        tx.write_all(b"hello")?;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(epoll.wait(&mut events, 5_000)?, 1);
        let token = events[0].u64;
        assert_eq!(token, 7);
        // Taken later than it arrived: the stamp still says when it arrived.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut buf = BytesMut::with_capacity(64);
        let (n, stamp) = recv_timestamped(rx.as_raw_fd(), &mut buf)?;
        let now_ns = clock.now_ns();
        assert_eq!((n, &buf[..]), (5, &b"hello"[..]));
        let stamp = stamp.ok_or("no SCM_TIMESTAMPNS with the read")?;
        let arrived = to_clock_ns(stamp, realtime_offset_ns(clock), now_ns);
        assert!(arrived + 1_000_000 >= sent_ns, "{arrived} < {sent_ns}");
        assert!(arrived + 20_000_000 < now_ns, "{arrived} vs {now_ns}");
        match recv_timestamped(rx.as_raw_fd(), &mut buf) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            Ok(r) => panic!("nothing was left to read, got {r:?}"),
        }
        drop(tx);
        assert_eq!(recv_timestamped(rx.as_raw_fd(), &mut buf)?.0, 0);
        Ok(())
    }

    #[test]
    fn kernel_times_convert_to_the_run_clock() {
        // 5 s on the wall clock with the run's clock 2 s behind it.
        let offset = 2_000_000_000;
        assert_eq!(to_clock_ns(5_000_000_000, offset, u64::MAX), 3_000_000_000);
        // Never after the moment it was taken, never before 0.
        assert_eq!(
            to_clock_ns(5_000_000_000, offset, 2_500_000_000),
            2_500_000_000
        );
        assert_eq!(to_clock_ns(1_000_000_000, offset, u64::MAX), 0);
    }

    #[test]
    fn a_normal_thread_keeps_its_priority() -> io::Result<()> {
        // SAFETY: sched_getscheduler only reads its argument.
        if unsafe { libc::sched_getscheduler(0) } == libc::SCHED_OTHER {
            assert!(!step_down_realtime_priority()?);
        }
        Ok(())
    }
}
