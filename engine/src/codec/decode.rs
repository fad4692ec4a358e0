//! Packet decode (MQTT 3.1 / 3.1.1 / 5.0 chapter 3), for every packet type
//! in both directions, with the spec's validation. The fixed header is
//! `fixed_header.rs`'s.
//!
//! Zero copy: a decoded packet's strings, binary fields and payload are
//! `Bytes::slice`s of the frame. A PUBLISH without User Properties or
//! Subscription Identifiers decodes without touching the heap.

use bytes::{Buf, Bytes, BytesMut};

use super::fixed_header::{fixed_header, FixedHeader};
use super::properties::{read_properties, read_properties_into, Properties};
use super::reader::{validate_topic_filter, validate_topic_name, Reader};
use super::reason::reasons_allowed;
use super::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, Protocol, PubAck, Publish,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeFilter,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

/// Outcome of [`decode`].
// Boxing the packet would put a heap allocation on every decode, which the
// publish path must not have (DESIGN section 4); the move is cheaper.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded {
    /// One packet; its frame was split off the front of the buffer.
    Packet(Packet),
    /// The buffer holds less than one frame; nothing was consumed. Read at
    /// least `needed_bytes` more (exact once the Remaining Length is known).
    Incomplete { needed_bytes: usize },
}

/// Split one complete frame off `buf` and decode it.
///
/// `protocol` is the connection's negotiated version (ignored by CONNECT,
/// which names its own). On `Incomplete` nothing is consumed; on an error
/// the buffer is left in an unspecified state (the connection is closed).
#[inline]
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    packet_size_max_bytes: u32,
) -> Result<Decoded, DecodeError> {
    match fixed_header(buf, packet_size_max_bytes)? {
        Err(needed_bytes) => Ok(Decoded::Incomplete { needed_bytes }),
        Ok(h) => {
            let frame = buf.split_to(h.frame_len).freeze();
            decode_body(frame, h, protocol, Decoded::Packet)
        }
    }
}

/// Decode one whole frame (fixed header included). A frame longer than its
/// Remaining Length says is `TrailingBytes`, a shorter one `Truncated`.
pub fn decode_packet(frame: Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
    match fixed_header(&frame, u32::MAX)? {
        Err(_) => Err(DecodeError::Truncated),
        Ok(h) if h.frame_len != frame.len() => Err(DecodeError::TrailingBytes),
        Ok(h) => decode_body(frame, h, protocol, |p| p),
    }
}

/// Decode a frame's body and `wrap` the packet (into `Decoded` for
/// [`decode`]). PUBLISH is built directly inside the wrapper, in the
/// caller's return slot: a `Packet` is a few hundred bytes and moving it
/// through nested `Result`s showed up as memcpy in profiles.
#[inline(always)]
fn decode_body<T>(
    frame: Bytes,
    h: FixedHeader,
    protocol: Protocol,
    wrap: impl FnOnce(Packet) -> T,
) -> Result<T, DecodeError> {
    let packet_type = h.first_byte >> 4;
    let flags = h.first_byte & 0x0F;
    if packet_type == 3 {
        // The hot path; its flags are validated inside. One copy of the
        // code per protocol family, so v3 never touches property storage.
        return if protocol.is_v5() {
            decode_publish::<true, T>(frame, h.header_len, flags, wrap)
        } else {
            decode_publish::<false, T>(frame, h.header_len, flags, wrap)
        };
    }
    decode_control(&frame, h, packet_type, flags, protocol).map(wrap)
}

