//! Codec round trips: for every packet type and every property, for v3.1.1
//! and v5 (and v3.1 CONNECT), `decode(encode(p)) == p` (less what the
//! protocol cannot carry), `encoded_len` equals the bytes written, and the
//! frame fed one byte at a time is `Incomplete` until its last byte.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use ringmq_engine::codec::*;

// ---- field strategies ----

/// An MQTT UTF-8 string: any chars but U+0000 (section 1.5.4).
fn utf8() -> impl Strategy<Value = Bytes> {
    "[^\\x00]{0,10}".prop_map(Bytes::from)
}

/// A Topic Name: non-empty, no wildcards.
fn topic() -> impl Strategy<Value = Bytes> {
    "[^\\x00+#]{1,12}".prop_map(Bytes::from)
}

/// A Topic Filter (section 4.7.1): levels of text or `+`, maybe a final
/// `#`; never empty ([MQTT-4.7.3-1]).
fn topic_filter() -> impl Strategy<Value = Bytes> {
    let level = prop_oneof![
        "[^\\x00+#/]{0,4}".prop_map(String::from),
        Just("+".to_owned())
    ];
    (vec(level, 1..4), any::<bool>()).prop_map(|(levels, hash)| {
        let mut filter = levels.join("/");
        if hash {
            filter.push_str("/#");
        }
        if filter.is_empty() {
            filter.push('#');
        }
        Bytes::from(filter)
    })
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn user() -> impl Strategy<Value = UserProperties> {
    vec((utf8(), utf8()), 0..3)
}

fn flag() -> impl Strategy<Value = u8> {
    0u8..=1
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1u16..=u16::MAX
}

fn subscription_id() -> impl Strategy<Value = u32> {
    1u32..=VARINT_MAX
}

fn reason_of(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(codes).prop_map(ReasonCode)
}

const CONNACK_REASONS: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
const SUBACK_REASONS: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_REASONS: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];

// ---- property strategies: every property, valid values only ----

fn connect_props() -> impl Strategy<Value = ConnectProperties> {
    (
        of(any::<u32>()),
        of(1u16..),
        of(1u32..),
        of(any::<u16>()),
        of(flag()),
        of(flag()),
        user(),
        of(utf8()),
        of(binary()),
    )
        .prop_map(
            |(se, rm, mps, tam, rri, rpi, user, am, ad)| ConnectProperties {
                session_expiry_interval_s: se,
                receive_maximum: rm,
                maximum_packet_size_bytes: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user,
                authentication_method: am,
                authentication_data: ad,
            },
        )
}

fn will_props() -> impl Strategy<Value = WillProperties> {
    (
        of(any::<u32>()),
        of(flag()),
        of(any::<u32>()),
        of(utf8()),
        of(topic()),
        of(binary()),
        user(),
    )
        .prop_map(|(wd, pfi, me, ct, rt, cd, user)| WillProperties {
            will_delay_interval_s: wd,
            payload_format_indicator: pfi,
            message_expiry_interval_s: me,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user,
        })
}

fn connack_props() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            of(any::<u32>()),
            of(1u16..),
            of(flag()),
            of(flag()),
            of(1u32..),
            of(utf8()),
            of(any::<u16>()),
            of(utf8()),
            user(),
        ),
        (
            of(flag()),
            of(flag()),
            of(flag()),
            of(any::<u16>()),
            of(utf8()),
            of(utf8()),
            of(utf8()),
            of(binary()),
        ),
    )
        .prop_map(
            |((se, rm, mq, ra, mps, aci, tam, rs, user), (wsa, sia, ssa, ska, ri, sr, am, ad))| {
                ConnAckProperties {
                    session_expiry_interval_s: se,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size_bytes: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive_s: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        )
}

fn publish_props() -> impl Strategy<Value = PublishProperties> {
    (
        of(flag()),
        of(any::<u32>()),
        of(1u16..),
        of(topic()),
        of(binary()),
        user(),
        vec(subscription_id(), 0..3),
        of(utf8()),
    )
        .prop_map(|(pfi, me, ta, rt, cd, user, sids, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval_s: me,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user,
            subscription_identifiers: sids,
            content_type: ct,
        })
}

fn ack_props() -> impl Strategy<Value = AckProperties> {
    (of(utf8()), user()).prop_map(|(reason_string, user)| AckProperties {
        reason_string,
        user,
    })
}

fn subscribe_props() -> impl Strategy<Value = SubscribeProperties> {
    (of(subscription_id()), user()).prop_map(|(subscription_identifier, user)| {
        SubscribeProperties {
            subscription_identifier,
            user,
        }
    })
}

fn disconnect_props() -> impl Strategy<Value = DisconnectProperties> {
    (of(any::<u32>()), of(utf8()), user(), of(utf8())).prop_map(|(se, rs, user, sr)| {
        DisconnectProperties {
            session_expiry_interval_s: se,
            reason_string: rs,
            user,
            server_reference: sr,
        }
    })
}

fn auth_props() -> impl Strategy<Value = AuthProperties> {
    (of(utf8()), of(binary()), of(utf8()), user()).prop_map(|(am, ad, rs, user)| AuthProperties {
        authentication_method: am,
        authentication_data: ad,
        reason_string: rs,
        user,
    })
}

// ---- packet strategies ----

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::V3_1),
        Just(Protocol::V3_1_1),
        Just(Protocol::V5)
    ]
}

