//! v5 properties (MQTT 5.0 section 2.2.2): identifiers, wire types, which
//! packet allows which (the table of section 2.2.2.2), value ranges, and the
//! decode / size / write of each property struct in `packet.rs`.
//!
//! ```text
//! | Property Length (varint) | id (varint) | value | id | value | ... |
//!                            '---- exactly Property Length bytes ----'
//! ```
//!
//! A property struct only has fields for the properties its packet allows,
//! so "allowed here" is the `match` in each `read_one`; anything else is
//! `PropertyNotAllowed` (a known identifier) or `InvalidPropertyId`.

use bytes::Bytes;

use super::encode::{put_field, Sizer};
use super::reader::{validate_topic_name, Reader};
use super::varint::varint_len;
use super::writer::Out;
use super::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DecodeError,
    DisconnectProperties, PublishProperties, SubscribeProperties, UnsubscribeProperties,
    UserProperties, WillProperties,
};

/// Property identifiers (section 2.2.2.2, table 2-4).
pub(crate) mod id {
    pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub(crate) const CONTENT_TYPE: u8 = 0x03;
    pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
    pub(crate) const CORRELATION_DATA: u8 = 0x09;
    pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
    pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
    pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
    pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
    pub(crate) const REASON_STRING: u8 = 0x1F;
    pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
    pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub(crate) const TOPIC_ALIAS: u8 = 0x23;
    pub(crate) const MAXIMUM_QOS: u8 = 0x24;
    pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
    pub(crate) const USER_PROPERTY: u8 = 0x26;
    pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// How a property value is encoded (section 2.2.2.2, "Type" column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireType {
    Byte,
    TwoByteInt,
    FourByteInt,
    VarInt,
    Utf8,
    Binary,
    Utf8Pair,
}

/// The wire type of a known property identifier, `None` for unknown ones.
pub(crate) const fn wire_type(property_id: u8) -> Option<WireType> {
    use id::*;
    Some(match property_id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => WireType::Byte,
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => {
            WireType::TwoByteInt
        }
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => WireType::FourByteInt,
        SUBSCRIPTION_IDENTIFIER => WireType::VarInt,
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => WireType::Utf8,
        CORRELATION_DATA | AUTHENTICATION_DATA => WireType::Binary,
        USER_PROPERTY => WireType::Utf8Pair,
        _ => return None,
    })
}

/// Pseudo packet type used for the Will Properties column of table 2-4 in
/// [`allowed_in`] (errors in will properties report packet type 1, CONNECT).
#[cfg(test)]
pub(crate) const WILL_PROPERTIES: u8 = 0;

/// Section 2.2.2.2 table 2-4 as a bit mask over packet types (bit n = packet
/// type n; bit 0 = Will Properties). The property structs' `read_one`
/// enforce this table; the unit test below checks that they agree with it
/// (the decoder itself needs no second copy of the table).
#[cfg(test)]
pub(crate) const fn allowed_in(property_id: u8) -> u16 {
    use id::*;
    const WILL: u16 = 1 << WILL_PROPERTIES;
    const CONNECT: u16 = 1 << 1;
    const CONNACK: u16 = 1 << 2;
    const PUBLISH: u16 = 1 << 3;
    const PUBACK: u16 = 1 << 4;
    const PUBREC: u16 = 1 << 5;
    const PUBREL: u16 = 1 << 6;
    const PUBCOMP: u16 = 1 << 7;
    const SUBSCRIBE: u16 = 1 << 8;
    const SUBACK: u16 = 1 << 9;
    const UNSUBSCRIBE: u16 = 1 << 10;
    const UNSUBACK: u16 = 1 << 11;
    const DISCONNECT: u16 = 1 << 14;
    const AUTH: u16 = 1 << 15;
    match property_id {
        PAYLOAD_FORMAT_INDICATOR
        | MESSAGE_EXPIRY_INTERVAL
        | CONTENT_TYPE
        | RESPONSE_TOPIC
        | CORRELATION_DATA => PUBLISH | WILL,
        SUBSCRIPTION_IDENTIFIER => PUBLISH | SUBSCRIBE,
        SESSION_EXPIRY_INTERVAL => CONNECT | CONNACK | DISCONNECT,
        ASSIGNED_CLIENT_IDENTIFIER
        | SERVER_KEEP_ALIVE
        | RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => CONNACK,
        AUTHENTICATION_METHOD | AUTHENTICATION_DATA => CONNECT | CONNACK | AUTH,
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => CONNECT,
        WILL_DELAY_INTERVAL => WILL,
        SERVER_REFERENCE => CONNACK | DISCONNECT,
        REASON_STRING => {
            CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK | DISCONNECT | AUTH
        }
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | MAXIMUM_PACKET_SIZE => CONNECT | CONNACK,
        TOPIC_ALIAS => PUBLISH,
        USER_PROPERTY => {
            WILL | CONNECT
                | CONNACK
                | PUBLISH
                | PUBACK
                | PUBREC
                | PUBREL
                | PUBCOMP
                | SUBSCRIBE
                | SUBACK
                | UNSUBSCRIBE
                | UNSUBACK
                | DISCONNECT
                | AUTH
        }
        _ => 0,
    }
}

