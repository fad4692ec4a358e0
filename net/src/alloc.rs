//! Returning freed heap memory to the operating system, off the shards.
//!
//! The `ringmq` binary's global allocator is mimalloc. mimalloc keeps the
//! pages of freed blocks and purges them (gives them back to the kernel)
//! only after a delay *and* only when the thread that owns them next runs
//! the allocator's housekeeping. A shard that closed many connections and
//! then went quiet keeps their buffers resident indefinitely: 100
//! connections that each held a 1 MiB partial packet left about 95 MiB
//! of RSS behind after they closed (docs/benchmarks.md). [`release_free_memory`]
//! runs the calling thread's housekeeping now.
//!
//! The purge itself (`madvise` over every freed range of every arena) is
//! process-wide, and mimalloc runs it on whichever thread allocates or
//! frees a page once the purge delay has expired: under connection churn
//! that was a shard, inside an ordinary allocation, for 2-3 ms at a time
//! (`perf` during 300 TLS handshakes/s: `_mi_malloc_generic` ->
//! `_mi_arenas_collect` -> `madvise`; docs/benchmarks.md, "TLS handshake
//! storm"), stalling every connection of the shard. [`start_purger`]
//! moves it to a helper thread at the lowest priority: allocations never
//! reach the (very long) purge delay it sets, and the helper purges what
//! was freed once per [`PURGE_INTERVAL_MS`].
//!
//! What a purge cannot give back is memory mimalloc handed out again
//! before the purge came: a range freed and reused within the second stays
//! resident even where its new owner never writes. For a grown table that
//! is its unused half; [`large_blocks_from_os`] maps such large blocks
//! from the OS for themselves instead (resident only where written,
//! unmapped when freed).

use std::ffi::{c_int, c_long};
use std::time::Duration;

// libmimalloc-sys builds and links mimalloc's C library (the same one the
// `mimalloc` global allocator uses). Its Rust bindings declare `mi_collect`
// and the option functions only under the "extended" feature, which pulls
// in another crate for C types; these need none, so they are declared here.
use libmimalloc_sys as _;

extern "C" {
    /// mimalloc.h: `void mi_collect(bool force)`.
    fn mi_collect(force: bool);
    /// mimalloc.h: `long mi_option_get(mi_option_t option)`.
    fn mi_option_get(option: c_int) -> c_long;
    /// mimalloc.h: `void mi_option_set(mi_option_t option, long value)`.
    fn mi_option_set(option: c_int, value: c_long);
}

/// mimalloc.h (v3): `mi_option_purge_delay`, the 16th entry of
/// `mi_option_e` (a test checks it reads back mimalloc's default).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// mimalloc.h (v3): `mi_option_arena_max_object_size`, the 46th entry of
/// `mi_option_e`, in KiB (a test checks it reads back mimalloc's default).
const MI_OPTION_ARENA_MAX_OBJECT_SIZE: c_int = 45;

/// mimalloc v3's own largest arena object, in KiB (2 GiB on 64-bit):
/// below it, every allocation lives in mimalloc's arenas.
pub const MIMALLOC_ARENA_MAX_OBJECT_KIB: c_long = 2 * 1024 * 1024;

/// The largest object [`large_blocks_from_os`] leaves in mimalloc's
/// arenas, in KiB (2 MiB): small and medium pages (blocks up to ~84 KiB)
/// and single blocks up to 2 MiB, among them a packet of up to the default
/// `packet_size_max_bytes` (1 MiB) while it is assembled, so large
/// publishes reuse resident memory as before. Larger ones, every block
/// over 2 MiB (grown tables) and the 4 MiB pages of 84-512 KiB blocks, are
/// mapped from the OS for themselves and unmapped when freed.
pub const ARENA_MAX_OBJECT_KIB: c_long = 2 * 1024;

/// mimalloc v3's own purge delay, in milliseconds.
pub const MIMALLOC_PURGE_DELAY_MS: c_long = 1_000;

/// The purge delay [`start_purger`] sets, in milliseconds (one hour):
/// longer than any gap between the helper's purges, so no allocation on a
/// shard ever finds an expired purge to run.
pub const DEFERRED_PURGE_DELAY_MS: c_long = 3_600_000;

/// How often the purge helper gives freed memory back, in milliseconds
/// (mimalloc's own delay, so memory goes back as soon as it did before).
pub const PURGE_INTERVAL_MS: u64 = 1_000;