/// Every packet but PUBLISH.
fn decode_control(
    frame: &Bytes,
    h: FixedHeader,
    packet_type: u8,
    flags: u8,
    protocol: Protocol,
) -> Result<Packet, DecodeError> {
    let v5 = protocol.is_v5();
    if packet_type == 0 || (packet_type == 15 && !v5) {
        return Err(DecodeError::InvalidPacketType(packet_type));
    }
    // Fixed header flags (section 2.1.3, [MQTT-2.1.3-1]): PUBREL, SUBSCRIBE
    // and UNSUBSCRIBE carry 0b0010 ([MQTT-3.6.1-1], [MQTT-3.8.1-1],
    // [MQTT-3.10.1-1]); PUBLISH carries DUP/QoS/RETAIN; the rest 0. MQTT
    // 3.1 had no reserved flags: its PUBREL carries QoS 1 and, when
    // resent, DUP (0b1010), which 3.1 clients do send.
    let flags_ok = match packet_type {
        6 if protocol == Protocol::V3_1 => matches!(flags, 0b0010 | 0b1010),
        6 | 8 | 10 => flags == 0b0010,
        _ => flags == 0,
    };
    if !flags_ok {
        return Err(DecodeError::ReservedFlags { packet_type, flags });
    }
    let mut r = Reader::new(frame, h.header_len);
    let packet = match packet_type {
        1 => Packet::Connect(Box::new(decode_connect(&mut r)?)),
        2 => Packet::ConnAck(decode_connack(&mut r, v5)?),
        4 => Packet::PubAck(decode_puback(&mut r, packet_type, v5)?),
        5 => Packet::PubRec(decode_puback(&mut r, packet_type, v5)?),
        6 => Packet::PubRel(decode_puback(&mut r, packet_type, v5)?),
        7 => Packet::PubComp(decode_puback(&mut r, packet_type, v5)?),
        8 => Packet::Subscribe(decode_subscribe(&mut r, v5)?),
        9 => Packet::SubAck(decode_suback(&mut r, v5)?),
        10 => Packet::Unsubscribe(decode_unsubscribe(&mut r, v5)?),
        11 => Packet::UnsubAck(decode_unsuback(&mut r, v5)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => {
            let (reason, properties) = if v5 {
                reason_and_props(&mut r, packet_type)?
            } else {
                Default::default()
            };
            Packet::Disconnect(Disconnect { reason, properties })
        }
        _ => {
            let (reason, properties) = reason_and_props(&mut r, packet_type)?;
            Packet::Auth(Auth { reason, properties })
        }
    };
    // Every field was read: anything left over is malformed.
    r.finish()?;
    Ok(packet)
}

// ---- reason codes (v5) ----

#[inline]
fn reason(packet_type: u8, code: u8) -> Result<ReasonCode, DecodeError> {
    if reasons_allowed(packet_type).contains(&code) {
        Ok(ReasonCode(code))
    } else {
        Err(DecodeError::InvalidReasonCode {
            packet_type,
            reason: code,
        })
    }
}

/// The optional "Reason Code, then Properties" tail of the v5 PUBACK
/// family, DISCONNECT and AUTH: absent means 0x00 with no properties; a
/// reason alone means no properties (sections 3.4.2.1, 3.4.2.2.1,
/// 3.14.2.1, 3.14.2.2.1, 3.15.2.1, 3.15.2.2.1).
#[inline]
fn reason_and_props<P: Properties>(
    r: &mut Reader<'_>,
    packet_type: u8,
) -> Result<(ReasonCode, P), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, P::default()));
    }
    let code = reason(packet_type, r.u8()?)?;
    if r.is_empty() {
        return Ok((code, P::default()));
    }
    Ok((code, read_properties(r, packet_type)?))
}

/// A required, non-zero Packet Identifier ([MQTT-2.2.1-3]).
#[inline]
fn packet_id(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::PacketIdZero),
        id => Ok(id),
    }
}

// ---- one decoder per packet ----

