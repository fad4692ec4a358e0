//! MQTT 3.1 / 3.1.1 / 5.0 codec: streaming zero-copy decode from `BytesMut`,
//! exact-length encode into a caller-provided `BytesMut`.
//!
//! ```text
//! fixed header:  | type (4) | flags (4) | remaining length (1-4 bytes, varint) |
//! then:          | variable header | payload |   (remaining length bytes)
//! ```
//!
//! Decoding is two steps, as in mini-redis: [`check_frame`] looks at the
//! fixed header only (so an oversize packet is refused before its body is
//! buffered) and says how many bytes are missing; [`decode`] then splits the
//! frame off the buffer (`split_to().freeze()`, no copy) and parses it with
//! [`decode_packet`], whose strings and payloads are slices of that frame.
//!
//! Encoding sizes a packet first ([`encoded_len`]), then reserves once and
//! writes in one pass. [`encode_publish`] is the hot path. See
//! docs/codec.md.

// No indexing into wire data anywhere in the codec: reads go through the
// never-panicking `reader::Reader`.
#![deny(clippy::indexing_slicing)]

mod decode;
mod encode;
mod error;
mod fixed_header;
mod packet;
mod plan;
mod properties;
mod property_macro;
mod property_values;
mod reader;
mod reason;
mod sizer;
mod varint;
mod writer;

pub use decode::{decode, decode_packet, Decoded};
pub use encode::{encode, encode_publish, encode_to_bytes, encoded_len, publish_encoded_len};
pub use error::{DecodeError, EncodeError};
pub(crate) use fixed_header::peek_connect_level;
pub use fixed_header::{check_frame, FrameCheck};
pub use packet::*;
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
pub(crate) use reader::{validate_topic_filter, validate_topic_name};
pub use reason::ReasonCode;
pub use varint::{varint_len, VARINT_MAX};

/// Largest remaining length the protocol can express (section 2.1.4): 268_435_455 bytes.
pub const REMAINING_LENGTH_MAX_BYTES: u32 = 268_435_455;
