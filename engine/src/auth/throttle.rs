//! Slowing down failed logins per source address, in bounded memory.
//!
//! A fixed table of [`SLOTS`] entries (direct-mapped by a hash of the
//! address; IPv6 addresses count per /64, which one host usually owns)
//! remembers recent failures. An address with more than
//! [`FREE_FAILURES`] failures within [`WINDOW_MS`] has its next answers
//! (success or failure, so timing tells nothing) held back by a delay that
//! doubles per failure up to [`DELAY_MAX_MS`]. A collision replaces the
//! older entry: memory stays `SLOTS` entries whatever the traffic.
//!
//! Pure logic with time passed in (milliseconds), like the rest of the engine.

use std::net::IpAddr;

/// Entries in the table (about 40 bytes each).
pub const SLOTS: usize = 4096;
/// Failures an address may have without any delay.
pub const FREE_FAILURES: u32 = 3;
/// Delay after the first failure past the free ones, in ms (then doubled).
pub const DELAY_BASE_MS: u64 = 250;
/// Longest delay, in ms.
pub const DELAY_MAX_MS: u64 = 10_000;
/// A failure is forgotten this long after the address's last failure, in ms.
pub const WINDOW_MS: u64 = 60_000;

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u128,
    failures: u32,
    last_failure_ms: u64,
    used: bool,
}

/// The failure table (one per process: helper threads share it).
pub struct Throttle {
    slots: Box<[Slot]>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

fn key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        // Per /64, tagged so it never equals a v4 key.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) & !((1u128 << 64) - 1)) | 1,
        },
    }
}

fn slot_of(key: u128) -> usize {
    // FNV-1a over the key bytes: stable, good enough spread for a table
    // an attacker cannot grow.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SLOTS as u64) as usize
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
        }
    }

    fn live(&self, addr: IpAddr, now_ms: u64) -> Option<&Slot> {
        let k = key(addr);
        let s = self.slots.get(slot_of(k))?;
        (s.used && s.key == k && now_ms.saturating_sub(s.last_failure_ms) < WINDOW_MS).then_some(s)
    }

    /// How long to hold back the answer to a login from `addr`, in ms.
    pub fn delay_ms(&self, addr: IpAddr, now_ms: u64) -> u64 {
        let failures = self.live(addr, now_ms).map_or(0, |s| s.failures);
        if failures <= FREE_FAILURES {
            return 0;
        }
        let doublings = (failures - FREE_FAILURES - 1).min(16);
        (DELAY_BASE_MS << doublings).min(DELAY_MAX_MS)
    }

    /// Records a failed login from `addr`.
    pub fn record_failure(&mut self, addr: IpAddr, now_ms: u64) {
        let failures = self.live(addr, now_ms).map_or(0, |s| s.failures);
        let k = key(addr);
        if let Some(s) = self.slots.get_mut(slot_of(k)) {
            *s = Slot {
                key: k,
                failures: failures.saturating_add(1),
                last_failure_ms: now_ms,
                used: true,
            };
        }
    }

    /// Records a successful login from `addr`: its failures are forgiven.
    pub fn record_success(&mut self, addr: IpAddr) {
        let k = key(addr);
        if let Some(s) = self.slots.get_mut(slot_of(k)) {
            if s.used && s.key == k {
                *s = Slot::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn free_failures_then_doubling_delay_capped() {
        let mut t = Throttle::new();
        for _ in 0..FREE_FAILURES {
            t.record_failure(A, 1000);
            assert_eq!(t.delay_ms(A, 1000), 0);
        }
        t.record_failure(A, 1000);
        assert_eq!(t.delay_ms(A, 1000), DELAY_BASE_MS);
        t.record_failure(A, 1000);
        assert_eq!(t.delay_ms(A, 1000), 2 * DELAY_BASE_MS);
        for _ in 0..40 {
            t.record_failure(A, 1000);
        }
        assert_eq!(t.delay_ms(A, 1000), DELAY_MAX_MS);
        // Another address is not affected.
        assert_eq!(t.delay_ms(B, 1000), 0);
    }

    #[test]
    fn failures_expire_after_the_window_and_success_forgives() {
        let mut t = Throttle::new();
        for _ in 0..10 {
            t.record_failure(A, 0);
        }
        assert!(t.delay_ms(A, WINDOW_MS - 1) > 0);
        assert_eq!(t.delay_ms(A, WINDOW_MS), 0);
        for _ in 0..10 {
            t.record_failure(A, 0);
        }
        t.record_success(A);
        assert_eq!(t.delay_ms(A, 1), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_memory_is_fixed() {
        let mut t = Throttle::new();
        let a1 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1));
        let a2 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9));
        for _ in 0..=FREE_FAILURES {
            t.record_failure(a1, 0);
        }
        assert!(t.delay_ms(a2, 0) > 0, "same /64 shares the count");
        for i in 0..100_000u32 {
            t.record_failure(IpAddr::V4(Ipv4Addr::from(i)), 0);
        }
        assert_eq!(t.slots.len(), SLOTS);
    }
}
