//! A second mimalloc heap for the blocks that outlive a burst of
//! connections, so the pages a burst fills can all be given back.
//!
//! mimalloc gives a page (64 KiB for blocks up to 10 KiB) back only when
//! every block in it is free. A page a shard opened while it started holds
//! a few blocks for the broker's whole life (the engine's and the loop's
//! tables, the log formatter's line, `$SYS` values); a burst of 100,000
//! connections then fills that page to its end (mimalloc extends a page
//! 4 KiB at a time, as it is needed), and after the connections closed the
//! whole 64 KiB stays resident for the few blocks. Six shards times six to
//! eight such size classes kept about 1.6 MiB: memory given back after
//! 100,000 closes was +13% to +16% of the idle broker's RSS against a goal
//! of +10% (docs/benchmarks.md, "Memory given back after 100,000 closes:
//! a lasting heap").
//!
//! [`Allocator`] (the `ringmq` binary's global allocator) sends what a
//! thread allocates inside a lasting scope ([`begin_startup`] ..
//! [`end_startup`], [`scope`]) to a heap of its own ([`init`]); everything
//! else goes to mimalloc's default heap as before. A burst then only ever
//! extends default-heap pages, and those hold nothing once it has gone.
//! Freeing is the same for both (`mi_free` finds a block's page), and a
//! block keeps its heap until it is reallocated outside a scope.
//!
//! Cost: one thread-local read per allocation; none on the publish path,
//! which does not allocate (`engine/tests/broker_alloc.rs`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

use libmimalloc_sys as mi;

// libmimalloc-sys declares these only under its "extended" feature (see
// alloc.rs); they are the same C library the `mimalloc` crate links.
extern "C" {
    /// mimalloc.h: `mi_heap_t* mi_heap_new(void)`.
    fn mi_heap_new() -> *mut c_void;
    /// mimalloc.h: `bool mi_heap_contains(const mi_heap_t* heap, const void* p)`.
    fn mi_heap_contains(heap: *const c_void, p: *const c_void) -> bool;
    /// mimalloc.h: `void mi_heap_collect(mi_heap_t* heap, bool force)`.
    fn mi_heap_collect(heap: *mut c_void, force: bool);
    /// mimalloc.h: `void* mi_heap_malloc_aligned(mi_heap_t*, size_t, size_t)`.
    fn mi_heap_malloc_aligned(heap: *mut c_void, size: usize, alignment: usize) -> *mut c_void;
    /// mimalloc.h: `void* mi_heap_zalloc_aligned(mi_heap_t*, size_t, size_t)`.
    fn mi_heap_zalloc_aligned(heap: *mut c_void, size: usize, alignment: usize) -> *mut c_void;
    /// mimalloc.h: `void* mi_heap_realloc_aligned(mi_heap_t*, void*, size_t, size_t)`.
    fn mi_heap_realloc_aligned(
        heap: *mut c_void,
        p: *mut c_void,
        newsize: usize,
        alignment: usize,
    ) -> *mut c_void;
}

/// The lasting heap ([`init`]); null until then (every allocation then
/// goes to the default heap).
static HEAP: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    /// Whether this thread is inside a lasting scope. `const`, no
    /// destructor: reading it never allocates (this is read inside the
    /// global allocator).
    static LASTING: Cell<bool> = const { Cell::new(false) };
}

