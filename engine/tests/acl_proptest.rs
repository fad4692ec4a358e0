//! Property tests: the compiled ACL (per-user tries, patterns specialised
//! per session) against the naive reference `Acl::check_by_scan`, which
//! compares every applicable rule with the topic one by one; and the
//! subscribe coverage check against the reference topic matcher.
//!
//! Alphabets are small so that rules, names and topics collide often:
//! `$` levels, empty levels, `+`, `#`, `%u` / `%c`, and user names and
//! client ids containing wildcards or `/`.

use proptest::prelude::*;
use ringmq_engine::acl::{parse, Acl, Action};
use ringmq_engine::topic::{plain_filter_matches, validate_topic_filter, validate_topic_name};

const LEVELS_MAX: usize = 8;
const LITERALS: &[&str] = &["a", "b", "", "$a", "u1", "c1"];

fn literal() -> impl Strategy<Value = String> {
    prop::sample::select(LITERALS).prop_map(str::to_owned)
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(literal(), 1..=4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("valid name", |t| {
            validate_topic_name(t.as_bytes(), LEVELS_MAX).is_ok()
        })
}

/// A valid plain filter; `%u` / `%c` levels when `tokens`.
fn filter(tokens: bool) -> impl Strategy<Value = String> {
    let token: &'static [&'static str] = if tokens {
        &["%u", "%c", "x%uy"]
    } else {
        &["a"]
    };
    let level = prop_oneof![
        4 => literal(),
        2 => Just("+".to_owned()),
        1 => prop::sample::select(token).prop_map(str::to_owned),
    ];
    (prop::collection::vec(level, 0..=4), any::<bool>())
        .prop_filter_map("at least one level", |(mut levels, hash)| {
            if hash {
                levels.push("#".to_owned());
            }
            (!levels.is_empty()).then(|| levels.join("/"))
        })
        .prop_filter("valid filter", |f| {
            validate_topic_filter(f.as_bytes(), LEVELS_MAX).is_ok()
        })
        // A leading space would be trimmed by the parser: never generated,
        // but an empty first level followed by nothing is "" (invalid anyway).
        .prop_filter("no outer blanks", |f| f.trim() == f)
}

const ACCESS: &[&str] = &["read", "write", "readwrite", "subscribe", "deny", ""];
const NAMES: &[&str] = &["u1", "u2", "+", "a/b", "#x"];
const CLIENTS: &[&str] = &["c1", "c2", "+", "a/b"];

/// One line of an ACL file.
fn line() -> impl Strategy<Value = String> {
    let access = prop::sample::select(ACCESS);
    prop_oneof![
        3 => (access.clone(), filter(false)).prop_map(|(a, f)| format!("topic {a} {f}")),
        2 => (access, filter(true)).prop_map(|(a, f)| format!("pattern {a} {f}")),
        1 => prop::sample::select(NAMES).prop_map(|n| format!("user {n}")),
        1 => prop::sample::select(CLIENTS).prop_map(|c| format!("client {c}")),
    ]
}

fn acl_text() -> impl Strategy<Value = String> {
    prop::collection::vec(line(), 0..=12).prop_map(|lines| lines.join("\n"))
}

fn session() -> impl Strategy<Value = (Option<&'static str>, &'static str)> {
    (
        prop::option::of(prop::sample::select(NAMES)),
        prop::sample::select(CLIENTS),
    )
}

fn compile(text: &str) -> Result<Acl, TestCaseError> {
    parse(text)
        .map(Acl::compile)
        .map_err(|e| TestCaseError::fail(format!("generated file does not parse: {e}\n{text}")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn read_write_agree_with_the_scan(
        text in acl_text(),
        (user, client) in session(),
        topic in topic(),
    ) {
        let acl = compile(&text)?;
        let s = acl.session(user.map(str::as_bytes), client.as_bytes());
        for action in [Action::Read, Action::Write] {
            let compiled = s.check(action, topic.as_bytes());
            let scan = acl.check_by_scan(user.map(str::as_bytes), client.as_bytes(), action, topic.as_bytes());
            prop_assert_eq!(compiled, scan, "{:?} {} on {}\n{}", action, user.unwrap_or("-"), topic, text);
        }
    }

    #[test]
    fn subscribe_agrees_with_the_scan(
        text in acl_text(),
        (user, client) in session(),
        f in filter(false),
    ) {
        let acl = compile(&text)?;
        let s = acl.session(user.map(str::as_bytes), client.as_bytes());
        let compiled = s.check(Action::Subscribe, f.as_bytes());
        let scan = acl.check_by_scan(user.map(str::as_bytes), client.as_bytes(), Action::Subscribe, f.as_bytes());
        prop_assert_eq!(compiled, scan);
    }

    /// A subscribe allowed by a `topic` rule R only lets through topics R
    /// matches: coverage is sound against the reference matcher.
    #[test]
    fn subscribe_coverage_is_sound(
        rule in filter(false),
        f in filter(false),
        topics in prop::collection::vec(topic(), 1..=16),
    ) {
        let acl = compile(&format!("topic read {rule}\n"))?;
        let allowed = acl.session(None, b"c").check(Action::Subscribe, f.as_bytes()).allowed;
        if allowed {
            for t in &topics {
                if plain_filter_matches(f.as_bytes(), t.as_bytes()) {
                    prop_assert!(
                        plain_filter_matches(rule.as_bytes(), t.as_bytes()),
                        "rule {} allowed subscribe {} but does not match {}", rule, f, t
                    );
                }
            }
        }
    }
}
