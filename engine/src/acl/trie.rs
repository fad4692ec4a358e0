//! One rule set's trie ([`RuleSet`]) and its walk: the read / write check
//! that never allocates, the subscribe coverage check ([`covers`]), and
//! the running [`Verdict`] of a check.
//!
//! Trie layout (one per rule set): a node per filter level; literal
//! children in a vector sorted by key (binary search, no hashing); a `+`
//! child; and, since `#` is always the last level, the grants of a `#`
//! rule stored on the node it follows:
//!
//! ```text
//!   root ─"a"─▶ n1 (end: "a")  (hash: "a/#")
//!    │          └─plus─▶ n2 (end: "a/+")
//!    └ hash: "#"
//! ```

use super::{Access, Action, Decision, RuleId};
use crate::topic;

/// No node / no rule.
pub(super) const NONE: u32 = u32::MAX;

/// The rules ending at one point of a trie: the first (lowest id) rule
/// allowing read, allowing write, and denying.
#[derive(Clone, Copy, Debug)]
struct Grants {
    read: RuleId,
    write: RuleId,
    deny: RuleId,
}

impl Grants {
    const EMPTY: Grants = Grants {
        read: NONE,
        write: NONE,
        deny: NONE,
    };

    fn add(&mut self, access: Access, rule: RuleId) {
        if access == Access::Deny {
            self.deny = self.deny.min(rule);
        }
        if access.grants(Action::Read) {
            self.read = self.read.min(rule);
        }
        if access.grants(Action::Write) {
            self.write = self.write.min(rule);
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    /// Sorted by key.
    children: Vec<(Box<[u8]>, u32)>,
    plus: u32,
    /// Rules whose filter ends here.
    end: Grants,
    /// Rules whose filter is this node's path then `#`.
    hash: Grants,
}

impl Node {
    const fn new() -> Node {
        Node {
            children: Vec::new(),
            plus: NONE,
            end: Grants::EMPTY,
            hash: Grants::EMPTY,
        }
    }
}

/// The check's running result: the first allowing and the first denying
/// rule seen so far.
#[derive(Clone, Copy, Debug)]
pub(super) struct Verdict {
    pub(super) allow: RuleId,
    pub(super) deny: RuleId,
}

impl Verdict {
    pub(super) const NONE: Verdict = Verdict {
        allow: NONE,
        deny: NONE,
    };

    #[inline]
    fn add(&mut self, g: &Grants, action: Action) {
        let allow = match action {
            Action::Read => g.read,
            Action::Write => g.write,
            Action::Subscribe => NONE,
        };
        self.allow = self.allow.min(allow);
        self.deny = self.deny.min(g.deny);
    }

    pub(super) fn decision(self) -> Decision {
        // Precedence: deny wins, then allow, then the default deny.
        if self.deny != NONE {
            Decision {
                allowed: false,
                rule: Some(self.deny),
            }
        } else if self.allow != NONE {
            Decision {
                allowed: true,
                rule: Some(self.allow),
            }
        } else {
            Decision {
                allowed: false,
                rule: None,
            }
        }
    }
}

/// The `/`-separated levels of a topic, empty ones included. A named type
/// (not `slice::Split` with a closure) so the walk can clone it, and with
/// the separator test inlined (a `fn` pointer predicate would be an
/// indirect call per byte).
#[derive(Clone)]
pub(super) struct Levels<'t> {
    /// `None` once the last level was returned.
    rest: Option<&'t [u8]>,
}

impl<'t> Iterator for Levels<'t> {
    type Item = &'t [u8];