fn will() -> impl Strategy<Value = Will> {
    (topic(), binary(), qos(), any::<bool>(), will_props()).prop_map(
        |(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    )
}

fn connect() -> impl Strategy<Value = Packet> {
    (
        protocol(),
        any::<bool>(),
        any::<u16>(),
        utf8(),
        of(will()),
        of(utf8()),
        of(binary()),
        connect_props(),
    )
        .prop_map(
            |(
                protocol,
                clean_start,
                keep_alive_s,
                client_id,
                will,
                username,
                password,
                properties,
            )| {
                // [MQTT-3.1.2-22]: v3.1.1 allows no password without a user name.
                let password = if protocol == Protocol::V3_1_1 && username.is_none() {
                    None
                } else {
                    password
                };
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive_s,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic(),
        packet_id(),
        prop_oneof![binary(), vec(any::<u8>(), 0..5000).prop_map(Bytes::from)],
        publish_props(),
        any::<bool>(),
    )
        .prop_map(
            |(dup, qos, retain, topic, pid, payload, properties, empty_topic)| {
                // [MQTT-3.3.1-2]: no DUP at QoS 0; packet id only for QoS > 0.
                let (dup, packet_id) = if qos == QoS::AtMostOnce {
                    (false, 0)
                } else {
                    (dup, pid)
                };
                // A v5 PUBLISH may carry an empty topic with a Topic Alias.
                let topic = if empty_topic && properties.topic_alias.is_some() {
                    Bytes::new()
                } else {
                    topic
                };
                Publish {
                    dup,
                    qos,
                    retain,
                    topic,
                    packet_id,
                    payload,
                    properties,
                }
            },
        )
}

fn puback(codes: &'static [u8]) -> impl Strategy<Value = PubAck> {
    (
        packet_id(),
        reason_of(codes),
        prop_oneof![Just(AckProperties::default()), ack_props()],
    )
        .prop_map(|(packet_id, reason, properties)| PubAck {
            packet_id,
            reason,
            properties,
        })
}

fn subscription_options() -> impl Strategy<Value = SubscriptionOptions> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(RetainHandling::SendAtSubscribe),
            Just(RetainHandling::SendIfNew),
            Just(RetainHandling::DoNotSend)
        ],
    )
        .prop_map(|(qos, no_local, retain_as_published, retain_handling)| {
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            }
        })
}

