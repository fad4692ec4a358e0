//! The compiled ACL ([`Acl`]): the rules of the file sorted into one rule
//! trie ([`RuleSet`], `trie.rs`) per user, per client id and for the
//! anonymous rules, shared by every session; and per session the pattern
//! rules specialised with its user name and client id ([`SessionAcl`]). A
//! read or write check walks at most three tries, and never allocates.

use std::collections::HashMap;
use std::sync::Arc;

use super::parse::{AclFile, Rule, Scope};
use super::trie::{covers, levels_of, RuleSet, Verdict, NONE};
use super::{Access, Action, Decision, RuleId};
use crate::topic;

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
