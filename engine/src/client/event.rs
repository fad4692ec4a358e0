//! What the client reports: [`Event`]s for the caller to act on, and the
//! errors of its commands ([`ClientError`], the caller's side) and of the
//! server's bytes ([`ProtocolError`], the server's side, connection-fatal).

use crate::codec::{
    ConnAckProperties, DecodeError, EncodeError, Publish, QoS, ReasonCode, SubAck, UnsubAck,
};

/// Outputs of the client, taken with [`Client::poll_event`](super::Client::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// CONNACK with a success code. `properties` is empty for v3.
    Connected {
        session_present: bool,
        properties: Box<ConnAckProperties>,
    },
    /// An application message. QoS 1 was acknowledged (PUBACK queued);
    /// QoS 2 is delivered once, when its PUBLISH first arrives (PUBREC queued).
    Message(Publish),
    /// The server's answer to [`Client::subscribe`](super::Client::subscribe).
    SubAck(SubAck),
    /// The server's answer to [`Client::unsubscribe`](super::Client::unsubscribe).
    UnsubAck(UnsubAck),
    /// An outbound QoS 1 / QoS 2 publish is complete (PUBACK, PUBCOMP, or a
    /// PUBREC with a failure code) and its packet id is free again. In v5
    /// `reason` may be a failure code (>= 0x80) or 0x10 No matching subscribers.
    PubAcked { packet_id: u16, reason: ReasonCode },
    /// The connection is over; close the transport once the outgoing buffer
    /// is written.
    Disconnected(DisconnectReason),
    /// The server broke the protocol; a `Disconnected` event follows.
    ProtocolError(ProtocolError),
}

/// Why the connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// CONNACK carried a failure code (v3 return codes are mapped to v5 codes).
    ConnectRefused(ReasonCode),
    /// No CONNACK within `connect_timeout_ms`.
    ConnectTimeout,
    /// The server sent DISCONNECT (v5) with this reason.
    Server(ReasonCode),
    /// The caller called [`Client::disconnect`](super::Client::disconnect).
    Client(ReasonCode),
    /// No PINGRESP within the PINGRESP timeout.
    KeepAliveTimeout,
    /// The transport reported the connection closed.
    TransportClosed,
    /// The server broke the protocol (see the preceding `ProtocolError` event).
    ProtocolError(ReasonCode),
}

/// A command the client refused. Nothing was written and no state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The command needs a connection that CONNACK accepted.
    NotConnected,
    /// `connect` was called on a client that already started.
    AlreadyStarted,
    /// Would block: the outbound QoS 1/2 window (the smaller of
    /// `inflight_max` and the server's Receive Maximum) is full.
    InflightFull { inflight_max: u16 },
    /// Would block: `outgoing_max_bytes` are waiting to be written.
    OutgoingFull { outgoing_max_bytes: usize },
    /// Would block: `CONTROL_INFLIGHT_MAX` SUBSCRIBE/UNSUBSCRIBE await acks.
    ControlInflightFull,
    /// Would block: every packet id is in use.
    PacketIdsExhausted,
    /// The server's Maximum QoS (v5 CONNACK) is lower than requested.
    QoSNotSupported { maximum_qos: QoS },
    /// The server said Retain Available = 0 (v5 CONNACK).
    RetainNotSupported,
    /// Topic name empty (without a Topic Alias), containing `+` / `#` / U+0000,
    /// not UTF-8, or longer than 65_535 bytes.
    InvalidTopic,
    /// SUBSCRIBE / UNSUBSCRIBE needs at least one filter.
    NoFilters,
    /// The packet exceeds the server's Maximum Packet Size (v5 CONNACK).
    PacketTooLarge { size_bytes: usize, max_bytes: u32 },
    /// The codec refused the packet (a field longer than 65_535 bytes, ...).
    Encode(EncodeError),
    /// `resend_publish` / `resend_pubrel`: packet id 0, an id already in
    /// use on this connection, or a QoS 0 message.
    ResendInvalid { packet_id: u16 },
    /// `acknowledge`: no inbound message with this packet id awaits its
    /// acknowledgement (already acknowledged, or `manual_acks` is off).
    NotAwaitingAck { packet_id: u16 },
}

impl ClientError {
    /// True for the "try again after an event" errors: the window, the
    /// outgoing buffer or the packet ids are full.
    pub const fn is_would_block(&self) -> bool {
        matches!(
            self,
            ClientError::InflightFull { .. }
                | ClientError::OutgoingFull { .. }
                | ClientError::ControlInflightFull
                | ClientError::PacketIdsExhausted
        )
    }
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ClientError {}

/// The server broke the protocol. Always connection-fatal: the client
/// queues a DISCONNECT (v5, with [`ProtocolError::reason_code`]) and reports
/// `Disconnected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The bytes did not decode (malformed, too large, ...).
    Decode(DecodeError),
    /// A packet the server must not send to a client, or not in this state
    /// (anything before CONNACK, a second CONNACK, AUTH: enhanced
    /// authentication is not supported).
    UnexpectedPacket { packet_type: u8 },
    /// An acknowledgement for a packet id that is not awaiting it.
    UnknownPacketId { packet_type: u8, packet_id: u16 },
    /// Session Present = 1 in answer to Clean Start = 1 ([MQTT-3.2.2-2]).
    SessionPresentWithCleanStart,
    /// More unacknowledged inbound QoS 2 messages than our Receive Maximum
    /// (MQTT 5.0 section 3.3.4).
    ReceiveMaximumExceeded,
    /// Topic Alias 0, above our Topic Alias Maximum, or unknown (section 3.3.2.3.4).
    TopicAliasInvalid,
    /// An acknowledgement could not be encoded (reported, not panicked).
    Encode(EncodeError),
}

impl ProtocolError {
    /// The reason code for the DISCONNECT the client sends (v5).
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            ProtocolError::Decode(e) => e.reason_code(),
            ProtocolError::ReceiveMaximumExceeded => ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            ProtocolError::TopicAliasInvalid => ReasonCode::TOPIC_ALIAS_INVALID,
            ProtocolError::Encode(_) => ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
            ProtocolError::UnexpectedPacket { .. }
            | ProtocolError::UnknownPacketId { .. }
            | ProtocolError::SessionPresentWithCleanStart => ReasonCode::PROTOCOL_ERROR,
        }
    }
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?} (reason 0x{:02X})", self.reason_code().0)
    }
}

impl std::error::Error for ProtocolError {}

/// What [`Client::handle_read`](super::Client::handle_read) did.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadProgress {
    /// Whole packets decoded and consumed from the buffer.
    pub packets: usize,
    /// At least this many more bytes are needed to complete the next packet
    /// (a hint for sizing the next read).
    pub needed_bytes: usize,
}