/// Runs the calling thread's allocator housekeeping: frees the empty pages
/// its heaps hold (mimalloc's default heap and its part of the lasting
/// heap, `crate::lasting`; blocks freed by this thread or by others) back to the
/// allocator's arenas, where the purge helper ([`start_purger`]) gives
/// them back to the OS. Without the helper (tests, other binaries) the
/// purge happens on the next allocation after mimalloc's delay. Costs a
/// walk over the thread's heap pages: call it after a burst of frees
/// (connections closed), not per operation. Without mimalloc as the
/// global allocator it only tidies mimalloc's own (unused) heap.
pub fn release_free_memory() {
    crate::lasting::collect(false);
    // SAFETY: mi_collect takes a plain bool, touches only mimalloc's own
    // state for the calling thread (and its arenas, under their locks), and
    // may be called from any thread at any time after process start. Not
    // forced: a forced collect also purges every arena (madvise) here.
    unsafe { mi_collect(false) }
}

/// [`release_free_memory`], forced, for a thread that nothing waits on (a
/// shard whose connections have all gone): also frees the pages the
/// normal collection leaves, and gives the freed ranges back to the OS
/// now. Without it, after 18,500 idle connections closed, mimalloc kept
/// about 3 MB more than the broker had before they came (the native loop's
/// arena: +3.1 MB with the normal collection, +1.6 MB forced;
/// docs/benchmarks.md, "Memory given back after closes"): an empty page
/// that was its size class's only page is "retired" rather than freed
/// (kept for 16 more collections, in case allocations of that size come
/// back), and pages filed as full are not visited by a normal collection.
/// The purge (`madvise` over every freed range, 2-3 ms after a large
/// burst) runs on the calling thread, hence: only when it has nothing
/// else to do.
pub fn release_all_free_memory() {
    // First, so that the purge below also gives its freed pages back.
    crate::lasting::collect(true);
    // SAFETY: as in `release_free_memory`; forced: every page of this
    // thread's heap is visited and the arenas are purged here.
    unsafe { mi_collect(true) }
}

/// Whether [`start_purger`] took the purge off the other threads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purger {
    /// The helper thread runs; allocations no longer purge.
    Started,
    /// `MIMALLOC_PURGE_DELAY` is set in the environment: the operator's
    /// choice stands, mimalloc purges as it was told.
    Unchanged,
    /// The thread could not be spawned (the error); mimalloc purges on its
    /// own as before.
    Failed(String),
}

/// Starts the purge helper (thread `ringmq-purge`, nice 19 like the other
/// helpers): sets mimalloc's purge delay to [`DEFERRED_PURGE_DELAY_MS`],
/// then every [`PURGE_INTERVAL_MS`] purges what every thread freed
/// (`mi_collect(true)`: the helper's own tiny heap, then all arenas). Call
/// it once, after the process blocked the signals it waits for (threads
/// inherit the mask). The helper never holds anything a shard
/// waits for: mimalloc lets one thread purge at a time and the others
/// skip, and the arenas' bitmaps are atomic.
pub fn start_purger() -> Purger {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return Purger::Unchanged;
    }
    let spawned = std::thread::Builder::new()
        .name("ringmq-purge".into())
        .spawn(|| {
            if let Err(e) = crate::os::lower_thread_priority() {
                tracing::warn!("memory purge thread keeps normal priority: {e}");
            }
            loop {
                std::thread::sleep(Duration::from_millis(PURGE_INTERVAL_MS));
                // SAFETY: as in `release_free_memory`; forced, so the
                // arenas' freed ranges are purged whatever their delay.
                unsafe { mi_collect(true) }
            }
        });
    match spawned {
        Ok(_) => {
            set_purge_delay_ms(DEFERRED_PURGE_DELAY_MS);
            Purger::Started
        }
        Err(e) => Purger::Failed(e.to_string()),
    }
}

/// One of mimalloc's options now; `option` is one of the `MI_OPTION_*`
/// indexes above.
fn option(option: c_int) -> c_long {
    // SAFETY: mi_option_get reads one option by its index, and every
    // caller passes one of the `MI_OPTION_*` constants, valid `mi_option_e`
    // values (the tests read back mimalloc's defaults through them).
    unsafe { mi_option_get(option) }
}

/// Sets one of mimalloc's options; `option` as in [`option`].
fn set_option(option: c_int, value: c_long) {
    // SAFETY: mi_option_set stores one option by its valid index (as in
    // `option`); mimalloc reads the options it uses here at each purge
    // decision and each arena allocation, so they may change at any time.
    unsafe { mi_option_set(option, value) }
}

