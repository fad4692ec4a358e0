//! Proves that matching a topic against a warm trie never touches the heap:
//! a counting global allocator wraps the system one, and counts only on the
//! thread and in the window where counting is switched on (libtest runs
//! other tests and its own bookkeeping on other threads).

mod counting_alloc;

use counting_alloc::allocations_in;
use ringmq_engine::topic::{filter_matches, validate_topic_name, TopicTrie};

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
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 16])));
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
    let n = allocations_in(|| {
        for _ in 0..10 {
            for t in &topics {
                trie.for_each_match(t.as_bytes(), |v| visited += v);
            }
        }
    });
    assert_eq!(n, 0, "for_each_match allocated {n} times");
    assert_eq!(visited, warm * 10);

    let n = allocations_in(|| {
        for t in &topics {
            trie.for_each_match_mut(t.as_bytes(), |v| *v += 1);
        }
    });
    assert_eq!(n, 0, "for_each_match_mut allocated {n} times");
}

#[test]
fn validating_and_reference_matching_allocate_nothing() {
    let n = allocations_in(|| {
        let ok = validate_topic_name(std::hint::black_box(b"site/1/device/2/temp"), 16).is_ok();
        let m = filter_matches(
            std::hint::black_box(b"$share/g/site/+/device/#"),
            b"site/1/device/2/temp",
        );
        assert!(ok && m);
    });
    assert_eq!(n, 0);
}
