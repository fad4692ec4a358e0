//! ringmq-chunked: [`ChunkedVec`], a vector that grows in fixed-size
//! chunks, for the tables a shard keeps one entry per connection in (the
//! engine's connection and session slabs, the native loop's connection
//! slab, the runtime's tables by connection id).
//!
//! Why not a `Vec`: a `Vec` grows by doubling, each growth a new block
//! with the old one copied and freed. With mimalloc (the broker's
//! allocator) a freed range stays committed until its purge, and the next
//! large allocation of any thread may be placed on it: the new block's
//! unwritten half is then resident although nothing writes it. Six shards
//! ramping up to 100,000 connections grew (and, at each memory release,
//! shrank and grew again) their tables of 1-3 MB in step, about 700
//! reallocations of 64 KiB and more per shard (docs/benchmarks.md,
//! "Connection tables in chunks"). A [`ChunkedVec`] allocates one chunk
//! of at most [`CHUNK_BYTES_MAX`] when the last one is full, never moves
//! an element, never frees a block while it grows, and frees each chunk
//! that [`ChunkedVec::pop`] empties (keeping one spare), so the memory of
//! a table is what its elements use, rounded up to one chunk.
//!
//! The cost is one more pointer load per lookup (chunk, then element:
//! `index >> shift`, `index & mask`).

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::ops::{Index, IndexMut};

/// The most bytes of elements one chunk holds: 16 KiB, well inside
/// mimalloc's medium size classes (pages shared with other blocks of the
/// size, purged by the allocator like every small block).
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;

/// Elements per chunk for elements of `size` bytes: the largest power of
/// two whose chunk fits in [`CHUNK_BYTES_MAX`], at least 1.
pub const fn chunk_len(size: usize) -> usize {
    let size = if size == 0 { 1 } else { size };
    let fit = CHUNK_BYTES_MAX / size;
    if fit <= 1 {
        1
    } else {
        1 << (usize::BITS - 1 - fit.leading_zeros())
    }
}

/// A vector in chunks of [`ChunkedVec::CHUNK`] elements (module docs).
///
/// Invariant: every chunk in `chunks` holds at least one element and was
/// made with room for exactly `CHUNK`; all but the last are full; `len`
/// is their total.
pub struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    /// One empty chunk kept after a pop emptied it, so that pushes and pops
    /// across a chunk boundary do not allocate and free each time.
    spare: Option<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ChunkedVec<T> {
    /// Elements per chunk.
    pub const CHUNK: usize = chunk_len(std::mem::size_of::<T>());
    const SHIFT: u32 = Self::CHUNK.trailing_zeros();
    const MASK: usize = Self::CHUNK - 1;

    /// An empty vector; allocates nothing.
    pub const fn new() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            spare: None,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Chunks allocated, the spare included (what the vector holds:
    /// `chunks() * CHUNK` elements' room, plus the list of chunks).
    pub fn chunks(&self) -> usize {
        self.chunks.len() + usize::from(self.spare.is_some())
    }

    /// Appends `value`; allocates a chunk (or takes the spare) when the
    /// last one is full. Never moves an element.
    pub fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < Self::CHUNK => last.push(value),
            _ => {
                let mut chunk = self
                    .spare
                    .take()
                    .unwrap_or_else(|| Vec::with_capacity(Self::CHUNK));
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    /// Removes the last element. A chunk it empties becomes the spare (the
    /// spare before it is freed).
    pub fn pop(&mut self) -> Option<T> {
        let last = self.chunks.last_mut()?;
        let value = last.pop();
        if last.is_empty() {
            self.spare = self.chunks.pop();
        }
        if value.is_some() {
            self.len -= 1;
        }
        value
    }

    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks
            .get(index >> Self::SHIFT)?
            .get(index & Self::MASK)
    }

    #[inline]
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(index >> Self::SHIFT)?
            .get_mut(index & Self::MASK)
    }

    pub fn last(&self) -> Option<&T> {
        self.chunks.last()?.last()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut T> + '_ {
        self.chunks.iter_mut().flatten()
    }

    /// Grows to `new_len` with values from `fill`, or pops down to it.
    pub fn resize_with(&mut self, new_len: usize, mut fill: impl FnMut() -> T) {
        while self.len < new_len {
            self.push(fill());
        }
        while self.len > new_len {
            drop(self.pop());
        }
    }

    /// Frees the spare chunk and the chunk list's spare room: after this
    /// the vector holds only the chunks its elements are in.
    pub fn shrink_to_fit(&mut self) {
        self.spare = None;
        self.chunks.shrink_to_fit();
    }
}

impl<T> Index<usize> for ChunkedVec<T> {
    type Output = T;

    #[inline]
    fn index(&self, index: usize) -> &T {
        match self.get(index) {
            Some(v) => v,
            None => panic!(
                "index {index} out of range for a ChunkedVec of {}",
                self.len
            ),
        }
    }
}

impl<T> IndexMut<usize> for ChunkedVec<T> {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut T {
        let len = self.len;
        match self.get_mut(index) {
            Some(v) => v,
            None => panic!("index {index} out of range for a ChunkedVec of {len}"),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ChunkedVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests;
