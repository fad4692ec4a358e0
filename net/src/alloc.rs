//! Returning freed heap memory to the operating system.
//!
//! The `ringmq` binary's global allocator is mimalloc. mimalloc keeps the
//! pages of freed blocks and purges them (gives them back to the kernel)
//! only after a delay *and* only when the thread that owns them next runs
//! the allocator's housekeeping. A shard that closed many connections and
//! then went quiet keeps their buffers resident indefinitely: 100
//! connections that each held a 1 MiB partial packet left about 95 MiB
//! of RSS behind after they closed (docs/benchmarks.md). [`release_free_memory`]
//! runs that housekeeping now, on the calling thread.

// libmimalloc-sys builds and links mimalloc's C library (the same one the
// `mimalloc` global allocator uses). Its Rust bindings declare `mi_collect`
// only under the "extended" feature, which pulls in another crate for C
// types; `void mi_collect(bool force)` needs none, so it is declared here.
use libmimalloc_sys as _;

extern "C" {
    /// mimalloc.h: `void mi_collect(bool force)`.
    fn mi_collect(force: bool);
}

/// Frees what the calling thread's allocator heap holds in empty pages and
/// purges free memory of the allocator's arenas back to the OS (mimalloc's
/// `mi_collect(true)`). Costs a walk over the thread's heap pages: call it
/// after a burst of frees (connections closed), not per operation. Without
/// mimalloc as the global allocator it only tidies mimalloc's own (unused)
/// heap.
pub fn release_free_memory() {
    // SAFETY: mi_collect takes a plain bool, touches only mimalloc's own
    // state for the calling thread (and its arenas, under their locks), and
    // may be called from any thread at any time after process start.
    unsafe { mi_collect(true) }
}
