//! Topic filter validation and the naive reference matcher, MQTT 5.0 4.7.

use super::{check_len, levels, parse_shared, TopicError, LEVEL_SEPARATOR};
use crate::codec;

/// Checks a SUBSCRIBE / UNSUBSCRIBE topic filter.
///
/// - 1..=65535 bytes ([MQTT-4.7.3-1]);
/// - `$share/{ShareName}/{filter}`: ShareName non-empty without `/`, `+`,
///   `#`, then a non-empty filter ([MQTT-4.8.2-1], [MQTT-4.8.2-2]);
/// - `#` alone in its level and the last level ([MQTT-4.7.1-1]), `+` alone
///   in its level ([MQTT-4.7.1-2]): the codec's rule
///   (`codec::validate_topic_filter`, which every decoded filter has
///   passed), applied to the whole filter;
/// - at most `levels_max` levels; for a shared subscription, levels of the
///   inner filter, which is what the trie stores.
///
/// Empty levels are legal (`"a//b"`, `"/+"`).
pub fn validate_topic_filter(filter: &[u8], levels_max: usize) -> Result<(), TopicError> {
    check_len(filter)?;
    let plain = match parse_shared(filter)? {
        Some(shared) => shared.filter,
        None => filter,
    };
    codec::validate_topic_filter(filter).map_err(|_| TopicError::InvalidWildcard)?;
    // levels = separators + 1; written so that it cannot overflow.
    if plain.iter().filter(|&&b| b == LEVEL_SEPARATOR).count() >= levels_max {
        return Err(TopicError::TooManyLevels);
    }
    Ok(())
}

/// Naive reference matcher: does subscription `filter` match topic name
/// `topic`?
///
/// A valid `$share/{group}/{filter}` matches as its inner filter, so
/// `"$share/g/#"` matches `"a/b"` but not `"$SYS/x"` ([MQTT-4.8.2]); any
/// other filter matches as [`plain_filter_matches`] says.
///
/// This is the specification the trie is tested against, not the fast path.
pub fn filter_matches(filter: &[u8], topic: &[u8]) -> bool {
    match parse_shared(filter) {
        Ok(Some(shared)) => plain_filter_matches(shared.filter, topic),
        _ => plain_filter_matches(filter, topic),
    }
}

