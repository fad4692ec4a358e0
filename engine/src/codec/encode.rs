//! Packet encode. (STUB: being written.)
use bytes::BytesMut;

use super::{EncodeError, Packet, Protocol, Publish};

/// Exact encoded frame length of `packet` (fixed header included).
pub fn encoded_len(_packet: &Packet, _protocol: Protocol) -> usize {
    todo!()
}

/// Exact encoded frame length of a PUBLISH.
pub fn publish_encoded_len(_publish: &Publish, _protocol: Protocol) -> usize {
    todo!()
}

/// Append the encoding of `packet` to `out`; returns the bytes written.
pub fn encode(_packet: &Packet, _protocol: Protocol, _out: &mut BytesMut) -> Result<usize, EncodeError> {
    todo!()
}

/// Append the encoding of a PUBLISH to `out` (the hot path: no `Packet` wrapper).
pub fn encode_publish(_publish: &Publish, _protocol: Protocol, _out: &mut BytesMut) -> Result<usize, EncodeError> {
    todo!()
}
