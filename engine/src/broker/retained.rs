//! The retained-message index of one shard: a tree keyed by topic level,
//! walked by a topic filter on SUBSCRIBE (the inverse of the router trie).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::codec::Publish;

/// A retained message and the time it was received (for Message Expiry).
#[derive(Clone, Debug)]
pub(crate) struct Retained {
    pub(crate) publish: Publish,
    pub(crate) received_at_ms: u64,
}

#[derive(Default)]
struct Node {
    children: HashMap<Bytes, Node>,
    value: Option<Retained>,
}

/// Retained messages by topic, with count and byte totals for the limits.
#[derive(Default)]
pub(crate) struct RetainedStore {
    root: Node,
    pub(crate) count: usize,
    pub(crate) payload_bytes: usize,
}

fn levels(topic: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    let len = topic.len();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let rest = topic.get(start..).unwrap_or_default();
        match rest.iter().position(|b| *b == b'/') {
            Some(i) => {
                let level = topic.slice(start..start + i);
                start += i + 1;
                Some(level)
            }
            None => {
                done = true;
                Some(topic.slice(start..len))
            }
        }
    })
}

/// The room of a `$SYS` value's buffer, in bytes: a statistic that
/// changes length ("9 seconds", "10 seconds"; a counter gaining a digit)
/// is written into the buffer it had as long as it fits. Without room a
/// new length took a new block, allocated wherever the allocator was
/// then: during a burst of connections, among their client ids, and 42
/// such values (seven per shard at six shards) kept 23 pages of 64 KiB
/// resident after those connections closed (docs/benchmarks.md, "Memory
/// given back after 100,000 closes on six shards").
pub(crate) const SYS_VALUE_ROOM_BYTES: usize = 32;

/// Whether a topic's retained value gets [`SYS_VALUE_ROOM_BYTES`] of room:
/// the `$SYS/` statistics (a few dozen topics per shard, rewritten every
/// `sys_interval_s`). Any other retained message keeps a buffer of its
/// exact length: room in every one of a million small retained messages
/// would cost more than it saves.
fn gets_room(topic: &[u8], payload_len: usize) -> bool {
    topic.starts_with(b"$SYS/") && payload_len <= SYS_VALUE_ROOM_BYTES
}

/// A copy of `value` in a buffer of [`SYS_VALUE_ROOM_BYTES`], shared
/// from the start (the `bytes` crate's own header, allocated here once):
/// thawed again as the only handle (`Bytes::try_into_mut`) it keeps its
/// whole room and header, and frozen again it allocates nothing. A
/// vec-backed buffer with spare room would instead get a new header at
/// every freeze.
fn with_room(value: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(SYS_VALUE_ROOM_BYTES.max(value.len()));
    buf.extend_from_slice(value);
    // An empty handle split off the front makes the buffer shared; it is
    // dropped at once, so `buf` is the only handle again.
    drop(buf.split_to(0));
    buf.freeze()
}

/// The payload to keep when a topic's retained message is replaced: the
/// old one when equal; the new bytes written into the old buffer when
/// nothing else holds it (no delivery in flight) and they fit it exactly,
/// or, for a value with room ([`gets_room`]), within its room. So a value
/// updated in place (a `$SYS` counter) keeps its first block instead of
/// leaving a new long-lived one wherever the allocator put the copy (a
/// page of a burst of connections, kept resident by it). Else the new
/// copy, given room again where it gets room.
fn reuse_payload(old: Bytes, new: Bytes, roomy: bool) -> Bytes {
    if old == new {
        return old;
    }
    if old.len() == new.len() || roomy {
        if let Ok(mut buf) = old.try_into_mut() {
            // Exactly its capacity: a vec-backed buffer freezes without a
            // new header. Within the room: only a buffer made by
            // `with_room` (shared, so no header either) has room.
            let fits = buf.capacity() == new.len()
                || (roomy && new.len() <= buf.capacity() && buf.capacity() <= SYS_VALUE_ROOM_BYTES);
            if fits {
                buf.clear();
                buf.extend_from_slice(&new);
                return buf.freeze();
            }
        }
    }
    if roomy {
        with_room(&new)
    } else {
        new
    }
}

