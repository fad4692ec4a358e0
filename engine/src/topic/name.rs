//! Topic name validation (the topic of a PUBLISH or a will), MQTT 5.0 4.7.

use super::{check_len, TopicError, LEVEL_SEPARATOR};
use crate::codec::{self, DecodeError, ReasonCode};

/// Checks a topic name: 1..=65535 bytes ([MQTT-4.7.3-1]), MQTT UTF-8
/// ([MQTT-1.5.4-1], [MQTT-1.5.4-2]), no `+` or `#` ([MQTT-4.7.0-1]), at
/// most `levels_max` levels. Empty levels are legal (`"a//b"`, `"/a"`,
/// `"a/"`). A `$` first level is legal here; whether a client may publish
/// to it is the broker's decision ([`reserved_name`], then the ACL).
///
/// The character rules are the codec's (`codec::validate_topic_name`, the
/// check every decoded PUBLISH and will topic has passed), so there is one
/// definition of them. A name that came out of the decoder needs only
/// [`check_name_levels`].
///
/// An MQTT 5.0 PUBLISH with an empty topic and a Topic Alias must have its
/// alias resolved before it is validated here.
pub fn validate_topic_name(name: &[u8], levels_max: usize) -> Result<(), TopicError> {
    check_len(name)?;
    codec::validate_topic_name(name).map_err(|e| match e {
        DecodeError::WildcardInTopicName => TopicError::WildcardInName,
        _ => TopicError::InvalidUtf8,
    })?;
    check_name_levels(name, levels_max)
}

/// The configured level limit alone, for a name the codec has already
/// validated (a decoded PUBLISH topic): at most `levels_max` levels, empty
/// levels included. One pass over the bytes, no allocation: this runs for
/// every PUBLISH.
#[inline]
pub fn check_name_levels(name: &[u8], levels_max: usize) -> Result<(), TopicError> {
    let separators = name.iter().filter(|&&b| b == LEVEL_SEPARATOR).count();
    // levels = separators + 1; written so that it cannot overflow.
    if separators >= levels_max {
        return Err(TopicError::TooManyLevels);
    }
    Ok(())
}

/// Why a well-formed topic name is the broker's own, not a client's to
/// publish to (nor to name a will after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservedName {
    /// `$SYS` and `$SYS/...`: the broker's statistics. A client publishing
    /// there would forge them for every `$SYS` subscriber (MQTT 5.0 4.7.2:
    /// the server should keep clients from exchanging messages on `$` topics).
    Sys,
    /// `$share/...`: a filter with this prefix is a shared subscription on
    /// the filter after `$share/{group}/`, so no subscription can match such
    /// a name (MQTT 5.0 4.8.2); publishing to it is always a mistake.
    SharePrefix,
}

impl ReservedName {
    /// The v5 code refusing a PUBLISH (PUBACK / PUBREC) or a will (CONNACK)
    /// on this name: `$SYS` is not the client's to write (0x87 Not
    /// authorized); a `$share/` name is well formed but no subscription can
    /// match it (0x90 Topic Name invalid: "not malformed, but not accepted
    /// by this Server", MQTT 5.0 3.2.2.2, 3.4.2.1).
    pub const fn reason_code(self) -> ReasonCode {
        match self {
            ReservedName::Sys => ReasonCode::NOT_AUTHORIZED,
            ReservedName::SharePrefix => ReasonCode::TOPIC_NAME_INVALID,
        }
    }
}

