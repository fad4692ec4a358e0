//! A never-panicking cursor over one frame's `Bytes`: fixed-width integers,
//! Variable Byte Integers, and length-prefixed fields returned as zero-copy
//! slices of the frame (section 1.5 data representation).
//!
//! Every read checks the bytes left first and reports `Truncated` when a
//! field would run past the end; nothing here indexes or allocates.

use bytes::Bytes;

use super::varint::parse_varint;
use super::DecodeError;

/// Cursor over `frame[pos..end]`. `end` is the frame end, or the end of a
/// property block for a sub-reader (so a property can never read past its
/// declared Property Length).
pub(crate) struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `frame[start..]`.
    #[inline]
    pub(crate) fn new(frame: &'a Bytes, start: usize) -> Self {
        let end = frame.len();
        Reader {
            frame,
            pos: start.min(end),
            end,
        }
    }

    /// The unread bytes.
    #[inline]
    fn rest(&self) -> &[u8] {
        self.frame.get(self.pos..self.end).unwrap_or(&[])
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// `TrailingBytes` unless everything was read.
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        match *self.rest() {
            [b, ..] => {
                self.pos += 1;
                Ok(b)
            }
            [] => Err(DecodeError::Truncated),
        }
    }

    /// Two Byte Integer, big-endian (section 1.5.2).
    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        match *self.rest() {
            [a, b, ..] => {
                self.pos += 2;
                Ok(u16::from_be_bytes([a, b]))
            }
            _ => Err(DecodeError::Truncated),
        }
    }

    /// Four Byte Integer, big-endian (section 1.5.3).
    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        match *self.rest() {
            [a, b, c, d, ..] => {
                self.pos += 4;
                Ok(u32::from_be_bytes([a, b, c, d]))
            }
            _ => Err(DecodeError::Truncated),
        }
    }

    /// Variable Byte Integer (section 1.5.5). Inside a frame an unfinished
    /// integer means the field was truncated.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match parse_varint(self.rest())? {
            Some((value, len)) => {
                self.pos += len;
                Ok(value)
            }
            None => Err(DecodeError::Truncated),
        }
    }

    /// The next `n` bytes as a slice of the frame (a refcount bump, no copy).
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.frame.slice(start..self.pos))
    }

    /// Offset of the next unread byte in the frame.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Binary Data: a Two Byte Integer length then that many bytes (section 1.5.6).
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 Encoded String (section 1.5.4), validated.
    #[inline]
    pub(crate) fn utf8(&mut self) -> Result<Bytes, DecodeError> {
        let s = self.binary()?;
        validate_utf8(&s)?;
        Ok(s)
    }

    /// A sub-reader over the next `len` bytes; this reader skips past them.
    /// Used for the property block, whose length must cover its properties
    /// exactly (section 2.2.2.1).
    #[inline]
    pub(crate) fn sub(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let start = self.pos;
        self.pos += len;
        Ok(Reader {
            frame: self.frame,
            pos: start,
            end: self.pos,
        })
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Non-zero iff some byte of `x` is 0 (exact as an existence test).
#[inline(always)]
const fn has_zero_byte(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// Flags of one 8-byte word: bit 7 of a byte set where the byte may be
/// suspect (NUL, or with `wildcards` `+` / `#`), and the raw high bits.
#[inline(always)]
fn word_flags(x: u64, wildcards: bool) -> (u64, u64) {
    let mut suspect = has_zero_byte(x);
    if wildcards {
        // '#' (0x23) and '+' (0x2B) differ only in bit 3: OR it in and
        // look for 0x2B.
        suspect |= has_zero_byte((x | (LO * 0x08)) ^ (LO * u64::from(b'+')));
    }
    (suspect, x & HI)
}

/// One pass over `s`, 8 bytes at a time: `(suspect, non_ascii)` where
/// `suspect` means a NUL, or with `wildcards` a `+` or `#`, may be present
/// (the caller then takes the exact slow path) and `non_ascii` means a byte
/// of 0x80 or more is present (so full UTF-8 validation is needed). Pure ASCII
/// without those bytes, the common case for topics, needs nothing else.
#[inline(always)]
fn scan(s: &[u8], wildcards: bool) -> (bool, bool) {
    let mut suspect = 0u64;
    let mut high = 0u64;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or([0; 8]));
        let (sus, hi) = word_flags(x, wildcards);
        suspect |= sus;
        high |= hi;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // The last 1-7 bytes: as the final 8 bytes of `s` (overlapping the
        // last chunk, harmless) when `s` is that long, else padded with 'a'.
        let word = match s.len().checked_sub(8).and_then(|at| s.get(at..)) {
            Some(last) => <[u8; 8]>::try_from(last).unwrap_or([0; 8]),
            None => {
                let mut word = [b'a'; 8];
                if let Some(dst) = word.get_mut(..tail.len()) {
                    dst.copy_from_slice(tail);
                }
                word
            }
        };
        let (sus, hi) = word_flags(u64::from_le_bytes(word), wildcards);
        suspect |= sus;
        high |= hi;
    }
    (suspect != 0, high != 0)
}

