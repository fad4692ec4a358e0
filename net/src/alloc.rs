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

/// Whether [`keep_small_pages`] turned transparent huge pages off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// Off for this process (`prctl(PR_SET_THP_DISABLE)`).
    Disabled,
    /// Left as they were: `MIMALLOC_ALLOW_THP` is set in the environment
    /// (the operator chose), or not Linux.
    Unchanged,
    /// The kernel refused the `prctl` (the error); huge pages stay allowed.
    Failed(std::io::ErrorKind),
}

/// Turns transparent huge pages off for this process, unless the
/// environment sets `MIMALLOC_ALLOW_THP` (then mimalloc's own option
/// decides). Call it first thing in `main`, before the heap grows.
///
/// Why: mimalloc asks the kernel for huge pages on its segments
/// (`madvise(MADV_HUGEPAGE)`), so a 2 MiB page becomes resident as soon as
/// one small object in it is touched, and stays resident while one object
/// in it lives. For a broker made of many small per-connection objects that
/// raised RSS at start (10.3 instead of 4.7 MiB) and, above all, kept it
/// high after connections closed (docs/benchmarks.md, "Memory given back
/// after closes"). mimalloc's `MIMALLOC_ALLOW_THP=0` does the same, but only
/// from the environment.
pub fn keep_small_pages() -> HugePages {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return HugePages::Unchanged;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes an integer flag and three zero
        // arguments; it only sets a flag on this process's memory map.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            return HugePages::Failed(std::io::Error::last_os_error().kind());
        }
        HugePages::Disabled
    }
    #[cfg(not(target_os = "linux"))]
    HugePages::Unchanged
}