/// Naive reference matcher for a filter taken literally (no `$share/`
/// handling): the semantics of a [`super::TopicTrie`] key.
///
/// - `+` matches exactly one level, empty included; `#` matches the rest,
///   zero levels included, so `"a/#"` matches `"a"` (MQTT 5.0 4.7.1.2);
/// - a filter whose first level is a wildcard does not match a topic whose
///   first level starts with `$` ([MQTT-4.7.2-1]).
///
/// Both arguments are expected to be valid. For an invalid filter the answer
/// is defined but not meaningful (a `#` that is not last never matches), and
/// [`super::TopicTrie`] agrees with it on every input, valid or not.
pub fn plain_filter_matches(filter: &[u8], topic: &[u8]) -> bool {
    if topic.first() == Some(&b'$') && matches!(filter.first(), Some(b'+' | b'#')) {
        return false;
    }
    let mut filter_levels = levels(filter);
    let mut topic_levels = levels(topic);
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some(b"#"), _) => return filter_levels.next().is_none(),
            (Some(b"+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::TOPIC_LEN_MAX_BYTES;

    const LEVELS: usize = 128;

    fn ok(f: &[u8]) {
        assert_eq!(
            validate_topic_filter(f, LEVELS),
            Ok(()),
            "{:?}",
            String::from_utf8_lossy(f)
        );
    }
    fn err(f: &[u8], e: TopicError) {
        assert_eq!(
            validate_topic_filter(f, LEVELS),
            Err(e),
            "{:?}",
            String::from_utf8_lossy(f)
        );
    }

    #[test]
    fn mqtt_4_7_3_1_filter_length_is_1_to_65535_bytes() {
        err(b"", TopicError::Empty);
        ok(b"#");
        let mut max = vec![b'a'; TOPIC_LEN_MAX_BYTES - 2];
        max.extend_from_slice(b"/#");
        ok(&max);
        max.insert(0, b'a');
        err(&max, TopicError::TooLong);
    }

    #[test]
    fn mqtt_4_7_1_1_hash_must_be_last_and_alone() {
        ok(b"#");
        ok(b"a/#");
        ok(b"/#");
        ok(b"+/#");
        err(b"a/#/b", TopicError::InvalidWildcard);
        err(b"#/", TopicError::InvalidWildcard);
        err(b"a#", TopicError::InvalidWildcard);
        err(b"sport/tennis#", TopicError::InvalidWildcard);
        err(b"a/#b", TopicError::InvalidWildcard);
        err(b"##", TopicError::InvalidWildcard);
    }

    #[test]
    fn mqtt_4_7_1_2_plus_must_occupy_a_whole_level() {
        ok(b"+");
        ok(b"+/+");
        ok(b"/+");
        ok(b"+/");
        ok(b"sport/+/player1");
        err(b"sport+", TopicError::InvalidWildcard);
        err(b"a/+b", TopicError::InvalidWildcard);
        err(b"a/b+/c", TopicError::InvalidWildcard);
        err(b"++", TopicError::InvalidWildcard);
        err(b"+#", TopicError::InvalidWildcard);
    }

    #[test]
    fn levels_max_is_enforced_at_n_and_n_plus_1() {
        assert_eq!(validate_topic_filter(b"a/+/#", 3), Ok(()));
        assert_eq!(
            validate_topic_filter(b"a/+/c/#", 3),
            Err(TopicError::TooManyLevels)
        );
        assert_eq!(validate_topic_filter(b"//", 3), Ok(()));
        assert_eq!(
            validate_topic_filter(b"///", 3),
            Err(TopicError::TooManyLevels)
        );
        // Shared: only the inner filter's levels count.
        assert_eq!(validate_topic_filter(b"$share/g/a/b/c", 3), Ok(()));
        assert_eq!(
            validate_topic_filter(b"$share/g/a/b/c/d", 3),
            Err(TopicError::TooManyLevels)
        );
    }

    #[test]
    fn mqtt_4_7_1_empty_levels_are_legal_in_filters() {
        ok(b"/");
        ok(b"a//b");
        ok(b"//#");
        ok(b"+//+");
    }

    #[test]
    fn mqtt_4_8_2_shared_filters_are_validated() {
        ok(b"$share/g/#");
        ok(b"$share/g/a/+/c");
        ok(b"$share/g//"); // inner filter "/" : two empty levels
        err(b"$share/g", TopicError::InvalidSharedSubscription);
        err(b"$share/g/", TopicError::InvalidSharedSubscription);
        err(b"$share//x", TopicError::InvalidSharedSubscription);
        err(b"$share/g+/x", TopicError::InvalidSharedSubscription);
        err(b"$share/#/x", TopicError::InvalidSharedSubscription);
        // The inner filter obeys the wildcard rules.
        err(b"$share/g/a#", TopicError::InvalidWildcard);
        err(b"$share/g/#/a", TopicError::InvalidWildcard);
        // Not shared: plain $-filters.
        ok(b"$sharefoo/x");
        ok(b"$share");
        ok(b"$SYS/#");
    }

    #[test]
    fn wildcards_match_levels() {
        // Examples of MQTT 5.0 4.7.1.2 and 4.7.1.3.
        assert!(filter_matches(
            b"sport/tennis/player1/#",
            b"sport/tennis/player1"
        ));
        assert!(filter_matches(
            b"sport/tennis/player1/#",
            b"sport/tennis/player1/ranking"
        ));
        assert!(filter_matches(
            b"sport/tennis/player1/#",
            b"sport/tennis/player1/score/wimbledon"
        ));
        assert!(filter_matches(b"sport/#", b"sport"));
        assert!(filter_matches(b"#", b"sport"));
        assert!(filter_matches(b"sport/tennis/+", b"sport/tennis/player1"));
        assert!(!filter_matches(
            b"sport/tennis/+",
            b"sport/tennis/player1/ranking"
        ));
        assert!(!filter_matches(b"sport/+", b"sport"));
        assert!(filter_matches(b"sport/+", b"sport/"));
        assert!(filter_matches(b"+/+", b"/finance"));
        assert!(filter_matches(b"/+", b"/finance"));
        assert!(!filter_matches(b"+", b"/finance"));
        assert!(filter_matches(b"a//b", b"a//b"));
        assert!(!filter_matches(b"a/b", b"a//b"));
        assert!(filter_matches(b"a/+/b", b"a//b"));
        assert!(!filter_matches(b"a/b", b"a/b/c"));
        assert!(!filter_matches(b"a/b/c", b"a/b"));
    }

    #[test]
    fn mqtt_4_7_1_2_hash_matches_the_parent_level() {
        assert!(filter_matches(b"a/#", b"a"));
        assert!(filter_matches(b"a/+/#", b"a/b"));
        assert!(!filter_matches(b"a/+/#", b"a"));
    }

    #[test]
    fn mqtt_4_7_2_1_leading_wildcards_do_not_match_dollar_topics() {
        assert!(!filter_matches(b"#", b"$SYS/monitor/Clients"));
        assert!(!filter_matches(
            b"+/monitor/Clients",
            b"$SYS/monitor/Clients"
        ));
        assert!(!filter_matches(b"+", b"$SYS"));
        assert!(filter_matches(b"$SYS/#", b"$SYS/monitor/Clients"));
        assert!(filter_matches(b"$SYS/monitor/+", b"$SYS/monitor/Clients"));
        assert!(filter_matches(b"$SYS/#", b"$SYS"));
        // Only the first level matters; a later '$' is an ordinary byte.
        assert!(filter_matches(b"a/+", b"a/$b"));
        assert!(filter_matches(b"#", b"a/$b"));
    }

    #[test]
    fn mqtt_4_8_2_shared_filters_match_by_their_inner_filter() {
        assert!(filter_matches(b"$share/g/#", b"a/b"));
        assert!(!filter_matches(b"$share/g/#", b"$SYS/x"));
        assert!(!filter_matches(b"$share/g/#", b"$share/g/x"));
        assert!(filter_matches(b"$share/g/a/+", b"a/b"));
        assert!(filter_matches(b"$share/g/$SYS/#", b"$SYS/x"));
        // Not shared: literal.
        assert!(filter_matches(b"$sharefoo/x", b"$sharefoo/x"));
        assert!(!filter_matches(b"$sharefoo/x", b"x"));
        // Malformed shared filters match literally.
        assert!(filter_matches(b"$share/g", b"$share/g"));
        // The inner filter of a nested share is the literal "$share/h/x".
        assert!(filter_matches(b"$share/g/$share/h/x", b"$share/h/x"));
        assert!(!filter_matches(b"$share/g/$share/h/x", b"x"));
    }

    #[test]
    fn plain_matching_takes_share_literally() {
        assert!(plain_filter_matches(b"$share/g/#", b"$share/g/x"));
        assert!(!plain_filter_matches(b"$share/g/#", b"a"));
        assert!(plain_filter_matches(b"#", b"a"));
    }

    #[test]
    fn invalid_hash_position_never_matches() {
        assert!(!filter_matches(b"a/#/b", b"a/x/b"));
        assert!(!filter_matches(b"a/#/b", b"a"));
    }
}
