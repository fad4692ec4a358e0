//! Reconnection policy: exponential backoff between attempts, with a cap
//! and an optional limit on attempts. Pure (tested natively).

/// Reconnection settings (`reconnect` connect option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub enabled: bool,
    /// Delay before the first attempt after a lost connection.
    pub initial_delay_ms: u64,
    /// Largest delay between attempts.
    pub max_delay_ms: u64,
    /// Attempts after one lost connection before giving up (0 = no limit).
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            enabled: true,
            initial_delay_ms: 500,
            max_delay_ms: 30_000,
            max_attempts: 0,
        }
    }
}

impl Backoff {
    /// Delay before attempt `attempt` (1-based): `initial * 2^(attempt-1)`,
    /// capped at `max_delay_ms`; `None` when no attempt is to be made.
    pub fn delay_ms(&self, attempt: u32) -> Option<u64> {
        if !self.enabled || attempt == 0 || (self.max_attempts != 0 && attempt > self.max_attempts)
        {
            return None;
        }
        let shift = (attempt - 1).min(32);
        let delay = self.initial_delay_ms.saturating_mul(1u64 << shift);
        Some(delay.min(self.max_delay_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_initial_delay_up_to_the_cap() {
        let b = Backoff {
            enabled: true,
            initial_delay_ms: 100,
            max_delay_ms: 1000,
            max_attempts: 0,
        };
        let delays: Vec<_> = (1..=6).map(|a| b.delay_ms(a)).collect();
        assert_eq!(
            delays,
            [
                Some(100),
                Some(200),
                Some(400),
                Some(800),
                Some(1000),
                Some(1000)
            ]
        );
        assert_eq!(b.delay_ms(200), Some(1000), "no overflow on long outages");
    }

    #[test]
    fn stops_after_max_attempts_or_when_disabled() {
        let b = Backoff {
            max_attempts: 2,
            ..Backoff::default()
        };
        assert!(b.delay_ms(2).is_some());
        assert_eq!(b.delay_ms(3), None);
        let off = Backoff {
            enabled: false,
            ..Backoff::default()
        };
        assert_eq!(off.delay_ms(1), None);
    }
}