/// CONNECT (section 3.1). The protocol comes from the packet itself.
fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    // Protocol Name then Level (sections 3.1.2.1, 3.1.2.2, [MQTT-3.1.2-1],
    // [MQTT-3.1.2-2]); v3.1 used "MQIsdp" with level 3.
    let name = r.binary()?;
    let name_is_mqtt = match name.as_ref() {
        b"MQTT" => true,
        b"MQIsdp" => false,
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let protocol = match (name_is_mqtt, r.u8()?) {
        (false, 3) => Protocol::V3_1,
        (true, 4) => Protocol::V3_1_1,
        (true, 5) => Protocol::V5,
        (_, level) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
    };
    let v5 = protocol.is_v5();

    // Connect Flags (section 3.1.2.3).
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        // [MQTT-3.1.2-3]: the reserved flag MUST be 0.
        return Err(DecodeError::InvalidConnectFlags);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos_bits = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    let will_qos = if will_flag {
        // [MQTT-3.1.2-14]: Will QoS 3 is malformed.
        QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidQoS)?
    } else if will_qos_bits != 0 || will_retain {
        // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]: without a
        // will, Will QoS and Will Retain MUST be 0.
        return Err(DecodeError::InvalidConnectFlags);
    } else {
        QoS::AtMostOnce
    };
    if protocol == Protocol::V3_1_1 && password_flag && !username_flag {
        // [MQTT-3.1.2-22] (v3.1.1 only; v5 allows a password alone).
        return Err(DecodeError::InvalidConnectFlags);
    }
    let keep_alive_s = r.u16()?;
    let properties = if v5 {
        read_properties(r, 1)?
    } else {
        Default::default()
    };

    // Payload (section 3.1.3): Client Identifier, [Will Properties, Will
    // Topic, Will Payload], [User Name], [Password].
    let client_id = r.utf8()?;
    let will = if will_flag {
        let properties = if v5 {
            read_properties(r, 1)?
        } else {
            Default::default()
        };
        let topic = r.binary()?;
        validate_topic_name(&topic)?;
        if topic.is_empty() {
            // [MQTT-4.7.3-1]: a Topic Name is at least one character.
            return Err(DecodeError::EmptyTopicName);
        }
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag { Some(r.utf8()?) } else { None };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive_s,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// CONNACK (section 3.2).
fn decode_connack(r: &mut Reader<'_>, v5: bool) -> Result<ConnAck, DecodeError> {
    // Connect Acknowledge Flags: bits 7-1 reserved ([MQTT-3.2.2-1] in
    // v3.1.1, section 3.2.2.1 in v5). Reported as ReservedFlags for type 2.
    let ack_flags = r.u8()?;
    if ack_flags & 0xFE != 0 {
        return Err(DecodeError::ReservedFlags {
            packet_type: 2,
            flags: ack_flags,
        });
    }
    let code = r.u8()?;
    let (reason, properties) = if v5 {
        (reason(2, code)?, read_properties(r, 2)?)
    } else {
        // v3.1.1 return codes 0-5 (section 3.2.2.3); 6-255 are reserved.
        if code > 5 {
            return Err(DecodeError::InvalidReasonCode {
                packet_type: 2,
                reason: code,
            });
        }
        (ReasonCode::from_v3_connack_code(code), Default::default())
    };
    Ok(ConnAck {
        session_present: ack_flags & 0x01 != 0,
        reason,
        properties,
    })
}

/// PUBLISH (section 3.3): the hot path. Takes the frame by value so the
/// payload is the frame itself, advanced past the variable header (no
/// refcount traffic), and builds the packet in the return value.
#[inline(always)]
fn decode_publish<const V5: bool, T>(
    frame: Bytes,
    header_len: usize,
    flags: u8,
    wrap: impl FnOnce(Packet) -> T,
) -> Result<T, DecodeError> {
    let dup = flags & 0b1000 != 0;
    // [MQTT-3.3.1-4]: QoS 3 is malformed.
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let retain = flags & 0b0001 != 0;
    if dup && qos == QoS::AtMostOnce {
        // [MQTT-3.3.1-2]: DUP MUST be 0 for QoS 0 messages.
        return Err(DecodeError::ReservedFlags {
            packet_type: 3,
            flags,
        });
    }
    let mut r = Reader::new(&frame, header_len);
    let topic = r.binary()?;
    // [MQTT-3.3.2-1], [MQTT-3.3.2-2]: UTF-8, no wildcards.
    validate_topic_name(&topic)?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        packet_id(&mut r)?
    };
    let mut properties = PublishProperties::default();
    if V5 {
        read_properties_into(&mut r, 3, &mut properties)?;
    }
    // v3: [MQTT-4.7.3-1] a topic is at least one character. v5 (section
    // 3.3.2.3.4): a zero-length Topic Name needs a Topic Alias.
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicName);
    }
    let payload_start = r.position();
    let mut payload = frame;
    payload.advance(payload_start.min(payload.len()));
    Ok(wrap(Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        payload,
        properties,
    })))
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4-3.7). v3: the Packet
/// Identifier alone. v5: Remaining Length 2 means reason 0x00 and no
/// properties, 3 means a reason and no properties.
fn decode_puback(r: &mut Reader<'_>, packet_type: u8, v5: bool) -> Result<PubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let (reason, properties) = if v5 {
        reason_and_props(r, packet_type)?
    } else {
        Default::default()
    };
    Ok(PubAck {
        packet_id,
        reason,
        properties,
    })
}