impl RetainedStore {
    /// Store (or, with an empty payload, clear) the retained message of a
    /// topic. Returns false when a new topic would exceed the limits.
    ///
    /// Replacing a topic's message keeps the old message's topic (the
    /// tree's level keys are slices of it already) and, when equal, its
    /// payload: the new copies are dropped here, so a topic updated again
    /// and again (the `$SYS` statistics every `sys_interval_s`) leaves at
    /// most a new payload behind, not a new topic copy and its shared
    /// header each time. Such long-lived blocks, allocated while many
    /// connections were open, each kept a 64 KiB allocator page resident
    /// after the connections closed (docs/benchmarks.md, "Memory given
    /// back after closes").
    pub(crate) fn set(&mut self, mut r: Retained, count_max: usize, bytes_max: usize) -> bool {
        let topic = r.publish.topic.clone();
        if r.publish.payload.is_empty() {
            self.clear(&topic);
            return true;
        }
        let mut node = &mut self.root;
        for level in levels(&topic) {
            node = node.children.entry(level).or_default();
        }
        let old_bytes = node.value.as_ref().map_or(0, |o| o.publish.payload.len());
        let new_bytes = r.publish.payload.len();
        let new_topic = node.value.is_none();
        if (new_topic && self.count >= count_max)
            || self.payload_bytes - old_bytes + new_bytes > bytes_max
        {
            return false;
        }
        if new_topic {
            self.count += 1;
        }
        self.payload_bytes = self.payload_bytes - old_bytes + new_bytes;
        let roomy = gets_room(&topic, new_bytes);
        if let Some(old) = node.value.take() {
            if old.publish.topic == r.publish.topic {
                r.publish.topic = old.publish.topic;
            }
            r.publish.payload = reuse_payload(old.publish.payload, r.publish.payload, roomy);
        } else if roomy {
            r.publish.payload = with_room(&r.publish.payload);
        }
        node.value = Some(r);
        true
    }

    fn clear(&mut self, topic: &Bytes) {
        fn walk(node: &mut Node, mut levels: impl Iterator<Item = Bytes>) -> Option<Retained> {
            match levels.next() {
                None => node.value.take(),
                Some(level) => {
                    let child = node.children.get_mut(&level)?;
                    let out = walk(child, levels);
                    if child.value.is_none() && child.children.is_empty() {
                        node.children.remove(&level);
                    }
                    out
                }
            }
        }
        if let Some(old) = walk(&mut self.root, levels(topic)) {
            self.count -= 1;
            self.payload_bytes -= old.publish.payload.len();
        }
    }

    /// Every retained message whose topic matches `filter`, appended to `out`.
    /// A leading wildcard does not match `$` topics ([MQTT-4.7.2-1]).
    pub(crate) fn matching(&self, filter: &[u8], out: &mut Vec<Retained>) {
        let levels: Vec<&[u8]> = filter.split(|b| *b == b'/').collect();
        collect(&self.root, &levels, true, out);
    }

    /// Drop retained messages whose Message Expiry Interval has passed;
    /// returns their topics.
    pub(crate) fn remove_expired(&mut self, now_ms: u64) -> Vec<Bytes> {
        let mut expired = Vec::new();
        gather_expired(&self.root, now_ms, &mut expired);
        for topic in &expired {
            self.clear(topic);
        }
        expired
    }
}

fn gather_expired(node: &Node, now_ms: u64, out: &mut Vec<Bytes>) {
    if let Some(r) = &node.value {
        if is_expired(r, now_ms) {
            out.push(r.publish.topic.clone());
        }
    }
    for child in node.children.values() {
        gather_expired(child, now_ms, out);
    }
}

pub(crate) fn is_expired(r: &Retained, now_ms: u64) -> bool {
    match r.publish.properties.message_expiry_interval_s {
        Some(s) => now_ms.saturating_sub(r.received_at_ms) >= u64::from(s) * 1000,
        None => false,
    }
}

fn collect(node: &Node, levels: &[&[u8]], first: bool, out: &mut Vec<Retained>) {
    let Some((level, rest)) = levels.split_first() else {
        if let Some(v) = &node.value {
            out.push(v.clone());
        }
        return;
    };
    match *level {
        b"#" => {
            // '#' matches the parent level too ("a/#" matches "a").
            if let Some(v) = &node.value {
                if !first {
                    out.push(v.clone());
                }
            }
            all_below(node, first, out);
        }
        b"+" => {
            for (name, child) in &node.children {
                if first && name.first() == Some(&b'$') {
                    continue;
                }
                collect(child, rest, false, out);
            }
        }
        exact => {
            if let Some(child) = node.children.get(exact) {
                collect(child, rest, false, out);
            }
        }
    }
}

