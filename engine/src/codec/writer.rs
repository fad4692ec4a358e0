//! The encoder's write pass: a cursor over a slice that was sized to the
//! exact frame (or header) length beforehand, so each write is a bounds
//! check and a store, with none of `BufMut`'s per-call capacity logic.
//!
//! A write past the end is skipped rather than panicking; it can only come
//! from a sizing bug, which the `debug_assert` on [`Out::written`] in the
//! encoder catches (and the round-trip tests and fuzzer exercise).
//!
//! [`Out`] is what the per-field writers need; `BytesMut` implements it too,
//! so each packet can use whichever measured faster (see encode.rs).

use bytes::{BufMut, BytesMut};

use super::varint::VARINT_MAX;

/// A sink for the encoder's write pass.
pub(crate) trait Out {
    /// Bytes in the sink (for a `Writer`: written, or that would have been
    /// had the slice been too short).
    fn written(&self) -> usize;
    fn put_u8(&mut self, v: u8);
    /// Two Byte Integer, big-endian (section 1.5.2).
    fn put_u16(&mut self, v: u16);
    /// Four Byte Integer, big-endian (section 1.5.3).
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, s: &[u8]);

    /// Variable Byte Integer (section 1.5.5); the sizing pass checked
    /// `value <= VARINT_MAX`.
    #[inline(always)]
    fn put_varint(&mut self, value: u32) {
        debug_assert!(value <= VARINT_MAX);
        let mut rest = value;
        loop {
            let byte = (rest & 0x7F) as u8;
            rest >>= 7;
            if rest == 0 {
                self.put_u8(byte);
                return;
            }
            self.put_u8(byte | 0x80);
        }
    }
}

impl Out for BytesMut {
    #[inline(always)]
    fn written(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    #[inline(always)]
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    #[inline(always)]
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    #[inline(always)]
    fn put_slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    #[inline(always)]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self, bytes: [u8; N]) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + N) {
            dst.copy_from_slice(&bytes);
        }
        self.pos += N;
    }
}

impl Out for Writer<'_> {
    #[inline(always)]
    fn written(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    fn put_u8(&mut self, v: u8) {
        if let Some(b) = self.buf.get_mut(self.pos) {
            *b = v;
        }
        self.pos += 1;
    }

    #[inline(always)]
    fn put_u16(&mut self, v: u16) {
        self.array(v.to_be_bytes());
    }

    #[inline(always)]
    fn put_u32(&mut self, v: u32) {
        self.array(v.to_be_bytes());
    }

    #[inline(always)]
    fn put_slice(&mut self, s: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + s.len()) {
            dst.copy_from_slice(s);
        }
        self.pos += s.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_in_order_and_never_past_the_end() {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.put_u8(1);
        w.put_u16(0x0203);
        w.put_varint(321);
        w.put_slice(b"xyz");
        assert_eq!(w.written(), 8);
        w.put_u32(7); // past the end: skipped, counted
        assert_eq!(w.written(), 12);
        assert_eq!(buf, [1, 2, 3, 0xC1, 0x02, b'x', b'y', b'z']);
    }
}
