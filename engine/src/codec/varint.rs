//! Variable Byte Integer (section 1.5.5): 1-4 bytes, 7 bits each, low first.

/// Largest value a Variable Byte Integer can hold.
pub const VARINT_MAX: u32 = 268_435_455;

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
