//! Per (subscriber, publisher) sequence tracking: counts duplicates and
//! out-of-order arrivals with a sliding window, allocation-free; and the
//! map of a subscriber's trackers by publisher ([`Trackers`]). Loss is
//! computed at the end from how many messages the publisher sent.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Sequence numbers remembered behind the highest seen.
pub const WINDOW_SEQS: u64 = 1024;
const WORDS: usize = (WINDOW_SEQS / 64) as usize;

/// Tracks one publisher's sequence as seen by one subscriber.
#[derive(Clone, Debug)]
pub struct SeqTracker {
    /// Highest sequence seen plus one (0: nothing seen yet).
    next: u64,
    /// Bit `seq % WINDOW_SEQS` is set when `seq` (within the window
    /// `next - WINDOW_SEQS .. next`) has been seen.
    seen: [u64; WORDS],
    pub received: u64,
    pub duplicates: u64,
    /// Arrived after a higher sequence number had (not duplicates).
    pub reordered: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            next: 0,
            seen: [0; WORDS],
            received: 0,
            duplicates: 0,
            reordered: 0,
        }
    }
}

impl SeqTracker {
    /// Records one arrival.
    pub fn record(&mut self, seq: u64) {
        self.received += 1;
        if seq >= self.next {
            // Forget the slots that now fall out of the window.
            let advance = seq + 1 - self.next;
            if advance >= WINDOW_SEQS {
                self.seen = [0; WORDS];
            } else {
                for s in self.next..=seq {
                    self.clear(s);
                }
            }
            self.set(seq);
            self.next = seq + 1;
            return;
        }
        if self.next - seq > WINDOW_SEQS {
            // Too old to tell a duplicate from a late arrival: counted late.
            self.reordered += 1;
            return;
        }
        if self.is_set(seq) {
            self.duplicates += 1;
        } else {
            self.set(seq);
            self.reordered += 1;
        }
    }

    /// Distinct messages received.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }

    /// Highest sequence seen plus one.
    #[cfg(test)]
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    fn slot(seq: u64) -> (usize, u64) {
        let bit = seq % WINDOW_SEQS;
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn set(&mut self, seq: u64) {
        let (w, m) = Self::slot(seq);
        if let Some(word) = self.seen.get_mut(w) {
            *word |= m;
        }
    }

    fn clear(&mut self, seq: u64) {
        let (w, m) = Self::slot(seq);
        if let Some(word) = self.seen.get_mut(w) {
            *word &= !m;
        }
    }

    fn is_set(&self, seq: u64) -> bool {
        let (w, m) = Self::slot(seq);
        self.seen.get(w).is_some_and(|word| word & m != 0)
    }
}

/// Hashes u32 publisher indices by multiplication (no SipHash per message).
#[derive(Default)]
pub struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One subscriber's trackers, by publisher index.
pub type Trackers = HashMap<u32, SeqTracker, BuildHasherDefault<IndexHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_has_no_dups_or_reorders() {
        let mut t = SeqTracker::default();
        for s in 0..5000 {
            t.record(s);
        }
        assert_eq!(
            (t.received, t.duplicates, t.reordered, t.unique()),
            (5000, 0, 0, 5000)
        );
    }

    #[test]
    fn gaps_duplicates_and_late_arrivals() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 3, 2, 3, 5, 1, 6] {
            t.record(s);
        }
        // 2 arrived late; 3 and 1 twice; 4 never.
        assert_eq!(t.reordered, 1);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.unique(), 6);
        assert_eq!(t.next_seq(), 7);
    }

    #[test]
    fn window_boundary_n_and_n_plus_1() {
        let mut t = SeqTracker::default();
        t.record(0);
        t.record(WINDOW_SEQS); // 0 is now exactly WINDOW_SEQS behind next-1
        t.record(1); // inside the window (next - 1 = 1024, distance 1024): late
        assert_eq!((t.duplicates, t.reordered), (0, 1));
        t.record(1); // seen: duplicate
        assert_eq!(t.duplicates, 1);
        t.record(0); // 1025 behind next: too old, counted late
        assert_eq!((t.duplicates, t.reordered), (1, 2));
    }

    #[test]
    fn big_jump_clears_the_window() {
        let mut t = SeqTracker::default();
        t.record(5);
        t.record(5 + 10 * WINDOW_SEQS);
        t.record(5 + 10 * WINDOW_SEQS - 1);
        assert_eq!((t.duplicates, t.reordered), (0, 1));
    }
}
