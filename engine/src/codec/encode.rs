//! Packet encode (MQTT 3.1.1 / 5.0 chapter 3): exact lengths first
//! ([`encoded_len`], a [`Plan`] per packet), then one `reserve` and one pass
//! of writes. A length is never written as a placeholder and patched later:
//! the Remaining Length is a 1-4 byte varint (section 2.1.4), so it is
//! computed before the first byte goes out.
//!
//! Nothing is written when encoding fails (a field over 65_535 bytes, a
//! frame over the protocol maximum, AUTH in v3): every check happens in the
//! sizing pass.

use bytes::{Bytes, BytesMut};

use super::plan::{emit, emit_sized, Plan};
use super::properties::{props_size, write_block, Properties};
use super::sizer::{block_len, put_field, Sizer};
use super::writer::Out;
use super::{
    Auth, ConnAck, Connect, Disconnect, EncodeError, Packet, Protocol, PubAck, Publish, ReasonCode,
    SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

// ---- public API ----

/// Exact encoded frame length of `packet` (fixed header included).
///
/// A CONNECT is sized at its own `connect.protocol` (the argument is
/// ignored, as in decode). AUTH in v3 cannot be encoded: 0.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    match plan(packet, protocol) {
        Some(plan) => plan.frame_len(),
        None => 0,
    }
}

/// Exact encoded frame length of a PUBLISH.
#[inline]
pub fn publish_encoded_len(publish: &Publish, protocol: Protocol) -> usize {
    publish_plan(publish, protocol).frame_len()
}

/// Append the encoding of `packet` to `out`; returns the bytes written.
///
/// v3 encoders drop what v3 cannot carry (properties, PUBACK-family and
/// DISCONNECT reason codes, UNSUBACK reason codes); CONNACK and SUBACK codes
/// are mapped with [`ReasonCode::v3_connack_code`] / [`ReasonCode::v3_suback_code`].
/// A CONNECT is encoded at its own `connect.protocol`.
pub fn encode(
    packet: &Packet,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    // One dispatch to a small function per packet that sizes, checks,
    // reserves and writes (small functions keep `emit` and its body inlined).
    let v5 = protocol.is_v5();
    match packet {
        Packet::Publish(p) => encode_publish(p, protocol, out),
        Packet::Connect(c) => encode_connect(c, out),
        Packet::ConnAck(c) => encode_connack(c, protocol, out),
        Packet::PubAck(a) => encode_puback(a, 0x40, v5, out),
        Packet::PubRec(a) => encode_puback(a, 0x50, v5, out),
        Packet::PubRel(a) => encode_puback(a, 0x62, v5, out),
        Packet::PubComp(a) => encode_puback(a, 0x70, v5, out),
        Packet::Subscribe(s) => encode_subscribe(s, v5, out),
        Packet::SubAck(s) => encode_suback(s, v5, out),
        Packet::Unsubscribe(u) => encode_unsubscribe(u, v5, out),
        Packet::UnsubAck(u) => encode_unsuback(u, v5, out),
        Packet::PingReq => emit(Plan::default(), 0xC0, out, |_, _| {}),
        Packet::PingResp => emit(Plan::default(), 0xD0, out, |_, _| {}),
        Packet::Disconnect(d) => encode_disconnect(d, v5, out),
        Packet::Auth(a) => {
            if !v5 {
                return Err(EncodeError::NotInProtocol);
            }
            encode_auth(a, out)
        }
    }
}

fn encode_connect(c: &Connect, out: &mut BytesMut) -> Result<usize, EncodeError> {
    emit_sized(connect_plan(c), 0x10, out, |out, plan| {
        write_connect(c, plan, out)
    })
}