/// Creates the lasting heap. Call once, on the main thread, before the
/// shards start; later calls keep the first heap. Without it, or where the
/// global allocator is not [`Allocator`], the scopes change nothing.
pub fn init() {
    if !HEAP.load(Ordering::Acquire).is_null() {
        return;
    }
    // SAFETY: mi_heap_new takes no arguments and returns a new heap (or
    // null when out of memory, which leaves the scopes inert); mimalloc
    // heaps in v3 may be used from any thread (each gets its own part).
    let heap = unsafe { mi_heap_new() };
    if heap.is_null() {
        tracing::warn!("no lasting heap (out of memory): one heap for everything");
        return;
    }
    if HEAP
        .compare_exchange(
            std::ptr::null_mut(),
            heap,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // Another thread won: the new heap stays empty and unused.
        tracing::debug!("lasting heap created twice; the first is kept");
        return;
    }
    // mimalloc (v3) gives a heap other than its main one a map of its
    // pages in each arena (166,016 bytes), made on the thread that first
    // allocates from the heap there, in that thread's 4 MiB page of
    // 84-512 KiB blocks. Made on a shard, it kept that page resident after
    // a burst had filled it with the shard's large blocks (+356 KiB after
    // 18,500 closes on one shard, `SMAPS=1`): one block here, on the main
    // thread, makes it where no burst allocates.
    // SAFETY: a live heap; a 1-byte block, freed at once.
    let probe = unsafe { mi_heap_malloc_aligned(heap, 1, 1) };
    if !probe.is_null() {
        // SAFETY: `probe` is the live block just allocated.
        unsafe { mi::mi_free(probe) }
    }
}

/// The lasting heap when this thread is inside a scope.
#[inline]
fn current() -> Option<*mut c_void> {
    if !LASTING.with(Cell::get) {
        return None;
    }
    let heap = HEAP.load(Ordering::Relaxed);
    (!heap.is_null()).then_some(heap)
}

/// A shard thread starts: what it allocates until [`end_startup`] (its
/// tables, rings, timers, the first log line's buffer) is for its life.
pub fn begin_startup() {
    LASTING.with(|on| on.set(true));
}

/// The shard's start-up is over: allocations go to the default heap again.
pub fn end_startup() {
    LASTING.with(|on| on.set(false));
}

/// Runs `f` with this thread's allocations in the lasting heap: for state
/// made while serving that outlives the connections around it (`$SYS`
/// values, retained messages from other shards, the tables a memory
/// release rebuilds).
pub fn scope<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LASTING.with(|on| on.set(self.0));
        }
    }
    let _restore = Restore(LASTING.with(|on| on.replace(true)));
    f()
}

/// Runs this thread's housekeeping on its part of the lasting heap
/// (`release_free_memory` does the default heap's).
pub fn collect(force: bool) {
    let heap = HEAP.load(Ordering::Acquire);
    if !heap.is_null() {
        // SAFETY: `heap` came from mi_heap_new and is never deleted;
        // mi_heap_collect touches only the calling thread's part of it.
        unsafe { mi_heap_collect(heap, force) }
    }
}

/// Whether `p` points into a block of the lasting heap (for tests and
/// diagnostics; false before [`init`]).
pub fn holds(p: *const u8) -> bool {
    let heap = HEAP.load(Ordering::Acquire);
    // SAFETY: `heap` came from mi_heap_new and is never deleted;
    // mi_heap_contains only looks the pointer's page up.
    !heap.is_null() && unsafe { mi_heap_contains(heap, p.cast()) }
}

/// The global allocator: mimalloc, with the lasting scopes.
pub struct Allocator;

// SAFETY: every block comes from mimalloc with the layout's size and
// alignment; `mi_free` and the realloc functions accept a block of either
// heap (mimalloc finds its page from the pointer).
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match current() {
            // SAFETY: a live heap; size and alignment from a valid Layout.
            Some(heap) => {
                unsafe { mi_heap_malloc_aligned(heap, layout.size(), layout.align()) }.cast()
            }
            // SAFETY: size and alignment from a valid Layout (what the
            // `mimalloc` crate's allocator passes).
            None => unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) }.cast(),
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match current() {
            // SAFETY: as in `alloc`.
            Some(heap) => {
                unsafe { mi_heap_zalloc_aligned(heap, layout.size(), layout.align()) }.cast()
            }
            // SAFETY: as in `alloc`.
            None => unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) }.cast(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (mimalloc, either heap).
        unsafe { mi::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match current() {
            // SAFETY: `ptr` is a live mimalloc block of `layout`; a block
            // that moves goes to the lasting heap.
            Some(heap) => {
                unsafe { mi_heap_realloc_aligned(heap, ptr.cast(), new_size, layout.align()) }
                    .cast()
            }
            // SAFETY: `ptr` is a live mimalloc block of `layout`.
            None => unsafe { mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()) }.cast(),
        }
    }
}
