//! The open-file limit of a running broker, changed from the test:
//! `prlimit(2)` on the broker's process only (the test process is never
//! limited), to make its next process descriptor fail with `EMFILE` and
//! to free descriptors up again.

use std::collections::HashSet;
use std::io;

use crate::Broker;

fn pid(broker: &Broker) -> libc::pid_t {
    let pid = broker.pid().unwrap_or_else(|| panic!("broker not running"));
    libc::pid_t::try_from(pid).unwrap_or_else(|e| panic!("{e}"))
}

/// The broker's open-file limit, soft and hard.
fn limit(pid: libc::pid_t) -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) reads the limit into a struct we own; no new limit.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) };
    assert_eq!(rc, 0, "prlimit: {}", io::Error::last_os_error());
    limit
}

/// Sets the broker's soft open-file limit (the hard one stays).
pub fn set_soft_limit(broker: &Broker, soft: u64) {
    let pid = pid(broker);
    let new = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: limit(pid).rlim_max,
    };
    // SAFETY: prlimit(2) on our own child with a struct we own.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", io::Error::last_os_error());
}

/// The descriptor numbers the process `pid` has open.
fn open_fds(pid: libc::pid_t) -> HashSet<u64> {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Leaves the broker no process descriptor: its soft limit goes to the
/// lowest number it does not use (the kernel hands out the lowest free
/// number below the limit, and there is none). Checked again after
/// setting, in case a descriptor closed meanwhile. Returns the soft limit
/// it had, for [`set_soft_limit`] to free descriptors up again.
pub fn exhaust(broker: &Broker) -> u64 {
    let pid = pid(broker);
    let before = limit(pid).rlim_cur as u64;
    for _ in 0..20 {
        let used = open_fds(pid);
        let lowest_free = (0..).find(|n| !used.contains(n)).unwrap_or(0);
        set_soft_limit(broker, lowest_free);
        let used = open_fds(pid);
        if (0..lowest_free).all(|n| used.contains(&n)) {
            return before;
        }
    }
    panic!("the broker's descriptors kept changing");
}