/// Subscription Options byte (section 3.8.3.1).
fn subscription_options(byte: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidQoS)?;
    if !v5 {
        // v3.1.1 [MQTT-3.8.3-4]: bits 7-2 are reserved and MUST be 0.
        if byte & 0xFC != 0 {
            return Err(DecodeError::ReservedSubscriptionOptions);
        }
        return Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        });
    }
    // [MQTT-3.8.3-5]: bits 7-6 reserved; Retain Handling 3 is a Protocol
    // Error (section 3.8.3.1).
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::ReservedSubscriptionOptions),
    };
    if byte & 0xC0 != 0 {
        return Err(DecodeError::ReservedSubscriptionOptions);
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

/// SUBSCRIBE (section 3.8). Filter syntax is checked here (a bad filter is
/// a malformed packet); the broker's own limits on filters (levels, the
/// `$share/` form) are answered per filter in SUBACK.
fn decode_subscribe(r: &mut Reader<'_>, v5: bool) -> Result<Subscribe, DecodeError> {
    let (packet_id, properties) = id_and_props(r, 8, v5)?;
    let filters = filter_list(r, |r| {
        let filter = topic_filter(r)?;
        let options = subscription_options(r.u8()?, v5)?;
        Ok(SubscribeFilter { filter, options })
    })?;
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// The variable header of SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK
/// (sections 3.8.2 - 3.11.2): a Packet Identifier, then the properties (v5).
#[inline]
fn id_and_props<P: Properties>(
    r: &mut Reader<'_>,
    packet_type: u8,
    v5: bool,
) -> Result<(u16, P), DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        read_properties(r, packet_type)?
    } else {
        P::default()
    };
    Ok((packet_id, properties))
}

/// A Topic Filter: MQTT UTF-8, at least one character ([MQTT-4.7.3-1]),
/// wildcards alone in their level and `#` last ([MQTT-4.7.1-1],
/// [MQTT-4.7.1-2]). Breaking these makes the packet malformed, so the
/// connection is closed ([MQTT-4.8.0-1] in v3.1.1; DISCONNECT 0x81 in v5)
/// rather than the filter refused in SUBACK.
#[inline]
fn topic_filter(r: &mut Reader<'_>) -> Result<Bytes, DecodeError> {
    let filter = r.utf8()?;
    validate_topic_filter(&filter)?;
    Ok(filter)
}

/// The payload of SUBSCRIBE / UNSUBSCRIBE: entries read by `entry` up to
/// the end, at least one ([MQTT-3.8.3-3], [MQTT-3.10.3-2]). Grows with
/// what is on the wire: each entry takes at least 2 bytes.
fn filter_list<T>(
    r: &mut Reader<'_>,
    mut entry: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(entry(r)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok(filters)
}

/// The reason code list of SUBACK / UNSUBACK: one byte each up to the end;
/// at least one (one per filter of a SUBSCRIBE / UNSUBSCRIBE, which has at
/// least one). v3 SUBACK codes are 0, 1, 2 or 0x80 (section 3.9.3).
fn reason_list(
    r: &mut Reader<'_>,
    packet_type: u8,
    v5: bool,
) -> Result<Vec<ReasonCode>, DecodeError> {
    if r.is_empty() {
        return Err(DecodeError::Truncated);
    }
    // Sized by bytes actually present in the frame.
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = r.u8()?;
        let ok_v3 = matches!(code, 0 | 1 | 2 | 0x80);
        reasons.push(if v5 {
            reason(packet_type, code)?
        } else if ok_v3 {
            ReasonCode(code)
        } else {
            return Err(DecodeError::InvalidReasonCode {
                packet_type,
                reason: code,
            });
        });
    }
    Ok(reasons)
}

/// SUBACK (section 3.9).
fn decode_suback(r: &mut Reader<'_>, v5: bool) -> Result<SubAck, DecodeError> {
    let (packet_id, properties) = id_and_props(r, 9, v5)?;
    let reasons = reason_list(r, 9, v5)?;
    Ok(SubAck {
        packet_id,
        reasons,
        properties,
    })
}

/// UNSUBSCRIBE (section 3.10).
fn decode_unsubscribe(r: &mut Reader<'_>, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let (packet_id, properties) = id_and_props(r, 10, v5)?;
    let filters = filter_list(r, topic_filter)?;
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

/// UNSUBACK (section 3.11): v3 is the Packet Identifier alone; v5 adds
/// properties and one reason code per filter.
fn decode_unsuback(r: &mut Reader<'_>, v5: bool) -> Result<UnsubAck, DecodeError> {
    let (packet_id, properties) = id_and_props(r, 11, v5)?;
    let reasons = if v5 {
        reason_list(r, 11, v5)?
    } else {
        Vec::new()
    };
    Ok(UnsubAck {
        packet_id,
        reasons,
        properties,
    })
}
