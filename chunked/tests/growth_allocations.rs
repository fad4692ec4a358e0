//! What the allocator sees while a [`ChunkedVec`] grows: one allocation of
//! one chunk per `CHUNK` elements, no element storage ever reallocated or
//! freed, and the emptied chunks freed by `pop` and `shrink_to_fit`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use ringmq_chunked::ChunkedVec;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Allocations, reallocations and frees of blocks over 8 KiB (element
/// storage: a chunk is 12 KiB here; the list of 200 chunks, 4.8 KB, below).
static BIG_ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BIG_REALLOCS: AtomicUsize = AtomicUsize::new(0);
static BIG_FREES: AtomicUsize = AtomicUsize::new(0);

const BIG: usize = 8192;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters are atomics touched only with relaxed adds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) && layout.size() > BIG {
            BIG_ALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: forwarded as received (GlobalAlloc's contract).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Relaxed) && layout.size() > BIG {
            BIG_FREES.fetch_add(1, Relaxed);
        }
        // SAFETY: forwarded as received (GlobalAlloc's contract).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) && (layout.size() > BIG || new_size > BIG) {
            BIG_REALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: forwarded as received (GlobalAlloc's contract).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn growing_allocates_one_chunk_per_chunk_of_elements_and_frees_nothing() {
    // An element of 96 bytes, as the engine's connection slot.
    type Entry = [u64; 12];
    let n = ChunkedVec::<Entry>::CHUNK;
    assert_eq!(n * std::mem::size_of::<Entry>(), 12 * 1024);
    let total = 200 * n; // 25,600 entries, 2.4 MiB: a shard's table at 100,000 / 6
    let mut v: ChunkedVec<Entry> = ChunkedVec::new();
    COUNTING.store(true, Relaxed);
    for i in 0..total {
        v.push([i as u64; 12]);
    }
    COUNTING.store(false, Relaxed);
    let (allocs, reallocs, frees) = (
        BIG_ALLOCS.swap(0, Relaxed),
        BIG_REALLOCS.swap(0, Relaxed),
        BIG_FREES.swap(0, Relaxed),
    );
    assert_eq!(allocs, 200, "one allocation per chunk");
    assert_eq!(
        (reallocs, frees),
        (0, 0),
        "no element storage moved or freed while growing"
    );

    // Closes: popping half gives back whole chunks (one kept as the spare
    // until shrink_to_fit).
    COUNTING.store(true, Relaxed);
    for _ in 0..total / 2 {
        assert!(v.pop().is_some());
    }
    v.shrink_to_fit();
    COUNTING.store(false, Relaxed);
    assert_eq!(BIG_FREES.swap(0, Relaxed), 100, "each emptied chunk freed");
    assert_eq!(BIG_REALLOCS.swap(0, Relaxed), 0);
    assert_eq!(v.chunks(), 100);
    assert_eq!(v[total / 2 - 1], [(total / 2 - 1) as u64; 12]);
}
