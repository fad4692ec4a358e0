//! The encoder's sizing pass: [`Sizer`] adds up exact encoded lengths
//! before anything is written, and [`put_field`] writes the length-prefixed
//! fields it sized. Shared by the packet encoder (`encode.rs`) and the
//! property encoder (`properties.rs`), below both.
//!
//! ```text
//! UTF-8 string / binary field (sections 1.5.4, 1.5.6):  | len (u16 BE) | len bytes |
//! property block (section 2.2.2.1):   | Property Length (varint) | properties |
//! ```

use super::varint::{varint_len, VARINT_MAX};
use super::writer::Out;

/// Longest UTF-8 string or binary field: a Two Byte Integer length (section 1.5.4, 1.5.6).
pub(crate) const FIELD_MAX_BYTES: usize = 65_535;

/// Accumulates an encoded length; remembers whether any field cannot be
/// encoded (longer than [`FIELD_MAX_BYTES`], or a varint value above
/// [`VARINT_MAX`] such as a bad Subscription Identifier).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sizer {
    pub(crate) len: usize,
    pub(crate) too_long: bool,
}

impl Sizer {
    /// `len` bytes of fixed fields to start with (e.g. a Packet Identifier).
    #[inline]
    pub(crate) fn starting_at(len: usize) -> Sizer {
        Sizer {
            len,
            too_long: false,
        }
    }

    #[inline]
    pub(crate) fn fixed(&mut self, n: usize) {
        self.len += n;
    }

    /// A length-prefixed field (UTF-8 string or binary data).
    #[inline]
    pub(crate) fn field(&mut self, b: &[u8]) {
        self.len += 2 + b.len();
        self.too_long |= b.len() > FIELD_MAX_BYTES;
    }

    #[inline]
    pub(crate) fn varint(&mut self, v: u32) {
        self.len += varint_len(v);
        self.too_long |= v > VARINT_MAX;
    }

    /// A Property Length plus the properties it covers (sized in `props`).
    #[inline]
    pub(crate) fn block(&mut self, props: Sizer) {
        self.len += block_len(props.len);
        self.too_long |= props.too_long;
    }
}

/// Size of a property block: the Property Length varint plus `props_len`.
#[inline]
pub(crate) const fn block_len(props_len: usize) -> usize {
    varint_len(if props_len > u32::MAX as usize {
        u32::MAX
    } else {
        props_len as u32
    }) + props_len
}

/// Write a length-prefixed field; the sizing pass checked the length.
#[inline]
pub(crate) fn put_field(out: &mut impl Out, b: &[u8]) {
    debug_assert!(b.len() <= FIELD_MAX_BYTES);
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}
