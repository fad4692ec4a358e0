//! A shard's per-connection runtime data by engine connection id: a dense
//! vector indexed by `ConnId`. The engine's ids are slab keys, reused
//! lowest-freed-first, so they stay below the most connections the shard
//! held at once, and a slot costs `size_of::<Option<T>>()` with no
//! per-entry allocation or hash-table slack (a `HashMap<ConnId, T>` at its
//! usual load costs about twice that plus the key; docs/benchmarks.md,
//! memory per idle connection). The slots live in a [`ChunkedVec`]: the
//! table grows a chunk (128 slots) at a time and gives whole chunks
//! back, with nothing copied (docs/benchmarks.md, "Connection tables in
//! chunks").

use ringmq_chunked::ChunkedVec;
use ringmq_engine::broker::ConnId;

pub struct ConnTable<T> {
    slots: ChunkedVec<Option<T>>,
    len: usize,
}

impl<T> Default for ConnTable<T> {
    fn default() -> Self {
        ConnTable {
            slots: ChunkedVec::new(),
            len: 0,
        }
    }
}

impl<T> ConnTable<T> {
    /// Sets `id`'s entry; the one it replaces, if any.
    pub fn insert(&mut self, id: ConnId, value: T) -> Option<T> {
        if id >= self.slots.len() {
            self.slots.resize_with(id + 1, || None);
        }
        let old = self.slots.get_mut(id).and_then(|s| s.replace(value));
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&T> {
        self.slots.get(id)?.as_ref()
    }

    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let old = self.slots.get_mut(id)?.take();
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives back the chunks above the highest id in use (after a burst of
    /// closes).
    pub fn shrink_to_fit(&mut self) {
        while matches!(self.slots.last(), Some(None)) {
            drop(self.slots.pop());
        }
        self.slots.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_by_id_and_shrinks_to_the_highest_id() {
        let mut t = ConnTable::default();
        assert!(t.is_empty());
        assert_eq!(t.insert(5, "five"), None);
        assert_eq!(t.insert(1, "one"), None);
        assert_eq!(t.insert(5, "FIVE"), Some("five"));
        assert_eq!(
            (t.len(), t.get(5), t.get(1), t.get(2), t.get(99)),
            (2, Some(&"FIVE"), Some(&"one"), None, None)
        );
        assert_eq!(t.remove(5), Some("FIVE"));
        assert_eq!(t.remove(5), None);
        assert_eq!(t.remove(1000), None);
        assert_eq!(t.len(), 1);
        t.shrink_to_fit();
        assert_eq!(t.slots.len(), 2, "only up to the highest id in use");
        assert_eq!(t.get(1), Some(&"one"));
        assert_eq!(t.remove(1), Some("one"));
        t.shrink_to_fit();
        assert!(t.is_empty());
        assert_eq!(t.slots.chunks(), 0);
    }

    #[test]
    fn grows_and_shrinks_by_whole_chunks() {
        let chunk = ChunkedVec::<Option<u64>>::CHUNK;
        let mut t = ConnTable::default();
        for id in 0..4 * chunk {
            assert_eq!(t.insert(id, id as u64), None);
        }
        assert_eq!(t.slots.chunks(), 4);
        // Closes of the upper half: two chunks go, the rest stays put.
        for id in 2 * chunk..4 * chunk {
            assert_eq!(t.remove(id), Some(id as u64));
        }
        t.shrink_to_fit();
        assert_eq!((t.len(), t.slots.chunks()), (2 * chunk, 2));
        assert!((0..2 * chunk).all(|id| t.get(id) == Some(&(id as u64))));
        // An id far past the end fills the gap with empty slots.
        assert_eq!(t.insert(3 * chunk + 1, 7), None);
        assert_eq!((t.len(), t.slots.chunks()), (2 * chunk + 1, 4));
        assert_eq!(t.get(3 * chunk), None);
    }
}
