//! Property tests of the stored records (`ringmq_engine::persist`): every
//! record decodes back to itself, a value cut short anywhere or flipped
//! in one byte is refused or decodes without panicking, and arbitrary
//! bytes never panic the decoders.

use bytes::Bytes;
use proptest::prelude::*;
use ringmq_engine::codec::{
    Protocol, Publish, PublishProperties, QoS, RetainHandling, SubscriptionOptions, Will,
    WillProperties,
};
use ringmq_engine::persist::{
    check_inbound_qos2, split_client_key, Keyspace, MessageRecord, MessageStage, RetainedRecord,
    SessionRecord, StoredSubscription,
};

fn text() -> impl Strategy<Value = Bytes> {
    "[a-z/]{0,12}".prop_map(Bytes::from)
}

fn topic() -> impl Strategy<Value = Bytes> {
    "[a-z]{1,6}(/[a-z]{1,6}){0,3}".prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop::sample::select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

fn properties() -> impl Strategy<Value = PublishProperties> {
    (
        prop::option::of(0u8..=1),
        prop::option::of(any::<u32>()),
        prop::option::of(topic()),
        prop::option::of(text()),
        prop::collection::vec((text(), text()), 0..3),
        prop::collection::vec(1u32..=268_435_455, 0..3),
        prop::option::of(text()),
    )
        .prop_map(
            |(pfi, expiry, response, correlation, user, ids, ct)| PublishProperties {
                // A payload format indicator of 1 asks for UTF-8 payloads; the
                // payloads below are any bytes, so only 0 is generated.
                payload_format_indicator: pfi.map(|_| 0),
                message_expiry_interval_s: expiry,
                topic_alias: None,
                response_topic: response,
                correlation_data: correlation,
                user,
                subscription_identifiers: ids,
                content_type: ct,
            },
        )
}

fn message(qos: QoS) -> impl Strategy<Value = Publish> {
    (
        topic(),
        prop::collection::vec(any::<u8>(), 0..64),
        properties(),
        any::<bool>(),
    )
        .prop_map(move |(topic, payload, properties, retain)| Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id: 0,
            payload: Bytes::from(payload),
            properties,
        })
}

fn options() -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(|(qos, nl, rap, rh)| {
        SubscriptionOptions {
            qos,
            no_local: nl,
            retain_as_published: rap,
            retain_handling: match rh {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                _ => RetainHandling::DoNotSend,
            },
        }
    })
}

fn will() -> impl Strategy<Value = Will> {
    (
        message(QoS::AtMostOnce),
        qos(),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(p, qos, delay)| Will {
            topic: p.topic,
            payload: p.payload,
            qos,
            retain: p.retain,
            properties: WillProperties {
                will_delay_interval_s: delay,
                payload_format_indicator: p.properties.payload_format_indicator,
                message_expiry_interval_s: p.properties.message_expiry_interval_s,
                content_type: p.properties.content_type,
                response_topic: p.properties.response_topic,
                correlation_data: p.properties.correlation_data,
                user: p.properties.user,
            },
        })
}

fn session() -> impl Strategy<Value = SessionRecord> {
    (
        prop::sample::select(&[Protocol::V3_1, Protocol::V3_1_1, Protocol::V5][..]),
        1u32..,
        prop::option::of(any::<u64>()),
        prop::option::of(text()),
        prop::option::of(will()),
        prop::collection::vec(
            (topic(), options(), prop::option::of(1u32..=268_435_455)),
            0..4,
        ),
    )
        .prop_map(
            |(protocol, expiry, offline, username, will, subs)| SessionRecord {
                protocol,
                expiry_interval_s: expiry,
                offline_since_wall_ms: offline,
                username,
                will,
                subscriptions: subs
                    .into_iter()
                    .map(|(filter, options, subscription_id)| StoredSubscription {
                        filter,
                        options,
                        subscription_id,
                    })
                    .collect(),
            },
        )
}

fn stored_message() -> impl Strategy<Value = MessageRecord> {
    (
        prop::sample::select(&[QoS::AtLeastOnce, QoS::ExactlyOnce][..]),
        0u8..3,
        1u16..,
        any::<u64>(),
        prop::option::of(text()),
    )
        .prop_flat_map(|(qos, stage, pid, at, shared)| {
            message(qos).prop_map(move |mut publish| {
                let stage = match (stage, qos) {
                    (0, _) => MessageStage::Queued,
                    (2, QoS::ExactlyOnce) => MessageStage::PubRelSent(pid),
                    _ => MessageStage::PublishSent(pid),
                };
                publish.packet_id = match stage {
                    MessageStage::Queued => 0,
                    MessageStage::PublishSent(p) | MessageStage::PubRelSent(p) => p,
                };
                if let MessageStage::PubRelSent(_) = stage {
                    publish = Publish {
                        qos,
                        packet_id: pid,
                        retain: publish.retain,
                        ..Publish::default()
                    };
                }
                MessageRecord {
                    stage,
                    publish,
                    received_at_wall_ms: at,
                    shared_filter: shared.clone(),
                }
            })
        })
}

/// Every prefix and every one-byte change of `value` decodes or is refused,
/// never panics; prefixes are always refused.
fn damaged<T>(
    value: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, ringmq_engine::persist::RestoreError>,
) {
    for cut in 0..value.len() {
        assert!(
            decode(&value[..cut]).is_err(),
            "a value cut at {cut} was accepted"
        );
    }
    for i in 0..value.len() {
        let mut v = value.to_vec();
        v[i] ^= 0x5A;
        std::hint::black_box(decode(&v).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn sessions_round_trip(record in session()) {
        let value = record.encode().expect("encodes");
        prop_assert_eq!(SessionRecord::decode(&value), Ok(record));
        damaged(&value, SessionRecord::decode);
    }

    #[test]
    fn messages_round_trip(record in stored_message()) {
        let value = record.encode().expect("encodes");
        prop_assert_eq!(MessageRecord::decode(&value), Ok(record));
        damaged(&value, MessageRecord::decode);
    }

    #[test]
    fn retained_round_trip(mut publish in message(QoS::AtLeastOnce), at in any::<u64>()) {
        publish.retain = true;
        if publish.payload.is_empty() {
            publish.payload = Bytes::from_static(b"x");
        }
        let topic = publish.topic.clone();
        let record = RetainedRecord { publish, received_at_wall_ms: at };
        let value = record.encode().expect("encodes");
        prop_assert_eq!(RetainedRecord::decode(&topic, &value), Ok(record));
        damaged(&value, |v| RetainedRecord::decode(&topic, v));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        std::hint::black_box(SessionRecord::decode(&bytes).is_ok());
        std::hint::black_box(MessageRecord::decode(&bytes).is_ok());
        std::hint::black_box(RetainedRecord::decode(b"t", &bytes).is_ok());
        std::hint::black_box(check_inbound_qos2(&bytes).is_ok());
        for k in Keyspace::ALL {
            std::hint::black_box(split_client_key(k, &bytes).is_ok());
        }
        // With a valid version byte, the decoders go past the first check.
        let mut v1 = vec![1];
        v1.extend_from_slice(&bytes);
        std::hint::black_box(SessionRecord::decode(&v1).is_ok());
        std::hint::black_box(MessageRecord::decode(&v1).is_ok());
        std::hint::black_box(RetainedRecord::decode(b"t", &v1).is_ok());
    }
}
