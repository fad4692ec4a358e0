//! Proves that matching a topic against a warm trie never touches the heap:
//! a counting global allocator wraps the system one, and counts only on the
//! thread and in the window where counting is switched on (libtest runs
//! other tests and its own bookkeeping on other threads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringmq_engine::topic::{filter_matches, validate_topic_name, TopicTrie};

struct CountingAlloc;

thread_local! {
    // `const` initialisers: no lazy init, so touching them from inside the
    // allocator never allocates or recurses.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: during thread teardown the slots may be gone; those
    // allocations are not ours to count.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; the bookkeeping only touches
// thread-local `Cell`s and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
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
        // came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract; `ptr`
        // came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Heap allocations made by this thread while running `f`.
fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// A fleet of a few thousand filters: exact, `+`, `#`, `$SYS`. Site 0 has
/// enough devices that its child map is a hash map.
fn fleet() -> (TopicTrie<u64>, Vec<String>) {
    let mut trie = TopicTrie::<u64>::new();
    let mut topics = Vec::new();
    let metrics = ["temp", "humidity", "power", "status"];
    for site in 0..8 {
        let devices = if site == 0 { 400 } else { 80 };
        for device in 0..devices {
            for metric in metrics {
                let topic = format!("site/{site}/device/{device}/{metric}");
                *trie.get_or_insert(topic.as_bytes()) += 1;
                topics.push(topic);
            }
            *trie.get_or_insert(format!("site/{site}/device/{device}/#").as_bytes()) += 1;
        }
        for metric in metrics {
            *trie.get_or_insert(format!("site/{site}/device/+/{metric}").as_bytes()) += 1;
            *trie.get_or_insert(format!("site/+/device/+/{metric}").as_bytes()) += 1;
        }
        *trie.get_or_insert(format!("site/{site}/#").as_bytes()) += 1;
    }
    for filter in ["#", "+/+/device/#", "site/+/device/+/+", "$SYS/#", "+/#"] {
        *trie.get_or_insert(filter.as_bytes()) += 1;
    }
    topics.extend(["$SYS/broker/uptime", "nothing/here", "site", "site/3"].map(str::to_owned));
    (trie, topics)
}

#[test]
fn counting_allocator_sees_allocations() {
    let n = allocations_during(|| drop(std::hint::black_box(vec![1u8; 16])));
    assert_eq!(n, 1);
}

#[test]
fn for_each_match_on_a_warm_trie_allocates_nothing() {
    let (mut trie, topics) = fleet();
    assert!(trie.len() > 3000, "a few thousand filters: {}", trie.len());

    // Warm-up: the first pass may touch lazily initialised state (there is
    // none today; the test must not depend on that).
    let mut warm = 0u64;
    for t in &topics {
        trie.for_each_match(t.as_bytes(), |v| warm += v);
    }
    assert!(warm > topics.len() as u64, "the walk finds matches");

    let mut visited = 0u64;
    let n = allocations_during(|| {
        for _ in 0..10 {
            for t in &topics {
                trie.for_each_match(t.as_bytes(), |v| visited += v);
            }
        }
    });
    assert_eq!(n, 0, "for_each_match allocated {n} times");
    assert_eq!(visited, warm * 10);

    let n = allocations_during(|| {
        for t in &topics {
            trie.for_each_match_mut(t.as_bytes(), |v| *v += 1);
        }
    });
    assert_eq!(n, 0, "for_each_match_mut allocated {n} times");
}

#[test]
fn validating_and_reference_matching_allocate_nothing() {
    let n = allocations_during(|| {
        let ok = validate_topic_name(std::hint::black_box(b"site/1/device/2/temp"), 16).is_ok();
        let m = filter_matches(
            std::hint::black_box(b"$share/g/site/+/device/#"),
            b"site/1/device/2/temp",
        );
        assert!(ok && m);
    });
    assert_eq!(n, 0);
}
