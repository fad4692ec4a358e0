//! Variable Byte Integer (section 1.5.5): 1-4 bytes, 7 bits each, low first.
//!
//! ```text
//! value 321 = 0b10_1000001  ->  | 1 1000001 | 0 0000010 |
//!                                 ^cont.      ^last byte
//! ```
//!
//! Used for the Remaining Length (section 2.1.4), the Property Length and
//! Property Identifiers (section 2.2.2) and the Subscription Identifier.

use super::DecodeError;

/// Largest value a Variable Byte Integer can hold.
pub const VARINT_MAX: u32 = 268_435_455;

/// Longest encoding of a Variable Byte Integer, in bytes.
pub(crate) const VARINT_LEN_MAX_BYTES: usize = 4;

/// Number of bytes `value` takes as a Variable Byte Integer (1-4).
pub const fn varint_len(value: u32) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Parse a Variable Byte Integer from the front of `bytes`.
///
/// Returns `Ok(Some((value, len_bytes)))`, `Ok(None)` when `bytes` ends
/// before the last byte of the integer, or `MalformedVarInt` when a fifth
/// byte would be needed or the encoding is not minimal. [MQTT-1.5.5-1]: "The
/// encoded value MUST use the minimum number of bytes necessary to represent
/// the value", so a multi-byte integer whose last byte is 0 is malformed.
#[inline]
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().take(VARINT_LEN_MAX_BYTES).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedVarInt);
            }
            return Ok(Some((value, i + 1)));
        }
        if i + 1 == VARINT_LEN_MAX_BYTES {
            return Err(DecodeError::MalformedVarInt);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::writer::{Out, Writer};

    /// `value` encoded by the encoder's write pass.
    fn write_varint(out: &mut Vec<u8>, value: u32) {
        let mut buf = [0u8; VARINT_LEN_MAX_BYTES];
        let mut w = Writer::new(&mut buf);
        w.put_varint(value);
        let len = w.written();
        out.extend_from_slice(buf.get(..len).unwrap_or_default());
    }

    #[test]
    fn boundaries_round_trip() {
        // Both sides of every length boundary (section 1.5.5, table 1-1).
        for value in [
            0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            assert_eq!(parse_varint(&out), Ok(Some((value, out.len()))));
            // Every strict prefix is incomplete.
            for cut in 0..out.len() {
                assert_eq!(parse_varint(out.get(..cut).unwrap_or(&[])), Ok(None));
            }
        }
    }

    #[test]
    fn five_bytes_and_non_minimal_are_malformed() {
        assert_eq!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            parse_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            parse_varint(&[0x80, 0x00]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            parse_varint(&[0x81, 0x80, 0x00]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(parse_varint(&[0x00]), Ok(Some((0, 1))));
    }
}
