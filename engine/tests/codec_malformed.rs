//! Malformed input, one row per rule: hand-written bytes, the DecodeError
//! the codec must return and the MQTT 5.0 reason code it maps to. Rows are
//! checked through `decode_packet` and through `decode` on a `BytesMut`
//! (unless a row says otherwise). Fuzzer finds are pinned at the end.

mod wire;

use bytes::{Bytes, BytesMut};
use ringmq_engine::codec::{
    check_frame, decode, decode_packet, DecodeError, DecodeError::*, Decoded, FrameCheck, Packet,
    Protocol, Protocol::*,
};
use wire::{cat, connect4, connect5, fr, props, s};

/// How a row is fed to the codec.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `decode_packet` and `decode` (max packet size u32::MAX).
    Both,
    /// `decode` only, with this maximum packet size (frame-level checks).
    DecodeMax(u32),
    /// `decode_packet` only (the frame itself is inconsistent).
    PacketOnly,
}

struct Row {
    name: &'static str,
    protocol: Protocol,
    bytes: Vec<u8>,
    via: Via,
    err: DecodeError,
    reason: u8,
}

fn row(
    name: &'static str,
    protocol: Protocol,
    bytes: Vec<u8>,
    err: DecodeError,
    reason: u8,
) -> Row {
    Row {
        name,
        protocol,
        bytes,
        via: Via::Both,
        err,
        reason,
    }
}

impl Row {
    fn via(mut self, via: Via) -> Row {
        self.via = via;
        self
    }
}

// ---- byte builders ----

/// v5 PUBLISH QoS 0 to "t" with these properties and payload "x".
fn publish5(p: &[u8]) -> Vec<u8> {
    fr(0x30, &cat(&[&s(b"t"), &props(p), b"x"]))
}

const MALFORMED: u8 = 0x81;
const PROTOCOL_ERROR: u8 = 0x82;
const UNSUPPORTED_VERSION: u8 = 0x84;
const TOPIC_NAME_INVALID: u8 = 0x90;
const PACKET_TOO_LARGE: u8 = 0x95;