/// mimalloc's purge delay now, in milliseconds.
pub fn purge_delay_ms() -> c_long {
    option(MI_OPTION_PURGE_DELAY)
}

fn set_purge_delay_ms(ms: c_long) {
    set_option(MI_OPTION_PURGE_DELAY, ms);
}

/// Below this capacity (entries) a container is not shrunk
/// ([`shrunk_capacity`]): small ones cost little and would only be
/// reallocated again.
pub const SHRINK_MIN_CAPACITY: usize = 1024;

/// The capacity to shrink a container to once it holds fewer than a
/// quarter of its capacity and that is above [`SHRINK_MIN_CAPACITY`]:
/// twice its length (room to grow again without a reallocation), never
/// below the minimum. `None`: keep it. A shrunk container must grow past
/// twice its length before it is reallocated again, and shrinks again
/// only below an eighth of its old capacity, so churn around one size
/// does not thrash. For queues and heaps that a burst of connections grew
/// (the native loop's timer heap, the close pacer's queue); never called
/// per message.
pub fn shrunk_capacity(len: usize, capacity: usize) -> Option<usize> {
    (capacity > SHRINK_MIN_CAPACITY && len < capacity / 4)
        .then(|| len.saturating_mul(2).max(SHRINK_MIN_CAPACITY))
}

/// Whether [`large_blocks_from_os`] changed where large blocks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LargeBlocks {
    /// Objects over [`ARENA_MAX_OBJECT_KIB`] are mapped from the OS.
    FromOs,
    /// `MIMALLOC_ARENA_MAX_OBJECT_SIZE` is set in the environment: the
    /// operator's choice stands.
    Unchanged,
}

/// Makes mimalloc map every object over [`ARENA_MAX_OBJECT_KIB`] (2 MiB,
/// and the 4 MiB pages of 84-512 KiB blocks) from the OS for itself, instead of
/// carving it out of its arenas, unless the environment sets
/// `MIMALLOC_ARENA_MAX_OBJECT_SIZE`. Call it first thing in `main`, before
/// the heap grows (objects allocated before stay where they are).
///
/// Why: the purge helper ([`start_purger`]) gives freed arena ranges back
/// once a second, and until then mimalloc hands them out again as they
/// are, resident. A table that grows (a `Vec` doubling to 32,768 entries
/// when a shard passes 16,384 connections) is then placed over ranges
/// that earlier, freed tables and pages had made resident, and its unused
/// part (up to half of it) stays resident although nothing ever touches it;
/// a fresh mapping becomes resident only where it is written. With six
/// shards filling at once this was about 43 MB of the 100,000 idle
/// connections' RSS (docs/benchmarks.md, "Freed memory the allocator keeps
/// committed"). A mapping of its own also goes back to the OS the moment
/// it is freed (`munmap`), with no purge to wait for. The cost is a
/// `mmap`, its page faults and a `munmap` per such block: a table's
/// growth; nothing per message or per connection. Not lower than 2 MiB:
/// with 512 KiB, each 900,000-byte publish (its assembly buffer a block of
/// its own) cost 41% more broker CPU (docs/benchmarks.md).
pub fn large_blocks_from_os() -> LargeBlocks {
    if std::env::var_os("MIMALLOC_ARENA_MAX_OBJECT_SIZE").is_some() {
        return LargeBlocks::Unchanged;
    }
    set_option(MI_OPTION_ARENA_MAX_OBJECT_SIZE, ARENA_MAX_OBJECT_KIB);
    LargeBlocks::FromOs
}

