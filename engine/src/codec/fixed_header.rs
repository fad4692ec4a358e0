//! The fixed header (MQTT 5.0 / 3.1.1 section 2.1): packet type, flags and
//! Remaining Length, read before the body so that an oversize packet is
//! refused before it is buffered and a reader knows how many bytes to wait
//! for.
//!
//! ```text
//!  byte 1          byte 2..5                   Remaining Length bytes
//! +----+-------+ +------------------------+ +-----------------+---------+
//! |type| flags | | Remaining Length (1-4) | | variable header | payload |
//! +----+-------+ +------------------------+ +-----------------+---------+
//! ```

use super::varint::{parse_varint, VARINT_LEN_MAX_BYTES};
use super::DecodeError;

/// Result of looking at a buffer's fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// A whole frame of `frame_len` bytes (fixed header included) is buffered.
    Complete { frame_len: usize },
    /// At least `needed_bytes` more bytes are needed before a frame is complete.
    Incomplete { needed_bytes: usize },
}

/// A parsed fixed header (section 2.1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FixedHeader {
    pub(crate) first_byte: u8,
    /// 1 + the Remaining Length's bytes.
    pub(crate) header_len: usize,
    pub(crate) frame_len: usize,
}

/// Parse the fixed header of `buf`: `Ok(Err(needed_bytes))` when incomplete.
#[inline]
pub(crate) fn fixed_header(
    buf: &[u8],
    packet_size_max_bytes: u32,
) -> Result<Result<FixedHeader, usize>, DecodeError> {
    let Some((&first_byte, len_bytes)) = buf.split_first() else {
        // The smallest frame is two bytes (PINGREQ and friends).
        return Ok(Err(2));
    };
    let too_large = |size_bytes: usize| DecodeError::PacketTooLarge {
        size_bytes,
        max_bytes: packet_size_max_bytes,
    };
    match parse_varint(len_bytes)? {
        Some((remaining, len)) => {
            let frame_len = 1 + len + remaining as usize;
            // Refused from the header alone, before the body is buffered
            // (MQTT 5.0 section 3.1.2.11.4 / 3.2.2.3.6: the receiver treats a
            // packet over its Maximum Packet Size as "Packet too large").
            if frame_len as u64 > u64::from(packet_size_max_bytes) {
                return Err(too_large(frame_len));
            }
            if buf.len() < frame_len {
                return Ok(Err(frame_len - buf.len()));
            }
            Ok(Ok(FixedHeader {
                first_byte,
                header_len: 1 + len,
                frame_len,
            }))
        }
        None => {
            // k length bytes seen, all with the continuation bit: a minimal
            // encoding has a non-zero last byte, so the Remaining Length is
            // at least 128^k and the frame at least 1 + (k + 1) + 128^k.
            // Refuse now when even that cannot fit.
            let k = len_bytes.len().min(VARINT_LEN_MAX_BYTES - 1);
            let frame_min = 1 + (k + 1) + (1usize << (7 * k));
            if k > 0 && frame_min as u64 > u64::from(packet_size_max_bytes) {
                return Err(too_large(frame_min));
            }
            Ok(Err(1))
        }
    }
}

/// Look at the fixed header at the start of `buf`.
///
/// `Incomplete { needed_bytes }` is at least 1, and exact once the
/// Remaining Length is known. A Remaining Length that needs a fifth byte or
/// is not minimally encoded is `MalformedVarInt`; a frame (header included)
/// larger than `packet_size_max_bytes` is `PacketTooLarge`, decided from
/// the header before the body is buffered.
pub fn check_frame(buf: &[u8], packet_size_max_bytes: u32) -> Result<FrameCheck, DecodeError> {
    Ok(match fixed_header(buf, packet_size_max_bytes)? {
        Ok(h) => FrameCheck::Complete {
            frame_len: h.frame_len,
        },
        Err(needed_bytes) => FrameCheck::Incomplete { needed_bytes },
    })
}

/// Protocol level of a CONNECT at the start of `buf`, if visible: used to
/// answer a CONNECT that fails to decode in the client's own version.
pub(crate) fn peek_connect_level(buf: &[u8]) -> Option<u8> {
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return None;
        }
    }
    let name_len = usize::from(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]));
    buf.get(i + 2 + name_len).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_level() {
        let connect = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0];
        assert_eq!(peek_connect_level(&connect), Some(5));
        let truncated = [0x10, 12, 0, 4, b'M'];
        assert_eq!(peek_connect_level(&truncated), None);
    }
}
