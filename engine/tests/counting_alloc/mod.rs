//! A counting global allocator for the zero-allocation tests: it wraps the
//! system allocator and counts allocations (`alloc`, `alloc_zeroed`,
//! `realloc`) made on a thread while that thread measures.
//!
//! Only allocations made on the measuring thread while it measures are
//! counted (a thread-local switch and counter), so the test harness's own
//! threads cannot disturb the count.
//!
//! Use with `mod counting_alloc;` in a test file: it installs the
//! `#[global_allocator]` for that test binary.

// The lib forbids unsafe; a GlobalAlloc impl needs it, so this module allows it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // `const` initialisers: no lazy init and no destructor, so touching them
    // from inside the allocator never allocates or recurses.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: during thread teardown the slots may be gone; those
    // allocations are not ours to count.
    let _ = MEASURING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s implementation upholds the GlobalAlloc contract;
// the bookkeeping only touches thread-local `Cell`s, which neither allocates
// nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract
        // (non-zero size layout), passed through unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract; `ptr`
        // was allocated by this allocator (hence by `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract; `ptr`
        // came from `System` with `layout` (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by `f` on this thread.
pub fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    MEASURING.with(|on| on.set(true));
    f();
    MEASURING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get) - before
}