/// The largest object mimalloc carves out of its arenas now, in KiB.
pub fn arena_max_object_kib() -> c_long {
    option(MI_OPTION_ARENA_MAX_OBJECT_SIZE)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_index_reads_mimallocs_default() {
        // The index is declared by hand: mimalloc v3's default purge delay
        // (1000 ms) proves it names `mi_option_purge_delay` (no other
        // option defaults to 1000), unless the environment overrides it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(purge_delay_ms(), MIMALLOC_PURGE_DELAY_MS);
    }

    /// The 4 KiB pages of `len` bytes from `p` (rounded in to whole
    /// pages) that are resident, or `None` where part of the range is not
    /// mapped (`mincore` fails with ENOMEM there).
    #[cfg(target_os = "linux")]
    fn resident_pages(p: *mut u8, len: usize) -> Option<usize> {
        let start = (p as usize).next_multiple_of(4096);
        let end = (p as usize + len) & !4095;
        let mut pages = vec![0u8; (end - start) / 4096];
        // SAFETY: mincore only reads the page tables of the range and writes
        // one byte per page into `pages`, which has room for every page.
        let rc =
            unsafe { libc::mincore(start as *mut libc::c_void, end - start, pages.as_mut_ptr()) };
        (rc == 0).then(|| pages.iter().filter(|&&b| b & 1 == 1).count())
    }

    /// Allocates `len` bytes with mimalloc, writes the first `written`.
    #[cfg(target_os = "linux")]
    fn mi_block(len: usize, written: usize) -> *mut u8 {
        // SAFETY: a plain allocation on mimalloc's own heap.
        let p = unsafe { libmimalloc_sys::mi_malloc(len) }.cast::<u8>();
        assert!(!p.is_null());
        // SAFETY: p is a live allocation of len >= written bytes.
        unsafe { std::ptr::write_bytes(p, 1, written) };
        p
    }

    /// Frees a block from [`mi_block`].
    #[cfg(target_os = "linux")]
    fn mi_release(p: *mut u8) {
        // SAFETY: p came from mi_malloc and is freed once.
        unsafe { libmimalloc_sys::mi_free(p.cast()) }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_large_block_is_resident_only_where_written_and_unmapped_when_freed() {
        const LEN: usize = 8 << 20;
        const WRITTEN: usize = 1 << 20;
        // One test for the option: the setting below is process-wide.
        if std::env::var_os("MIMALLOC_ARENA_MAX_OBJECT_SIZE").is_some() {
            return;
        }
        // The index is declared by hand: mimalloc v3's default (2 GiB in
        // KiB, no other option's default) proves it names
        // `mi_option_arena_max_object_size`.
        assert_eq!(arena_max_object_kib(), MIMALLOC_ARENA_MAX_OBJECT_KIB);
        // mimalloc's default, the reason for the policy: a block carved out
        // of an arena stays mapped and resident after its free (until a
        // purge), and the next block placed there (a table that grew) is
        // resident beyond what its owner writes.
        let first = mi_block(LEN, LEN);
        mi_release(first);
        assert!(
            resident_pages(first, LEN).is_some(),
            "an arena block stays mapped after its free"
        );
        let second = mi_block(LEN, WRITTEN);
        let tail = resident_pages(second.wrapping_add(WRITTEN), LEN - WRITTEN);
        mi_release(second);
        assert!(
            tail.is_some_and(|n| n > 0),
            "the reused arena range is resident beyond what was written: {tail:?}"
        );

        assert_eq!(large_blocks_from_os(), LargeBlocks::FromOs);
        assert_eq!(arena_max_object_kib(), ARENA_MAX_OBJECT_KIB);
        let first = mi_block(LEN, LEN);
        assert_eq!(resident_pages(first, LEN), Some(LEN / 4096));
        mi_release(first);
        assert_eq!(
            resident_pages(first, LEN),
            None,
            "a large block is unmapped when freed"
        );
        let second = mi_block(LEN, WRITTEN);
        let tail = resident_pages(second.wrapping_add(WRITTEN), LEN - WRITTEN);
        mi_release(second);
        assert_eq!(
            tail,
            Some(0),
            "a large block is resident only where written"
        );
    }

    #[test]
    fn a_container_shrinks_only_when_well_below_its_capacity() {
        // Small containers are left alone.
        assert_eq!(shrunk_capacity(0, SHRINK_MIN_CAPACITY), None);
        // A quarter or more in use: kept.
        assert_eq!(shrunk_capacity(8192, 32768), None);
        // Below a quarter: twice the length, never under the minimum.
        assert_eq!(shrunk_capacity(8191, 32768), Some(16382));
        assert_eq!(shrunk_capacity(0, 32768), Some(SHRINK_MIN_CAPACITY));
        // Hysteresis: the shrunk size is not shrunk again at that length,
        // and regrowing to it needs no reallocation.
        let to = shrunk_capacity(3000, 16384).unwrap_or(0);
        assert_eq!(to, 6000);
        assert_eq!(shrunk_capacity(3000, to), None);
        assert_eq!(shrunk_capacity(1500, to), None, "a quarter: kept");
        assert_eq!(shrunk_capacity(1499, to), Some(2998));
    }
}