fn encode_connack(
    c: &ConnAck,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let v5 = protocol.is_v5();
    emit(connack_plan(c, v5), 0x20, out, |out, plan| {
        // Connect Acknowledge Flags: bit 0 is Session Present in 3.1.1 and
        // 5.0 (section 3.2.2.1); MQTT 3.1 has no such flag, the byte is
        // reserved and sent as 0.
        out.put_u8(u8::from(c.session_present && protocol != Protocol::V3_1));
        if v5 {
            out.put_u8(c.reason.0);
            write_block(&c.properties, plan.props, out);
        } else {
            out.put_u8(c.reason.v3_connack_code());
        }
    })
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP; `first_byte` carries the type and,
/// for PUBREL, the 0b0010 flags ([MQTT-3.6.1-1]).
fn encode_puback(
    a: &PubAck,
    first_byte: u8,
    v5: bool,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    emit(puback_plan(a, v5), first_byte, out, |out, plan| {
        out.put_u16(a.packet_id);
        if v5 {
            write_reason_props(a.reason, &a.properties, plan, 2, out);
        }
    })
}

fn encode_subscribe(s: &Subscribe, v5: bool, out: &mut BytesMut) -> Result<usize, EncodeError> {
    emit(subscribe_plan(s, v5), 0x82, out, |out, plan| {
        write_id_props(s.packet_id, &s.properties, plan, v5, out);
        for f in &s.filters {
            put_field(out, &f.filter);
            out.put_u8(options_byte(&f.options, v5));
        }
    })
}

fn encode_suback(s: &SubAck, v5: bool, out: &mut BytesMut) -> Result<usize, EncodeError> {
    emit(suback_plan(s, v5), 0x90, out, |out, plan| {
        write_id_props(s.packet_id, &s.properties, plan, v5, out);
        let code: fn(ReasonCode) -> u8 = if v5 {
            |r| r.0
        } else {
            ReasonCode::v3_suback_code
        };
        for &r in &s.reasons {
            out.put_u8(code(r));
        }
    })
}

fn encode_unsubscribe(u: &Unsubscribe, v5: bool, out: &mut BytesMut) -> Result<usize, EncodeError> {
    emit(unsubscribe_plan(u, v5), 0xA2, out, |out, plan| {
        write_id_props(u.packet_id, &u.properties, plan, v5, out);
        for f in &u.filters {
            put_field(out, f);
        }
    })
}

fn encode_unsuback(u: &UnsubAck, v5: bool, out: &mut BytesMut) -> Result<usize, EncodeError> {
    emit(unsuback_plan(u, v5), 0xB0, out, |out, plan| {
        write_id_props(u.packet_id, &u.properties, plan, v5, out);
        // v3 UNSUBACK has no reason codes (section 3.11, v3.1.1).
        if v5 {
            for r in &u.reasons {
                out.put_u8(r.0);
            }
        }
    })
}

/// The variable header SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK share
/// (sections 3.8.2 - 3.11.2): Packet Identifier, then the properties (v5).
#[inline]
fn write_id_props<P: Properties>(
    packet_id: u16,
    props: &P,
    plan: &Plan,
    v5: bool,
    out: &mut impl Out,
) {
    out.put_u16(packet_id);
    if v5 {
        write_block(props, plan.props, out);
    }
}

fn encode_disconnect(d: &Disconnect, v5: bool, out: &mut BytesMut) -> Result<usize, EncodeError> {
    if !v5 {
        // v3 DISCONNECT has no body (section 3.14, v3.1.1).
        return emit(Plan::default(), 0xE0, out, |_, _| {});
    }
    let plan = reason_props_plan(d.reason, props_size(&d.properties));
    emit(plan, 0xE0, out, |out, plan| {
        write_reason_props(d.reason, &d.properties, plan, 0, out)
    })
}

fn encode_auth(a: &Auth, out: &mut BytesMut) -> Result<usize, EncodeError> {
    let plan = reason_props_plan(a.reason, props_size(&a.properties));
    emit(plan, 0xF0, out, |out, plan| {
        write_reason_props(a.reason, &a.properties, plan, 0, out)
    })
}

/// Append the encoding of a PUBLISH to `out` (the hot path: no `Packet` wrapper).
#[inline]
pub fn encode_publish(
    publish: &Publish,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    emit_publish(publish, protocol, out)
}

/// A PUBLISH frame: one `reserve`, one pass.
#[inline(always)]
fn emit_publish(
    publish: &Publish,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let plan = publish_plan(publish, protocol);
    plan.check()?;
    let len = plan.frame_len();
    out.reserve(len);
    let start = out.len();
    write_publish_header(publish, protocol, &plan, out);
    out.extend_from_slice(&publish.payload);
    debug_assert_eq!(out.len() - start, len);
    Ok(len)
}

// ---- sizing ----

/// `None` only for AUTH in v3 (it does not exist there).
fn plan(packet: &Packet, protocol: Protocol) -> Option<Plan> {
    let v5 = protocol.is_v5();
    Some(match packet {
        Packet::Connect(c) => connect_plan(c),
        Packet::ConnAck(c) => connack_plan(c, v5),
        Packet::Publish(p) => publish_plan(p, protocol),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            puback_plan(a, v5)
        }
        Packet::Subscribe(s) => subscribe_plan(s, v5),
        Packet::SubAck(s) => suback_plan(s, v5),
        Packet::Unsubscribe(u) => unsubscribe_plan(u, v5),
        Packet::UnsubAck(u) => unsuback_plan(u, v5),
        Packet::PingReq | Packet::PingResp => Plan::default(),
        Packet::Disconnect(d) => {
            if v5 {
                reason_props_plan(d.reason, props_size(&d.properties))
            } else {
                Plan::default()
            }
        }
        Packet::Auth(a) => {
            if !v5 {
                return None;
            }
            reason_props_plan(a.reason, props_size(&a.properties))
        }
    })
}

