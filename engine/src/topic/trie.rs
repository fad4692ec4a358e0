//! The subscription trie: topic filters to values, one allocation-free walk
//! per published topic.
//!
//! Layout. Nodes live in a slab (`Vec<Node>`) addressed by `u32`; freed
//! nodes go on a free list and are reused. A node is one filter level. Its
//! children are keyed by level bytes, with dedicated slots for `+` and `#`:
//!
//! ```text
//!   root ─"site"─▶ n1 ─"7"─▶ n2 ─"temp"─▶ n3      "site/7/temp"
//!    │             └─ plus ─▶ n4 ─"temp"─▶ n5      "site/+/temp"
//!    └─ hash ─▶ n6                                 "#"
//! ```
//!
//! Keys are plain topic filters, taken literally. A shared subscription
//! `$share/{group}/{filter}` is keyed by its inner `filter` (what
//! [`super::parse_shared`] returns) and its groups live in the value: that
//! is how the broker's router stores them, and it keeps one walk per topic
//! however many groups share a filter. A key that itself starts with
//! `$share/` is a literal filter (the inner filter of
//! `$share/g/$share/h/x` is the literal `$share/h/x`).
//!
//! Values are kept in a vector parallel to the nodes, so the walk borrows the
//! structure immutably while handing out `&mut T`: one walk serves both
//! [`TopicTrie::for_each_match`] and [`TopicTrie::for_each_match_mut`].
//!
//! Child maps are a `Vec` scanned linearly up to [`SMALL_CHILDREN_MAX`]
//! entries (most nodes: a few metrics per device) and a `HashMap` above it
//! (the node with a hundred thousand device ids). Insert, get and remove
//! allocate (control plane); the match walk never does.

use std::collections::HashMap;

use super::{levels, LEVEL_SEPARATOR};

/// No node. Also the bound on the slab: at most `u32::MAX` nodes.
const NONE: u32 = u32::MAX;

/// The root node; never freed.
const ROOT: u32 = 0;

/// A node's children stay a vector scanned linearly (the key length sits in
/// the fat pointer, so most mismatches cost no memory access) up to this many
/// entries, then become a hash map. Measured on short level keys: a linear
/// scan beats std's SipHash map up to about 8 entries, binary search never
/// beats both; see docs/benchmarks.md.
pub const SMALL_CHILDREN_MAX: usize = 8;

/// Children keyed by level bytes.
#[derive(Debug)]
enum Children {
    /// At most [`SMALL_CHILDREN_MAX`] entries, unordered.
    Small(Vec<(Box<[u8]>, u32)>),
    /// More than [`SMALL_CHILDREN_MAX`] entries. Keyed SipHash (std's
    /// `RandomState`): filters come from clients, so the hash must not be
    /// one they can collide on purpose. Boxed because few nodes are large:
    /// an inline 48-byte map would make every node 64 bytes instead of 40.
    #[allow(clippy::box_collection)]
    Large(Box<HashMap<Box<[u8]>, u32>>),
}

impl Children {
    const fn new() -> Self {
        Children::Small(Vec::new())
    }

    #[inline]
    fn get(&self, key: &[u8]) -> Option<u32> {
        match self {
            Children::Small(v) => v.iter().find(|(k, _)| **k == *key).map(|(_, n)| *n),
            Children::Large(m) => m.get(key).copied(),
        }
    }

