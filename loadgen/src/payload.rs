//! The loadgen payload header, so a subscriber can compute latency and
//! check loss / duplicates / order without any other channel:
//!
//! ```text
//! offset  size  field (little endian)
//!  0       4    magic "RMQL"
//!  4       4    publisher index (u32)
//!  8       8    sequence number (u64), 0, 1, 2, ... per publisher
//! 16       8    latency origin: ns on the run's shared clock (the intended
//!               send time at a fixed --rate, the actual one otherwise)
//! 24       -    zero padding up to --size
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// Header length, in bytes; the smallest allowed --size.
pub const HEADER_BYTES: usize = 24;
const MAGIC: [u8; 4] = *b"RMQL";

/// What a payload header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub publisher: u32,
    pub seq: u64,
    pub origin_ns: u64,
}

/// Writes payloads into one reused buffer: `split().freeze()` hands out a
/// `Bytes` view; once the client has encoded it (and dropped it), the next
/// `reserve` reuses the same memory, so stamping allocates nothing.
pub struct PayloadWriter {
    buf: BytesMut,
    size_bytes: usize,
}

impl PayloadWriter {
    pub fn new(size_bytes: usize) -> Self {
        debug_assert!(size_bytes >= HEADER_BYTES);
        PayloadWriter {
            buf: BytesMut::with_capacity(size_bytes.max(HEADER_BYTES) * 4),
            size_bytes: size_bytes.max(HEADER_BYTES),
        }
    }

    pub fn stamp(&mut self, h: Header) -> Bytes {
        self.buf.reserve(self.size_bytes);
        self.buf.put_slice(&MAGIC);
        self.buf.put_u32_le(h.publisher);
        self.buf.put_u64_le(h.seq);
        self.buf.put_u64_le(h.origin_ns);
        self.buf.put_bytes(0, self.size_bytes - HEADER_BYTES);
        self.buf.split().freeze()
    }
}

/// Reads a loadgen header; `None` for any other payload.
pub fn parse(payload: &[u8]) -> Option<Header> {
    let h = payload.get(..HEADER_BYTES)?;
    if h.get(..4)? != MAGIC {
        return None;
    }
    let u32_at = |o: usize| Some(u32::from_le_bytes(h.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(h.get(o..o + 8)?.try_into().ok()?));
    Some(Header {
        publisher: u32_at(4)?,
        seq: u64_at(8)?,
        origin_ns: u64_at(16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_then_parse() {
        let mut w = PayloadWriter::new(100);
        let h = Header {
            publisher: 7,
            seq: 1 << 40,
            origin_ns: 123_456_789,
        };
        let p = w.stamp(h);
        assert_eq!(p.len(), 100);
        assert_eq!(parse(&p), Some(h));
        assert_eq!(parse(&p[..23]), None);
        assert_eq!(parse(b"not a loadgen payload at all!"), None);
    }

    #[test]
    fn stamping_reuses_the_buffer() {
        let mut w = PayloadWriter::new(64);
        let first = w.stamp(Header {
            publisher: 0,
            seq: 0,
            origin_ns: 0,
        });
        let ptr = first.as_ptr();
        drop(first);
        for seq in 1..1000 {
            let p = w.stamp(Header {
                publisher: 0,
                seq,
                origin_ns: 0,
            });
            drop(p);
        }
        let last = w.stamp(Header {
            publisher: 0,
            seq: 9,
            origin_ns: 0,
        });
        // Same allocation: the writer reclaimed its buffer every time.
        let base = ptr as usize;
        let at = last.as_ptr() as usize;
        assert!(at >= base && at < base + 64 * 4, "buffer was reallocated");
    }
}