/// Every packet type; AUTH included (tested separately for v3).
fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect(),
        (any::<bool>(), reason_of(CONNACK_REASONS), connack_props()).prop_map(
            |(session_present, reason, properties)| Packet::ConnAck(ConnAck {
                session_present,
                reason,
                properties,
            })
        ),
        publish().prop_map(Packet::Publish),
        puback(PUBACK_REASONS).prop_map(Packet::PubAck),
        puback(PUBACK_REASONS).prop_map(Packet::PubRec),
        puback(PUBREL_REASONS).prop_map(Packet::PubRel),
        puback(PUBREL_REASONS).prop_map(Packet::PubComp),
        (
            packet_id(),
            vec(
                (topic_filter(), subscription_options())
                    .prop_map(|(filter, options)| SubscribeFilter { filter, options }),
                1..4
            ),
            subscribe_props()
        )
            .prop_map(
                |(packet_id, filters, properties)| Packet::Subscribe(Subscribe {
                    packet_id,
                    filters,
                    properties,
                })
            ),
        (
            packet_id(),
            vec(reason_of(SUBACK_REASONS), 1..4),
            ack_props()
        )
            .prop_map(|(packet_id, reasons, properties)| Packet::SubAck(SubAck {
                packet_id,
                reasons,
                properties,
            })),
        (packet_id(), vec(topic_filter(), 1..4), user()).prop_map(|(packet_id, filters, user)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties: UnsubscribeProperties { user },
            })
        }),
        (
            packet_id(),
            vec(reason_of(UNSUBACK_REASONS), 1..4),
            ack_props()
        )
            .prop_map(
                |(packet_id, reasons, properties)| Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reasons,
                    properties,
                })
            ),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        (
            reason_of(DISCONNECT_REASONS),
            prop_oneof![Just(DisconnectProperties::default()), disconnect_props()]
        )
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties })),
        (
            reason_of(AUTH_REASONS),
            prop_oneof![Just(AuthProperties::default()), auth_props()]
        )
            .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties })),
    ]
}

// ---- the reference: what a packet looks like after a trip through `protocol` ----

/// What v3 cannot carry is dropped, CONNACK / SUBACK codes are mapped.
fn normalize(packet: &Packet, protocol: Protocol) -> Packet {
    let mut p = packet.clone();
    if let Packet::Connect(c) = &mut p {
        if !c.protocol.is_v5() {
            c.properties = ConnectProperties::default();
            if let Some(w) = &mut c.will {
                w.properties = WillProperties::default();
            }
        }
        return p;
    }
    if protocol.is_v5() {
        return p;
    }
    match &mut p {
        Packet::ConnAck(c) => {
            c.reason = ReasonCode::from_v3_connack_code(c.reason.v3_connack_code());
            c.properties = ConnAckProperties::default();
        }
        Packet::Publish(x) => x.properties = PublishProperties::default(),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.reason = ReasonCode::SUCCESS;
            a.properties = AckProperties::default();
        }
        Packet::Subscribe(s) => {
            s.properties = SubscribeProperties::default();
            for f in &mut s.filters {
                f.options = SubscriptionOptions {
                    qos: f.options.qos,
                    ..SubscriptionOptions::default()
                };
            }
        }
        Packet::SubAck(s) => {
            s.properties = AckProperties::default();
            for r in &mut s.reasons {
                *r = ReasonCode(r.v3_suback_code());
            }
        }
        Packet::Unsubscribe(u) => u.properties = UnsubscribeProperties::default(),
        Packet::UnsubAck(u) => {
            u.reasons.clear();
            u.properties = AckProperties::default();
        }
        Packet::Disconnect(d) => *d = Disconnect::default(),
        _ => {}
    }
    p
}

/// Encode, check lengths, decode three ways (whole buffer, `decode_packet`,
/// one byte at a time), compare with the reference.
fn round_trip(packet: &Packet, protocol: Protocol) -> Result<(), TestCaseError> {
    let expected = normalize(packet, protocol);
    let len = encoded_len(packet, protocol);
    let mut out = BytesMut::with_capacity(len);
    let written =
        encode(packet, protocol, &mut out).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(written, len);
    prop_assert_eq!(out.len(), len);
    let frame = out.freeze();

    prop_assert_eq!(
        check_frame(&frame, len as u32),
        Ok(FrameCheck::Complete { frame_len: len })
    );
    // One byte under the frame size is refused from the header alone.
    let too_large = matches!(
        check_frame(&frame, len as u32 - 1),
        Err(DecodeError::PacketTooLarge { .. })
    );
    prop_assert!(too_large);
    prop_assert_eq!(decode_packet(frame.clone(), protocol), Ok(expected.clone()));

    let mut buf = BytesMut::from(&frame[..]);
    buf.put_slice(b"\xC0"); // the first byte of the next frame stays behind
    match decode(&mut buf, protocol, len as u32) {
        Ok(Decoded::Packet(p)) => prop_assert_eq!(p, expected.clone()),
        other => prop_assert!(false, "{other:?}"),
    }
    prop_assert_eq!(&buf[..], b"\xC0");

    // Fed one byte at a time: Incomplete (exact once the length is known)
    // until the last byte.
    let header_len = len - remaining_len(&frame);
    let mut buf = BytesMut::new();
    for (i, &b) in frame.iter().enumerate() {
        buf.put_u8(b);
        let have = i + 1;
        match decode(&mut buf, protocol, u32::MAX) {
            Ok(Decoded::Incomplete { needed_bytes }) => {
                prop_assert!(have < len);
                prop_assert!(needed_bytes >= 1 && needed_bytes <= len - have);
                if have >= header_len {
                    prop_assert_eq!(needed_bytes, len - have);
                }
            }
            Ok(Decoded::Packet(p)) => {
                prop_assert_eq!(have, len);
                prop_assert_eq!(&p, &expected);
                prop_assert!(buf.is_empty());
            }
            Err(e) => prop_assert!(false, "byte {have}: {e}"),
        }
    }
    Ok(())
}