fn rows() -> Vec<Row> {
    let cid = s(b"c");
    vec![
        // ---- fixed header (section 2.1) ----
        row(
            "remaining length of 5 bytes",
            V3_1_1,
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            MalformedVarInt,
            MALFORMED,
        ),
        row(
            "remaining length 4th byte continues",
            V3_1_1,
            vec![0x30, 0x80, 0x80, 0x80, 0x80],
            MalformedVarInt,
            MALFORMED,
        ),
        row(
            "remaining length not minimal [MQTT-1.5.5-1]",
            V3_1_1,
            vec![0xC0, 0x80, 0x00],
            MalformedVarInt,
            MALFORMED,
        ),
        row(
            "frame over max packet size",
            V3_1_1,
            fr(0x30, &cat(&[&s(b"t"), b"0123456"])),
            PacketTooLarge {
                size_bytes: 12,
                max_bytes: 11,
            },
            PACKET_TOO_LARGE,
        )
        .via(Via::DecodeMax(11)),
        row(
            "too large from a partial remaining length",
            V3_1_1,
            vec![0x30, 0x80],
            PacketTooLarge {
                size_bytes: 131,
                max_bytes: 100,
            },
            PACKET_TOO_LARGE,
        )
        .via(Via::DecodeMax(100)),
        row(
            "packet type 0",
            V3_1_1,
            vec![0x00, 0x00],
            InvalidPacketType(0),
            MALFORMED,
        ),
        row(
            "packet type 15 (AUTH) in v3",
            V3_1_1,
            vec![0xF0, 0x00],
            InvalidPacketType(15),
            MALFORMED,
        ),
        row(
            "CONNECT flags 0001",
            V3_1_1,
            vec![0x11, 0x00],
            ReservedFlags {
                packet_type: 1,
                flags: 1,
            },
            MALFORMED,
        ),
        row(
            "PUBACK flags 0001",
            V3_1_1,
            vec![0x41, 2, 0, 1],
            ReservedFlags {
                packet_type: 4,
                flags: 1,
            },
            MALFORMED,
        ),
        row(
            "PUBREL flags 0000 [MQTT-3.6.1-1]",
            V3_1_1,
            vec![0x60, 2, 0, 1],
            ReservedFlags {
                packet_type: 6,
                flags: 0,
            },
            MALFORMED,
        ),
        // The MQTT 3.1 PUBREL with DUP (0x6A) is only for protocol level 3.
        row(
            "v3.1.1 PUBREL with DUP (0x6A)",
            V3_1_1,
            vec![0x6A, 2, 0, 1],
            ReservedFlags {
                packet_type: 6,
                flags: 0b1010,
            },
            MALFORMED,
        ),
        row(
            "v5 PUBREL with DUP (0x6A)",
            V5,
            vec![0x6A, 2, 0, 1],
            ReservedFlags {
                packet_type: 6,
                flags: 0b1010,
            },
            MALFORMED,
        ),
        row(
            "v3.1 PUBREL flags 0000",
            V3_1,
            vec![0x60, 2, 0, 1],
            ReservedFlags {
                packet_type: 6,
                flags: 0,
            },
            MALFORMED,
        ),
        row(
            "SUBSCRIBE flags 0000 [MQTT-3.8.1-1]",
            V3_1_1,
            fr(0x80, &cat(&[&[0, 1], &s(b"a"), &[0]])),
            ReservedFlags {
                packet_type: 8,
                flags: 0,
            },
            MALFORMED,
        ),
        row(
            "UNSUBSCRIBE flags 0011 [MQTT-3.10.1-1]",
            V5,
            fr(0xA3, &cat(&[&[0, 1, 0], &s(b"a")])),
            ReservedFlags {
                packet_type: 10,
                flags: 3,
            },
            MALFORMED,
        ),
        row(
            "PINGREQ flags 0001",
            V3_1_1,
            vec![0xC1, 0x00],
            ReservedFlags {
                packet_type: 12,
                flags: 1,
            },
            MALFORMED,
        ),
        row(
            "DISCONNECT flags 0010",
            V5,
            vec![0xE2, 0x00],
            ReservedFlags {
                packet_type: 14,
                flags: 2,
            },
            MALFORMED,
        ),
        row(
            "AUTH flags 1000",
            V5,
            vec![0xF8, 0x00],
            ReservedFlags {
                packet_type: 15,
                flags: 8,
            },
            MALFORMED,
        ),
        // ---- PUBLISH (section 3.3) ----
        row(
            "PUBLISH QoS 3 [MQTT-3.3.1-4]",
            V3_1_1,
            fr(0x36, &cat(&[&s(b"t"), &[0, 1]])),
            InvalidQoS,
            MALFORMED,
        ),
        row(
            "PUBLISH QoS 0 with DUP [MQTT-3.3.1-2]",
            V3_1_1,
            fr(0x38, &s(b"t")),
            ReservedFlags {
                packet_type: 3,
                flags: 8,
            },
            MALFORMED,
        ),
        row(
            "PUBLISH topic longer than the packet",
            V3_1_1,
            vec![0x30, 4, 0, 5, b'a', b'b'],
            Truncated,
            MALFORMED,
        ),
        row(
            "PUBLISH QoS 1 without packet id",
            V3_1_1,
            fr(0x32, &s(b"a")),
            Truncated,
            MALFORMED,
        ),
        row(
            "PUBLISH packet id 0 [MQTT-2.2.1-3]",
            V3_1_1,
            fr(0x32, &cat(&[&s(b"a"), &[0, 0]])),
            PacketIdZero,
            PROTOCOL_ERROR,
        ),
        row(
            "PUBLISH topic with + [MQTT-3.3.2-2]",
            V3_1_1,
            fr(0x30, &s(b"a/+")),
            WildcardInTopicName,
            TOPIC_NAME_INVALID,
        ),
        row(
            "PUBLISH topic with #",
            V5,
            fr(0x30, &cat(&[&s(b"#"), &[0]])),
            WildcardInTopicName,
            TOPIC_NAME_INVALID,
        ),
        row(
            "PUBLISH empty topic v3 [MQTT-4.7.3-1]",
            V3_1_1,
            fr(0x30, &s(b"")),
            EmptyTopicName,
            PROTOCOL_ERROR,
        ),
        row(
            "PUBLISH empty topic v5 without Topic Alias",
            V5,
            fr(0x30, &cat(&[&s(b""), &[0]])),
            EmptyTopicName,
            PROTOCOL_ERROR,
        ),
        row(
            "topic: overlong encoding C0 80",
            V3_1_1,
            fr(0x30, &s(&[0xC0, 0x80])),
            InvalidUtf8,
            MALFORMED,
        ),
        row(
            "topic: U+0000 [MQTT-1.5.4-2]",
            V3_1_1,
            fr(0x30, &s(b"a\0b")),
            InvalidUtf8,
            MALFORMED,
        ),
        row(
            "topic: surrogate U+D800 [MQTT-1.5.4-1]",
            V3_1_1,
            fr(0x30, &s(&[0xED, 0xA0, 0x80])),
            InvalidUtf8,
            MALFORMED,
        ),
        row(
            "topic: truncated UTF-8 sequence",
            V3_1_1,
            fr(0x30, &s(&[b'a', 0xE2, 0x82])),
            InvalidUtf8,
            MALFORMED,
        ),
        row(
            "v5 PUBLISH without Property Length",
            V5,
            fr(0x30, &s(b"t")),
            Truncated,
            MALFORMED,
        ),
        // ---- PUBACK family (sections 3.4-3.7) ----
        row(
            "PUBACK packet id 0",
            V3_1_1,
            vec![0x40, 2, 0, 0],
            PacketIdZero,
            PROTOCOL_ERROR,
        ),
        row(
            "PUBCOMP packet id 0 (v5)",
            V5,
            vec![0x70, 2, 0, 0],
            PacketIdZero,
            PROTOCOL_ERROR,
        ),
        row(
            "PUBACK remaining length 1",
            V3_1_1,
            vec![0x40, 1, 0],
            Truncated,
            MALFORMED,
        ),
        row(
            "v3 PUBACK with a reason byte",
            V3_1_1,
            vec![0x40, 3, 0, 1, 0],
            TrailingBytes,
            MALFORMED,
        ),
        row(
            "v5 PUBACK reason 0x92",
            V5,
            vec![0x40, 3, 0, 1, 0x92],
            InvalidReasonCode {
                packet_type: 4,
                reason: 0x92,
            },
            MALFORMED,
        ),
        row(
            "v5 PUBREC reason 0x04",
            V5,
            vec![0x50, 3, 0, 1, 0x04],
            InvalidReasonCode {
                packet_type: 5,
                reason: 0x04,
            },
            MALFORMED,
        ),
        row(
            "v5 PUBREL reason 0x10",
            V5,
            vec![0x62, 3, 0, 1, 0x10],
            InvalidReasonCode {
                packet_type: 6,
                reason: 0x10,
            },
            MALFORMED,
        ),
        row(
            "v5 PUBCOMP reason 0x80",
            V5,
            vec![0x70, 3, 0, 1, 0x80],
            InvalidReasonCode {
                packet_type: 7,
                reason: 0x80,
            },
            MALFORMED,
        ),
        row(
            "v5 PUBACK property block then a stray byte",
            V5,
            vec![0x40, 5, 0, 1, 0, 0, 0],
            TrailingBytes,
            MALFORMED,
        ),
        // ---- v5 properties (section 2.2.2) ----
        row(
            "Property Length past the packet",
            V5,
            vec![0x40, 5, 0, 1, 0, 9, 0x1F],
            Truncated,
            MALFORMED,
        ),
        row(
            "property value past Property Length",
            V5,
            fr(0x30, &cat(&[&s(b"t"), &[2, 0x23, 0, 1]])),
            Truncated,
            MALFORMED,
        ),
        row(
            "Property Length varint of 5 bytes",
            V5,
            vec![0x40, 8, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            MalformedVarInt,
            MALFORMED,
        ),
        row(
            "unknown property 0x00",
            V5,
            publish5(&[0x00, 0]),
            InvalidPropertyId(0x00),
            MALFORMED,
        ),
        row(
            "unknown property 0x7F",
            V5,
            publish5(&[0x7F, 0]),
            InvalidPropertyId(0x7F),
            MALFORMED,
        ),
        row(
            "two-byte property identifier 128",
            V5,
            publish5(&[0x80, 0x01, 0]),
            InvalidPropertyId(0x80),
            MALFORMED,
        ),
        row(
            "two-byte property identifier 256",
            V5,
            publish5(&[0x80, 0x02, 0]),
            InvalidPropertyId(0xFF),
            MALFORMED,
        ),
        row(
            "Topic Alias in CONNECT",
            V5,
            connect5(0x02, &[0x23, 0, 1], &cid),
            PropertyNotAllowed {
                packet_type: 1,
                property_id: 0x23,
            },
            MALFORMED,
        ),
        row(
            "Will Delay Interval in PUBLISH",
            V5,
            publish5(&[0x18, 0, 0, 0, 1]),
            PropertyNotAllowed {
                packet_type: 3,
                property_id: 0x18,
            },
            MALFORMED,
        ),
        row(
            "Reason String in PUBLISH",
            V5,
            publish5(&cat(&[&[0x1F], &s(b"r")])),
            PropertyNotAllowed {
                packet_type: 3,
                property_id: 0x1F,
            },
            MALFORMED,
        ),
        row(
            "Subscription Identifier in UNSUBSCRIBE",
            V5,
            fr(0xA2, &cat(&[&[0, 1], &props(&[0x0B, 1]), &s(b"a")])),
            PropertyNotAllowed {
                packet_type: 10,
                property_id: 0x0B,
            },
            MALFORMED,
        ),
        row(
            "Session Expiry in will properties",
            V5,
            connect5(
                0x06,
                &[],
                &cat(&[&cid, &props(&[0x11, 0, 0, 0, 1]), &s(b"w"), &s(b"p")]),
            ),
            PropertyNotAllowed {
                packet_type: 1,
                property_id: 0x11,
            },
            MALFORMED,
        ),
        row(
            "Maximum QoS in DISCONNECT",
            V5,
            vec![0xE0, 4, 0x00, 2, 0x24, 0],
            PropertyNotAllowed {
                packet_type: 14,
                property_id: 0x24,
            },
            MALFORMED,
        ),
        row(
            "Topic Alias twice in PUBLISH",
            V5,
            publish5(&[0x23, 0, 1, 0x23, 0, 2]),
            DuplicateProperty(0x23),
            PROTOCOL_ERROR,
        ),
        row(
            "Subscription Identifier twice in SUBSCRIBE",
            V5,
            fr(
                0x82,
                &cat(&[&[0, 1], &props(&[0x0B, 1, 0x0B, 2]), &s(b"a"), &[0]]),
            ),
            DuplicateProperty(0x0B),
            PROTOCOL_ERROR,
        ),
        row(
            "Session Expiry twice in CONNECT",
            V5,
            connect5(0x02, &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1], &cid),
            DuplicateProperty(0x11),
            PROTOCOL_ERROR,
        ),
        row(
            "Reason String twice in PUBACK",
            V5,
            fr(
                0x40,
                &cat(&[
                    &[0, 1, 0],
                    &props(&cat(&[&[0x1F], &s(b"a"), &[0x1F], &s(b"b")])),
                ]),
            ),
            DuplicateProperty(0x1F),
            PROTOCOL_ERROR,
        ),
        row(
            "Receive Maximum 0",
            V5,
            connect5(0x02, &[0x21, 0, 0], &cid),
            InvalidPropertyValue(0x21),
            PROTOCOL_ERROR,
        ),
        row(
            "Maximum Packet Size 0",
            V5,
            connect5(0x02, &[0x27, 0, 0, 0, 0], &cid),
            InvalidPropertyValue(0x27),
            PROTOCOL_ERROR,
        ),
        row(
            "Request Problem Information 2",
            V5,
            connect5(0x02, &[0x17, 2], &cid),
            InvalidPropertyValue(0x17),
            PROTOCOL_ERROR,
        ),
        row(
            "Request Response Information 2",
            V5,
            connect5(0x02, &[0x19, 2], &cid),
            InvalidPropertyValue(0x19),
            PROTOCOL_ERROR,
        ),
        row(
            "Subscription Identifier 0 in SUBSCRIBE",
            V5,
            fr(0x82, &cat(&[&[0, 1], &props(&[0x0B, 0]), &s(b"a"), &[0]])),
            InvalidPropertyValue(0x0B),
            PROTOCOL_ERROR,
        ),
        row(
            "Subscription Identifier 0 in PUBLISH",
            V5,
            publish5(&[0x0B, 0]),
            InvalidPropertyValue(0x0B),
            PROTOCOL_ERROR,
        ),
        row(
            "Payload Format Indicator 2",
            V5,
            publish5(&[0x01, 2]),
            InvalidPropertyValue(0x01),
            PROTOCOL_ERROR,
        ),
        row(
            "Topic Alias 0 in PUBLISH",
            V5,
            publish5(&[0x23, 0, 0]),
            InvalidPropertyValue(0x23),
            PROTOCOL_ERROR,
        ),
        row(
            "Response Topic with a wildcard [MQTT-3.3.2-14]",
            V5,
            publish5(&cat(&[&[0x08], &s(b"r/#")])),
            InvalidPropertyValue(0x08),
            PROTOCOL_ERROR,
        ),
        row(
            "Maximum QoS 2 in CONNACK",
            V5,
            vec![0x20, 5, 0, 0, 2, 0x24, 2],
            InvalidPropertyValue(0x24),
            PROTOCOL_ERROR,
        ),
        row(
            "Retain Available 2 in CONNACK",
            V5,
            vec![0x20, 5, 0, 0, 2, 0x25, 2],
            InvalidPropertyValue(0x25),
            PROTOCOL_ERROR,
        ),
        row(
            "Shared Subscription Available 7",
            V5,
            vec![0x20, 5, 0, 0, 2, 0x2A, 7],
            InvalidPropertyValue(0x2A),
            PROTOCOL_ERROR,
        ),
        row(
            "User Property with a NUL",
            V5,
            publish5(&cat(&[&[0x26], &s(b"k"), &s(b"v\0")])),
            InvalidUtf8,
            MALFORMED,
        ),
        row(
            "Reason String not UTF-8",
            V5,
            fr(
                0x40,
                &cat(&[&[0, 1, 0x10], &props(&cat(&[&[0x1F], &s(&[0xFF])]))]),
            ),
            InvalidUtf8,
            MALFORMED,
        ),
        // ---- CONNECT (section 3.1) ----
        row(
            "protocol name MQTX [MQTT-3.1.2-1]",
            V3_1_1,
            fr(0x10, &cat(&[&s(b"MQTX"), &[4, 2, 0, 60], &cid])),
            InvalidProtocolName,
            UNSUPPORTED_VERSION,
        ),
        row(
            "protocol name mqtt (case)",
            V5,
            fr(0x10, &cat(&[&s(b"mqtt"), &[5, 2, 0, 60, 0], &cid])),
            InvalidProtocolName,
            UNSUPPORTED_VERSION,
        ),
        row(
            "MQTT level 3 [MQTT-3.1.2-2]",
            V3_1_1,
            fr(0x10, &cat(&[&s(b"MQTT"), &[3, 2, 0, 60], &cid])),
            UnsupportedProtocolVersion(3),
            UNSUPPORTED_VERSION,
        ),
        row(
            "MQTT level 6",
            V3_1_1,
            fr(0x10, &cat(&[&s(b"MQTT"), &[6, 2, 0, 60], &cid])),
            UnsupportedProtocolVersion(6),
            UNSUPPORTED_VERSION,
        ),
        row(
            "MQIsdp level 4",
            V3_1_1,
            fr(0x10, &cat(&[&s(b"MQIsdp"), &[4, 2, 0, 60], &cid])),
            UnsupportedProtocolVersion(4),
            UNSUPPORTED_VERSION,
        ),
        row(
            "CONNECT reserved flag [MQTT-3.1.2-3]",
            V3_1_1,
            connect4(0x03, &cid),
            InvalidConnectFlags,
            MALFORMED,
        ),
        row(
            "Will QoS without Will Flag [MQTT-3.1.2-13]",
            V3_1_1,
            connect4(0x0A, &cid),
            InvalidConnectFlags,
            MALFORMED,
        ),
        row(
            "Will Retain without Will Flag [MQTT-3.1.2-15]",
            V3_1_1,
            connect4(0x22, &cid),
            InvalidConnectFlags,
            MALFORMED,
        ),
        row(
            "Will QoS 3 [MQTT-3.1.2-14]",
            V3_1_1,
            connect4(0x1E, &cat(&[&cid, &s(b"w"), &s(b"p")])),
            InvalidQoS,
            MALFORMED,
        ),
        row(
            "password without user name in v3.1.1 [MQTT-3.1.2-22]",
            V3_1_1,
            connect4(0x42, &cat(&[&cid, &s(b"pw")])),
            InvalidConnectFlags,
            MALFORMED,
        ),
        row(
            "client id not UTF-8 [MQTT-3.1.3-4]",
            V3_1_1,
            connect4(0x02, &s(&[0xFE])),
            InvalidUtf8,
            MALFORMED,
        ),
        row(
            "user name not UTF-8 [MQTT-3.1.3-11]",
            V3_1_1,
            connect4(0x82, &cat(&[&cid, &s(&[0xC3])])),
            InvalidUtf8,
            MALFORMED,
        ),
        row(
            "will topic with a wildcard",
            V3_1_1,
            connect4(0x06, &cat(&[&cid, &s(b"w/+"), &s(b"p")])),
            WildcardInTopicName,
            TOPIC_NAME_INVALID,
        ),
        row(
            "will topic empty",
            V3_1_1,
            connect4(0x06, &cat(&[&cid, &s(b""), &s(b"p")])),
            EmptyTopicName,
            PROTOCOL_ERROR,
        ),
        row(
            "will payload missing",
            V3_1_1,
            connect4(0x06, &cat(&[&cid, &s(b"w")])),
            Truncated,
            MALFORMED,
        ),
        row(
            "user name flag without user name",
            V3_1_1,
            connect4(0x82, &cid),
            Truncated,
            MALFORMED,
        ),
        row(
            "CONNECT with a trailing byte",
            V3_1_1,
            connect4(0x02, &cat(&[&cid, &[0]])),
            TrailingBytes,
            MALFORMED,
        ),
        row(
            "CONNECT cut after the protocol name",
            V5,
            fr(0x10, &s(b"MQTT")),
            Truncated,
            MALFORMED,
        ),
        // ---- CONNACK (section 3.2) ----
        row(
            "CONNACK reserved ack flags [MQTT-3.2.2-1]",
            V3_1_1,
            vec![0x20, 2, 0x02, 0],
            ReservedFlags {
                packet_type: 2,
                flags: 2,
            },
            MALFORMED,
        ),
        row(
            "v3 CONNACK return code 6",
            V3_1_1,
            vec![0x20, 2, 0, 6],
            InvalidReasonCode {
                packet_type: 2,
                reason: 6,
            },
            MALFORMED,
        ),
        row(
            "v5 CONNACK reason 0x04",
            V5,
            vec![0x20, 3, 0, 0x04, 0],
            InvalidReasonCode {
                packet_type: 2,
                reason: 0x04,
            },
            MALFORMED,
        ),
        row(
            "v5 CONNACK without properties",
            V5,
            vec![0x20, 2, 0, 0],
            Truncated,
            MALFORMED,
        ),
        // ---- SUBSCRIBE / SUBACK (sections 3.8, 3.9) ----
        row(
            "SUBSCRIBE packet id 0",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 0], &s(b"a"), &[0]])),
            PacketIdZero,
            PROTOCOL_ERROR,
        ),
        row(
            "SUBSCRIBE without filters [MQTT-3.8.3-3]",
            V3_1_1,
            vec![0x82, 2, 0, 1],
            NoTopicFilters,
            PROTOCOL_ERROR,
        ),
        row(
            "v5 SUBSCRIBE without filters",
            V5,
            vec![0x82, 3, 0, 1, 0],
            NoTopicFilters,
            PROTOCOL_ERROR,
        ),
        row(
            "SUBSCRIBE filter without options byte",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 1], &s(b"a")])),
            Truncated,
            MALFORMED,
        ),
        row(
            "v3 subscription options bit 2 [MQTT-3.8.3-4]",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x04]])),
            ReservedSubscriptionOptions,
            MALFORMED,
        ),
        row(
            "v3 subscription QoS 3",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x03]])),
            InvalidQoS,
            MALFORMED,
        ),
        row(
            "v5 subscription options bit 6 [MQTT-3.8.3-5]",
            V5,
            fr(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0x40]])),
            ReservedSubscriptionOptions,
            MALFORMED,
        ),
        row(
            "v5 Retain Handling 3",
            V5,
            fr(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0x30]])),
            ReservedSubscriptionOptions,
            MALFORMED,
        ),
        row(
            "v5 subscription QoS 3",
            V5,
            fr(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0x03]])),
            InvalidQoS,
            MALFORMED,
        ),
        // Topic Filter syntax (section 4.7): a malformed packet, not a
        // SUBACK failure code ([MQTT-4.7.3-1], [MQTT-4.7.1-1], [MQTT-4.7.1-2]).
        row(
            "SUBSCRIBE empty filter [MQTT-4.7.3-1]",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 1], &s(b""), &[0]])),
            InvalidTopicFilter,
            MALFORMED,
        ),
        row(
            "v5 SUBSCRIBE empty filter after a valid one",
            V5,
            fr(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0], &s(b""), &[0]])),
            InvalidTopicFilter,
            MALFORMED,
        ),
        row(
            "SUBSCRIBE '#' not last [MQTT-4.7.1-1]",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 1], &s(b"a/#/b"), &[1]])),
            InvalidTopicFilter,
            MALFORMED,
        ),
        row(
            "v5 SUBSCRIBE '#' not alone in its level",
            V5,
            fr(0x82, &cat(&[&[0, 1, 0], &s(b"a/b#"), &[1]])),
            InvalidTopicFilter,
            MALFORMED,
        ),
        row(
            "SUBSCRIBE '+' not alone in its level [MQTT-4.7.1-2]",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 1], &s(b"a+/b"), &[0]])),
            InvalidTopicFilter,
            MALFORMED,
        ),
        row(
            "v5 SUBSCRIBE wildcard in a ShareName",
            V5,
            fr(0x82, &cat(&[&[0, 1, 0], &s(b"$share/g+/x"), &[0]])),
            InvalidTopicFilter,
            MALFORMED,
        ),
        row(
            "UNSUBSCRIBE empty filter",
            V3_1_1,
            fr(0xA2, &cat(&[&[0, 1], &s(b"")])),
            InvalidTopicFilter,
            MALFORMED,
        ),
        row(
            "v5 UNSUBSCRIBE '+' not alone in its level",
            V5,
            fr(0xA2, &cat(&[&[0, 1, 0], &s(b"a/+b")])),
            InvalidTopicFilter,
            MALFORMED,
        ),
        row(
            "SUBSCRIBE filter not UTF-8",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 1], &s(&[0x80]), &[0]])),
            InvalidUtf8,
            MALFORMED,
        ),
        row(
            "SUBACK without return codes",
            V3_1_1,
            vec![0x90, 2, 0, 1],
            Truncated,
            MALFORMED,
        ),
        row(
            "v3 SUBACK return code 3",
            V3_1_1,
            vec![0x90, 3, 0, 1, 3],
            InvalidReasonCode {
                packet_type: 9,
                reason: 3,
            },
            MALFORMED,
        ),
        row(
            "v5 SUBACK reason 0x11",
            V5,
            vec![0x90, 4, 0, 1, 0, 0x11],
            InvalidReasonCode {
                packet_type: 9,
                reason: 0x11,
            },
            MALFORMED,
        ),
        // ---- UNSUBSCRIBE / UNSUBACK (sections 3.10, 3.11) ----
        row(
            "UNSUBSCRIBE packet id 0",
            V3_1_1,
            fr(0xA2, &cat(&[&[0, 0], &s(b"a")])),
            PacketIdZero,
            PROTOCOL_ERROR,
        ),
        row(
            "UNSUBSCRIBE without filters [MQTT-3.10.3-2]",
            V3_1_1,
            vec![0xA2, 2, 0, 1],
            NoTopicFilters,
            PROTOCOL_ERROR,
        ),
        row(
            "v3 UNSUBACK with a reason byte",
            V3_1_1,
            vec![0xB0, 3, 0, 1, 0],
            TrailingBytes,
            MALFORMED,
        ),
        row(
            "v5 UNSUBACK reason 0x10",
            V5,
            vec![0xB0, 4, 0, 1, 0, 0x10],
            InvalidReasonCode {
                packet_type: 11,
                reason: 0x10,
            },
            MALFORMED,
        ),
        row(
            "v5 UNSUBACK without reasons",
            V5,
            vec![0xB0, 3, 0, 1, 0],
            Truncated,
            MALFORMED,
        ),
        // ---- PINGREQ, DISCONNECT, AUTH (sections 3.12-3.15) ----
        row(
            "PINGREQ with a body",
            V3_1_1,
            vec![0xC0, 1, 0],
            TrailingBytes,
            MALFORMED,
        ),
        row(
            "PINGRESP with a body",
            V5,
            vec![0xD0, 1, 0],
            TrailingBytes,
            MALFORMED,
        ),
        row(
            "v3 DISCONNECT with a body",
            V3_1_1,
            vec![0xE0, 1, 0],
            TrailingBytes,
            MALFORMED,
        ),
        row(
            "v5 DISCONNECT reason 0x01",
            V5,
            vec![0xE0, 1, 0x01],
            InvalidReasonCode {
                packet_type: 14,
                reason: 0x01,
            },
            MALFORMED,
        ),
        row(
            "v5 AUTH reason 0x04",
            V5,
            vec![0xF0, 1, 0x04],
            InvalidReasonCode {
                packet_type: 15,
                reason: 0x04,
            },
            MALFORMED,
        ),
        row(
            "v5 AUTH Property Length past the packet",
            V5,
            vec![0xF0, 2, 0x18, 5],
            Truncated,
            MALFORMED,
        ),
        // ---- frames handed whole to decode_packet ----
        row(
            "decode_packet: frame cut in the header",
            V3_1_1,
            vec![0x30],
            Truncated,
            MALFORMED,
        )
        .via(Via::PacketOnly),
        row(
            "decode_packet: frame cut in the body",
            V3_1_1,
            vec![0x30, 5, 0, 1, b't'],
            Truncated,
            MALFORMED,
        )
        .via(Via::PacketOnly),
        row(
            "decode_packet: bytes after the frame",
            V3_1_1,
            vec![0xC0, 0, 0xC0],
            TrailingBytes,
            MALFORMED,
        )
        .via(Via::PacketOnly),
        // ---- regressions found by the fuzzer (engine/fuzz) ----
    ]
}