/// Whether `name` is reserved for the broker (see [`ReservedName`]).
/// A prefix test: this runs for every PUBLISH.
#[inline]
pub fn reserved_name(name: &[u8]) -> Option<ReservedName> {
    if name.first() != Some(&b'$') {
        return None;
    }
    if name == b"$SYS" || name.starts_with(b"$SYS/") {
        Some(ReservedName::Sys)
    } else if name.starts_with(super::SHARE_PREFIX) {
        Some(ReservedName::SharePrefix)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::TOPIC_LEN_MAX_BYTES;

    const LEVELS: usize = 128;

    #[test]
    fn mqtt_4_7_3_1_name_length_is_1_to_65535_bytes() {
        assert_eq!(validate_topic_name(b"", LEVELS), Err(TopicError::Empty));
        assert_eq!(validate_topic_name(b"a", LEVELS), Ok(()));
        let max = vec![b'a'; TOPIC_LEN_MAX_BYTES];
        assert_eq!(validate_topic_name(&max, LEVELS), Ok(()));
        let over = vec![b'a'; TOPIC_LEN_MAX_BYTES + 1];
        assert_eq!(validate_topic_name(&over, LEVELS), Err(TopicError::TooLong));
    }

    #[test]
    fn mqtt_4_7_0_1_no_wildcards_in_names() {
        for bad in [&b"+"[..], b"#", b"a/+", b"a/#", b"a+b", b"sport#", b"+/a"] {
            assert_eq!(
                validate_topic_name(bad, LEVELS),
                Err(TopicError::WildcardInName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn levels_max_is_enforced_at_n_and_n_plus_1() {
        assert_eq!(validate_topic_name(b"a/b/c", 3), Ok(()));
        assert_eq!(
            validate_topic_name(b"a/b/c/d", 3),
            Err(TopicError::TooManyLevels)
        );
        assert_eq!(validate_topic_name(b"a", 1), Ok(()));
        assert_eq!(validate_topic_name(b"/", 1), Err(TopicError::TooManyLevels));
        // Empty levels count: "//" has three.
        assert_eq!(validate_topic_name(b"//", 3), Ok(()));
        assert_eq!(
            validate_topic_name(b"//", 2),
            Err(TopicError::TooManyLevels)
        );
    }

    #[test]
    fn mqtt_4_7_1_empty_levels_are_legal() {
        for ok in [&b"/"[..], b"/a", b"a/", b"a//b", b"//", b" ", b"a b/c"] {
            assert_eq!(validate_topic_name(ok, LEVELS), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn mqtt_4_7_2_dollar_names_are_valid_names() {
        assert_eq!(validate_topic_name(b"$SYS/broker/uptime", LEVELS), Ok(()));
        assert_eq!(validate_topic_name(b"$share/g/x", LEVELS), Ok(()));
    }

    #[test]
    fn mqtt_1_5_4_names_are_mqtt_utf8() {
        assert_eq!(
            validate_topic_name(b"a\0b", LEVELS),
            Err(TopicError::InvalidUtf8)
        );
        assert_eq!(
            validate_topic_name(&[b'a', 0xC3, 0x28], LEVELS),
            Err(TopicError::InvalidUtf8)
        );
    }

    #[test]
    fn decoded_names_need_only_the_level_check() {
        assert_eq!(check_name_levels(b"a/b/c", 3), Ok(()));
        assert_eq!(
            check_name_levels(b"a/b/c/d", 3),
            Err(TopicError::TooManyLevels)
        );
        assert_eq!(check_name_levels(b"//", 3), Ok(()));
    }

    #[test]
    fn multibyte_utf8_is_opaque() {
        assert_eq!(
            validate_topic_name("température/€/ü".as_bytes(), LEVELS),
            Ok(())
        );
    }

    #[test]
    fn reserved_names_are_sys_and_the_share_prefix() {
        assert_eq!(reserved_name(b"$SYS"), Some(ReservedName::Sys));
        assert_eq!(
            reserved_name(b"$SYS/broker/version"),
            Some(ReservedName::Sys)
        );
        assert_eq!(
            reserved_name(b"$share/g/t"),
            Some(ReservedName::SharePrefix)
        );
        for free in [
            &b"$SYSTEM"[..],
            b"$share",
            b"$shared/x",
            b"$sys/x",
            b"a/$SYS",
            b"t",
        ] {
            assert_eq!(reserved_name(free), None, "{free:?}");
        }
    }
}