/// The Remaining Length of a frame (test-side reimplementation).
fn remaining_len(frame: &[u8]) -> usize {
    let mut value = 0usize;
    for (i, b) in frame[1..].iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    value
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_packet_round_trips_v5(p in packet()) {
        round_trip(&p, Protocol::V5)?;
    }

    #[test]
    fn every_packet_round_trips_v3_1_1(mut p in packet()) {
        if let Packet::Publish(x) = &mut p {
            if x.topic.is_empty() {
                // Only v5 can carry an empty topic (with a Topic Alias): the
                // encoder writes it, the v3 decoder refuses it.
                let frame = encode_to_bytes(&Packet::Publish(x.clone()), Protocol::V3_1_1)
                    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(decode_packet(frame, Protocol::V3_1_1), Err(DecodeError::EmptyTopicName));
                x.topic = Bytes::from_static(b"t");
            }
        }
        if matches!(p, Packet::Auth(_)) {
            // AUTH does not exist before v5.
            prop_assert_eq!(encoded_len(&p, Protocol::V3_1_1), 0);
            prop_assert_eq!(
                encode(&p, Protocol::V3_1_1, &mut BytesMut::new()),
                Err(EncodeError::NotInProtocol)
            );
        } else {
            round_trip(&p, Protocol::V3_1_1)?;
        }
    }

    #[test]
    fn connect_round_trips_every_version(p in connect()) {
        // CONNECT names its own protocol; the argument is ignored.
        round_trip(&p, Protocol::V3_1)?;
        round_trip(&p, Protocol::V3_1_1)?;
        round_trip(&p, Protocol::V5)?;
    }

    #[test]
    fn publish_fast_path_matches_generic(p in publish(), v5 in any::<bool>()) {
        let protocol = if v5 { Protocol::V5 } else { Protocol::V3_1_1 };
        let packet = Packet::Publish(p.clone());
        prop_assert_eq!(publish_encoded_len(&p, protocol), encoded_len(&packet, protocol));
        let mut fast = BytesMut::new();
        let n = encode_publish(&p, protocol, &mut fast).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(n, fast.len());
        let generic = encode_to_bytes(&packet, protocol).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(&fast[..], &generic[..]);
    }
}

// ---- encode-side limits and wire forms (both sides of each boundary) ----

fn publish_with_topic(len: usize) -> Publish {
    Publish {
        topic: Bytes::from(vec![b'a'; len]),
        ..Publish::default()
    }
}

#[test]
fn field_of_65535_bytes_encodes_65536_does_not() {
    let ok = publish_with_topic(65_535);
    let mut out = BytesMut::new();
    assert_eq!(
        encode_publish(&ok, Protocol::V3_1_1, &mut out),
        Ok(publish_encoded_len(&ok, Protocol::V3_1_1))
    );
    let too_long = publish_with_topic(65_536);
    let mut out = BytesMut::new();
    assert_eq!(
        encode_publish(&too_long, Protocol::V3_1_1, &mut out),
        Err(EncodeError::FieldTooLong)
    );
    assert!(out.is_empty(), "nothing is written on error");
    let mut props = PublishProperties::default();
    props
        .user
        .push((Bytes::new(), Bytes::from(vec![b'v'; 65_536])));
    let p = Publish {
        topic: Bytes::from_static(b"t"),
        properties: props,
        ..Publish::default()
    };
    assert_eq!(
        encode_publish(&p, Protocol::V5, &mut out),
        Err(EncodeError::FieldTooLong)
    );
    // v3 drops properties, so the same packet encodes there.
    assert!(encode_publish(&p, Protocol::V3_1_1, &mut out).is_ok());
}

