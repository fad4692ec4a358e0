//! A minimal slab: stable `usize` keys, freed slots reused (LIFO), no
//! allocation once warm. Used for connections and sessions of one shard.
//!
//! The entries live in a [`ChunkedVec`]: the slab grows a chunk
//! ([`SLAB_CHUNK_LEN`] entries, 12,192 bytes for a connection or a
//! session) at a time, never reallocating or freeing its storage while it
//! grows, and [`Slab::shrink`] frees whole chunks of the vacant tail (a
//! `Vec` doubled, copying and freeing blocks of up to 1.6 MB per shard at
//! 100,000 connections, whose freed ranges the allocator handed out again
//! still resident: docs/benchmarks.md, "Connection tables in chunks").

use ringmq_chunked::ChunkedVec;

/// Entries per chunk of a slab: 127 connection or session records of 96
/// bytes make 12,192 bytes, inside the 12,288-byte size class of the
/// broker's allocator (mimalloc; at most
/// [`ringmq_chunked::CLASS_CHUNK_MAX_BYTES`]). 128 of them, exactly 12,288 bytes, got a
/// 14,336-byte block there (its aligned allocation adds the alignment
/// less one): 16 bytes per connection and table unused
/// (docs/benchmarks.md, "Table chunks that fill their size class").
pub(crate) const SLAB_CHUNK_LEN: usize = 127;

pub(crate) struct Slab<T> {
    entries: ChunkedVec<Option<T>, SLAB_CHUNK_LEN>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: ChunkedVec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if let Some(key) = self.free.pop() {
            self.entries[key] = Some(value);
            key
        } else {
            self.entries.push(Some(value));
            self.entries.len() - 1
        }
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.entries.get_mut(key)?.take()?;
        self.free.push(key);
        self.len -= 1;
        Some(value)
    }

    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        self.entries.get(key)?.as_ref()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.entries.get_mut(key)?.as_mut()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries.iter().filter_map(Option::as_ref)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.entries.iter_mut().filter_map(Option::as_mut)
    }

    /// Gives memory back after a burst: drops the vacant slots at the end
    /// (their keys are free, so nothing refers to them) with the chunks
    /// they emptied, and the free list's spare capacity. Occupied keys stay
    /// as they are, and nothing is copied. O(vacant tail + free list):
    /// call it rarely.
    pub(crate) fn shrink(&mut self) {
        while matches!(self.entries.last(), Some(None)) {
            drop(self.entries.pop());
        }
        let end = self.entries.len();
        self.free.retain(|&key| key < end);
        self.entries.shrink_to_fit();
        self.free.shrink_to_fit();
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, e)| e.as_ref().map(|_| k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_freed_keys() {
        let mut s = Slab::default();
        let a = s.insert(1);
        let b = s.insert(2);
        assert_eq!(s.remove(a), Some(1));
        assert_eq!(s.remove(a), None);
        let c = s.insert(3);
        assert_eq!(c, a);
        assert_eq!(s.get(b), Some(&2));
        assert_eq!(s.len(), 2);
        assert_eq!(s.keys().collect::<Vec<_>>(), vec![a, b]);
        s.values_mut().for_each(|v| *v += 10);
        assert_eq!((s.get(a), s.get(b)), (Some(&13), Some(&12)));
    }

    #[test]
    fn shrink_drops_the_vacant_tail_and_keeps_keys() {
        let mut s = Slab::default();
        let keys: Vec<usize> = (0..1000).map(|v| s.insert(v)).collect();
        for &k in &keys[1..] {
            s.remove(k);
        }
        assert!(s.entries.chunks() * SLAB_CHUNK_LEN >= 1000);
        s.shrink();
        assert_eq!(s.entries.len(), 1, "only the occupied head is kept");
        assert_eq!(s.entries.chunks(), 1, "the vacant chunks are freed");
        assert_eq!(s.get(keys[0]), Some(&0));
        assert_eq!(s.len(), 1);
        // Keys go on from the end; none collides with the live one.
        let next = s.insert(7);
        assert_eq!(next, 1);
        assert_eq!((s.get(keys[0]), s.get(next)), (Some(&0), Some(&7)));
        // A hole before a live key stays free and is reused.
        s.remove(keys[0]);
        s.shrink();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.insert(9), keys[0]);
    }

    #[test]
    fn a_chunk_of_records_stays_inside_its_size_class() {
        use crate::broker::conn::Conn;
        use crate::broker::session::Session;
        for (name, bytes) in [
            (
                "connection",
                SLAB_CHUNK_LEN * std::mem::size_of::<Option<Conn>>(),
            ),
            (
                "session",
                SLAB_CHUNK_LEN * std::mem::size_of::<Option<Session>>(),
            ),
        ] {
            assert!(
                bytes <= ringmq_chunked::CLASS_CHUNK_MAX_BYTES,
                "a chunk of {name} records is {bytes} bytes"
            );
            assert!(
                bytes > ringmq_chunked::CLASS_CHUNK_MAX_BYTES * 9 / 10,
                "a chunk of {name} records is {bytes} bytes: more entries would fit"
            );
        }
    }
}
