//! Topic name validation (the topic of a PUBLISH or a will), MQTT 5.0 4.7.

use super::{check_len, TopicError, LEVEL_SEPARATOR};
use crate::codec::{self, DecodeError};

/// Checks a topic name: 1..=65535 bytes ([MQTT-4.7.3-1]), MQTT UTF-8
/// ([MQTT-1.5.4-1], [MQTT-1.5.4-2]), no `+` or `#` ([MQTT-4.7.0-1]), at
/// most `levels_max` levels. Empty levels are legal (`"a//b"`, `"/a"`,
/// `"a/"`). A `$` first level is legal here: a client may publish to it;
/// whether it may is an ACL decision.
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
}