#[test]
fn remaining_length_over_the_maximum_is_refused() {
    // Remaining Length 268_435_455 (N) and N + 1, built from shared 64 KiB
    // user properties so the test allocates almost nothing.
    let big = Bytes::from(vec![b'x'; 65_535]);
    let mut props = PublishProperties::default();
    // Each pair: 1 (id) + 2 + 65_535 + 2 + 65_535 = 131_075 bytes.
    for _ in 0..2047 {
        props.user.push((big.clone(), big.clone()));
    }
    let props_len = 2047 * 131_075;
    // topic (2 + 1) + Property Length varint (4) + properties + payload.
    let pad = VARINT_MAX as usize - (3 + 4 + props_len);
    let mut p = Publish {
        topic: Bytes::from_static(b"t"),
        properties: props,
        payload: Bytes::from(vec![0u8; pad]),
        ..Publish::default()
    };
    assert_eq!(
        publish_encoded_len(&p, Protocol::V5),
        1 + 4 + VARINT_MAX as usize
    );
    // (Not written at N: that would be a 256 MiB buffer on a shared machine.)
    p.payload = Bytes::from(vec![0u8; pad + 1]);
    let mut out = BytesMut::new();
    assert_eq!(
        encode_publish(&p, Protocol::V5, &mut out),
        Err(EncodeError::PacketTooLarge)
    );
    assert_eq!(
        encode(&Packet::Publish(p), Protocol::V5, &mut out),
        Err(EncodeError::PacketTooLarge)
    );
    assert!(out.is_empty(), "nothing is written on error");
}

fn bytes_of(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    encode_to_bytes(packet, protocol).unwrap().to_vec()
}

/// MQTT 3.1 has no Session Present flag: byte 1 of its CONNACK is reserved
/// and encoded as 0; 3.1.1 and 5.0 carry Session Present in bit 0.
#[test]
fn v3_1_connack_byte_1_is_reserved() {
    let ack = Packet::ConnAck(ConnAck {
        session_present: true,
        reason: ReasonCode::SUCCESS,
        properties: ConnAckProperties::default(),
    });
    let bytes = |protocol| encode_to_bytes(&ack, protocol).map(|b| b.to_vec());
    assert_eq!(bytes(Protocol::V3_1), Ok(vec![0x20, 2, 0, 0]));
    assert_eq!(bytes(Protocol::V3_1_1), Ok(vec![0x20, 2, 1, 0]));
    assert_eq!(bytes(Protocol::V5), Ok(vec![0x20, 3, 1, 0, 0]));
}

