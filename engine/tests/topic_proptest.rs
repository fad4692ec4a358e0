//! Property tests: the subscription trie against the naive reference
//! matchers `filter_matches` / `plain_filter_matches`, and against a map
//! model under insert/remove.
//!
//! Levels come from small alphabets so that matches are common: empty
//! levels, `$` first levels, `+`, `#`, and `$share/{group}/` subscriptions,
//! which the trie stores under their inner filter as the broker does.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use ringmq_engine::topic::{
    filter_matches, parse_shared, plain_filter_matches, validate_topic_filter, validate_topic_name,
    TopicTrie,
};

const LEVELS_MAX: usize = 8;

/// Literal levels shared by filters and topics.
const LITERALS: &[&str] = &["a", "b", "", "$a", "$share", "g"];

fn literal() -> impl Strategy<Value = String> {
    prop::sample::select(LITERALS).prop_map(str::to_owned)
}

/// A topic name: 1..=4 literal levels.
fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(literal(), 1..=4)
        .prop_map(|levels| levels.join("/"))
        // A single empty level is the empty name, which is invalid.
        .prop_filter("valid name", |t| {
            validate_topic_name(t.as_bytes(), LEVELS_MAX).is_ok()
        })
}

/// A valid plain filter: levels from the literals and `+`, optionally a
/// final `#`.
fn plain_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => literal(), 1 => Just("+".to_owned())];
    (prop::collection::vec(level, 0..=4), any::<bool>())
        .prop_filter_map("filter needs at least one level", |(mut levels, hash)| {
            if hash {
                levels.push("#".to_owned());
            }
            (!levels.is_empty()).then(|| levels.join("/"))
        })
        // "$share" + "a" makes "$share/a": a malformed shared subscription.
        .prop_filter("valid filter", |f| {
            validate_topic_filter(f.as_bytes(), LEVELS_MAX).is_ok()
        })
}

/// A valid filter, shared (`$share/{g|h}/{plain}`) one time in four.
fn filter() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => plain_filter(),
        1 => (prop::sample::select(&["g", "h"][..]), plain_filter())
            .prop_map(|(group, inner)| format!("$share/{group}/{inner}")),
    ]
}

/// Any string over the bytes that matter, valid as a filter or not.
fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&b"a$/+#sg"[..]), 0..=10)
}

/// Values visited by `for_each_match`, sorted.
fn trie_matches(trie: &TopicTrie<u32>, topic: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    trie.for_each_match(topic, |v| out.push(*v));
    out.sort_unstable();
    out
}

/// Ids in the values visited by `for_each_match_mut`, sorted.
fn trie_matches_mut(trie: &mut TopicTrie<Vec<u32>>, topic: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    trie.for_each_match_mut(topic, |ids| out.extend(ids.iter().copied()));
    out.sort_unstable();
    out
}

/// The trie key of a subscription: its inner filter when shared.
fn key(filter: &[u8]) -> &[u8] {
    match parse_shared(filter) {
        Ok(Some(shared)) => shared.filter,
        _ => filter,
    }
}

/// Values of the model keys that match `topic` as plain filters, sorted.
fn model_matches(model: &BTreeMap<Vec<u8>, u32>, topic: &[u8]) -> Vec<u32> {
    let mut out: Vec<u32> = model
        .iter()
        .filter(|(f, _)| plain_filter_matches(f, topic))
        .map(|(_, v)| *v)
        .collect();
    out.sort_unstable();
    out
}

#[derive(Clone, Debug)]
enum Op {
    Insert(String),
    Remove(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![3 => filter().prop_map(Op::Insert), 2 => filter().prop_map(Op::Remove)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For random subscription sets and topics, the trie (keyed by inner
    /// filter, subscription ids in the value) yields exactly the
    /// subscriptions `filter_matches` accepts, each once (ids are distinct,
    /// so a double visit would show as a duplicate).
    #[test]
    fn trie_matches_equal_reference(
        filters in prop::collection::btree_set(filter(), 0..40),
        topics in prop::collection::vec(topic(), 1..16),
    ) {
        let filters: Vec<String> = filters.into_iter().collect();
        let mut trie = TopicTrie::<Vec<u32>>::new();
        for (i, f) in filters.iter().enumerate() {
            prop_assert_eq!(validate_topic_filter(f.as_bytes(), LEVELS_MAX), Ok(()), "{}", f);
            trie.get_or_insert(key(f.as_bytes())).push(i as u32);
        }
        let keys: BTreeSet<&[u8]> = filters.iter().map(|f| key(f.as_bytes())).collect();
        prop_assert_eq!(trie.len(), keys.len());
        for t in &topics {
            prop_assert_eq!(validate_topic_name(t.as_bytes(), LEVELS_MAX), Ok(()), "{}", t);
            let expected: Vec<u32> = (0..filters.len() as u32)
                .filter(|i| filter_matches(filters[*i as usize].as_bytes(), t.as_bytes()))
                .collect();
            let mut visited = Vec::new();
            trie.for_each_match(t.as_bytes(), |ids| visited.extend(ids.iter().copied()));
            visited.sort_unstable();
            prop_assert_eq!(&visited, &expected, "topic {:?}", t);
            prop_assert_eq!(&trie_matches_mut(&mut trie, t.as_bytes()), &expected, "topic {:?}", t);
        }
    }

    /// The trie agrees with `plain_filter_matches` on any input, valid or not.
    #[test]
    fn trie_matches_equal_reference_on_arbitrary_bytes(
        filters in prop::collection::btree_set(any_bytes(), 0..24),
        topics in prop::collection::vec(any_bytes(), 1..16),
    ) {
        let mut trie = TopicTrie::<u32>::new();
        let mut model = BTreeMap::new();
        for (i, f) in filters.iter().enumerate() {
            *trie.get_or_insert(f) = i as u32;
            model.insert(f.clone(), i as u32);
        }
        for t in &topics {
            prop_assert_eq!(trie_matches(&trie, t), model_matches(&model, t), "topic {:?}", t);
        }
    }

    /// Insert/remove sequences leave the trie equal to a map model: same
    /// len, same exact lookups, same matches; removing everything prunes the
    /// trie back to its root. Keys are taken literally, `$share/` ones too.
    #[test]
    fn insert_remove_sequences_follow_the_model(
        ops in prop::collection::vec(op(), 0..80),
        topics in prop::collection::vec(topic(), 1..12),
    ) {
        let mut trie = TopicTrie::<u32>::new();
        let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Insert(f) => {
                    *trie.get_or_insert(f.as_bytes()) = i as u32;
                    model.insert(f.as_bytes().to_vec(), i as u32);
                }
                Op::Remove(f) => {
                    prop_assert_eq!(trie.remove(f.as_bytes()), model.remove(f.as_bytes()), "remove {}", f);
                    prop_assert_eq!(trie.get(f.as_bytes()), None);
                }
            }
            prop_assert_eq!(trie.len(), model.len());
            prop_assert_eq!(trie.is_empty(), model.is_empty());
        }
        for (f, v) in &model {
            prop_assert_eq!(trie.get(f), Some(v));
        }
        for t in &topics {
            prop_assert_eq!(trie_matches(&trie, t.as_bytes()), model_matches(&model, t.as_bytes()), "topic {:?}", t);
        }
        let keys: BTreeSet<Vec<u8>> = model.keys().cloned().collect();
        for f in keys {
            prop_assert!(trie.remove(&f).is_some());
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1, "every node but the root is pruned");
    }
}