fn all_below(node: &Node, first: bool, out: &mut Vec<Retained>) {
    for (name, child) in &node.children {
        if first && name.first() == Some(&b'$') {
            continue;
        }
        if let Some(v) = &child.value {
            out.push(v.clone());
        }
        all_below(child, false, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(topic: &'static str, payload: &'static str) -> Retained {
        Retained {
            publish: Publish {
                topic: Bytes::from_static(topic.as_bytes()),
                payload: Bytes::from_static(payload.as_bytes()),
                retain: true,
                ..Publish::default()
            },
            received_at_ms: 0,
        }
    }

    fn topics(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.matching(filter.as_bytes(), &mut out);
        let mut t: Vec<String> = out
            .iter()
            .map(|r| String::from_utf8_lossy(&r.publish.topic).into_owned())
            .collect();
        t.sort();
        t
    }

    fn owned(topic: &str, payload: &str) -> Retained {
        let mut r = r("", "");
        r.publish.topic = Bytes::copy_from_slice(topic.as_bytes());
        r.publish.payload = Bytes::copy_from_slice(payload.as_bytes());
        r
    }

    fn stored(store: &RetainedStore, topic: &str) -> Bytes {
        let mut out = Vec::new();
        store.matching(topic.as_bytes(), &mut out);
        assert_eq!(out.len(), 1, "{topic}");
        out.remove(0).publish.payload
    }

    /// A value updated to one of the same length is written into the
    /// buffer it had, unless a delivery still holds that; a new length
    /// takes a buffer of its own (no room outside `$SYS/`); the byte total
    /// follows the values.
    #[test]
    fn an_update_of_the_same_length_keeps_the_payloads_buffer() {
        let mut s = RetainedStore::default();
        assert!(s.set(owned("site/n", "17"), 100, 1000));
        let first = stored(&s, "site/n").as_ptr();
        assert!(s.set(owned("site/n", "42"), 100, 1000));
        let now = stored(&s, "site/n");
        assert_eq!(&now[..], b"42");
        assert_eq!(now.as_ptr(), first, "same length: the buffer is kept");
        drop(now);
        // A longer value needs a new buffer.
        assert!(s.set(owned("site/n", "100"), 100, 1000));
        let longer = stored(&s, "site/n");
        assert_eq!(&longer[..], b"100");
        assert_ne!(longer.as_ptr(), first);
        // While a delivery holds the value, it is not overwritten.
        let in_flight = longer;
        assert!(s.set(owned("site/n", "101"), 100, 1000));
        assert_eq!(&in_flight[..], b"100");
        let after = stored(&s, "site/n");
        assert_eq!(&after[..], b"101");
        assert_ne!(after.as_ptr(), in_flight.as_ptr());
        assert_eq!(s.payload_bytes, 3);
        assert_eq!(s.count, 1);
    }

    /// A `$SYS` statistic that changes length ("9 seconds", "10 seconds",
    /// a counter gaining or losing digits) keeps the buffer it was first
    /// stored in while it fits the room, so the broker allocates no new
    /// long-lived block for it during a burst of connections; a delivery
    /// in flight keeps its bytes, and the new buffer has room again.
    #[test]
    fn a_sys_value_that_changes_length_keeps_its_buffer() {
        let mut s = RetainedStore::default();
        assert!(s.set(owned("$SYS/broker/uptime", "9 seconds"), 100, 1000));
        let first = stored(&s, "$SYS/broker/uptime").as_ptr();
        for v in [
            "10 seconds",
            "7",
            "18446744073709551615 seconds",
            "1041866.68",
        ] {
            assert!(s.set(owned("$SYS/broker/uptime", v), 100, 1000));
            let now = stored(&s, "$SYS/broker/uptime");
            assert_eq!(&now[..], v.as_bytes());
            assert_eq!(
                now.as_ptr(),
                first,
                "{v:?} fits the room: the buffer is kept"
            );
        }
        assert_eq!(s.payload_bytes, "1041866.68".len());
        // Longer than the room: a buffer of its own; shorter again: room
        // again (a new buffer, kept from then on).
        let long = "x".repeat(SYS_VALUE_ROOM_BYTES + 1);
        assert!(s.set(owned("$SYS/broker/uptime", &long), 100, 1000));
        assert_eq!(&stored(&s, "$SYS/broker/uptime")[..], long.as_bytes());
        assert!(s.set(owned("$SYS/broker/uptime", "11 seconds"), 100, 1000));
        let again = stored(&s, "$SYS/broker/uptime").as_ptr();
        assert!(s.set(owned("$SYS/broker/uptime", "100 seconds"), 100, 1000));
        assert_eq!(stored(&s, "$SYS/broker/uptime").as_ptr(), again);
        // A delivery holds the value: it keeps its bytes.
        let in_flight = stored(&s, "$SYS/broker/uptime");
        assert!(s.set(owned("$SYS/broker/uptime", "1000 seconds"), 100, 1000));
        assert_eq!(&in_flight[..], b"100 seconds");
        let after = stored(&s, "$SYS/broker/uptime");
        assert_eq!(&after[..], b"1000 seconds");
        assert_ne!(after.as_ptr(), in_flight.as_ptr());
        let after_ptr = after.as_ptr();
        drop((in_flight, after));
        assert!(s.set(owned("$SYS/broker/uptime", "1 second"), 100, 1000));
        let kept = stored(&s, "$SYS/broker/uptime");
        assert_eq!(&kept[..], b"1 second");
        assert_eq!(kept.as_ptr(), after_ptr, "the new buffer has room too");
        assert_eq!(s.payload_bytes, "1 second".len());
        assert_eq!(s.count, 1);
    }

    #[test]
    fn set_replace_clear_and_match() {
        let mut s = RetainedStore::default();
        for t in ["a", "a/b", "a/b/c", "a/x", "$SYS/up", "/lead"] {
            assert!(s.set(r(t, "v"), 100, 1000));
        }
        assert_eq!(s.count, 6);
        assert_eq!(topics(&s, "a/#"), ["a", "a/b", "a/b/c", "a/x"]);
        assert_eq!(topics(&s, "a/+"), ["a/b", "a/x"]);
        assert_eq!(topics(&s, "#"), ["/lead", "a", "a/b", "a/b/c", "a/x"]);
        assert_eq!(topics(&s, "+/up"), Vec::<String>::new());
        assert_eq!(topics(&s, "$SYS/#"), ["$SYS/up"]);
        assert_eq!(topics(&s, "+/lead"), ["/lead"]);
        assert!(s.set(r("a/b", "longer"), 100, 1000));
        assert_eq!(s.count, 6);
        assert_eq!(s.payload_bytes, 5 + 6);
        assert!(s.set(r("a/b", ""), 100, 1000));
        assert_eq!(s.count, 5);
        assert_eq!(topics(&s, "a/+"), ["a/x"]);
    }

    /// A topic's next message keeps the stored topic, and the stored
    /// payload when it is the same; a changed payload replaces it.
    #[test]
    fn a_replaced_message_keeps_the_stored_topic_and_an_equal_payload() {
        let owned = |topic: &str, payload: &str| Retained {
            publish: Publish {
                topic: Bytes::copy_from_slice(topic.as_bytes()),
                payload: Bytes::copy_from_slice(payload.as_bytes()),
                retain: true,
                ..Publish::default()
            },
            received_at_ms: 0,
        };
        let stored = |s: &RetainedStore| {
            let mut out = Vec::new();
            s.matching(b"$SYS/broker/uptime", &mut out);
            let [r] = <[Retained; 1]>::try_from(out).unwrap_or_else(|o| panic!("{}", o.len()));
            r.publish
        };
        let mut s = RetainedStore::default();
        assert!(s.set(owned("$SYS/broker/uptime", "10 seconds"), 100, 1000));
        let first = stored(&s);
        assert!(s.set(owned("$SYS/broker/uptime", "10 seconds"), 100, 1000));
        let same = stored(&s);
        assert_eq!(same.topic.as_ptr(), first.topic.as_ptr(), "topic kept");
        assert_eq!(
            same.payload.as_ptr(),
            first.payload.as_ptr(),
            "equal payload kept"
        );
        assert!(s.set(owned("$SYS/broker/uptime", "20 seconds"), 100, 1000));
        let next = stored(&s);
        assert_eq!(next.topic.as_ptr(), first.topic.as_ptr(), "topic kept");
        assert_eq!(&next.payload[..], b"20 seconds");
        assert_eq!((s.count, s.payload_bytes), (1, 10));
    }

    #[test]
    fn limits_refuse_new_topics() {
        let mut s = RetainedStore::default();
        assert!(s.set(r("a", "1"), 1, 1000));
        assert!(!s.set(r("b", "1"), 1, 1000));
        assert!(
            s.set(r("a", "22"), 1, 1000),
            "replacing an existing topic is allowed"
        );
        assert!(!s.set(r("a", "333"), 1, 2), "byte limit");
    }
}
