//! v5 properties (MQTT 5.0 section 2.2.2): the table of every property,
//! one row each (identifier, wire type, value rule, field, the packets that
//! allow it), from which the `properties!` macro (`property_macro.rs`)
//! generates the property structs, their decode / size / write and the
//! allowed-in table of section 2.2.2.2; and the Property Length block
//! around them.
//!
//! ```text
//! | Property Length (varint) | id (varint) | value | id | value | ... |
//!                            '---- exactly Property Length bytes ----'
//! ```
//!
//! A property struct only has fields for the properties its packet allows,
//! so "allowed here" is the struct's decode `match`; anything else is
//! `PropertyNotAllowed` (a known identifier) or `InvalidPropertyId`.
//! Adding a property is one row below.

use super::property_macro::properties;
pub(crate) use super::property_values::Properties;
use super::reader::Reader;
use super::sizer::Sizer;
use super::writer::Out;
use super::DecodeError;

properties! {
    kinds {
        /// Will properties (section 3.1.3.2).
        Will => WillProperties,
        /// CONNECT properties (section 3.1.2.11).
        Connect => ConnectProperties,
        /// CONNACK properties (section 3.2.2.3).
        ConnAck => ConnAckProperties,
        /// PUBLISH properties (section 3.3.2.3).
        Publish => PublishProperties,
        /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
        Ack => AckProperties,
        /// SUBSCRIBE properties (section 3.8.2.1).
        Subscribe => SubscribeProperties,
        /// UNSUBSCRIBE properties (section 3.10.2.1).
        Unsubscribe => UnsubscribeProperties,
        /// DISCONNECT properties (section 3.14.2.2).
        Disconnect => DisconnectProperties,
        /// AUTH properties (section 3.15.2.2).
        Auth => AuthProperties,
    }
    // Section 2.2.2.2, table 2-4. Value rules are in `property_values::read`:
    // `flag` is 0 or 1, `nonzero_*` refuse 0, `subscription_id` is
    // 1..=268_435_455, `topic_name` has no wildcards ([MQTT-3.3.2-14]).
    // Subscription Identifier may repeat in PUBLISH (section 3.3.2.3.8, one
    // per matching subscription), not in SUBSCRIBE (section 3.8.2.1.2).
    table {
        // id  name                             wire        value rule        field                              allowed in
        0x01 PAYLOAD_FORMAT_INDICATOR:          Byte        flag,             payload_format_indicator           [Will, Publish];
        0x02 MESSAGE_EXPIRY_INTERVAL:           FourByteInt u32,              message_expiry_interval_s          [Will, Publish];
        0x03 CONTENT_TYPE:                      Utf8        utf8,             content_type                       [Will, Publish];
        0x08 RESPONSE_TOPIC:                    Utf8        topic_name,       response_topic                     [Will, Publish];
        0x09 CORRELATION_DATA:                  Binary      binary,           correlation_data                   [Will, Publish];
        0x0B SUBSCRIPTION_IDENTIFIER:           VarInt      subscription_id,  subscription_identifier            [Publish(subscription_identifiers many), Subscribe];
        0x11 SESSION_EXPIRY_INTERVAL:           FourByteInt u32,              session_expiry_interval_s          [Connect, ConnAck, Disconnect];
        0x12 ASSIGNED_CLIENT_IDENTIFIER:        Utf8        utf8,             assigned_client_identifier         [ConnAck];
        0x13 SERVER_KEEP_ALIVE:                 TwoByteInt  u16,              server_keep_alive_s                [ConnAck];
        0x15 AUTHENTICATION_METHOD:             Utf8        utf8,             authentication_method              [Connect, ConnAck, Auth];
        0x16 AUTHENTICATION_DATA:               Binary      binary,           authentication_data                [Connect, ConnAck, Auth];
        0x17 REQUEST_PROBLEM_INFORMATION:       Byte        flag,             request_problem_information        [Connect];
        0x18 WILL_DELAY_INTERVAL:               FourByteInt u32,              will_delay_interval_s              [Will];
        0x19 REQUEST_RESPONSE_INFORMATION:      Byte        flag,             request_response_information       [Connect];
        0x1A RESPONSE_INFORMATION:              Utf8        utf8,             response_information               [ConnAck];
        0x1C SERVER_REFERENCE:                  Utf8        utf8,             server_reference                   [ConnAck, Disconnect];
        0x1F REASON_STRING:                     Utf8        utf8,             reason_string                      [ConnAck, Ack, Disconnect, Auth];
        0x21 RECEIVE_MAXIMUM:                   TwoByteInt  nonzero_u16,      receive_maximum                    [Connect, ConnAck];
        0x22 TOPIC_ALIAS_MAXIMUM:               TwoByteInt  u16,              topic_alias_maximum                [Connect, ConnAck];
        0x23 TOPIC_ALIAS:                       TwoByteInt  nonzero_u16,      topic_alias                        [Publish];
        0x24 MAXIMUM_QOS:                       Byte        flag,             maximum_qos                        [ConnAck];
        0x25 RETAIN_AVAILABLE:                  Byte        flag,             retain_available                   [ConnAck];
        0x26 USER_PROPERTY:                     Utf8Pair    utf8_pair,        user many                          [Will, Connect, ConnAck, Publish, Ack, Subscribe, Unsubscribe, Disconnect, Auth];
        0x27 MAXIMUM_PACKET_SIZE:               FourByteInt nonzero_u32,      maximum_packet_size_bytes          [Connect, ConnAck];
        0x28 WILDCARD_SUBSCRIPTION_AVAILABLE:   Byte        flag,             wildcard_subscription_available    [ConnAck];
        0x29 SUBSCRIPTION_IDENTIFIER_AVAILABLE: Byte        flag,             subscription_identifiers_available [ConnAck];
        0x2A SHARED_SUBSCRIPTION_AVAILABLE:     Byte        flag,             shared_subscription_available      [ConnAck];
    }
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

/// Size a property struct (Property Length excluded).
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::property_values::WireType;

    /// Section 2.2.2.2 table 2-4 transcribed by hand from the
    /// specification, independently of the table above (bit n = packet
    /// type n; bit 0 = Will Properties).
    fn spec_table_2_4(property_id: u8) -> u16 {
        let [will, connect, connack, publish, puback, pubrec, pubrel, pubcomp, subscribe, suback, unsubscribe, unsuback, _, _, disconnect, auth] =
            core::array::from_fn::<u16, 16, _>(|n| 1 << n);
        let acks = puback | pubrec | pubrel | pubcomp | suback | unsuback;
        match property_id {
            0x01 | 0x02 | 0x03 | 0x08 | 0x09 => publish | will,
            0x0B => publish | subscribe,
            0x11 => connect | connack | disconnect,
            0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => connack,
            0x15 | 0x16 => connect | connack | auth,
            0x17 | 0x19 => connect,
            0x18 => will,
            0x1C => connack | disconnect,
            0x1F => connack | acks | disconnect | auth,
            0x21 | 0x22 | 0x27 => connect | connack,
            0x23 => publish,
            0x26 => {
                will | connect
                    | connack
                    | publish
                    | acks
                    | subscribe
                    | unsubscribe
                    | disconnect
                    | auth
            }
            _ => 0,
        }
    }

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

    /// The generated allowed-in table is the specification's.
    #[test]
    fn allowed_in_is_table_2_4() {
        for pid in 0..=u8::MAX {
            assert_eq!(allowed_in(pid), spec_table_2_4(pid), "{pid:#x}");
            assert_eq!(wire_type(pid).is_some(), allowed_in(pid) != 0, "{pid:#x}");
        }
        assert_eq!((0..=u8::MAX).filter(|&p| allowed_in(p) != 0).count(), 27);
    }

    /// Every property struct decodes exactly the identifiers table 2-4
    /// allows in its packets, and round-trips them through size and write.
    #[test]
    fn structs_agree_with_table_2_4() {
        fn check<P: Properties + PartialEq + core::fmt::Debug>(packet_types: &[u8]) {
            for pid in 0..=u8::MAX {
                for &ptype in packet_types {
                    // Bit 0 stands for the Will Properties, decoded in CONNECT.
                    let allowed = spec_table_2_4(pid) & (1 << ptype) != 0;
                    let read = try_read::<P>(pid, ptype.max(1));
                    let expected_err = if wire_type(pid).is_none() {
                        DecodeError::InvalidPropertyId(pid)
                    } else {
                        DecodeError::PropertyNotAllowed {
                            packet_type: ptype.max(1),
                            property_id: pid,
                        }
                    };
                    match read {
                        Ok(props) => {
                            assert!(allowed, "{pid:#x} accepted in {ptype}");
                            let mut out = bytes::BytesMut::new();
                            let len = props_size(&props).len;
                            write_block(&props, len, &mut out);
                            let frame = out.freeze();
                            let mut r = Reader::new(&frame, 0);
                            assert_eq!(read_properties::<P>(&mut r, ptype.max(1)), Ok(props));
                        }
                        Err(e) => {
                            assert!(!allowed, "{pid:#x} refused in {ptype}: {e:?}");
                            assert_eq!(e, expected_err);
                        }
                    }
                }
            }
        }
        check::<WillProperties>(&[0]);
        check::<ConnectProperties>(&[1]);
        check::<ConnAckProperties>(&[2]);
        check::<PublishProperties>(&[3]);
        check::<AckProperties>(&[4, 5, 6, 7, 9, 11]);
        check::<SubscribeProperties>(&[8]);
        check::<UnsubscribeProperties>(&[10]);
        check::<DisconnectProperties>(&[14]);
        check::<AuthProperties>(&[15]);
    }

    /// A single-occurrence property twice is a Protocol Error; User
    /// Property and PUBLISH's Subscription Identifier may repeat.
    #[test]
    fn once_and_many() {
        let twice = |pid: u8, value: &[u8]| {
            let mut body = Vec::new();
            for _ in 0..2 {
                body.push(pid);
                body.extend_from_slice(value);
            }
            let mut block = vec![body.len() as u8];
            block.extend(body);
            Bytes::from(block)
        };
        let frame = twice(id::MESSAGE_EXPIRY_INTERVAL, &[0, 0, 0, 1]);
        assert_eq!(
            read_properties::<PublishProperties>(&mut Reader::new(&frame, 0), 3),
            Err(DecodeError::DuplicateProperty(id::MESSAGE_EXPIRY_INTERVAL))
        );
        let frame = twice(id::SUBSCRIPTION_IDENTIFIER, &[5]);
        assert_eq!(
            read_properties::<SubscribeProperties>(&mut Reader::new(&frame, 0), 8),
            Err(DecodeError::DuplicateProperty(id::SUBSCRIPTION_IDENTIFIER))
        );
        let publish = read_properties::<PublishProperties>(&mut Reader::new(&frame, 0), 3);
        assert_eq!(publish.map(|p| p.subscription_identifiers), Ok(vec![5, 5]));
        let frame = twice(id::USER_PROPERTY, &[0, 1, b'k', 0, 1, b'v']);
        let ack = read_properties::<AckProperties>(&mut Reader::new(&frame, 0), 4);
        assert_eq!(ack.map(|a| a.user.len()), Ok(2));
    }
}
