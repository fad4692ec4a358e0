//! Shared subscriptions: `$share/{ShareName}/{filter}`, MQTT 5.0 4.8.2.

use super::{TopicError, LEVEL_SEPARATOR};

/// The prefix that makes a topic filter a shared subscription.
pub const SHARE_PREFIX: &[u8] = b"$share/";

/// A `$share/{group}/{filter}` subscription split in its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The ShareName: non-empty, without `/`, `+` or `#`.
    pub group: &'a [u8],
    /// The topic filter that messages are matched against: non-empty, not
    /// yet checked for wildcard rules or levels (see
    /// [`super::validate_topic_filter`], which does).
    pub filter: &'a [u8],
}

/// Splits a shared subscription. `Ok(None)`: not a shared subscription (the
/// filter does not start with `$share/`; `"$sharefoo/x"` and `"$share"` are
/// ordinary filters).
///
/// Errors with [`TopicError::InvalidSharedSubscription`] when the ShareName is
/// empty or holds `+` or `#`, or when it is not followed by `/` and a
/// non-empty filter ([MQTT-4.8.2-1], [MQTT-4.8.2-2]). The inner filter's own
/// rules are [`super::validate_topic_filter`]'s job.
pub fn parse_shared(filter: &[u8]) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let mut parts = rest.splitn(2, |b| *b == LEVEL_SEPARATOR);
    let group = parts.next().unwrap_or_default();
    let inner = parts.next().unwrap_or_default();
    let group_ok = !group.is_empty() && !group.iter().any(|b| matches!(b, b'+' | b'#'));
    if !group_ok || inner.is_empty() {
        return Err(TopicError::InvalidSharedSubscription);
    }
    Ok(Some(SharedFilter {
        group,
        filter: inner,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared<'a>(group: &'a [u8], filter: &'a [u8]) -> Option<SharedFilter<'a>> {
        Some(SharedFilter { group, filter })
    }

    #[test]
    fn mqtt_4_8_2_splits_group_and_filter() {
        assert_eq!(parse_shared(b"$share/g/a/b"), Ok(shared(b"g", b"a/b")));
        assert_eq!(
            parse_shared(b"$share/consumer1/sport/tennis/+"),
            Ok(shared(b"consumer1", b"sport/tennis/+"))
        );
        assert_eq!(parse_shared(b"$share/g/#"), Ok(shared(b"g", b"#")));
        // The inner filter may itself start with '/' or '$'.
        assert_eq!(parse_shared(b"$share/g//a"), Ok(shared(b"g", b"/a")));
        assert_eq!(
            parse_shared(b"$share/g/$SYS/#"),
            Ok(shared(b"g", b"$SYS/#"))
        );
        // ... or even with "$share/": it is just a filter.
        assert_eq!(
            parse_shared(b"$share/g/$share/h/x"),
            Ok(shared(b"g", b"$share/h/x"))
        );
    }

    #[test]
    fn mqtt_4_8_2_1_share_name_non_empty_and_followed_by_a_filter() {
        for bad in [
            &b"$share/"[..],
            b"$share/g",
            b"$share/g/",
            b"$share//x",
            b"$share//",
        ] {
            assert_eq!(
                parse_shared(bad),
                Err(TopicError::InvalidSharedSubscription),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mqtt_4_8_2_2_share_name_without_wildcards() {
        for bad in [
            &b"$share/+/x"[..],
            b"$share/#/x",
            b"$share/g+/x",
            b"$share/a#b/x",
            b"$share/#",
        ] {
            assert_eq!(
                parse_shared(bad),
                Err(TopicError::InvalidSharedSubscription),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_shared_filters_are_none() {
        for plain in [
            &b"a/b"[..],
            b"#",
            b"$sharefoo/x",
            b"$share",
            b"$SYS/#",
            b"$Share/g/x",
            b"x/$share/g/y",
        ] {
            assert_eq!(parse_shared(plain), Ok(None), "{plain:?}");
        }
    }
}
