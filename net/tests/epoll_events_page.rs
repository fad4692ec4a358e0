//! A shard's epoll runtime keeps no page of the table chunks' size class
//! resident after a burst (`ringmq_net::opslab::EPOLL_EVENTS`). Its own
//! process, with the broker's allocator (mimalloc) as the global one: the
//! test reads mimalloc's pages.

use std::ffi::c_void;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc.h (v3): `mi_heap_area_t`, one page's blocks.
#[repr(C)]
struct MiHeapArea {
    blocks: *mut c_void,
    reserved: usize,
    committed: usize,
    used: usize,
    block_size: usize,
    full_block_size: usize,
    reserved1: *mut c_void,
}

type MiBlockVisitFun =
    extern "C" fn(*const c_void, *const MiHeapArea, *mut c_void, usize, *mut c_void) -> bool;

extern "C" {
    /// mimalloc.h: `mi_heap_t* mi_heap_main(void)`.
    fn mi_heap_main() -> *mut c_void;
    /// mimalloc.h: `bool mi_heap_visit_blocks(mi_heap_t*, bool, mi_block_visit_fun*, void*)`.
    fn mi_heap_visit_blocks(
        heap: *mut c_void,
        visit_blocks: bool,
        visitor: MiBlockVisitFun,
        arg: *mut c_void,
    ) -> bool;
    /// mimalloc.h: `size_t mi_good_size(size_t size)`.
    fn mi_good_size(size: usize) -> usize;
    /// mimalloc.h: `void mi_collect(bool force)`.
    fn mi_collect(force: bool);
}

/// What [`kept_bytes`] adds up: pages of blocks of `class` bytes that
/// hold a live block, and the bytes those pages have in use.
struct Kept {
    class: usize,
    bytes: usize,
}

extern "C" fn add_kept(
    _heap: *const c_void,
    area: *const MiHeapArea,
    _block: *mut c_void,
    _block_size: usize,
    arg: *mut c_void,
) -> bool {
    // SAFETY: mimalloc passes the area it visits (valid for the call) and
    // our `arg`, a `&mut Kept` that outlives the visit.
    let (area, kept) = unsafe { (&*area, &mut *(arg as *mut Kept)) };
    if area.block_size == kept.class && area.used > 0 {
        kept.bytes += area.committed;
    }
    true
}

/// Bytes that the pages of blocks of `class` bytes holding a live block
/// have in use (mimalloc's `committed`: the part of the page its blocks
/// were carved from), over every thread's pages.
fn kept_bytes(class: usize) -> usize {
    let mut kept = Kept { class, bytes: 0 };
    // SAFETY: the visitor only reads the areas mimalloc hands it, and
    // `kept` lives until the visit returns.
    let ok = unsafe {
        mi_heap_visit_blocks(
            mi_heap_main(),
            false,
            add_kept,
            &mut kept as *mut Kept as *mut c_void,
        )
    };
    assert!(ok, "mimalloc's heap visit stopped");
    kept.bytes
}

/// The shard's epoll runtime as the broker builds it (`--io epoll`), a
/// burst of table chunks allocated and freed on its thread: afterwards no
/// page of the chunks' size class is kept by a block of the runtime. With
/// monoio's default of 1,024 events, its event buffer (12,288 bytes on
/// x86_64) was the first block of that class and kept a 512 KiB page of
/// it resident, filled by the burst's chunks (docs/benchmarks.md, "monoio
/// on epoll: the event buffer's page").
#[test]
fn a_burst_of_table_chunks_leaves_no_page_of_their_class_behind() {
    // SAFETY: `mi_good_size` only computes a size.
    let class = unsafe { mi_good_size(ringmq_chunked::CLASS_CHUNK_MAX_BYTES) };
    assert!(
        class > 10 * 1024,
        "a chunk of {class} bytes is in a small page"
    );
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .with_entries(ringmq_net::opslab::EPOLL_EVENTS)
        .enable_timer()
        .build()
        .unwrap_or_else(|e| panic!("epoll runtime: {e}"));
    rt.block_on(async move {
        let before = kept_bytes(class);
        // A burst: the chunks of the engine's connection and session
        // slabs for 18,500 connections (146 each), written once.
        let burst: Vec<Box<[u8]>> = (0..292)
            .map(|i| vec![i as u8; ringmq_chunked::CLASS_CHUNK_MAX_BYTES].into_boxed_slice())
            .collect();
        assert!(kept_bytes(class) >= 292 * class);
        drop(burst);
        monoio::time::sleep(std::time::Duration::from_millis(1)).await;
        // SAFETY: no precondition; runs this thread's housekeeping.
        unsafe { mi_collect(true) };
        let after = kept_bytes(class);
        assert!(
            after <= before,
            "pages of the {class}-byte class kept {after} bytes in use after the burst, {before} before it"
        );
    });
}
