//! Topic names, topic filters, shared subscriptions and the subscription trie.
//!
//! MQTT 5.0 section 4.7 (topic names and filters), 4.8.2 (shared
//! subscriptions); MQTT 3.1.1 section 4.7. Everything here works on `&[u8]`:
//! the codec has already checked that names and filters are well-formed UTF-8
//! without U+0000 ([MQTT-1.5.4-1], [MQTT-1.5.4-2], [MQTT-4.7.3-2]), and every
//! rule below concerns only the ASCII bytes `/`, `+`, `#` and `$`, which never
//! occur inside a multi-byte UTF-8 sequence.
//!
//! - [`validate_topic_name`] / [`validate_topic_filter`]: the rules, with a
//!   configurable `levels_max`; [`check_name_levels`] for a name the codec
//!   has already validated (the character rules are the codec's).
//! - [`parse_shared`]: splits `$share/{ShareName}/{filter}`.
//! - [`filter_matches`], [`plain_filter_matches`]: the naive reference
//!   matchers (one filter, one topic).
//! - [`TopicTrie`]: many filters, one allocation-free walk per topic. Its
//!   keys are plain filters; a shared subscription is keyed by its inner
//!   filter.
//!
//! Shared subscriptions are recognised by prefix in every protocol version
//! (as mosquitto and HiveMQ do for v3.1.1 clients); the broker decides
//! whether to accept them.

mod filter;
mod name;
mod shared;
mod trie;

pub use filter::{filter_matches, plain_filter_matches, validate_topic_filter};
pub use name::{check_name_levels, reserved_name, validate_topic_name, ReservedName};
pub use shared::{parse_shared, SharedFilter, SHARE_PREFIX};
pub use trie::TopicTrie;

use crate::codec::ReasonCode;

/// Longest topic name or filter, in bytes: it travels as an MQTT UTF-8
/// string with a two-byte length ([MQTT-4.7.3-1], [MQTT-1.5.4]).
pub const TOPIC_LEN_MAX_BYTES: usize = 65_535;

/// The topic level separator.
pub const LEVEL_SEPARATOR: u8 = b'/';

/// Why a topic name or filter is invalid. All are packet-scoped: a bad
/// PUBLISH topic gets [`TopicError::reason_code_for_name`], a bad SUBSCRIBE
/// filter gets a SUBACK entry with [`TopicError::reason_code_for_filter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// Zero bytes long ([MQTT-4.7.3-1]).
    Empty,
    /// Longer than [`TOPIC_LEN_MAX_BYTES`] ([MQTT-4.7.3-1]).
    TooLong,
    /// More `/`-separated levels than the configured `levels_max`.
    TooManyLevels,
    /// `+` or `#` in a topic name ([MQTT-4.7.0-1]).
    WildcardInName,
    /// Not MQTT UTF-8: ill-formed, a surrogate or U+0000 ([MQTT-1.5.4-1],
    /// [MQTT-1.5.4-2]). Only from [`validate_topic_name`]; decoded topics
    /// were checked by the codec.
    InvalidUtf8,
    /// `#` not last or not alone in its level ([MQTT-4.7.1-1]), or `+` not
    /// alone in its level ([MQTT-4.7.1-2]).
    InvalidWildcard,
    /// `$share/` not followed by a non-empty ShareName without `/`, `+`, `#`,
    /// then `/` and a non-empty filter ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
    InvalidSharedSubscription,
}

impl TopicError {
    /// The MQTT 5.0 reason code for a PUBLISH whose topic name is invalid.
    pub const fn reason_code_for_name(self) -> ReasonCode {
        ReasonCode::TOPIC_NAME_INVALID
    }

    /// The MQTT 5.0 SUBACK / UNSUBACK reason code for an invalid filter. MQTT
    /// 5.0 has no code of its own for a malformed shared subscription, so it
    /// is "Topic Filter invalid" too.
    pub const fn reason_code_for_filter(self) -> ReasonCode {
        ReasonCode::TOPIC_FILTER_INVALID
    }
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self {
            TopicError::Empty => "topic is empty",
            TopicError::TooLong => "topic is longer than 65535 bytes",
            TopicError::TooManyLevels => "topic has more levels than allowed",
            TopicError::WildcardInName => "wildcard in topic name",
            TopicError::InvalidUtf8 => "topic is not valid MQTT UTF-8",
            TopicError::InvalidWildcard => "wildcard not alone in its level, or '#' not last",
            TopicError::InvalidSharedSubscription => "malformed $share/{group}/{filter}",
        };
        f.write_str(what)
    }
}

impl std::error::Error for TopicError {}

/// The `/`-separated levels of a topic name or filter, empty levels included
/// (`"a//b"` has three levels, `"/a"` two). Never allocates; double-ended.
pub fn levels(topic: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> + Clone + '_ {
    topic.split(|b| *b == LEVEL_SEPARATOR)
}

/// Checks [MQTT-4.7.3-1]: 1..=65535 bytes.
fn check_len(topic: &[u8]) -> Result<(), TopicError> {
    if topic.is_empty() {
        Err(TopicError::Empty)
    } else if topic.len() > TOPIC_LEN_MAX_BYTES {
        Err(TopicError::TooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_keeps_empty_levels() {
        let v: Vec<&[u8]> = levels(b"/a//b/").collect();
        assert_eq!(v, [&b""[..], b"a", b"", b"b", b""]);
        assert_eq!(levels(b"a").count(), 1);
        assert_eq!(levels(b"").count(), 1);
    }

    #[test]
    fn every_error_maps_to_its_reason_code() {
        let all = [
            TopicError::Empty,
            TopicError::TooLong,
            TopicError::TooManyLevels,
            TopicError::WildcardInName,
            TopicError::InvalidUtf8,
            TopicError::InvalidWildcard,
            TopicError::InvalidSharedSubscription,
        ];
        for e in all {
            assert_eq!(e.reason_code_for_name(), ReasonCode::TOPIC_NAME_INVALID);
            assert_eq!(e.reason_code_for_filter(), ReasonCode::TOPIC_FILTER_INVALID);
            assert!(!e.to_string().is_empty());
        }
    }
}
