//! The one clock of a process: time since an `Instant` captured once and
//! copied to every thread, so values read on different threads are
//! comparable and monotonic. The broker's shards pass its milliseconds to
//! the engine (ring messages carry them across shards); loadgen stamps
//! payloads with its nanoseconds on one thread and reads them on another.
//! The engine itself never reads a clock (house habit 1).

use std::time::{Duration, Instant};

/// Monotonic time since a shared origin. Create it once, before spawning
/// the threads that use it, and copy it to each of them.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the origin (u64 covers 584 years; saturates).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Milliseconds since the origin: the engine's `now_ms` (saturates).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The `Instant` that is `ns` after the origin.
    pub fn instant_at_ns(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_read_the_same_monotonic_clock() {
        let clock = Clock::new();
        let copy = clock;
        let a = clock.now_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = copy.now_ns();
        assert!(b >= a + 2_000_000, "{a} then {b}");
        assert!(copy.now_ms() >= 2);
        let at = clock.instant_at_ns(b);
        assert!(at <= Instant::now());
    }
}
