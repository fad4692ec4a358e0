//! Decode and encode errors. Each decode error maps to exactly one MQTT
//! reason code in [`DecodeError::reason_code`]; all decode errors are
//! connection-fatal (the broker sends DISCONNECT with the code in v5, or a
//! CONNACK with it when the bad packet is the CONNECT, then closes).

use super::reason::ReasonCode;

/// Why a frame could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Remaining Length or another Variable Byte Integer longer than 4 bytes.
    MalformedVarInt,
    /// The remaining length exceeds the configured maximum packet size
    /// (checked from the fixed header, before the body is buffered).
    PacketTooLarge {
        size_bytes: usize,
        max_bytes: u32,
    },
    /// Packet type 0 (reserved) or 15 outside v5.
    InvalidPacketType(u8),
    /// Fixed-header flag bits that the spec reserves were set wrong
    /// ([MQTT-2.2.2-2]).
    ReservedFlags {
        packet_type: u8,
        flags: u8,
    },
    /// QoS 3 in PUBLISH or CONNECT will / subscription options ([MQTT-3.3.1-4]).
    InvalidQoS,
    /// The body ended before a field did, or bytes remain after the last field.
    Truncated,
    TrailingBytes,
    /// Ill-formed UTF-8, U+0000 or a surrogate in a UTF-8 string ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
    InvalidUtf8,
    /// Wildcard characters in a PUBLISH topic name ([MQTT-3.3.2-2]).
    WildcardInTopicName,
    /// Zero-length topic name without a Topic Alias.
    EmptyTopicName,
    /// Packet identifier 0 where one is required ([MQTT-2.2.1-3]).
    PacketIdZero,
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filter ([MQTT-3.8.3-3], [MQTT-3.10.3-2]).
    NoTopicFilters,
    /// A topic filter in SUBSCRIBE or UNSUBSCRIBE that is empty
    /// ([MQTT-4.7.3-1]), has `#` not alone or not last ([MQTT-4.7.1-1]) or
    /// `+` not alone in its level ([MQTT-4.7.1-2]).
    InvalidTopicFilter,
    /// Reserved bits of the subscription options byte set ([MQTT-3.8.3-5]),
    /// or Retain Handling 3.
    ReservedSubscriptionOptions,
    /// Protocol name is not "MQTT" (v3.1.1 / v5) or "MQIsdp" (v3.1) ([MQTT-3.1.2-1]).
    InvalidProtocolName,
    /// Protocol level other than 3, 4 or 5 ([MQTT-3.1.2-2]).
    UnsupportedProtocolVersion(u8),
    /// CONNECT reserved flag bit 0 set ([MQTT-3.1.2-3]) or inconsistent will /
    /// password flags ([MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15], [MQTT-3.1.2-22]).
    InvalidConnectFlags,
    /// Unknown property identifier.
    InvalidPropertyId(u8),
    /// A property that is not allowed in this packet: a Malformed Packet
    /// (section 2.2.2.2: "an Identifier which is not valid for its packet
    /// type").
    PropertyNotAllowed {
        packet_type: u8,
        property_id: u8,
    },
    /// A property that may appear once appeared twice.
    DuplicateProperty(u8),
    /// A property value outside its range (e.g. Receive Maximum 0,
    /// Subscription Identifier 0, Maximum QoS 2, a boolean byte > 1).
    InvalidPropertyValue(u8),
    /// A reason code not allowed in this packet.
    InvalidReasonCode {
        packet_type: u8,
        reason: u8,
    },
    /// A packet that only the server sends arrived at the server, or the
    /// other way round (decoders are direction-agnostic; the broker and the
    /// client reject packets of the wrong direction with this).
    UnexpectedPacket(u8),
}

impl DecodeError {
    /// The MQTT 5.0 reason code to send (DISCONNECT, or CONNACK for a bad
    /// CONNECT). Every variant is listed: a new one must be placed.
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            DecodeError::DuplicateProperty(_)
            | DecodeError::InvalidPropertyValue(_)
            | DecodeError::PacketIdZero
            | DecodeError::UnexpectedPacket(_)
            | DecodeError::EmptyTopicName
            | DecodeError::NoTopicFilters => ReasonCode::PROTOCOL_ERROR,
            DecodeError::WildcardInTopicName => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::MalformedVarInt
            | DecodeError::InvalidPacketType(_)
            | DecodeError::ReservedFlags { .. }
            | DecodeError::InvalidQoS
            | DecodeError::Truncated
            | DecodeError::TrailingBytes
            | DecodeError::InvalidUtf8
            | DecodeError::ReservedSubscriptionOptions
            | DecodeError::InvalidConnectFlags
            | DecodeError::InvalidPropertyId(_)
            | DecodeError::PropertyNotAllowed { .. }
            | DecodeError::InvalidTopicFilter
            | DecodeError::InvalidReasonCode { .. } => ReasonCode::MALFORMED_PACKET,
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?} (reason 0x{:02X})", self.reason_code().0)
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The packet's remaining length exceeds 268_435_455 bytes.
    PacketTooLarge,
    /// A string or binary field exceeds 65_535 bytes.
    FieldTooLong,
    /// The packet does not exist in this protocol version (AUTH in v3).
    NotInProtocol,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for EncodeError {}
