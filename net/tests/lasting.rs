//! The lasting heap (`ringmq_net::lasting`): what a scope allocates lies in
//! it, a burst outside never does, so the burst's pages hold nothing once
//! the burst is freed.

use ringmq_net::lasting::{self, Allocator};

#[global_allocator]
static GLOBAL: Allocator = Allocator;

/// Bytes of a block of the size classes the census found kept (32 and 48
/// bytes: `$SYS` values and their records).
const BLOCK_BYTES: usize = 40;

/// Blocks in the burst: more than a 64 KiB page of 48-byte blocks holds.
const BURST_BLOCKS: usize = 20_000;

fn block(fill: u8) -> Box<[u8; BLOCK_BYTES]> {
    Box::new([fill; BLOCK_BYTES])
}

#[test]
fn a_scope_allocates_in_the_lasting_heap_and_a_burst_outside_never_does() {
    lasting::init();
    let kept: Vec<Box<[u8; BLOCK_BYTES]>> = lasting::scope(|| (0..8).map(|_| block(7)).collect());
    assert!(kept.iter().all(|b| lasting::holds(b.as_ptr())));
    let burst: Vec<Box<[u8; BLOCK_BYTES]>> = (0..BURST_BLOCKS).map(|_| block(1)).collect();
    let in_lasting = burst.iter().filter(|b| lasting::holds(b.as_ptr())).count();
    assert_eq!(in_lasting, 0, "burst blocks in the lasting heap");
    // The kept blocks are intact and freeing works for both heaps.
    assert!(kept.iter().all(|b| b.iter().all(|&x| x == 7)));
    drop(burst);
    drop(kept);
    ringmq_net::alloc::release_all_free_memory();
}

#[test]
fn start_up_allocations_are_lasting_until_the_loop_starts() {
    lasting::init();
    lasting::begin_startup();
    let table = vec![0u64; 64];
    let zeroed = vec![0u8; 4096];
    lasting::end_startup();
    let later = block(2);
    assert!(lasting::holds(table.as_ptr().cast()));
    assert!(lasting::holds(zeroed.as_ptr()));
    assert!(zeroed.iter().all(|&b| b == 0));
    assert!(!lasting::holds(later.as_ptr()));
}

#[test]
fn a_scope_restores_the_outer_state_also_when_it_panics() {
    lasting::init();
    // Nested in start-up: still lasting after the inner scope.
    lasting::begin_startup();
    lasting::scope(|| ());
    let during = block(3);
    lasting::end_startup();
    assert!(lasting::holds(during.as_ptr()));
    // A panic inside a scope leaves the thread outside it.
    let caught = std::panic::catch_unwind(|| lasting::scope(|| panic!("inside")));
    assert!(caught.is_err());
    let after = block(4);
    assert!(!lasting::holds(after.as_ptr()));
}

#[test]
fn a_lasting_block_grown_outside_a_scope_moves_to_the_default_heap() {
    lasting::init();
    let mut grown: Vec<u8> = lasting::scope(|| Vec::with_capacity(16));
    assert!(lasting::holds(grown.as_ptr()));
    grown.extend(std::iter::repeat_n(9u8, 64 * 1024));
    assert!(!lasting::holds(grown.as_ptr()));
    assert!(grown.iter().all(|&b| b == 9));
    // And one grown inside a scope stays in the lasting heap.
    let mut kept: Vec<u8> = lasting::scope(|| Vec::with_capacity(16));
    lasting::scope(|| kept.extend(std::iter::repeat_n(5u8, 64 * 1024)));
    assert!(lasting::holds(kept.as_ptr()));
}