#[test]
fn malformed_table() {
    let rows = rows();
    let mut failures = Vec::new();
    for r in &rows {
        if r.err.reason_code().0 != r.reason {
            failures.push(format!(
                "{}: {:?} maps to {:#04x}, row says {:#04x}",
                r.name,
                r.err,
                r.err.reason_code().0,
                r.reason
            ));
        }
        let want = Err::<(), _>(r.err);
        if !matches!(r.via, Via::DecodeMax(_)) {
            let got = decode_packet(Bytes::copy_from_slice(&r.bytes), r.protocol).map(|_| ());
            if got != want {
                failures.push(format!(
                    "{}: decode_packet gave {got:?}, want {want:?}",
                    r.name
                ));
            }
        }
        let max = match r.via {
            Via::Both => u32::MAX,
            Via::DecodeMax(max) => max,
            Via::PacketOnly => continue,
        };
        let mut buf = BytesMut::from(&r.bytes[..]);
        let got = match decode(&mut buf, r.protocol, max) {
            Ok(Decoded::Packet(p)) => Ok(format!("{p:?}")),
            Ok(Decoded::Incomplete { needed_bytes }) => Ok(format!("Incomplete({needed_bytes})")),
            Err(e) => Err(e),
        };
        if got != Err(r.err) {
            failures.push(format!("{}: decode gave {got:?}, want {:?}", r.name, r.err));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Controls: the rows' neighbours that are valid, so the table is not
/// passing by rejecting everything.
#[test]
fn valid_neighbours_decode() {
    let cid = s(b"c");
    let ok: Vec<(&str, Protocol, Vec<u8>)> = vec![
        (
            "v5 empty topic with a Topic Alias",
            V5,
            fr(0x30, &cat(&[&s(b""), &props(&[0x23, 0, 1]), b"x"])),
        ),
        (
            "v5 password without user name",
            V5,
            connect5(0x42, &[], &cat(&[&cid, &s(b"pw")])),
        ),
        (
            "v3.1 password without user name",
            V3_1,
            fr(
                0x10,
                &cat(&[&s(b"MQIsdp"), &[3, 0x42, 0, 60], &cid, &s(b"pw")]),
            ),
        ),
        (
            "User Property twice",
            V5,
            publish5(&cat(&[
                &[0x26],
                &s(b"k"),
                &s(b"v"),
                &[0x26],
                &s(b"k"),
                &s(b"v"),
            ])),
        ),
        (
            "Subscription Identifier twice in PUBLISH",
            V5,
            publish5(&[0x0B, 1, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F]),
        ),
        (
            "Will QoS 2 with Will Flag",
            V3_1_1,
            connect4(0x16, &cat(&[&cid, &s(b"w"), &s(b"p")])),
        ),
        (
            "v5 PUBACK reason + Property Length 0",
            V5,
            vec![0x40, 4, 0, 1, 0x10, 0],
        ),
        ("v5 DISCONNECT reason only", V5, vec![0xE0, 1, 0x04]),
        (
            "SUBSCRIBE to a bad $share form (answered in SUBACK, not here)",
            V3_1_1,
            fr(0x82, &cat(&[&[0, 1], &s(b"$share//x"), &[1]])),
        ),
        (
            "SUBSCRIBE to wildcards in their own levels",
            V5,
            fr(
                0x82,
                &cat(&[&[0, 1, 0], &s(b"+/a/+/#"), &[1], &s(b"#"), &[0]]),
            ),
        ),
        (
            "v3.1 PUBREL with DUP (0x6A), as 3.1 clients resend it",
            V3_1,
            vec![0x6A, 2, 0, 1],
        ),
        (
            "v5 PUBLISH topic with U+FFFF",
            V5,
            fr(0x30, &cat(&[&s("\u{FFFF}".as_bytes()), &[0]])),
        ),
        (
            "frame exactly at max packet size",
            V3_1_1,
            fr(0x30, &cat(&[&s(b"t"), b"012345"])),
        ),
    ];
    for (name, protocol, bytes) in ok {
        let got = decode_packet(Bytes::copy_from_slice(&bytes), protocol);
        assert!(got.is_ok(), "{name}: {got:?}");
        assert_eq!(check_frame(&bytes, 11).is_ok(), bytes.len() <= 11, "{name}");
    }
    // The table's PacketTooLarge row at N (11 bytes) passes.
    let eleven = fr(0x30, &cat(&[&s(b"t"), b"012345"]));
    assert_eq!(
        check_frame(&eleven, 11),
        Ok(FrameCheck::Complete { frame_len: 11 })
    );
    assert!(matches!(
        decode_packet(Bytes::from(eleven), V3_1_1),
        Ok(Packet::Publish(_))
    ));
}