/// Decode, size and write one packet kind's property struct.
pub(crate) trait Properties: Default {
    /// Read the value of property `property_id` (identifier already
    /// consumed) into `self`, enforcing allowed-here, single occurrence and
    /// value range. `packet_type` is only used in errors.
    fn read_one(
        &mut self,
        r: &mut Reader<'_>,
        property_id: u8,
        packet_type: u8,
    ) -> Result<(), DecodeError>;

    /// Add the encoded size of the properties (Property Length excluded).
    fn size(&self, s: &mut Sizer);

    /// Write the properties (Property Length excluded).
    fn write(&self, out: &mut impl Out);
}

/// Read a Property Length and the properties it covers (section 2.2.2.1).
/// The length must cover whole properties exactly: a value running past it
/// is `Truncated`, and it may not run past the packet either.
pub(crate) fn read_properties<P: Properties>(
    r: &mut Reader<'_>,
    packet_type: u8,
) -> Result<P, DecodeError> {
    let mut props = P::default();
    read_properties_into(r, packet_type, &mut props)?;
    Ok(props)
}

/// [`read_properties`] into a caller's (default) struct, so a large
/// property struct is not moved through a `Result` on the hot path.
#[inline]
pub(crate) fn read_properties_into<P: Properties>(
    r: &mut Reader<'_>,
    packet_type: u8,
    props: &mut P,
) -> Result<(), DecodeError> {
    let len = r.varint()?;
    let mut block = r.sub(len as usize)?;
    while !block.is_empty() {
        // The identifier is a Variable Byte Integer (section 2.2.2.2); every
        // defined one fits a single byte.
        let property_id = block.varint()?;
        let property_id =
            u8::try_from(property_id).map_err(|_| DecodeError::InvalidPropertyId(u8::MAX))?;
        props.read_one(&mut block, property_id, packet_type)?;
    }
    Ok(())
}

/// Size of a property block: the Property Length varint plus `props_len`.
#[inline]
pub(crate) const fn block_len(props_len: usize) -> usize {
    varint_len(if props_len > u32::MAX as usize {
        u32::MAX
    } else {
        props_len as u32
    }) + props_len
}

/// Size a property struct: `(properties length, too_long)`.
#[inline]
pub(crate) fn props_size<P: Properties>(props: &P) -> Sizer {
    let mut s = Sizer::default();
    props.size(&mut s);
    s
}

/// Write a Property Length and the properties.
#[inline]
pub(crate) fn write_block<P: Properties>(props: &P, props_len: usize, out: &mut impl Out) {
    if props_len == 0 {
        // The common case: no properties, a single 0 byte.
        out.put_u8(0);
        return;
    }
    out.put_varint(props_len as u32);
    let start = out.written();
    props.write(out);
    debug_assert_eq!(out.written() - start, props_len);
}

// ---- decode helpers ----