/// MQTT UTF-8 rules (section 1.5.4): well-formed UTF-8 with no surrogates
/// ([MQTT-1.5.4-1]; `from_utf8` rejects encoded surrogates) and no U+0000
/// ([MQTT-1.5.4-2]).
#[inline]
pub(crate) fn validate_utf8(s: &[u8]) -> Result<(), DecodeError> {
    let (nul, non_ascii) = scan(s, false);
    if nul || (non_ascii && std::str::from_utf8(s).is_err()) {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok(())
}

/// A Topic Name (section 4.7): MQTT UTF-8 without the wildcard characters
/// `+` and `#` ([MQTT-3.3.2-2]). Emptiness is the caller's decision (allowed
/// in a v5 PUBLISH that carries a Topic Alias). One pass in the common case.
#[inline]
pub(crate) fn validate_topic_name(s: &[u8]) -> Result<(), DecodeError> {
    let (suspect, non_ascii) = scan(s, true);
    if suspect {
        // Exact answer, UTF-8 errors first (as the two-step check would).
        if std::str::from_utf8(s).is_err() || s.contains(&0) {
            return Err(DecodeError::InvalidUtf8);
        }
        return Err(DecodeError::WildcardInTopicName);
    }
    if non_ascii && std::str::from_utf8(s).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok(())
}

/// A Topic Filter's syntax (section 4.7.1): at least one character
/// ([MQTT-4.7.3-1]); `#` alone in the last level ([MQTT-4.7.1-1]); `+` alone
/// in its level ([MQTT-4.7.1-2]). UTF-8 is the caller's check. The level
/// count and the `$share/` form are the broker's (`topic` module): they
/// depend on its configuration and are answered per filter in SUBACK.
pub(crate) fn validate_topic_filter(s: &[u8]) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::InvalidTopicFilter);
    }
    let mut levels = s.split(|&b| b == b'/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            b"#" => levels.peek().is_none(),
            b"+" => true,
            _ => !level.iter().any(|&b| b == b'+' || b == b'#'),
        };
        if !ok {
            return Err(DecodeError::InvalidTopicFilter);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_never_pass_the_end() {
        let frame = Bytes::from_static(&[0x00, 0x03, b'a', b'b']);
        let mut r = Reader::new(&frame, 0);
        assert_eq!(r.utf8(), Err(DecodeError::Truncated));
        let mut r = Reader::new(&frame, 9);
        assert_eq!(r.u8(), Err(DecodeError::Truncated));
        assert_eq!(r.position(), 4);
        let mut r = Reader::new(&frame, 0);
        let mut sub = r.sub(3).unwrap_or_else(|_| Reader::new(&frame, 4));
        assert_eq!(sub.u16(), Ok(3));
        assert_eq!(sub.u16(), Err(DecodeError::Truncated));
        assert_eq!(r.u8(), Ok(b'b'));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn utf8_rules() {
        assert!(validate_utf8("añ€😀".as_bytes()).is_ok());
        assert_eq!(validate_utf8(b"a\0b"), Err(DecodeError::InvalidUtf8));
        // U+D800 encoded as UTF-8 (a surrogate).
        assert_eq!(
            validate_utf8(&[0xED, 0xA0, 0x80]),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(validate_utf8(&[0xC0, 0x80]), Err(DecodeError::InvalidUtf8));
        assert_eq!(
            validate_topic_name(b"a/+"),
            Err(DecodeError::WildcardInTopicName)
        );
    }

    #[test]
    fn mqtt_4_7_1_filter_syntax() {
        for ok in ["#", "+", "a/#", "+/+/#", "/", "a//b", "$share/g/#"] {
            assert_eq!(validate_topic_filter(ok.as_bytes()), Ok(()), "{ok:?}");
        }
        for bad in ["", "a/#/b", "#/", "a#", "a+", "+a/b", "##", "$share/g+/x"] {
            let got = validate_topic_filter(bad.as_bytes());
            assert_eq!(got, Err(DecodeError::InvalidTopicFilter), "{bad:?}");
        }
    }
}