    #[inline]
    fn next(&mut self) -> Option<&'t [u8]> {
        let rest = self.rest?;
        match rest.iter().position(|b| *b == topic::LEVEL_SEPARATOR) {
            Some(i) => {
                self.rest = rest.get(i + 1..);
                rest.get(..i)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[inline]
pub(super) fn levels_of(topic: &[u8]) -> Levels<'_> {
    Levels { rest: Some(topic) }
}

/// The rules of one scope (a user, a client id, the anonymous rules, or a
/// session's specialised patterns): a trie for read / write, and the list
/// for subscribe (a control-plane check).
#[derive(Clone, Debug, Default)]
pub(super) struct RuleSet {
    nodes: Vec<Node>,
    /// (filter, access, rule) in insertion order.
    pub(super) entries: Vec<(Box<[u8]>, Access, RuleId)>,
}

impl RuleSet {
    pub(super) fn insert(&mut self, filter: &[u8], access: Access, rule: RuleId) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::new());
        }
        self.entries.push((filter.into(), access, rule));
        let mut node = 0usize;
        let mut levels = levels_of(filter).peekable();
        while let Some(level) = levels.next() {
            if level == b"#" && levels.peek().is_none() {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.hash.add(access, rule);
                }
                return;
            }
            node = self.child(node, level);
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.end.add(access, rule);
        }
    }

    /// The child of `node` for `level`, created if absent.
    fn child(&mut self, node: usize, level: &[u8]) -> usize {
        let next = self.nodes.len();
        let Some(n) = self.nodes.get_mut(node) else {
            return node;
        };
        let existing = if level == b"+" {
            (n.plus != NONE).then_some(n.plus)
        } else {
            n.children
                .binary_search_by(|(k, _)| (**k).cmp(level))
                .ok()
                .and_then(|i| n.children.get(i))
                .map(|(_, c)| *c)
        };
        if let Some(c) = existing {
            return c as usize;
        }
        let id = u32::try_from(next).unwrap_or(NONE);
        if level == b"+" {
            n.plus = id;
        } else {
            let at = n
                .children
                .binary_search_by(|(k, _)| (**k).cmp(level))
                .unwrap_or_else(|i| i);
            n.children.insert(at, (level.into(), id));
        }
        self.nodes.push(Node::new());
        next
    }

    /// Adds what the rules of this set say about `topic` to `verdict`.
    /// Recursion depth is bounded by the trie's depth (at most
    /// [`super::ACL_FILTER_LEVELS_MAX`] plus the substituted levels of a pattern).
    #[inline]
    pub(super) fn check_topic(&self, action: Action, topic: &[u8], verdict: &mut Verdict) {
        if self.nodes.is_empty() {
            return;
        }
        // [MQTT-4.7.2-1]: a filter starting with a wildcard does not match
        // a topic name starting with `$`; the same holds for rules.
        let dollar = topic.first() == Some(&b'$');
        self.walk(0, levels_of(topic), dollar, action, verdict);
    }

    fn walk(
        &self,
        node: u32,
        mut levels: Levels<'_>,
        dollar: bool,
        action: Action,
        v: &mut Verdict,
    ) {
        let Some(n) = self.nodes.get(node as usize) else {
            return;
        };
        // `#` matches the parent level too ("a/#" matches "a").
        if !dollar {
            v.add(&n.hash, action);
        }
        let Some(level) = levels.next() else {
            v.add(&n.end, action);
            return;
        };
        if let Ok(i) = n.children.binary_search_by(|(k, _)| (**k).cmp(level)) {
            if let Some((_, child)) = n.children.get(i) {
                self.walk(*child, levels.clone(), false, action, v);
            }
        }
        if n.plus != NONE && !dollar {
            self.walk(n.plus, levels, false, action, v);
        }
    }

    /// Adds what the rules of this set say about SUBSCRIBE `filter`.
    pub(super) fn check_subscribe(&self, filter: &[u8], v: &mut Verdict) {
        for (rule_filter, access, rule) in &self.entries {
            if !covers(rule_filter, filter) {
                continue;
            }
            if *access == Access::Deny {
                v.deny = v.deny.min(*rule);
            } else if access.grants(Action::Subscribe) {
                v.allow = v.allow.min(*rule);
            }
        }
    }
}

/// Does rule filter `rule` match every topic that filter `filter` matches?
/// Both are plain (not `$share/`) filters.
pub(super) fn covers(rule: &[u8], filter: &[u8]) -> bool {
    // A rule starting with a wildcard matches no `$` topic; a filter
    // starting with a literal `$...` level matches only `$` topics.
    let rule_wild_first = matches!(levels_of(rule).next(), Some(b"+" | b"#"));
    if rule_wild_first && filter.first() == Some(&b'$') {
        return false;
    }
    let mut r = levels_of(rule);
    let mut f = levels_of(filter);
    loop {
        match (r.next(), f.next()) {
            (Some(b"#"), _) => return true,
            (Some(b"+"), Some(level)) if level != b"#" => {}
            (Some(rl), Some(fl)) if rl == fl && rl != b"+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_keep_empty_ones() {
        let v: Vec<&[u8]> = levels_of(b"/a//b/").collect();
        assert_eq!(v, [&b""[..], b"a", b"", b"b", b""]);
        assert_eq!(levels_of(b"a").count(), 1);
        assert_eq!(levels_of(b"").count(), 1);
    }

    #[test]
    fn covers_examples() {
        let yes: &[(&str, &str)] = &[
            ("#", "#"),
            ("#", "a/+/b"),
            ("a/#", "a"),
            ("a/#", "a/#"),
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("+/+", "x/+"),
            ("$SYS/#", "$SYS/a"),
        ];
        let no: &[(&str, &str)] = &[
            ("a/+", "a/#"),
            ("a/+", "a"),
            ("a", "a/#"),
            ("a/b", "a/+"),
            ("#", "$SYS/#"),
            ("+/x", "$SYS/x"),
            ("a/#", "#"),
            ("a/b", "a/b/c"),
        ];
        for (r, f) in yes {
            assert!(covers(r.as_bytes(), f.as_bytes()), "{r} covers {f}");
        }
        for (r, f) in no {
            assert!(
                !covers(r.as_bytes(), f.as_bytes()),
                "{r} does not cover {f}"
            );
        }
    }
}