    /// Inserts `key` -> `node`; `key` must be absent.
    fn insert(&mut self, key: &[u8], node: u32) {
        match self {
            Children::Small(v) => {
                debug_assert!(
                    v.iter().all(|(k, _)| **k != *key),
                    "topic trie: child inserted twice"
                );
                if v.len() < SMALL_CHILDREN_MAX {
                    v.push((key.into(), node));
                } else {
                    let mut m: HashMap<Box<[u8]>, u32> = std::mem::take(v).into_iter().collect();
                    m.insert(key.into(), node);
                    *self = Children::Large(Box::new(m));
                }
            }
            Children::Large(m) => {
                let old = m.insert(key.into(), node);
                debug_assert!(old.is_none(), "topic trie: child inserted twice");
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<u32> {
        match self {
            Children::Small(v) => {
                let i = v.iter().position(|(k, _)| **k == *key)?;
                Some(v.swap_remove(i).1)
            }
            Children::Large(m) => {
                let removed = m.remove(key);
                // Back to a vector well below the threshold (hysteresis, so a
                // node at the boundary does not flip on every change).
                if m.len() <= SMALL_CHILDREN_MAX / 2 {
                    *self = Children::Small(m.drain().collect());
                }
                removed
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Small(v) => v.is_empty(),
            Children::Large(m) => m.is_empty(),
        }
    }
}

#[derive(Debug)]
struct Node {
    children: Children,
    /// The `+` child, or [`NONE`].
    plus: u32,
    /// The `#` child, or [`NONE`].
    hash: u32,
    /// [`NONE`] for the root and for free nodes.
    parent: u32,
}

impl Node {
    const fn new(parent: u32) -> Self {
        Node {
            children: Children::new(),
            plus: NONE,
            hash: NONE,
            parent,
        }
    }

    fn has_no_edges(&self) -> bool {
        self.plus == NONE && self.hash == NONE && self.children.is_empty()
    }
}

/// A trie of topic filters, each holding a `T`.
///
/// Keys are plain topic filters (validated with
/// [`super::validate_topic_filter`]; for a shared subscription, its inner
/// filter), taken literally. For any set of stored keys and any topic,
/// [`TopicTrie::for_each_match`] visits exactly the values of the keys for
/// which [`super::plain_filter_matches`] holds, each once.
///
/// The walk recurses once per topic level, and only as deep as the deepest
/// stored filter, so its stack depth is bounded by the filters' `levels_max`.
pub struct TopicTrie<T> {
    nodes: Vec<Node>,
    /// `values[i]` is node `i`'s value; same length as `nodes`.
    values: Vec<Option<T>>,
    /// Indices of freed nodes, reused before the slab grows.
    free: Vec<u32>,
    /// Number of `Some` in `values`.
    len: usize,
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        TopicTrie {
            nodes: vec![Node::new(NONE)],
            values: vec![None],
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> core::fmt::Debug for TopicTrie<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TopicTrie")
            .field("len", &self.len)
            .field("node_count", &self.node_count())
            .finish_non_exhaustive()
    }
}

impl<T: Default> TopicTrie<T> {
    /// An empty trie (one root node).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `filter`, inserted as `T::default()` if absent.
    /// Allocates the missing nodes and their keys (control plane).
    pub fn get_or_insert(&mut self, filter: &[u8]) -> &mut T {
        let mut node = ROOT;
        for level in levels(filter) {
            node = match self.child(node, level) {
                Some(child) => child,
                None => self.add_child(node, level),
            };
        }
        let slot = &mut self.values[node as usize];
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(T::default)
    }
}

impl<T> TopicTrie<T> {
    /// The value stored for exactly `filter` (no wildcard matching).
    pub fn get(&self, filter: &[u8]) -> Option<&T> {
        self.find(filter)
            .and_then(|n| self.values[n as usize].as_ref())
    }

    /// The value stored for exactly `filter` (no wildcard matching).
    pub fn get_mut(&mut self, filter: &[u8]) -> Option<&mut T> {
        self.find(filter)
            .and_then(|n| self.values[n as usize].as_mut())
    }

    /// Removes `filter`'s value and frees the nodes that no longer lead to
    /// any value; their slots are reused by later inserts.
    pub fn remove(&mut self, filter: &[u8]) -> Option<T> {
        let mut node = self.find(filter)?;
        let value = self.values[node as usize].take()?;
        self.len -= 1;
        // Prune upwards while the node holds nothing. The edges taken
        // upwards are the filter's own levels, reversed: no search by value.
        for level in levels(filter).rev() {
            let n = &self.nodes[node as usize];
            if node == ROOT || self.values[node as usize].is_some() || !n.has_no_edges() {
                break;
            }
            let parent = n.parent;
            self.detach(parent, level);
            self.free_node(node);
            node = parent;
        }
        Some(value)
    }

    /// Calls `f` with the value of every stored filter that matches topic
    /// name `topic`, each once, in no particular order. Never allocates.
    pub fn for_each_match(&self, topic: &[u8], mut f: impl FnMut(&T)) {
        let values = &self.values;
        walk_topic(&self.nodes, topic, &mut |n| {
            if let Some(v) = &values[n as usize] {
                f(v);
            }
        });
    }

    /// [`TopicTrie::for_each_match`] with mutable access. Never allocates.
    pub fn for_each_match_mut(&mut self, topic: &[u8], mut f: impl FnMut(&mut T)) {
        let values = &mut self.values;
        walk_topic(&self.nodes, topic, &mut |n| {
            if let Some(v) = &mut values[n as usize] {
                f(v);
            }
        });
    }

    /// Number of stored filters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No stored filter.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nodes in use, the root included: 1 when empty. For memory
    /// accounting and for tests that check pruning.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn find(&self, filter: &[u8]) -> Option<u32> {
        levels(filter).try_fold(ROOT, |node, level| self.child(node, level))
    }

    #[inline]
    fn child(&self, node: u32, level: &[u8]) -> Option<u32> {
        let n = &self.nodes[node as usize];
        let child = match level {
            b"+" => n.plus,
            b"#" => n.hash,
            key => return n.children.get(key),
        };
        (child != NONE).then_some(child)
    }

    /// Adds an empty child of `parent` for `level`, which must be absent.
    fn add_child(&mut self, parent: u32, level: &[u8]) -> u32 {
        let child = self.alloc_node(parent);
        let n = &mut self.nodes[parent as usize];
        match level {
            b"+" => n.plus = child,
            b"#" => n.hash = child,
            key => n.children.insert(key, child),
        }
        child
    }

    /// Unlinks `parent`'s child for `level`.
    fn detach(&mut self, parent: u32, level: &[u8]) {
        let n = &mut self.nodes[parent as usize];
        match level {
            b"+" => n.plus = NONE,
            b"#" => n.hash = NONE,
            key => {
                let removed = n.children.remove(key);
                debug_assert!(removed.is_some(), "topic trie: detached a missing child");
            }
        }
    }

    fn alloc_node(&mut self, parent: u32) -> u32 {
        if let Some(i) = self.free.pop() {
            debug_assert!(self.values[i as usize].is_none());
            self.nodes[i as usize] = Node::new(parent);
            return i;
        }
        let i = self.nodes.len();
        assert!(
            i < NONE as usize,
            "topic trie: more than u32::MAX - 1 nodes"
        );
        self.nodes.push(Node::new(parent));
        self.values.push(None);
        i as u32
    }

    fn free_node(&mut self, node: u32) {
        debug_assert!(node != ROOT && self.values[node as usize].is_none());
        // Drop the (empty) child map now rather than when the slot is reused.
        self.nodes[node as usize] = Node::new(NONE);
        self.free.push(node);
    }
}

/// [`walk`] from the root for topic name `topic` (wildcards at the root do
/// not match a first level starting with `$`: see `dollar_first`).
fn walk_topic<F: FnMut(u32)>(nodes: &[Node], topic: &[u8], visit: &mut F) {
    walk(nodes, ROOT, topic, topic.first() == Some(&b'$'), visit);
}

/// Visits every node whose filter matches the rest of the topic from
/// `node`. `topic` is the remaining levels (at least one, possibly empty).
/// `dollar_first` is true only at the root of a topic whose first level
/// starts with `$`: wildcards there must not match it ([MQTT-4.7.2-1]).
///
/// Recursion depth: one per topic level consumed, and only along existing
/// trie nodes, so it never exceeds the deepest stored filter.
fn walk<F: FnMut(u32)>(nodes: &[Node], node: u32, topic: &[u8], dollar_first: bool, visit: &mut F) {
    let n = &nodes[node as usize];
    let mut split = topic.splitn(2, |b| *b == LEVEL_SEPARATOR);
    let level = split.next().unwrap_or_default();
    let rest = split.next();
    if !dollar_first {
        if n.hash != NONE {
            // `#` matches this level and everything after it.
            visit(n.hash);
        }
        if n.plus != NONE {
            descend(nodes, n.plus, rest, visit);
        }
    }
    if let Some(child) = n.children.get(level) {
        descend(nodes, child, rest, visit);
    }
}

/// `node` has matched one more topic level; `rest` is what is left of the
/// topic, `None` when that was the last level.
#[inline]
fn descend<F: FnMut(u32)>(nodes: &[Node], node: u32, rest: Option<&[u8]>, visit: &mut F) {
    match rest {
        Some(rest) => walk(nodes, node, rest, false, visit),
        None => {
            visit(node);
            // `a/#` matches `a` (MQTT 5.0 4.7.1.2).
            let hash = nodes[node as usize].hash;
            if hash != NONE {
                visit(hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(trie: &TopicTrie<u32>, topic: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |v| out.push(*v));
        out.sort_unstable();
        out
    }

    fn trie_of(filters: &[&str]) -> TopicTrie<u32> {
        let mut t = TopicTrie::new();
        for (i, f) in filters.iter().enumerate() {
            *t.get_or_insert(f.as_bytes()) = i as u32;
        }
        t
    }

    #[test]
    fn exact_plus_and_hash() {
        let t = trie_of(&["a/b", "a/+", "a/#", "#", "+/b", "a/b/c", "+"]);
        assert_eq!(matches(&t, b"a/b"), [0, 1, 2, 3, 4]);
        assert_eq!(matches(&t, b"a/b/c"), [2, 3, 5]);
        assert_eq!(matches(&t, b"x"), [3, 6]);
    }

    #[test]
    fn mqtt_4_7_1_2_hash_matches_the_parent_level() {
        let t = trie_of(&["a/#", "a/+/#", "#"]);
        assert_eq!(matches(&t, b"a"), [0, 2]);
        assert_eq!(matches(&t, b"a/b"), [0, 1, 2]);
    }

    #[test]
    fn mqtt_4_7_2_1_root_wildcards_skip_dollar_topics() {
        let t = trie_of(&["#", "+/x", "$SYS/#", "$SYS/+", "+", "$SYS"]);
        assert_eq!(matches(&t, b"$SYS/x"), [2, 3]);
        assert_eq!(matches(&t, b"$SYS"), [2, 5]);
        assert_eq!(matches(&t, b"a/x"), [0, 1]);
        assert_eq!(matches(&t, b"a/$x"), [0]);
    }

    #[test]
    fn mqtt_4_7_1_empty_levels_are_levels() {
        let t = trie_of(&["a//b", "a/+/b", "/+", "+/+", "a/"]);
        assert_eq!(matches(&t, b"a//b"), [0, 1]);
        assert_eq!(matches(&t, b"/x"), [2, 3]);
        assert_eq!(matches(&t, b"a/"), [3, 4]);
        assert_eq!(matches(&t, b"/"), [2, 3]);
    }

    #[test]
    fn mqtt_4_8_2_shared_subscriptions_are_keyed_by_their_inner_filter() {
        use crate::topic::{parse_shared, plain_filter_matches};
        // What the broker does: one key per inner filter, groups in the value.
        let mut t = TopicTrie::<Vec<&str>>::new();
        for full in [
            "$share/g/#",
            "$share/h/#",
            "#",
            "$share/g/a/+",
            "$share/g/$SYS/#",
        ] {
            let inner = match parse_shared(full.as_bytes()) {
                Ok(Some(shared)) => shared.filter,
                _ => full.as_bytes(),
            };
            t.get_or_insert(inner).push(full);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(b"#").map(Vec::len), Some(3));
        let mut seen = Vec::new();
        t.for_each_match(b"a/b", |v| seen.extend(v.iter().copied()));
        seen.sort_unstable();
        assert_eq!(seen, ["#", "$share/g/#", "$share/g/a/+", "$share/h/#"]);
        // [MQTT-4.7.2-1] through the inner filter: "$share/g/#" skips $SYS.
        let mut seen = Vec::new();
        t.for_each_match(b"$SYS/x", |v| seen.extend(v.iter().copied()));
        assert_eq!(seen, ["$share/g/$SYS/#"]);
        // A key starting with "$share/" is literal.
        let lit = trie_of(&["$share/h/x"]);
        assert_eq!(matches(&lit, b"$share/h/x"), [0]);
        assert_eq!(matches(&lit, b"x"), [] as [u32; 0]);
        assert!(plain_filter_matches(b"$share/h/x", b"$share/h/x"));
    }

    #[test]
    fn get_is_exact_not_matching() {
        let mut t = trie_of(&["a/+", "a/#"]);
        assert_eq!(t.get(b"a/+"), Some(&0));
        assert_eq!(t.get(b"a/b"), None);
        assert_eq!(t.get(b"a"), None);
        *t.get_mut(b"a/#").unwrap_or(&mut 0) = 9;
        assert_eq!(t.get(b"a/#"), Some(&9));
    }

    #[test]
    fn remove_prunes_and_reuses_nodes() {
        let mut t = trie_of(&["a/b/c", "a/b", "a/+/b", "x/+/#"]);
        let full = t.node_count();
        assert_eq!(t.remove(b"a/b/c"), Some(0));
        assert_eq!(t.remove(b"a/b/c"), None);
        assert_eq!(t.get(b"a/b"), Some(&1)); // the inner node stays: it holds a value
        assert_eq!(t.remove(b"a/b"), Some(1));
        assert_eq!(t.get(b"a/+/b"), Some(&2));
        assert_eq!(t.remove(b"a/+/b"), Some(2));
        assert_eq!(t.remove(b"x/+/#"), Some(3));
        assert!(t.is_empty());
        assert_eq!(t.node_count(), 1);
        let slab = t.nodes.len();
        for f in ["a/b/c", "a/b", "a/+/b", "x/+/#"] {
            t.get_or_insert(f.as_bytes());
        }
        assert_eq!(t.node_count(), full);
        assert_eq!(t.nodes.len(), slab, "freed nodes are reused");
    }

    #[test]
    fn remove_of_a_prefix_without_value_is_none() {
        let mut t = trie_of(&["a/b"]);
        assert_eq!(t.remove(b"a"), None);
        assert_eq!(t.remove(b"a/b/c"), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn children_switch_to_a_map_and_back() {
        let mut t = TopicTrie::<u32>::new();
        let n = SMALL_CHILDREN_MAX * 3;
        for i in 0..n {
            *t.get_or_insert(format!("d/{i}").as_bytes()) = i as u32;
        }
        assert!(matches!(t.nodes[1].children, Children::Large(_)));
        for i in 0..n {
            assert_eq!(matches(&t, format!("d/{i}").as_bytes()), [i as u32]);
        }
        for i in 0..n - 1 {
            assert_eq!(t.remove(format!("d/{i}").as_bytes()), Some(i as u32));
        }
        assert!(matches!(t.nodes[1].children, Children::Small(_)));
        assert_eq!(
            matches(&t, format!("d/{}", n - 1).as_bytes()),
            [n as u32 - 1]
        );
    }

    #[test]
    fn nodes_stay_small() {
        assert_eq!(std::mem::size_of::<Children>(), 24);
        assert_eq!(std::mem::size_of::<Node>(), 40);
    }

    #[test]
    fn for_each_match_mut_updates_values() {
        let mut t = trie_of(&["a/+", "a/#", "b"]);
        t.for_each_match_mut(b"a/x", |v| *v += 10);
        assert_eq!(t.get(b"a/+"), Some(&10));
        assert_eq!(t.get(b"a/#"), Some(&11));
        assert_eq!(t.get(b"b"), Some(&2));
    }
}