#[test]
fn short_forms_on_the_wire() {
    let ack = PubAck::new(0x1234);
    // v5 PUBACK with reason 0 and no properties: Remaining Length 2.
    assert_eq!(
        bytes_of(&Packet::PubAck(ack.clone()), Protocol::V5),
        [0x40, 2, 0x12, 0x34]
    );
    assert_eq!(
        bytes_of(&Packet::PubRel(ack.clone()), Protocol::V5),
        [0x62, 2, 0x12, 0x34]
    );
    // A reason and no properties: Remaining Length 3.
    let nm = PubAck {
        reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ..ack.clone()
    };
    assert_eq!(
        bytes_of(&Packet::PubAck(nm.clone()), Protocol::V5),
        [0x40, 3, 0x12, 0x34, 0x10]
    );
    // v3 never writes the reason.
    assert_eq!(
        bytes_of(&Packet::PubAck(nm), Protocol::V3_1_1),
        [0x40, 2, 0x12, 0x34]
    );
    // DISCONNECT: normal, no properties => Remaining Length 0.
    assert_eq!(
        bytes_of(&Packet::Disconnect(Disconnect::default()), Protocol::V5),
        [0xE0, 0]
    );
    assert_eq!(
        bytes_of(
            &Packet::Disconnect(Disconnect {
                reason: ReasonCode::DISCONNECT_WITH_WILL,
                ..Disconnect::default()
            }),
            Protocol::V3_1_1
        ),
        [0xE0, 0]
    );
    assert_eq!(
        bytes_of(&Packet::Auth(Auth::default()), Protocol::V5),
        [0xF0, 0]
    );
    assert_eq!(bytes_of(&Packet::PingReq, Protocol::V5), [0xC0, 0]);
    assert_eq!(bytes_of(&Packet::PingResp, Protocol::V3_1_1), [0xD0, 0]);
    // v3 CONNACK maps the reason code; v3 SUBACK too.
    let connack = ConnAck {
        session_present: true,
        reason: ReasonCode::NOT_AUTHORIZED,
        properties: ConnAckProperties::default(),
    };
    assert_eq!(
        bytes_of(&Packet::ConnAck(connack.clone()), Protocol::V3_1_1),
        [0x20, 2, 1, 5]
    );
    assert_eq!(
        bytes_of(&Packet::ConnAck(connack), Protocol::V5),
        [0x20, 3, 1, 0x87, 0]
    );
    let suback = SubAck {
        packet_id: 7,
        reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED],
        properties: AckProperties::default(),
    };
    assert_eq!(
        bytes_of(&Packet::SubAck(suback), Protocol::V3_1_1),
        [0x90, 4, 0, 7, 1, 0x80]
    );
    // A v3.1 CONNECT says "MQIsdp" level 3.
    let connect = Connect {
        protocol: Protocol::V3_1,
        clean_start: true,
        keep_alive_s: 60,
        client_id: Bytes::from_static(b"c"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    assert_eq!(
        bytes_of(&Packet::Connect(Box::new(connect)), Protocol::V5),
        [0x10, 15, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 1, b'c']
    );
}

#[test]
fn decode_short_forms() {
    let pid = [0x12, 0x34];
    let d = |bytes: &[u8], protocol| decode_packet(Bytes::copy_from_slice(bytes), protocol);
    assert_eq!(
        d(&[0x50, 2, pid[0], pid[1]], Protocol::V5),
        Ok(Packet::PubRec(PubAck::new(0x1234)))
    );
    assert_eq!(
        d(&[0x70, 3, pid[0], pid[1], 0x92], Protocol::V5),
        Ok(Packet::PubComp(PubAck {
            reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            ..PubAck::new(0x1234)
        }))
    );
    // Reason + Property Length 0 (Remaining Length 4) is the same packet.
    assert_eq!(
        d(&[0x40, 4, pid[0], pid[1], 0, 0], Protocol::V5),
        Ok(Packet::PubAck(PubAck::new(0x1234)))
    );
    assert_eq!(
        d(&[0xE0, 0], Protocol::V5),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    assert_eq!(
        d(&[0xE0, 1, 0x8E], Protocol::V5),
        Ok(Packet::Disconnect(Disconnect {
            reason: ReasonCode::SESSION_TAKEN_OVER,
            ..Disconnect::default()
        }))
    );
    assert_eq!(
        d(&[0xF0, 0], Protocol::V5),
        Ok(Packet::Auth(Auth::default()))
    );
    assert_eq!(
        d(&[0xF0, 1, 0x18], Protocol::V5),
        Ok(Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            ..Auth::default()
        }))
    );
}

#[test]
fn decoded_fields_are_slices_of_the_frame() {
    let p = Publish {
        qos: QoS::AtLeastOnce,
        topic: Bytes::from_static(b"a/b"),
        packet_id: 9,
        payload: Bytes::from_static(b"hello"),
        properties: PublishProperties {
            content_type: Some(Bytes::from_static(b"text/plain")),
            ..PublishProperties::default()
        },
        ..Publish::default()
    };
    let frame = encode_to_bytes(&Packet::Publish(p), Protocol::V5).unwrap();
    let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    let Ok(Packet::Publish(d)) = decode_packet(frame.clone(), Protocol::V5) else {
        panic!("decode failed");
    };
    for field in [
        &d.topic,
        &d.payload,
        d.properties.content_type.as_ref().unwrap(),
    ] {
        assert!(
            range.contains(&(field.as_ptr() as usize)),
            "{field:?} is a copy"
        );
    }
}
