//! A byte string kept inside its record while it is short: a session's
//! client id.
//!
//! Most client ids are short ("sensor-0042", a MAC address, a 16-byte
//! prefix and counter), and a boxed copy of each put a small heap block
//! beside every session record (measured: about 20 bytes per idle
//! connection at 18,500 connections), one per connection in the
//! allocator's small pages, which a burst of connections extends
//! (docs/benchmarks.md, "Memory given back after 100,000 closes: client
//! ids inside the records"). Up to [`SHORT_BYTES_INLINE_MAX`] bytes now
//! live in the 24 bytes the field takes anyway; longer ones are boxed as
//! before.

use std::ops::Deref;

/// The longest byte string [`ShortBytes`] keeps inline, in bytes: what
/// fits in 24 bytes beside the enum's tag and the length.
pub(super) const SHORT_BYTES_INLINE_MAX: usize = 22;

/// A byte string inline up to [`SHORT_BYTES_INLINE_MAX`] bytes, boxed
/// beyond (module docs). Reads see a slice.
#[derive(Clone)]
pub(super) enum ShortBytes {
    Inline {
        len: u8,
        bytes: [u8; SHORT_BYTES_INLINE_MAX],
    },
    Boxed(Box<[u8]>),
}

impl ShortBytes {
    /// A copy of `bytes`, inline when it fits.
    pub(super) fn new(bytes: &[u8]) -> ShortBytes {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= SHORT_BYTES_INLINE_MAX => {
                let mut inline = [0; SHORT_BYTES_INLINE_MAX];
                inline[..bytes.len()].copy_from_slice(bytes);
                ShortBytes::Inline { len, bytes: inline }
            }
            _ => ShortBytes::Boxed(Box::from(bytes)),
        }
    }

    /// Whether the bytes live on the heap (longer than the inline room).
    #[cfg(test)]
    fn is_boxed(&self) -> bool {
        matches!(self, ShortBytes::Boxed(_))
    }
}

impl Deref for ShortBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            // `len` never exceeds the array (`new`); `get` keeps a
            // corrupted one from panicking and reads it as empty.
            ShortBytes::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(&[]),
            ShortBytes::Boxed(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for ShortBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_stay_inline_and_long_ones_are_boxed() {
        assert_eq!(std::mem::size_of::<ShortBytes>(), 24);
        for len in 0..=64 {
            let id: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let s = ShortBytes::new(&id);
            assert_eq!(&s[..], &id[..], "length {len}");
            assert_eq!(s.is_boxed(), len > SHORT_BYTES_INLINE_MAX, "length {len}");
            assert_eq!(&s.clone()[..], &id[..]);
        }
    }
}
