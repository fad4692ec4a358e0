//! The one clock of the process: milliseconds since an `Instant` captured
//! before the shards start, shared (copied) by every shard, so `now_ms`
//! values are comparable across shards (ring messages carry them) and
//! monotonic. The engine never reads a clock; the runtime passes these in.

use std::time::Instant;

/// Milliseconds since the process-wide epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// Captures the epoch. Call once, before spawning shards.
    pub fn start() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the epoch (monotonic).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
