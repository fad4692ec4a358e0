//! W3C Trace Context (level 1) `traceparent` values, as MQTT 5 user
//! properties carry them: parsing what a publisher sent (anything
//! malformed is ignored: the broker then starts a new trace) and writing
//! the one subscribers get.
//!
//! `version "-" trace-id "-" parent-id "-" trace-flags`, lowercase hex:
//! version 2 digits (`ff` is invalid), trace-id 32 (not all zero),
//! parent-id 16 (not all zero), flags 2. Version 00 is exactly 55
//! characters; a higher version may append fields after a `-`, which are
//! ignored (W3C Trace Context, "Versioning of traceparent").

/// The user property names (written in lowercase; matched ignoring ASCII
/// case, as HTTP header names are).
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Length of a version 00 value.
const LEN: usize = 55;

/// A parsed `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// The sampled flag (bit 0 of trace-flags).
    #[cfg(test)]
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Parse a `traceparent` value; `None` for anything the specification
/// says to ignore.
pub fn parse(value: &[u8]) -> Option<TraceParent> {
    if value.len() < LEN {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    if version == 0xff {
        return None;
    }
    // Version 00 has exactly four fields; a later version may add some,
    // after a dash.
    if (version == 0 && value.len() != LEN) || (value.len() > LEN && value[LEN] != b'-') {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
    }
    let mut parent_id = [0u8; 8];
    for (i, b) in parent_id.iter_mut().enumerate() {
        *b = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        flags,
    })
}

/// The version 00 value for `tp`.
pub fn format(tp: &TraceParent) -> String {
    let mut s = String::with_capacity(LEN);
    s.push_str("00-");
    push_hex(&mut s, &tp.trace_id);
    s.push('-');
    push_hex(&mut s, &tp.parent_id);
    s.push('-');
    push_hex(&mut s, &[tp.flags]);
    s
}

/// Two lowercase hex digits (uppercase is invalid in a traceparent).
fn hex_byte(two: &[u8]) -> Option<u8> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    match two {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specification_example_and_writes_it_back() {
        let tp = parse(VALID.as_bytes()).unwrap_or_else(|| panic!("{VALID} refused"));
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.trace_id[15], 0x36);
        assert_eq!(
            tp.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(tp.sampled());
        assert_eq!(format(&tp), VALID);
        let unsampled = parse(VALID.replace("-01", "-00").as_bytes());
        assert_eq!(unsampled.map(|t| t.sampled()), Some(false));
    }

    #[test]
    fn malformed_values_are_ignored() {
        let bad = [
            "",
            "00",
            // Version ff is invalid.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Uppercase hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Wrong separators, lengths, non-hex.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 has nothing after the flags.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what",
            // A later version's extra fields start with a dash.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for value in bad {
            assert_eq!(parse(value.as_bytes()), None, "{value:?} accepted");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        for value in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
        ] {
            let tp = parse(value.as_bytes()).unwrap_or_else(|| panic!("{value} refused"));
            assert_eq!(format(&tp), VALID, "{value}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every byte at every position of a valid value, and every length
        // up to 80 of each byte: no panic, and only ids that are valid.
        for at in 0..LEN {
            for byte in 0..=255u8 {
                let mut v = VALID.as_bytes().to_vec();
                v[at] = byte;
                if let Some(tp) = parse(&v) {
                    assert_eq!(parse(format(&tp).as_bytes()), Some(tp));
                }
            }
        }
        for len in 0..80 {
            for byte in [b'0', b'-', 0xff, b'f'] {
                assert_eq!(parse(&vec![byte; len]), None);
            }
        }
    }
}