/// Protocol Name field (section 3.1.2.1): "MQIsdp" for 3.1, "MQTT" after.
const fn protocol_name(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::V3_1 => b"MQIsdp",
        Protocol::V3_1_1 | Protocol::V5 => b"MQTT",
    }
}

fn connect_plan(c: &Connect) -> Plan {
    let v5 = c.protocol.is_v5();
    let mut s = Sizer::default();
    // Protocol Name, Protocol Level, Connect Flags, Keep Alive (section 3.1.2).
    s.field(protocol_name(c.protocol));
    s.fixed(1 + 1 + 2);
    let props = s.props_block(&c.properties, v5);
    // Payload, in the order of section 3.1.3.
    s.field(&c.client_id);
    let mut will_props = 0;
    if let Some(will) = &c.will {
        will_props = s.props_block(&will.properties, v5);
        s.field(&will.topic);
        s.field(&will.payload);
    }
    if let Some(username) = &c.username {
        s.field(username);
    }
    if let Some(password) = &c.password {
        s.field(password);
    }
    Plan {
        remaining: s.len,
        props,
        will_props,
        too_long: s.too_long,
    }
}

fn connack_plan(c: &ConnAck, v5: bool) -> Plan {
    // Acknowledge Flags + Return / Reason Code (section 3.2.2).
    let mut s = Sizer::starting_at(2);
    let props = s.props_block(&c.properties, v5);
    s.plan(props)
}

