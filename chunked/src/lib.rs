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
//! shrank and grew again) their tables of 1-3 MB in step: about 330
//! reallocations of 64 KiB and more per shard (docs/benchmarks.md,
//! "Connection tables in chunks"). A [`ChunkedVec`] allocates one chunk
//! of `N` elements (default [`CHUNK_LEN`], 128; the engine's slabs and the
//! native loop's slot table choose theirs to fill one of the allocator's
//! size classes: 127 entries of 96 bytes, 139 of 88) when the last one is full, never moves an
//! element, never frees a block while it grows, and frees each chunk that
//! [`ChunkedVec::pop`] empties (keeping one spare), so the memory of a
//! table is what its elements use, rounded up to one chunk.
//!
//! The cost is one more pointer load per lookup: the chunk's (a thin
//! `Box` of a fixed-size array, so the element needs no second bounds
//! check), then the element. A chunk is filled with `T::default()` when
//! it is made (resident at once: at most one chunk more than the elements
//! need), and a popped element's place is reset to the default.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::ops::{Index, IndexMut};

/// The default number of elements per chunk.
pub const CHUNK_LEN: usize = 128;

/// The largest chunk, in bytes, that the broker's allocator (mimalloc,
/// through Rust's global allocator) serves from its 12,288-byte size
/// class: its aligned allocation adds the alignment less one to the
/// request, so exactly 12,288 bytes get a 14,336-byte block. Tables that
/// choose their chunk length to fill that class (the engine's slabs, the
/// native loop's slot table) keep to it; `ringmq-net`'s
/// `the_slab_chunk_fills_its_size_class` checks it against mimalloc.
pub const CLASS_CHUNK_MAX_BYTES: usize = 12_280;

/// A vector in chunks of `N` elements (module docs).
///
/// Invariant: `chunks` holds `len.div_ceil(N)` chunks; the places at and
/// after `len` in the last chunk, and every place of `spare`, hold
/// `T::default()`.
pub struct ChunkedVec<T, const N: usize = CHUNK_LEN> {
    chunks: Vec<Box<[T; N]>>,
    /// One empty chunk kept after a pop emptied it, so that pushes and pops
    /// across a chunk boundary do not allocate and free each time.
    spare: Option<Box<[T; N]>>,
    len: usize,
}

impl<T: Default, const N: usize> Default for ChunkedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Default, const N: usize> ChunkedVec<T, N> {
    /// Elements per chunk.
    pub const CHUNK: usize = N;

    /// An empty vector; allocates nothing.
    pub const fn new() -> Self {
        const { assert!(N > 0, "a chunk holds at least one element") };
        ChunkedVec {
            chunks: Vec::new(),
            spare: None,
            len: 0,
        }
    }

    fn new_chunk() -> Box<[T; N]> {
        let places: Box<[T]> = (0..N).map(|_| T::default()).collect();
        match places.try_into() {
            Ok(chunk) => chunk,
            // `places` has exactly N elements.
            Err(_) => unreachable!("a chunk of {N} places"),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Chunks allocated, the spare included (what the vector holds:
    /// `chunks() * N` elements' room, plus the list of chunks).
    pub fn chunks(&self) -> usize {
        self.chunks.len() + usize::from(self.spare.is_some())
    }

    /// Appends `value`; allocates a chunk (or takes the spare) when the
    /// last one is full. Never moves an element.
    pub fn push(&mut self, value: T) {
        let i = self.len;
        if i.is_multiple_of(N) {
            let chunk = self.spare.take().unwrap_or_else(Self::new_chunk);
            self.chunks.push(chunk);
        }
        if let Some(chunk) = self.chunks.get_mut(i / N) {
            chunk[i % N] = value;
            self.len += 1;
        }
    }

    /// Removes the last element. A chunk it empties becomes the spare (the
    /// spare before it is freed).
    pub fn pop(&mut self) -> Option<T> {
        let i = self.len.checked_sub(1)?;
        let value = std::mem::take(&mut self.chunks.get_mut(i / N)?[i % N]);
        self.len = i;
        if i.is_multiple_of(N) {
            self.spare = self.chunks.pop();
        }
        Some(value)
    }

    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        Some(&self.chunks.get(index / N)?[index % N])
    }

    #[inline]
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        if index >= self.len {
            return None;
        }
        Some(&mut self.chunks.get_mut(index / N)?[index % N])
    }

    pub fn last(&self) -> Option<&T> {
        self.get(self.len.checked_sub(1)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        let len = self.len;
        self.chunks.iter_mut().flat_map(|c| c.iter_mut()).take(len)
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

impl<T: Default, const N: usize> Index<usize> for ChunkedVec<T, N> {
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

impl<T: Default, const N: usize> IndexMut<usize> for ChunkedVec<T, N> {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut T {
        let len = self.len;
        match self.get_mut(index) {
            Some(v) => v,
            None => panic!("index {index} out of range for a ChunkedVec of {len}"),
        }
    }
}

impl<T: Default + std::fmt::Debug, const N: usize> std::fmt::Debug for ChunkedVec<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests;
