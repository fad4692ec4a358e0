//! Frame check and packet decode. (STUB: being written.)
use bytes::{Bytes, BytesMut};

use super::{DecodeError, Packet, Protocol};

/// Result of looking at a buffer's fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// A whole frame of `frame_len` bytes (fixed header included) is buffered.
    Complete { frame_len: usize },
    /// At least `needed_bytes` more bytes are needed before a frame is complete.
    Incomplete { needed_bytes: usize },
}

/// Outcome of [`decode`].
#[derive(Debug)]
pub enum Decoded {
    Packet(Packet),
    Incomplete { needed_bytes: usize },
}

/// Look at the fixed header at the start of `buf`.
pub fn check_frame(_buf: &[u8], _packet_size_max_bytes: u32) -> Result<FrameCheck, DecodeError> {
    todo!()
}

/// Split one complete frame off `buf` and decode it.
pub fn decode(
    _buf: &mut BytesMut,
    _protocol: Protocol,
    _packet_size_max_bytes: u32,
) -> Result<Decoded, DecodeError> {
    todo!()
}

/// Decode one whole frame (fixed header included).
pub fn decode_packet(_frame: Bytes, _protocol: Protocol) -> Result<Packet, DecodeError> {
    todo!()
}