/// The error for an identifier this packet's struct has no field for.
#[inline]
fn not_here(packet_type: u8, property_id: u8) -> DecodeError {
    if wire_type(property_id).is_some() {
        DecodeError::PropertyNotAllowed {
            packet_type,
            property_id,
        }
    } else {
        DecodeError::InvalidPropertyId(property_id)
    }
}

/// Store a single-occurrence property; a second one is a Protocol Error
/// (section 2.2.2.2: "It is a Protocol Error to include ... more than once").
#[inline]
fn once<T>(slot: &mut Option<T>, property_id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(property_id));
    }
    *slot = Some(value);
    Ok(())
}

/// A Byte property whose only values are 0 and 1 (Payload Format
/// Indicator, Request Problem / Response Information, the *Available flags,
/// Maximum QoS).
#[inline]
fn flag(r: &mut Reader<'_>, property_id: u8) -> Result<u8, DecodeError> {
    let v = r.u8()?;
    if v > 1 {
        return Err(DecodeError::InvalidPropertyValue(property_id));
    }
    Ok(v)
}

/// Receive Maximum (sections 3.1.2.11.3, 3.2.2.3.3: "a Protocol Error to
/// include ... the value 0") and Topic Alias in PUBLISH (section 3.3.2.3.4:
/// "A Topic Alias of 0 is not permitted").
#[inline]
fn nonzero_u16(r: &mut Reader<'_>, property_id: u8) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::InvalidPropertyValue(property_id)),
        v => Ok(v),
    }
}

/// Maximum Packet Size (sections 3.1.2.11.4, 3.2.2.3.6: 0 is a Protocol Error).
#[inline]
fn nonzero_u32(r: &mut Reader<'_>, property_id: u8) -> Result<u32, DecodeError> {
    match r.u32()? {
        0 => Err(DecodeError::InvalidPropertyValue(property_id)),
        v => Ok(v),
    }
}

/// Subscription Identifier: 1 to 268,435,455; 0 is a Protocol Error
/// (section 3.3.2.3.8, 3.8.2.1.2).
#[inline]
fn subscription_id(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    match r.varint()? {
        0 => Err(DecodeError::InvalidPropertyValue(
            id::SUBSCRIPTION_IDENTIFIER,
        )),
        v => Ok(v),
    }
}

/// Response Topic: a Topic Name, so no wildcards ([MQTT-3.3.2-14]).
#[inline]
fn response_topic(r: &mut Reader<'_>) -> Result<Bytes, DecodeError> {
    let topic = r.binary()?;
    validate_topic_name(&topic).map_err(|e| match e {
        DecodeError::WildcardInTopicName => DecodeError::InvalidPropertyValue(id::RESPONSE_TOPIC),
        other => other,
    })?;
    Ok(topic)
}

/// User Property: a UTF-8 String Pair (section 1.5.7); may repeat.
#[inline]
fn user_pair(r: &mut Reader<'_>, user: &mut UserProperties) -> Result<(), DecodeError> {
    let key = r.utf8()?;
    let value = r.utf8()?;
    user.push((key, value));
    Ok(())
}

// ---- size / write helpers ----

impl Sizer {
    #[inline]
    fn p_u8(&mut self, v: &Option<u8>) {
        if v.is_some() {
            self.fixed(2);
        }
    }
    #[inline]
    fn p_u16(&mut self, v: &Option<u16>) {
        if v.is_some() {
            self.fixed(3);
        }
    }
    #[inline]
    fn p_u32(&mut self, v: &Option<u32>) {
        if v.is_some() {
            self.fixed(5);
        }
    }
    #[inline]
    fn p_field(&mut self, v: &Option<Bytes>) {
        if let Some(b) = v {
            self.fixed(1);
            self.field(b);
        }
    }
    #[inline]
    fn p_varint(&mut self, v: u32) {
        self.fixed(1);
        self.varint(v);
    }
    #[inline]
    fn p_user(&mut self, user: &UserProperties) {
        for (k, v) in user {
            self.fixed(1);
            self.field(k);
            self.field(v);
        }
    }
}

