//! The compiled ACL: one rule trie per user, per client id and for the
//! anonymous rules, shared by every session ([`Acl`]); and per session the
//! pattern rules specialised with its user name and client id
//! ([`SessionAcl`]). A read or write check walks at most three tries, and
//! never allocates.
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

use std::collections::HashMap;
use std::sync::Arc;

use super::parse::{AclFile, Rule, Scope};
use super::{Access, Action, Decision, RuleId};
use crate::topic;

/// No node / no rule.
const NONE: u32 = u32::MAX;

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
struct Verdict {
    allow: RuleId,
    deny: RuleId,
}

impl Verdict {
    const NONE: Verdict = Verdict {
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

    fn decision(self) -> Decision {
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
struct Levels<'t> {
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
fn levels_of(topic: &[u8]) -> Levels<'_> {
    Levels { rest: Some(topic) }
}

/// The rules of one scope (a user, a client id, the anonymous rules, or a
/// session's specialised patterns): a trie for read / write, and the list
/// for subscribe (a control-plane check).
#[derive(Clone, Debug, Default)]
pub(super) struct RuleSet {
    nodes: Vec<Node>,
    /// (filter, access, rule) in insertion order.
    entries: Vec<(Box<[u8]>, Access, RuleId)>,
}

impl RuleSet {
    fn insert(&mut self, filter: &[u8], access: Access, rule: RuleId) {
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
    fn check_topic(&self, action: Action, topic: &[u8], verdict: &mut Verdict) {
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
    fn check_subscribe(&self, filter: &[u8], v: &mut Verdict) {
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

/// A compiled ACL, shared (read-only) by every shard and session.
#[derive(Debug, Default)]
pub struct Acl {
    rules: Vec<Rule>,
    anonymous: Option<Arc<RuleSet>>,
    users: HashMap<Box<[u8]>, Arc<RuleSet>>,
    clients: HashMap<Box<[u8]>, Arc<RuleSet>>,
    /// Ids of the `pattern` rules, in file order.
    patterns: Vec<RuleId>,
}

impl Acl {
    /// Compiles a parsed file. Allocates (control plane: start-up, reload).
    pub fn compile(file: AclFile) -> Acl {
        let mut anonymous = RuleSet::default();
        let mut users: HashMap<Box<[u8]>, RuleSet> = HashMap::new();
        let mut clients: HashMap<Box<[u8]>, RuleSet> = HashMap::new();
        let mut patterns = Vec::new();
        for (i, rule) in file.rules.iter().enumerate() {
            let id = RuleId::try_from(i).unwrap_or(NONE);
            let filter = rule.filter.as_bytes();
            match &rule.scope {
                Scope::Anonymous => anonymous.insert(filter, rule.access, id),
                Scope::User(name) => {
                    users
                        .entry(name.as_bytes().into())
                        .or_default()
                        .insert(filter, rule.access, id)
                }
                Scope::Client(client_id) => clients
                    .entry(client_id.as_bytes().into())
                    .or_default()
                    .insert(filter, rule.access, id),
                Scope::Pattern => patterns.push(id),
            }
        }
        Acl {
            rules: file.rules,
            anonymous: (!anonymous.entries.is_empty()).then(|| Arc::new(anonymous)),
            users: users.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            clients: clients.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            patterns,
        }
    }

    /// Every rule, in file order (index = [`RuleId`]).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        self.rules.get(id as usize)
    }

    /// The ACL of one session: its user's (or the anonymous) rules, its
    /// client id's rules, and the patterns specialised for it. Allocates
    /// only when a pattern applies (control plane: CONNECT, reload).
    pub fn session(&self, username: Option<&[u8]>, client_id: &[u8]) -> SessionAcl {
        let user = match username {
            Some(name) => self.users.get(name).cloned(),
            None => self.anonymous.clone(),
        };
        let client = self.clients.get(client_id).cloned();
        let mut patterns = RuleSet::default();
        let mut filter = Vec::new();
        for &id in &self.patterns {
            let Some(rule) = self.rule(id) else {
                continue;
            };
            if specialise(rule, username, client_id, &mut filter) {
                patterns.insert(&filter, rule.access, id);
            }
        }
        SessionAcl {
            user,
            client,
            patterns: (!patterns.entries.is_empty()).then_some(patterns),
        }
    }

    /// The naive specification of [`SessionAcl::check`]: every applicable
    /// rule compared with the topic one by one (O(rules), allocates). Used
    /// by tests as the reference the compiled tries must agree with.
    pub fn check_by_scan(
        &self,
        username: Option<&[u8]>,
        client_id: &[u8],
        action: Action,
        topic: &[u8],
    ) -> Decision {
        let mut v = Verdict::NONE;
        let mut filter = Vec::new();
        let checked = match (action, crate::topic::parse_shared(topic)) {
            (Action::Subscribe, Ok(Some(shared))) => shared.filter,
            _ => topic,
        };
        for (i, rule) in self.rules.iter().enumerate() {
            let id = RuleId::try_from(i).unwrap_or(NONE);
            let applies = match &rule.scope {
                Scope::Anonymous => username.is_none(),
                Scope::User(name) => username == Some(name.as_bytes()),
                Scope::Client(c) => c.as_bytes() == client_id,
                Scope::Pattern => false,
            };
            if applies {
                filter.clear();
                filter.extend_from_slice(rule.filter.as_bytes());
            } else if rule.scope != Scope::Pattern
                || !specialise(rule, username, client_id, &mut filter)
            {
                continue;
            }
            let matched = match action {
                Action::Subscribe => covers(&filter, checked),
                _ => crate::topic::plain_filter_matches(&filter, checked),
            };
            if !matched {
                continue;
            }
            if rule.access == Access::Deny {
                v.deny = v.deny.min(id);
            } else if rule.access.grants(action) {
                v.allow = v.allow.min(id);
            }
        }
        v.decision()
    }
}

/// Writes `rule`'s filter with `%u` / `%c` substituted into `out`; false
/// when the rule does not apply to this client (see the module docs of
/// [`super`]: `%u` without a user name, or an allowing rule whose value
/// contains `+`, `#` or `/`, or would start the topic with `$`). A `deny` rule with such a value is widened
/// to `#` from the level of the substitution on.
fn specialise(rule: &Rule, username: Option<&[u8]>, client_id: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let template = rule.filter.as_bytes();
    let mut first = true;
    for level in levels_of(template) {
        if !first {
            out.push(topic::LEVEL_SEPARATOR);
        }
        first = false;
        let start = out.len();
        let mut rest = level;
        while let Some(at) = rest.iter().position(|b| *b == b'%') {
            let (before, tail) = rest.split_at(at);
            out.extend_from_slice(before);
            let value = match tail.get(1) {
                Some(b'u') => match username {
                    Some(u) => Some(u),
                    None => return false,
                },
                Some(b'c') => Some(client_id),
                _ => None,
            };
            match value {
                Some(value) => {
                    // A value that would start the topic with `$` is unsafe
                    // too: a client named `$SYS` must not get `$SYS/#`
                    // from `pattern read %c/#`.
                    let dollar_first = out.is_empty() && value.first() == Some(&b'$');
                    if dollar_first || value.iter().any(|b| matches!(b, b'+' | b'#' | b'/')) {
                        if rule.access != Access::Deny {
                            return false;
                        }
                        out.truncate(start);
                        out.push(b'#');
                        return true;
                    }
                    out.extend_from_slice(value);
                    rest = tail.get(2..).unwrap_or_default();
                }
                None => {
                    out.push(b'%');
                    rest = tail.get(1..).unwrap_or_default();
                }
            }
        }
        out.extend_from_slice(rest);
    }
    true
}

/// One session's view of the ACL, built at CONNECT (and again on reload).
#[derive(Debug, Clone, Default)]
pub struct SessionAcl {
    /// The user's section, or the anonymous rules when there is no user name.
    user: Option<Arc<RuleSet>>,
    client: Option<Arc<RuleSet>>,
    patterns: Option<RuleSet>,
}

impl SessionAcl {
    /// Is `action` on `topic` allowed, and which rule decided? For
    /// [`Action::Read`] and [`Action::Write`] `topic` is a topic name and
    /// the check never allocates; for [`Action::Subscribe`] it is a filter
    /// (a `$share/{group}/` prefix is ignored) and the rules are scanned.
    pub fn check(&self, action: Action, topic: &[u8]) -> Decision {
        let mut v = Verdict::NONE;
        let sets = [
            self.user.as_deref(),
            self.client.as_deref(),
            self.patterns.as_ref(),
        ];
        if action == Action::Subscribe {
            let filter = match topic::parse_shared(topic) {
                Ok(Some(shared)) => shared.filter,
                _ => topic,
            };
            for set in sets.into_iter().flatten() {
                set.check_subscribe(filter, &mut v);
            }
        } else {
            for set in sets.into_iter().flatten() {
                set.check_topic(action, topic, &mut v);
            }
        }
        v.decision()
    }

    /// [`SessionAcl::check`], the verdict only.
    #[inline]
    pub fn allows(&self, action: Action, topic: &[u8]) -> bool {
        self.check(action, topic).allowed
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn acl(text: &str) -> Acl {
        match parse(text) {
            Ok(f) => Acl::compile(f),
            Err(e) => panic!("{e}"),
        }
    }

    /// (allowed, line of the deciding rule) for a session.
    fn check(
        acl: &Acl,
        user: Option<&str>,
        client: &str,
        action: Action,
        topic: &str,
    ) -> (bool, Option<u32>) {
        let d = acl
            .session(user.map(str::as_bytes), client.as_bytes())
            .check(action, topic.as_bytes());
        let reference = acl.check_by_scan(
            user.map(str::as_bytes),
            client.as_bytes(),
            action,
            topic.as_bytes(),
        );
        assert_eq!(
            d, reference,
            "compiled vs scan: {user:?} {client} {action:?} {topic}"
        );
        (
            d.allowed,
            d.rule.and_then(|id| acl.rule(id)).map(|r| r.line),
        )
    }

    const FILE: &str = "\
topic read public/#
user alice
topic readwrite alice/#
topic deny alice/secret/#
topic read sensors/+/temp
user bob
topic write bob/out
topic subscribe feed/#
client ops-1
topic read $SYS/#
pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern deny %u/banned
";

    #[test]
    fn user_sections_and_deny_wins() {
        let a = acl(FILE);
        let alice = Some("alice");
        assert_eq!(
            check(&a, alice, "c", Action::Write, "alice/x"),
            (true, Some(3))
        );
        assert_eq!(
            check(&a, alice, "c", Action::Read, "alice"),
            (true, Some(3))
        );
        assert_eq!(
            check(&a, alice, "c", Action::Read, "alice/secret/k"),
            (false, Some(4))
        );
        assert_eq!(
            check(&a, alice, "c", Action::Write, "alice/secret"),
            (false, Some(4))
        );
        assert_eq!(
            check(&a, alice, "c", Action::Read, "sensors/7/temp"),
            (true, Some(5))
        );
        assert_eq!(
            check(&a, alice, "c", Action::Write, "sensors/7/temp"),
            (false, None)
        );
        // The anonymous rules are not alice's.
        assert_eq!(
            check(&a, alice, "c", Action::Read, "public/x"),
            (false, None)
        );
        assert_eq!(
            check(&a, None, "c", Action::Read, "public/x"),
            (true, Some(1))
        );
        assert_eq!(
            check(&a, None, "c", Action::Write, "public/x"),
            (false, None)
        );
        // A user without a section: patterns only.
        assert_eq!(
            check(&a, Some("carol"), "c", Action::Read, "alice/x"),
            (false, None)
        );
    }

    #[test]
    fn subscribe_is_coverage() {
        let a = acl(FILE);
        let alice = Some("alice");
        assert_eq!(
            check(&a, alice, "c", Action::Subscribe, "alice/+/x"),
            (true, Some(3))
        );
        assert_eq!(
            check(&a, alice, "c", Action::Subscribe, "alice/#"),
            (true, Some(3))
        );
        assert_eq!(
            check(&a, alice, "c", Action::Subscribe, "alice/secret/+"),
            (false, Some(4))
        );
        // `#` is not inside alice/#: refused (deliveries would be filtered anyway).
        assert_eq!(check(&a, alice, "c", Action::Subscribe, "#"), (false, None));
        assert_eq!(
            check(&a, alice, "c", Action::Subscribe, "sensors/+/temp"),
            (true, Some(5))
        );
        assert_eq!(
            check(&a, alice, "c", Action::Subscribe, "sensors/#"),
            (false, None)
        );
        // Shared subscriptions are checked as their inner filter.
        assert_eq!(
            check(&a, alice, "c", Action::Subscribe, "$share/g/alice/x"),
            (true, Some(3))
        );
        // bob may subscribe to feed/# but reads nothing there.
        let bob = Some("bob");
        assert_eq!(
            check(&a, bob, "c", Action::Subscribe, "feed/#"),
            (true, Some(8))
        );
        assert_eq!(check(&a, bob, "c", Action::Read, "feed/x"), (false, None));
        // write does not grant subscribe.
        assert_eq!(
            check(&a, bob, "c", Action::Subscribe, "bob/out"),
            (false, None)
        );
    }

    #[test]
    fn client_sections_and_dollar_topics() {
        let a = acl(FILE);
        assert_eq!(
            check(&a, None, "ops-1", Action::Read, "$SYS/broker/uptime"),
            (true, Some(10))
        );
        assert_eq!(
            check(&a, None, "ops-2", Action::Read, "$SYS/broker/uptime"),
            (false, None)
        );
        let b = acl("topic read #\ntopic read +/x\n");
        assert_eq!(check(&b, None, "c", Action::Read, "$SYS/x"), (false, None));
        assert_eq!(check(&b, None, "c", Action::Read, "a/x"), (true, Some(1)));
        assert_eq!(
            check(&b, None, "c", Action::Subscribe, "$SYS/#"),
            (false, None)
        );
        assert_eq!(
            check(&b, None, "c", Action::Subscribe, "#"),
            (true, Some(1))
        );
    }

    #[test]
    fn patterns_substitute_user_and_client() {
        let a = acl(FILE);
        assert_eq!(
            check(&a, None, "dev7", Action::Write, "devices/dev7/t"),
            (true, Some(11))
        );
        assert_eq!(
            check(&a, None, "dev7", Action::Write, "devices/dev8/t"),
            (false, None)
        );
        assert_eq!(
            check(&a, Some("dave"), "x", Action::Read, "users/dave/inbox"),
            (true, Some(12))
        );
        assert_eq!(
            check(&a, Some("dave"), "x", Action::Read, "users/erin/inbox"),
            (false, None)
        );
        assert_eq!(
            check(&a, Some("dave"), "x", Action::Read, "dave/banned"),
            (false, Some(13))
        );
        // %u never applies to an anonymous client.
        assert_eq!(
            check(&a, None, "x", Action::Read, "users/%u/inbox"),
            (false, None)
        );
    }

    #[test]
    fn wildcards_in_names_are_not_substituted() {
        let a = acl("pattern readwrite devices/%c/#\npattern deny x/%u/y\npattern read x/#\n");
        // A client id "+" must not get devices/+/#.
        assert_eq!(
            check(&a, None, "+", Action::Write, "devices/other/t"),
            (false, None)
        );
        assert_eq!(
            check(&a, None, "a/b", Action::Write, "devices/a/b/t"),
            (false, None)
        );
        // Nor may a client named "$SYS" read $SYS/# through %c/#.
        let b = acl("pattern read %c/#\npattern read x/%c\n");
        assert_eq!(
            check(&b, None, "$SYS", Action::Read, "$SYS/broker/uptime"),
            (false, None)
        );
        assert_eq!(
            check(&b, None, "$SYS", Action::Read, "x/$SYS"),
            (true, Some(2))
        );
        // A deny pattern is widened instead: everything under x/ is denied.
        assert_eq!(
            check(&a, Some("#"), "c", Action::Read, "x/q/z"),
            (false, Some(2))
        );
        assert_eq!(
            check(&a, Some("ok"), "c", Action::Read, "x/q/z"),
            (true, Some(3))
        );
        assert_eq!(
            check(&a, Some("ok"), "c", Action::Read, "x/ok/y"),
            (false, Some(2))
        );
    }

    #[test]
    fn percent_without_a_token_is_literal() {
        let a = acl("pattern read a/%x/%/%c%u\n");
        assert_eq!(
            check(&a, Some("u"), "c", Action::Read, "a/%x/%/cu"),
            (true, Some(1))
        );
    }

    #[test]
    fn first_rule_by_line_decides() {
        let a = acl("topic read a/#\ntopic read a/b\ntopic deny a/+\ntopic deny #\n");
        assert_eq!(check(&a, None, "c", Action::Read, "a/b"), (false, Some(3)));
        assert_eq!(check(&a, None, "c", Action::Read, "a"), (false, Some(4)));
        let b = acl("topic read a/b\ntopic read a/#\n");
        assert_eq!(check(&b, None, "c", Action::Read, "a/b"), (true, Some(1)));
    }

    #[test]
    fn empty_acl_denies_everything() {
        let a = acl("");
        for action in [Action::Read, Action::Write, Action::Subscribe] {
            assert_eq!(check(&a, Some("u"), "c", action, "a"), (false, None));
        }
    }

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

    #[test]
    fn many_literal_children_stay_sorted() {
        let mut text = String::new();
        for i in (0..200).rev() {
            text.push_str(&format!("topic read d/{i}/t\n"));
        }
        let a = acl(&text);
        for i in 0..200 {
            let (ok, line) = check(&a, None, "c", Action::Read, &format!("d/{i}/t"));
            assert!(ok);
            assert_eq!(line, Some(200 - i));
        }
        assert_eq!(check(&a, None, "c", Action::Read, "d/200/t"), (false, None));
    }
}