#[inline]
fn publish_plan(p: &Publish, protocol: Protocol) -> Plan {
    let mut s = Sizer::default();
    s.field(&p.topic);
    // Packet Identifier only for QoS 1 and 2 (section 3.3.2.2).
    if p.qos.as_u8() > 0 {
        s.fixed(2);
    }
    let props = s.props_block(&p.properties, protocol.is_v5());
    s.fixed(p.payload.len());
    s.plan(props)
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP (sections 3.4.2 - 3.7.2): v3 and the
/// v5 short form are the Packet Identifier alone (Remaining Length 2); with
/// a non-zero reason and no properties the Property Length is omitted
/// (Remaining Length 3, section 3.4.2.2.1).
fn puback_plan(a: &PubAck, v5: bool) -> Plan {
    if !v5 {
        return Plan {
            remaining: 2,
            ..Plan::default()
        };
    }
    let mut plan = reason_props_plan(a.reason, props_size(&a.properties));
    plan.remaining += 2;
    plan
}

/// The optional "reason code, then properties" tail shared by the v5
/// PUBACK family, DISCONNECT (section 3.14.2.1) and AUTH (section 3.15.2.1):
/// nothing when the reason is 0 and there are no properties, the reason
/// alone when there are no properties, otherwise both.
#[inline]
fn reason_props_plan(reason: ReasonCode, p: Sizer) -> Plan {
    let remaining = if p.len == 0 {
        usize::from(reason != ReasonCode::SUCCESS)
    } else {
        1 + block_len(p.len)
    };
    Plan {
        remaining,
        props: p.len,
        will_props: 0,
        too_long: p.too_long,
    }
}

fn subscribe_plan(sub: &Subscribe, v5: bool) -> Plan {
    // Packet Identifier, then the properties (v5).
    let mut s = Sizer::starting_at(2);
    let props = s.props_block(&sub.properties, v5);
    for f in &sub.filters {
        s.field(&f.filter);
        s.fixed(1);
    }
    s.plan(props)
}

fn suback_plan(sub: &SubAck, v5: bool) -> Plan {
    // Packet Identifier, then the properties (v5).
    let mut s = Sizer::starting_at(2);
    let props = s.props_block(&sub.properties, v5);
    s.fixed(sub.reasons.len());
    s.plan(props)
}

fn unsubscribe_plan(u: &Unsubscribe, v5: bool) -> Plan {
    // Packet Identifier, then the properties (v5).
    let mut s = Sizer::starting_at(2);
    let props = s.props_block(&u.properties, v5);
    for f in &u.filters {
        s.field(f);
    }
    s.plan(props)
}

fn unsuback_plan(u: &UnsubAck, v5: bool) -> Plan {
    // v3 UNSUBACK is the Packet Identifier alone (section 3.11, v3.1.1);
    // v5 adds properties and one reason code per filter.
    let mut s = Sizer::starting_at(2);
    let props = s.props_block(&u.properties, v5);
    if v5 {
        s.fixed(u.reasons.len());
    }
    s.plan(props)
}

// ---- writing ----

/// PUBLISH fixed-header flags (section 3.3.1): DUP, QoS, RETAIN. The other
/// packets' first bytes are constants in [`encode`]: 0b0010 flags for
/// PUBREL, SUBSCRIBE and UNSUBSCRIBE ([MQTT-3.6.1-1], [MQTT-3.8.1-1],
/// [MQTT-3.10.1-1]), 0 for the rest.
#[inline]
fn publish_flags(p: &Publish) -> u8 {
    (u8::from(p.dup) << 3) | (p.qos.as_u8() << 1) | u8::from(p.retain)
}

/// Write the optional reason + properties tail sized by [`reason_props_plan`];
/// `before` is the bytes of the variable header before it (the packet id).
#[inline]
fn write_reason_props<P: Properties>(
    reason: ReasonCode,
    props: &P,
    plan: &Plan,
    before: usize,
    out: &mut impl Out,
) {
    if plan.remaining > before {
        out.put_u8(reason.0);
        if plan.props > 0 {
            write_block(props, plan.props, out);
        }
    }
}

/// Subscription Options (section 3.8.3.1): QoS in bits 0-1, No Local bit 2,
/// Retain As Published bit 3, Retain Handling bits 4-5 (v5); v3 has only QoS.
#[inline]
fn options_byte(o: &SubscriptionOptions, v5: bool) -> u8 {
    let qos = o.qos.as_u8();
    if !v5 {
        return qos;
    }
    qos | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn write_connect(c: &Connect, plan: &Plan, out: &mut impl Out) {
    let v5 = c.protocol.is_v5();
    put_field(out, protocol_name(c.protocol));
    out.put_u8(c.protocol.level());
    // Connect Flags (section 3.1.2.3): bit 0 reserved, must be 0 ([MQTT-3.1.2-3]).
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0b100 | (will.qos.as_u8() << 3) | (u8::from(will.retain) << 5);
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    out.put_u8(flags);
    out.put_u16(c.keep_alive_s);
    if v5 {
        write_block(&c.properties, plan.props, out);
    }
    put_field(out, &c.client_id);
    if let Some(will) = &c.will {
        if v5 {
            write_block(&will.properties, plan.will_props, out);
        }
        put_field(out, &will.topic);
        put_field(out, &will.payload);
    }
    if let Some(username) = &c.username {
        put_field(out, username);
    }
    if let Some(password) = &c.password {
        put_field(out, password);
    }
}

#[inline]
fn write_publish_header(p: &Publish, protocol: Protocol, plan: &Plan, out: &mut impl Out) {
    out.put_u8(0x30 | publish_flags(p));
    out.put_varint(plan.remaining as u32);
    write_publish_body(p, protocol.is_v5(), plan, out);
}

/// PUBLISH variable header (section 3.3.2): Topic Name, Packet Identifier
/// (QoS > 0), Properties (v5). The payload follows.
#[inline]
fn write_publish_body(p: &Publish, v5: bool, plan: &Plan, out: &mut impl Out) {
    put_field(out, &p.topic);
    if p.qos.as_u8() > 0 {
        out.put_u16(p.packet_id);
    }
    if v5 {
        write_block(&p.properties, plan.props, out);
    }
}

/// A helper for tests and tools: encode `packet` into a fresh buffer.
pub fn encode_to_bytes(packet: &Packet, protocol: Protocol) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::with_capacity(encoded_len(packet, protocol));
    encode(packet, protocol, &mut out)?;
    Ok(out.freeze())
}