#[inline]
fn w_u8(out: &mut impl Out, property_id: u8, v: Option<u8>) {
    if let Some(v) = v {
        out.put_u8(property_id);
        out.put_u8(v);
    }
}

#[inline]
fn w_u16(out: &mut impl Out, property_id: u8, v: Option<u16>) {
    if let Some(v) = v {
        out.put_u8(property_id);
        out.put_u16(v);
    }
}

#[inline]
fn w_u32(out: &mut impl Out, property_id: u8, v: Option<u32>) {
    if let Some(v) = v {
        out.put_u8(property_id);
        out.put_u32(v);
    }
}

#[inline]
fn w_field(out: &mut impl Out, property_id: u8, v: &Option<Bytes>) {
    if let Some(b) = v {
        out.put_u8(property_id);
        put_field(out, b);
    }
}

#[inline]
fn w_user(out: &mut impl Out, user: &UserProperties) {
    for (k, v) in user {
        out.put_u8(id::USER_PROPERTY);
        put_field(out, k);
        put_field(out, v);
    }
}

// ---- one impl per packet kind ----

impl Properties for ConnectProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        use id::*;
        match pid {
            SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval_s, pid, r.u32()?),
            RECEIVE_MAXIMUM => once(&mut self.receive_maximum, pid, nonzero_u16(r, pid)?),
            MAXIMUM_PACKET_SIZE => once(
                &mut self.maximum_packet_size_bytes,
                pid,
                nonzero_u32(r, pid)?,
            ),
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, pid, r.u16()?),
            REQUEST_RESPONSE_INFORMATION => {
                once(&mut self.request_response_information, pid, flag(r, pid)?)
            }
            REQUEST_PROBLEM_INFORMATION => {
                once(&mut self.request_problem_information, pid, flag(r, pid)?)
            }
            USER_PROPERTY => user_pair(r, &mut self.user),
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, pid, r.utf8()?),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, pid, r.binary()?),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        s.p_u32(&self.session_expiry_interval_s);
        s.p_u16(&self.receive_maximum);
        s.p_u32(&self.maximum_packet_size_bytes);
        s.p_u16(&self.topic_alias_maximum);
        s.p_u8(&self.request_response_information);
        s.p_u8(&self.request_problem_information);
        s.p_user(&self.user);
        s.p_field(&self.authentication_method);
        s.p_field(&self.authentication_data);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        use id::*;
        w_u32(out, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval_s);
        w_u16(out, RECEIVE_MAXIMUM, self.receive_maximum);
        w_u32(out, MAXIMUM_PACKET_SIZE, self.maximum_packet_size_bytes);
        w_u16(out, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        w_u8(
            out,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        w_u8(
            out,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        w_user(out, &self.user);
        w_field(out, AUTHENTICATION_METHOD, &self.authentication_method);
        w_field(out, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl Properties for WillProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        use id::*;
        match pid {
            WILL_DELAY_INTERVAL => once(&mut self.will_delay_interval_s, pid, r.u32()?),
            PAYLOAD_FORMAT_INDICATOR => {
                once(&mut self.payload_format_indicator, pid, flag(r, pid)?)
            }
            MESSAGE_EXPIRY_INTERVAL => once(&mut self.message_expiry_interval_s, pid, r.u32()?),
            CONTENT_TYPE => once(&mut self.content_type, pid, r.utf8()?),
            RESPONSE_TOPIC => once(&mut self.response_topic, pid, response_topic(r)?),
            CORRELATION_DATA => once(&mut self.correlation_data, pid, r.binary()?),
            USER_PROPERTY => user_pair(r, &mut self.user),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        s.p_u32(&self.will_delay_interval_s);
        s.p_u8(&self.payload_format_indicator);
        s.p_u32(&self.message_expiry_interval_s);
        s.p_field(&self.content_type);
        s.p_field(&self.response_topic);
        s.p_field(&self.correlation_data);
        s.p_user(&self.user);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        use id::*;
        w_u32(out, WILL_DELAY_INTERVAL, self.will_delay_interval_s);
        w_u8(out, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        w_u32(out, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval_s);
        w_field(out, CONTENT_TYPE, &self.content_type);
        w_field(out, RESPONSE_TOPIC, &self.response_topic);
        w_field(out, CORRELATION_DATA, &self.correlation_data);
        w_user(out, &self.user);
    }
}

impl Properties for ConnAckProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        use id::*;
        match pid {
            SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval_s, pid, r.u32()?),
            RECEIVE_MAXIMUM => once(&mut self.receive_maximum, pid, nonzero_u16(r, pid)?),
            // Section 3.2.2.3.4: Maximum QoS is 0 or 1 (absent means 2).
            MAXIMUM_QOS => once(&mut self.maximum_qos, pid, flag(r, pid)?),
            RETAIN_AVAILABLE => once(&mut self.retain_available, pid, flag(r, pid)?),
            MAXIMUM_PACKET_SIZE => once(
                &mut self.maximum_packet_size_bytes,
                pid,
                nonzero_u32(r, pid)?,
            ),
            ASSIGNED_CLIENT_IDENTIFIER => {
                once(&mut self.assigned_client_identifier, pid, r.utf8()?)
            }
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, pid, r.u16()?),
            REASON_STRING => once(&mut self.reason_string, pid, r.utf8()?),
            USER_PROPERTY => user_pair(r, &mut self.user),
            WILDCARD_SUBSCRIPTION_AVAILABLE => once(
                &mut self.wildcard_subscription_available,
                pid,
                flag(r, pid)?,
            ),
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => once(
                &mut self.subscription_identifiers_available,
                pid,
                flag(r, pid)?,
            ),
            SHARED_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.shared_subscription_available, pid, flag(r, pid)?)
            }
            SERVER_KEEP_ALIVE => once(&mut self.server_keep_alive_s, pid, r.u16()?),
            RESPONSE_INFORMATION => once(&mut self.response_information, pid, r.utf8()?),
            SERVER_REFERENCE => once(&mut self.server_reference, pid, r.utf8()?),
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, pid, r.utf8()?),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, pid, r.binary()?),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        s.p_u32(&self.session_expiry_interval_s);
        s.p_u16(&self.receive_maximum);
        s.p_u8(&self.maximum_qos);
        s.p_u8(&self.retain_available);
        s.p_u32(&self.maximum_packet_size_bytes);
        s.p_field(&self.assigned_client_identifier);
        s.p_u16(&self.topic_alias_maximum);
        s.p_field(&self.reason_string);
        s.p_user(&self.user);
        s.p_u8(&self.wildcard_subscription_available);
        s.p_u8(&self.subscription_identifiers_available);
        s.p_u8(&self.shared_subscription_available);
        s.p_u16(&self.server_keep_alive_s);
        s.p_field(&self.response_information);
        s.p_field(&self.server_reference);
        s.p_field(&self.authentication_method);
        s.p_field(&self.authentication_data);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        use id::*;
        w_u32(out, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval_s);
        w_u16(out, RECEIVE_MAXIMUM, self.receive_maximum);
        w_u8(out, MAXIMUM_QOS, self.maximum_qos);
        w_u8(out, RETAIN_AVAILABLE, self.retain_available);
        w_u32(out, MAXIMUM_PACKET_SIZE, self.maximum_packet_size_bytes);
        w_field(
            out,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        w_u16(out, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        w_field(out, REASON_STRING, &self.reason_string);
        w_user(out, &self.user);
        w_u8(
            out,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        w_u8(
            out,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        w_u8(
            out,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        w_u16(out, SERVER_KEEP_ALIVE, self.server_keep_alive_s);
        w_field(out, RESPONSE_INFORMATION, &self.response_information);
        w_field(out, SERVER_REFERENCE, &self.server_reference);
        w_field(out, AUTHENTICATION_METHOD, &self.authentication_method);
        w_field(out, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl Properties for PublishProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        use id::*;
        match pid {
            PAYLOAD_FORMAT_INDICATOR => {
                once(&mut self.payload_format_indicator, pid, flag(r, pid)?)
            }
            MESSAGE_EXPIRY_INTERVAL => once(&mut self.message_expiry_interval_s, pid, r.u32()?),
            TOPIC_ALIAS => once(&mut self.topic_alias, pid, nonzero_u16(r, pid)?),
            RESPONSE_TOPIC => once(&mut self.response_topic, pid, response_topic(r)?),
            CORRELATION_DATA => once(&mut self.correlation_data, pid, r.binary()?),
            USER_PROPERTY => user_pair(r, &mut self.user),
            // Section 3.3.2.3.8: several Subscription Identifiers may appear
            // in a PUBLISH (one per matching subscription).
            SUBSCRIPTION_IDENTIFIER => {
                let v = subscription_id(r)?;
                self.subscription_identifiers.push(v);
                Ok(())
            }
            CONTENT_TYPE => once(&mut self.content_type, pid, r.utf8()?),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        s.p_u8(&self.payload_format_indicator);
        s.p_u32(&self.message_expiry_interval_s);
        s.p_u16(&self.topic_alias);
        s.p_field(&self.response_topic);
        s.p_field(&self.correlation_data);
        s.p_user(&self.user);
        for &v in &self.subscription_identifiers {
            s.p_varint(v);
        }
        s.p_field(&self.content_type);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        use id::*;
        w_u8(out, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        w_u32(out, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval_s);
        w_u16(out, TOPIC_ALIAS, self.topic_alias);
        w_field(out, RESPONSE_TOPIC, &self.response_topic);
        w_field(out, CORRELATION_DATA, &self.correlation_data);
        w_user(out, &self.user);
        for &v in &self.subscription_identifiers {
            out.put_u8(SUBSCRIPTION_IDENTIFIER);
            out.put_varint(v);
        }
        w_field(out, CONTENT_TYPE, &self.content_type);
    }
}

impl Properties for AckProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        match pid {
            id::REASON_STRING => once(&mut self.reason_string, pid, r.utf8()?),
            id::USER_PROPERTY => user_pair(r, &mut self.user),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        s.p_field(&self.reason_string);
        s.p_user(&self.user);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        w_field(out, id::REASON_STRING, &self.reason_string);
        w_user(out, &self.user);
    }
}

impl Properties for SubscribeProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        match pid {
            // Section 3.8.2.1.2: at most one Subscription Identifier here.
            id::SUBSCRIPTION_IDENTIFIER => {
                once(&mut self.subscription_identifier, pid, subscription_id(r)?)
            }
            id::USER_PROPERTY => user_pair(r, &mut self.user),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        if let Some(v) = self.subscription_identifier {
            s.p_varint(v);
        }
        s.p_user(&self.user);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        if let Some(v) = self.subscription_identifier {
            out.put_u8(id::SUBSCRIPTION_IDENTIFIER);
            out.put_varint(v);
        }
        w_user(out, &self.user);
    }
}

impl Properties for UnsubscribeProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        match pid {
            id::USER_PROPERTY => user_pair(r, &mut self.user),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        s.p_user(&self.user);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        w_user(out, &self.user);
    }
}

impl Properties for DisconnectProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        use id::*;
        match pid {
            SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval_s, pid, r.u32()?),
            REASON_STRING => once(&mut self.reason_string, pid, r.utf8()?),
            USER_PROPERTY => user_pair(r, &mut self.user),
            SERVER_REFERENCE => once(&mut self.server_reference, pid, r.utf8()?),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        s.p_u32(&self.session_expiry_interval_s);
        s.p_field(&self.reason_string);
        s.p_user(&self.user);
        s.p_field(&self.server_reference);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        use id::*;
        w_u32(out, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval_s);
        w_field(out, REASON_STRING, &self.reason_string);
        w_user(out, &self.user);
        w_field(out, SERVER_REFERENCE, &self.server_reference);
    }
}

impl Properties for AuthProperties {
    fn read_one(&mut self, r: &mut Reader<'_>, pid: u8, ptype: u8) -> Result<(), DecodeError> {
        use id::*;
        match pid {
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, pid, r.utf8()?),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, pid, r.binary()?),
            REASON_STRING => once(&mut self.reason_string, pid, r.utf8()?),
            USER_PROPERTY => user_pair(r, &mut self.user),
            _ => Err(not_here(ptype, pid)),
        }
    }

    #[inline]
    fn size(&self, s: &mut Sizer) {
        s.p_field(&self.authentication_method);
        s.p_field(&self.authentication_data);
        s.p_field(&self.reason_string);
        s.p_user(&self.user);
    }

    #[inline]
    fn write(&self, out: &mut impl Out) {
        use id::*;
        w_field(out, AUTHENTICATION_METHOD, &self.authentication_method);
        w_field(out, AUTHENTICATION_DATA, &self.authentication_data);
        w_field(out, REASON_STRING, &self.reason_string);
        w_user(out, &self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid encoded value for each wire type (1 where a range applies).
    fn value_bytes(wire: WireType) -> Vec<u8> {
        match wire {
            WireType::Byte => vec![1],
            WireType::TwoByteInt => vec![0, 1],
            WireType::FourByteInt => vec![0, 0, 0, 1],
            WireType::VarInt => vec![1],
            WireType::Utf8 | WireType::Binary => vec![0, 1, b'a'],
            WireType::Utf8Pair => vec![0, 1, b'a', 0, 1, b'b'],
        }
    }

    fn try_read<P: Properties>(property_id: u8, packet_type: u8) -> Result<P, DecodeError> {
        let wire = wire_type(property_id).ok_or(DecodeError::InvalidPropertyId(property_id))?;
        let mut body = vec![property_id];
        body.extend(value_bytes(wire));
        let mut block = vec![body.len() as u8];
        block.extend(body);
        let frame = Bytes::from(block);
        let mut r = Reader::new(&frame, 0);
        let props = read_properties::<P>(&mut r, packet_type)?;
        r.finish()?;
        Ok(props)
    }

    /// Every property struct accepts exactly the identifiers table 2-4 allows.
    #[test]
    fn structs_agree_with_table_2_4() {
        let mut known = 0;
        for pid in 0..=u8::MAX {
            if wire_type(pid).is_none() {
                assert_eq!(allowed_in(pid), 0);
                assert_eq!(
                    try_read::<PublishProperties>(pid, 3).err(),
                    Some(DecodeError::InvalidPropertyId(pid))
                );
                continue;
            }
            known += 1;
            let mask = allowed_in(pid);
            let ok = |ptype: u8| mask & (1 << ptype) != 0;
            assert_eq!(
                try_read::<WillProperties>(pid, 1).is_ok(),
                ok(WILL_PROPERTIES),
                "{pid:#x} will"
            );
            assert_eq!(
                try_read::<ConnectProperties>(pid, 1).is_ok(),
                ok(1),
                "{pid:#x} connect"
            );
            assert_eq!(
                try_read::<ConnAckProperties>(pid, 2).is_ok(),
                ok(2),
                "{pid:#x} connack"
            );
            assert_eq!(
                try_read::<PublishProperties>(pid, 3).is_ok(),
                ok(3),
                "{pid:#x} publish"
            );
            for ack in [4, 5, 6, 7, 9, 11] {
                assert_eq!(
                    try_read::<AckProperties>(pid, ack).is_ok(),
                    ok(ack),
                    "{pid:#x} {ack}"
                );
            }
            assert_eq!(
                try_read::<SubscribeProperties>(pid, 8).is_ok(),
                ok(8),
                "{pid:#x} sub"
            );
            assert_eq!(
                try_read::<UnsubscribeProperties>(pid, 10).is_ok(),
                ok(10),
                "{pid:#x} unsub"
            );
            assert_eq!(
                try_read::<DisconnectProperties>(pid, 14).is_ok(),
                ok(14),
                "{pid:#x} disc"
            );
            assert_eq!(
                try_read::<AuthProperties>(pid, 15).is_ok(),
                ok(15),
                "{pid:#x} auth"
            );
        }
        assert_eq!(known, 27);
    }
}
