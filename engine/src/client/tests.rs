//! Transcripts: the client driven with hand-made server packets (encoded by
//! the codec), its output decoded back. Every flow runs for v3.1.1 and v5.
//! Over 600 lines on purpose: test transcripts only (no code of the client),
//! one flow after another, each readable top to bottom.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};

use super::*;
use crate::codec::{
    encoded_len, AckProperties, ConnAck, ConnAckProperties, Disconnect, PubAck, SubAck,
    SubscriptionOptions, UnsubAck,
};

const PROTOCOLS: [Protocol; 2] = [Protocol::V3_1_1, Protocol::V5];
const MAX: u32 = PACKET_SIZE_MAX_BYTES_DEFAULT;

fn bytes_of(packets: &[Packet], protocol: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    for p in packets {
        encode(p, protocol, &mut out).unwrap();
    }
    out
}

/// Everything the client queued for the server, decoded.
fn sent(client: &mut Client) -> Vec<Packet> {
    let protocol = client.protocol();
    let mut out = client.outgoing().split();
    let mut packets = Vec::new();
    while let Decoded::Packet(p) = decode(&mut out, protocol, MAX).unwrap() {
        packets.push(p);
    }
    assert!(out.is_empty(), "client wrote a partial packet");
    packets
}

fn events(client: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

/// Feeds whole packets; returns how many the client decoded.
fn feed(client: &mut Client, packets: &[Packet], now_ms: u64) -> Result<usize, ProtocolError> {
    let mut buf = bytes_of(packets, client.protocol());
    let r = client.handle_read(&mut buf, now_ms);
    if r.is_ok() {
        assert!(buf.is_empty());
    }
    r.map(|progress| progress.packets)
}

fn connack(properties: ConnAckProperties) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::SUCCESS,
        properties,
    })
}

fn options(protocol: Protocol) -> ClientOptions {
    let mut o = ClientOptions::new(protocol, "c1");
    o.keep_alive_s = 10;
    o
}

/// A client past CONNACK, with its CONNECT and Connected event consumed.
fn connected_with(o: ClientOptions, props: ConnAckProperties) -> Client {
    let mut c = Client::new(o);
    c.connect(0).unwrap();
    let _ = sent(&mut c);
    feed(&mut c, &[connack(props)], 0).unwrap();
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Connected { .. }]
    ));
    c
}

fn connected(protocol: Protocol) -> Client {
    connected_with(options(protocol), ConnAckProperties::default())
}

fn ack(packet_id: u16) -> PubAck {
    PubAck::new(packet_id)
}

fn publish(topic: &'static str, qos: QoS, packet_id: u16, payload: &'static [u8]) -> Publish {
    Publish {
        qos,
        packet_id,
        topic: Bytes::from_static(topic.as_bytes()),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    }
}

fn pub_qos(c: &mut Client, qos: QoS) -> Result<Option<u16>, ClientError> {
    c.publish(
        Bytes::from_static(b"t/1"),
        Bytes::from_static(b"hello"),
        qos,
        false,
        PublishProperties::default(),
    )
}

#[test]
fn connect_writes_connect_and_connack_connects() {
    for protocol in PROTOCOLS {
        let mut o = options(protocol);
        o.username = Some(Bytes::from_static(b"u"));
        o.password = Some(Bytes::from_static(b"p"));
        o.session_expiry_s = Some(30);
        o.receive_maximum = 7;
        let mut c = Client::new(o);
        assert_eq!(c.state(), State::Idle);
        assert_eq!(c.poll_timeout(), None);
        c.connect(1_000).unwrap();
        assert_eq!(c.connect(1_000), Err(ClientError::AlreadyStarted));
        assert_eq!(c.state(), State::Connecting);
        assert_eq!(c.poll_timeout(), Some(1_000 + CONNECT_TIMEOUT_MS_DEFAULT));
        let out = sent(&mut c);
        let [Packet::Connect(connect)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(connect.protocol, protocol);
        assert_eq!(&connect.client_id[..], b"c1");
        assert!(connect.clean_start);
        assert_eq!(connect.keep_alive_s, 10);
        assert_eq!(connect.username.as_deref(), Some(&b"u"[..]));
        if protocol.is_v5() {
            assert_eq!(connect.properties.session_expiry_interval_s, Some(30));
            assert_eq!(connect.properties.receive_maximum, Some(7));
            assert_eq!(connect.properties.maximum_packet_size_bytes, Some(MAX));
        } else {
            assert_eq!(connect.properties, ConnectProperties::default());
        }
        // Publishing before CONNACK is refused.
        assert_eq!(
            pub_qos(&mut c, QoS::AtMostOnce),
            Err(ClientError::NotConnected)
        );
        let packets = feed(&mut c, &[connack(ConnAckProperties::default())], 1_005).unwrap();
        assert_eq!(packets, 1);
        assert!(c.is_connected());
        assert_eq!(
            events(&mut c),
            vec![Event::Connected {
                session_present: false,
                properties: Box::default()
            }]
        );
        assert_eq!(c.poll_timeout(), Some(1_000 + 10_000));
    }
}

#[test]
fn connack_refusal_and_timeout() {
    for protocol in PROTOCOLS {
        let mut c = Client::new(options(protocol));
        c.connect(0).unwrap();
        let refused = Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: ConnAckProperties::default(),
        });
        feed(&mut c, &[refused], 5).unwrap();
        assert!(c.is_disconnected());
        assert_eq!(
            events(&mut c),
            vec![Event::Disconnected(DisconnectReason::ConnectRefused(
                ReasonCode::NOT_AUTHORIZED
            ))]
        );

        let mut c = Client::new(options(protocol));
        c.connect(100).unwrap();
        c.handle_timeout(100 + CONNECT_TIMEOUT_MS_DEFAULT - 1);
        assert_eq!(c.state(), State::Connecting);
        c.handle_timeout(100 + CONNECT_TIMEOUT_MS_DEFAULT);
        assert_eq!(
            events(&mut c),
            vec![Event::Disconnected(DisconnectReason::ConnectTimeout)]
        );
        assert_eq!(c.poll_timeout(), None);
    }
}

#[test]
fn packet_before_connack_is_a_protocol_error() {
    for protocol in PROTOCOLS {
        let mut c = Client::new(options(protocol));
        c.connect(0).unwrap();
        let _ = sent(&mut c);
        let err = feed(&mut c, &[Packet::PingResp], 1).unwrap_err();
        assert_eq!(err, ProtocolError::UnexpectedPacket { packet_type: 13 });
        assert!(c.is_disconnected());
        // Not connected yet: no DISCONNECT is sent.
        assert!(sent(&mut c).is_empty());
    }
}

#[test]
fn session_present_with_clean_start_is_refused() {
    for protocol in PROTOCOLS {
        let mut c = Client::new(options(protocol));
        c.connect(0).unwrap();
        let p = Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::SUCCESS,
            properties: ConnAckProperties::default(),
        });
        assert_eq!(
            feed(&mut c, &[p], 1).unwrap_err(),
            ProtocolError::SessionPresentWithCleanStart
        );
    }
}

#[test]
fn qos0_publish_is_written_with_no_packet_id() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        assert_eq!(pub_qos(&mut c, QoS::AtMostOnce), Ok(None));
        assert_eq!(c.inflight(), 0);
        assert_eq!(
            sent(&mut c),
            vec![Packet::Publish(publish(
                "t/1",
                QoS::AtMostOnce,
                0,
                b"hello"
            ))]
        );
    }
}

#[test]
fn publish_validates_topic() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        for bad in [&b""[..], b"a/+", b"a/#", b"a\0b", b"\xff"] {
            let r = c.publish(
                Bytes::copy_from_slice(bad),
                Bytes::new(),
                QoS::AtLeastOnce,
                false,
                PublishProperties::default(),
            );
            assert_eq!(r, Err(ClientError::InvalidTopic), "{bad:?}");
        }
        assert!(sent(&mut c).is_empty());
        assert_eq!(c.inflight(), 0);
    }
}

#[test]
fn qos1_publish_completes_on_puback() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(1)));
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(2)));
        assert_eq!(c.inflight(), 2);
        let out = sent(&mut c);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            Packet::Publish(publish("t/1", QoS::AtLeastOnce, 2, b"hello"))
        );
        feed(&mut c, &[Packet::PubAck(ack(2)), Packet::PubAck(ack(1))], 1).unwrap();
        assert_eq!(
            events(&mut c),
            vec![
                Event::PubAcked {
                    packet_id: 2,
                    reason: ReasonCode::SUCCESS
                },
                Event::PubAcked {
                    packet_id: 1,
                    reason: ReasonCode::SUCCESS
                }
            ]
        );
        assert_eq!(c.inflight(), 0);
        // A PUBACK for an id not in flight: protocol error, DISCONNECT in v5.
        let err = feed(&mut c, &[Packet::PubAck(ack(9))], 2).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::UnknownPacketId {
                packet_type: 4,
                packet_id: 9
            }
        );
        let out = sent(&mut c);
        if protocol.is_v5() {
            assert_eq!(
                out,
                vec![Packet::Disconnect(Disconnect {
                    reason: ReasonCode::PROTOCOL_ERROR,
                    ..Disconnect::default()
                })]
            );
        }
        assert_eq!(
            events(&mut c),
            vec![
                Event::ProtocolError(err),
                Event::Disconnected(DisconnectReason::ProtocolError(ReasonCode::PROTOCOL_ERROR))
            ]
        );
    }
}

#[test]
fn qos2_publish_pubrec_pubrel_pubcomp() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        assert_eq!(pub_qos(&mut c, QoS::ExactlyOnce), Ok(Some(1)));
        let _ = sent(&mut c);
        // PUBACK is the wrong answer to QoS 2.
        let mut c2 = connected(protocol);
        pub_qos(&mut c2, QoS::ExactlyOnce).unwrap();
        assert!(feed(&mut c2, &[Packet::PubAck(ack(1))], 1).is_err());

        feed(&mut c, &[Packet::PubRec(ack(1))], 1).unwrap();
        assert!(events(&mut c).is_empty());
        assert_eq!(sent(&mut c), vec![Packet::PubRel(ack(1))]);
        assert_eq!(c.inflight(), 1, "PUBREL sent, still counts until PUBCOMP");
        // A repeated PUBREC gets PUBREL again.
        feed(&mut c, &[Packet::PubRec(ack(1))], 2).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubRel(ack(1))]);
        feed(&mut c, &[Packet::PubComp(ack(1))], 3).unwrap();
        assert_eq!(
            events(&mut c),
            vec![Event::PubAcked {
                packet_id: 1,
                reason: ReasonCode::SUCCESS
            }]
        );
        assert_eq!(c.inflight(), 0);
    }
}

#[test]
fn v5_pubrec_failure_ends_the_flow() {
    let mut c = connected(Protocol::V5);
    pub_qos(&mut c, QoS::ExactlyOnce).unwrap();
    let _ = sent(&mut c);
    let rec = PubAck {
        reason: ReasonCode::NOT_AUTHORIZED,
        ..ack(1)
    };
    feed(&mut c, &[Packet::PubRec(rec)], 1).unwrap();
    assert!(sent(&mut c).is_empty(), "no PUBREL after a failed PUBREC");
    assert_eq!(
        events(&mut c),
        vec![Event::PubAcked {
            packet_id: 1,
            reason: ReasonCode::NOT_AUTHORIZED
        }]
    );
    assert_eq!(c.inflight(), 0);
}

#[test]
fn receive_maximum_bounds_the_window_at_n_and_n_plus_1() {
    for protocol in PROTOCOLS {
        let props = ConnAckProperties {
            receive_maximum: Some(2),
            ..ConnAckProperties::default()
        };
        let mut o = options(protocol);
        o.inflight_max = 3;
        // v3 CONNACK carries no properties: the client's own cap applies.
        let window = if protocol.is_v5() { 2 } else { 3 };
        let mut c = connected_with(
            o,
            if protocol.is_v5() {
                props
            } else {
                Default::default()
            },
        );
        assert_eq!(c.inflight_max(), window);
        for i in 0..window {
            assert!(c.can_publish(QoS::AtLeastOnce));
            assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(i + 1)));
        }
        assert!(!c.can_publish(QoS::AtLeastOnce));
        assert!(c.can_publish(QoS::AtMostOnce));
        let err = pub_qos(&mut c, QoS::ExactlyOnce).unwrap_err();
        assert_eq!(
            err,
            ClientError::InflightFull {
                inflight_max: window
            }
        );
        assert!(err.is_would_block());
        // QoS 0 is not limited by the window.
        assert_eq!(pub_qos(&mut c, QoS::AtMostOnce), Ok(None));
        assert_eq!(sent(&mut c).len(), usize::from(window) + 1);
        feed(&mut c, &[Packet::PubAck(ack(1))], 1).unwrap();
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(window + 1)));
    }
}

#[test]
fn packet_ids_skip_ids_in_use_across_wraparound() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        c.ids.next = 65_534;
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(65_534)));
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(65_535)));
        assert_eq!(
            pub_qos(&mut c, QoS::AtLeastOnce),
            Ok(Some(1)),
            "0 is skipped"
        );
        feed(&mut c, &[Packet::PubAck(ack(65_535))], 1).unwrap();
        // 65_534 and 1 are still in flight; 65_535 is free again.
        c.ids.next = 65_534;
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(65_535)));
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(2)));
        // SUBSCRIBE ids share the space.
        c.ids.next = 1;
        let sub = c
            .subscribe(vec![SubscribeFilter {
                filter: Bytes::from_static(b"a"),
                options: SubscriptionOptions::default(),
            }])
            .unwrap();
        assert_eq!(sub, 3);
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(4)));
    }
}

#[test]
fn outgoing_limit_applies_to_publish() {
    for protocol in PROTOCOLS {
        let mut o = options(protocol);
        o.outgoing_max_bytes = 20;
        let mut c = connected_with(o, ConnAckProperties::default());
        assert_eq!(pub_qos(&mut c, QoS::AtMostOnce), Ok(None)); // 12+ bytes
        assert_eq!(pub_qos(&mut c, QoS::AtMostOnce), Ok(None)); // now >= 20
        assert_eq!(
            pub_qos(&mut c, QoS::AtLeastOnce),
            Err(ClientError::OutgoingFull {
                outgoing_max_bytes: 20
            })
        );
        assert_eq!(c.inflight(), 0);
        let _ = sent(&mut c);
        assert_eq!(pub_qos(&mut c, QoS::AtLeastOnce), Ok(Some(1)));
    }
}

#[test]
fn incoming_qos1_is_acked_and_delivered() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        let p = publish("a/b", QoS::AtLeastOnce, 77, b"x");
        feed(&mut c, &[Packet::Publish(p.clone())], 1).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubAck(ack(77))]);
        assert_eq!(events(&mut c), vec![Event::Message(p)]);
    }
}

#[test]
fn incoming_qos2_is_delivered_exactly_once() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        let p = publish("a/b", QoS::ExactlyOnce, 5, b"once");
        feed(&mut c, &[Packet::Publish(p.clone())], 1).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubRec(ack(5))]);
        assert_eq!(events(&mut c), vec![Event::Message(p.clone())]);
        assert_eq!(c.inbound_qos2_pending(), 1);
        // The server resends (DUP) before PUBREL: PUBREC again, no delivery.
        let dup = Publish {
            dup: true,
            ..p.clone()
        };
        feed(&mut c, &[Packet::Publish(dup)], 2).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubRec(ack(5))]);
        assert!(events(&mut c).is_empty());
        feed(&mut c, &[Packet::PubRel(ack(5))], 3).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubComp(ack(5))]);
        assert_eq!(c.inbound_qos2_pending(), 0);
        // After PUBREL the id is new again: a new message.
        feed(&mut c, &[Packet::Publish(p.clone())], 4).unwrap();
        assert_eq!(events(&mut c), vec![Event::Message(p)]);
        assert_eq!(sent(&mut c), vec![Packet::PubRec(ack(5))]);
        // PUBREL for an unknown id: PUBCOMP (0x92 in v5).
        let expected = if protocol.is_v5() {
            PubAck {
                reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                ..ack(6)
            }
        } else {
            ack(6)
        };
        feed(&mut c, &[Packet::PubRel(ack(6))], 6).unwrap();
        assert_eq!(sent(&mut c), vec![Packet::PubComp(expected)]);
    }
}

#[test]
fn incoming_qos2_beyond_receive_maximum_is_refused() {
    for protocol in PROTOCOLS {
        let mut o = options(protocol);
        o.receive_maximum = 2;
        let mut c = connected_with(o, ConnAckProperties::default());
        let msgs: Vec<Packet> = (1..=2)
            .map(|id| Packet::Publish(publish("a", QoS::ExactlyOnce, id, b"")))
            .collect();
        feed(&mut c, &msgs, 1).unwrap();
        let err = feed(
            &mut c,
            &[Packet::Publish(publish("a", QoS::ExactlyOnce, 3, b""))],
            2,
        )
        .unwrap_err();
        assert_eq!(err, ProtocolError::ReceiveMaximumExceeded);
        assert_eq!(err.reason_code(), ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    }
}

#[test]
fn keep_alive_pings_and_times_out() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        assert_eq!(c.poll_timeout(), Some(10_000));
        c.handle_timeout(9_999);
        assert!(sent(&mut c).is_empty());
        // Writing something moves the deadline (using the latest time seen).
        c.handle_timeout(5_000);
        pub_qos(&mut c, QoS::AtMostOnce).unwrap();
        let _ = sent(&mut c);
        assert_eq!(c.poll_timeout(), Some(9_999 + 10_000));
        c.handle_timeout(19_999);
        assert_eq!(sent(&mut c), vec![Packet::PingReq]);
        assert_eq!(c.poll_timeout(), Some(19_999 + 10_000));
        feed(&mut c, &[Packet::PingResp], 20_100).unwrap();
        assert_eq!(c.poll_timeout(), Some(29_999));
        c.handle_timeout(29_999);
        assert_eq!(sent(&mut c), vec![Packet::PingReq]);
        c.handle_timeout(39_998);
        assert!(c.is_connected());
        c.handle_timeout(39_999);
        assert_eq!(
            events(&mut c),
            vec![Event::Disconnected(DisconnectReason::KeepAliveTimeout)]
        );
        assert_eq!(c.poll_timeout(), None);
    }
}

#[test]
fn keep_alive_zero_needs_no_timer() {
    let mut o = options(Protocol::V3_1_1);
    o.keep_alive_s = 0;
    let c = connected_with(o, ConnAckProperties::default());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn server_keep_alive_overrides() {
    let props = ConnAckProperties {
        server_keep_alive_s: Some(3),
        ..ConnAckProperties::default()
    };
    let c = connected_with(options(Protocol::V5), props);
    assert_eq!(c.keep_alive_ms(), 3_000);
    assert_eq!(c.poll_timeout(), Some(3_000));
}

#[test]
fn v5_connack_limits_apply() {
    let props = ConnAckProperties {
        maximum_qos: Some(1),
        retain_available: Some(0),
        maximum_packet_size_bytes: Some(20),
        ..ConnAckProperties::default()
    };
    let mut c = connected_with(options(Protocol::V5), props);
    assert_eq!(
        pub_qos(&mut c, QoS::ExactlyOnce),
        Err(ClientError::QoSNotSupported {
            maximum_qos: QoS::AtLeastOnce
        })
    );
    let r = c.publish(
        Bytes::from_static(b"t"),
        Bytes::new(),
        QoS::AtMostOnce,
        true,
        PublishProperties::default(),
    );
    assert_eq!(r, Err(ClientError::RetainNotSupported));
    let r = c.publish(
        Bytes::from_static(b"t"),
        Bytes::from_static(&[0; 32]),
        QoS::AtLeastOnce,
        false,
        PublishProperties::default(),
    );
    assert!(matches!(
        r,
        Err(ClientError::PacketTooLarge { max_bytes: 20, .. })
    ));
    assert_eq!(c.inflight(), 0, "a refused publish holds no packet id");
    assert!(sent(&mut c).is_empty());
}

#[test]
fn subscribe_and_unsubscribe_round_trip() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        assert_eq!(c.subscribe(vec![]), Err(ClientError::NoFilters));
        let filters = vec![SubscribeFilter {
            filter: Bytes::from_static(b"a/+"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            },
        }];
        let id = c.subscribe(filters.clone()).unwrap();
        let out = sent(&mut c);
        let [Packet::Subscribe(s)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((s.packet_id, &s.filters), (id, &filters));
        let suback = SubAck {
            packet_id: id,
            reasons: vec![ReasonCode::GRANTED_QOS_1],
            properties: AckProperties::default(),
        };
        feed(&mut c, &[Packet::SubAck(suback.clone())], 1).unwrap();
        assert_eq!(events(&mut c), vec![Event::SubAck(suback.clone())]);
        // The same SUBACK again answers nothing: protocol error.
        assert!(feed(&mut c, &[Packet::SubAck(suback)], 2).is_err());

        let mut c = connected(protocol);
        let id = c.unsubscribe(vec![Bytes::from_static(b"a/+")]).unwrap();
        assert!(matches!(sent(&mut c).as_slice(), [Packet::Unsubscribe(u)] if u.packet_id == id));
        let unsuback = UnsubAck {
            packet_id: id,
            reasons: if protocol.is_v5() {
                vec![ReasonCode::SUCCESS]
            } else {
                vec![]
            },
            properties: AckProperties::default(),
        };
        feed(&mut c, &[Packet::UnsubAck(unsuback.clone())], 1).unwrap();
        assert_eq!(events(&mut c), vec![Event::UnsubAck(unsuback)]);
    }
}

#[test]
fn disconnect_by_client_and_by_server() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        c.disconnect(ReasonCode::NORMAL_DISCONNECTION);
        assert!(matches!(sent(&mut c).as_slice(), [Packet::Disconnect(_)]));
        assert_eq!(
            events(&mut c),
            vec![Event::Disconnected(DisconnectReason::Client(
                ReasonCode::NORMAL_DISCONNECTION
            ))]
        );
        c.disconnect(ReasonCode::NORMAL_DISCONNECTION);
        assert!(sent(&mut c).is_empty(), "second disconnect is a no-op");
        assert_eq!(
            pub_qos(&mut c, QoS::AtMostOnce),
            Err(ClientError::NotConnected)
        );
        // Bytes after the end are discarded.
        let mut junk = BytesMut::from(&b"\xff\xff"[..]);
        assert!(c.handle_read(&mut junk, 1).is_ok());
        assert!(junk.is_empty());
    }
    let mut c = connected(Protocol::V5);
    let d = Disconnect {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        ..Disconnect::default()
    };
    feed(&mut c, &[Packet::Disconnect(d)], 1).unwrap();
    assert_eq!(
        events(&mut c),
        vec![Event::Disconnected(DisconnectReason::Server(
            ReasonCode::SERVER_SHUTTING_DOWN
        ))]
    );
    let mut c = connected(Protocol::V3_1_1);
    c.handle_close(5);
    assert_eq!(
        events(&mut c),
        vec![Event::Disconnected(DisconnectReason::TransportClosed)]
    );
}

#[test]
fn malformed_bytes_are_a_protocol_error() {
    for protocol in PROTOCOLS {
        let mut c = connected(protocol);
        // Packet type 0 is reserved.
        let mut buf = BytesMut::from(&[0x00u8, 0x00][..]);
        let err = c.handle_read(&mut buf, 1).unwrap_err();
        assert!(matches!(err, ProtocolError::Decode(_)), "{err:?}");
        assert!(c.is_disconnected());
        let evs = events(&mut c);
        assert!(matches!(
            evs.as_slice(),
            [Event::ProtocolError(_), Event::Disconnected(_)]
        ));
    }
}

#[test]
fn oversize_packet_is_refused_from_its_header() {
    for protocol in PROTOCOLS {
        let mut o = options(protocol);
        o.packet_size_max_bytes = 64;
        let mut c = connected_with(o, ConnAckProperties::default());
        let big = Publish {
            payload: Bytes::from(vec![0u8; 100]),
            ..publish("a", QoS::AtMostOnce, 0, b"")
        };
        let mut buf = bytes_of(&[Packet::Publish(big)], protocol);
        buf.truncate(8); // only the header has arrived
        let err = c.handle_read(&mut buf, 1).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::Decode(crate::codec::DecodeError::PacketTooLarge { .. })
        ));
    }
}

#[test]
fn topic_aliases_resolve_inbound() {
    let mut o = options(Protocol::V5);
    o.topic_alias_max = 2;
    let mut c = connected_with(o, ConnAckProperties::default());
    let mut first = publish("long/topic", QoS::AtMostOnce, 0, b"1");
    first.properties.topic_alias = Some(2);
    let mut second = publish("", QoS::AtMostOnce, 0, b"2");
    second.properties.topic_alias = Some(2);
    feed(
        &mut c,
        &[Packet::Publish(first.clone()), Packet::Publish(second)],
        1,
    )
    .unwrap();
    let evs = events(&mut c);
    let topics: Vec<&[u8]> = evs
        .iter()
        .map(|e| match e {
            Event::Message(p) => &p.topic[..],
            _ => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(topics, vec![&b"long/topic"[..], &b"long/topic"[..]]);
    // Alias 3 is above our maximum of 2.
    let mut bad = first;
    bad.properties.topic_alias = Some(3);
    assert_eq!(
        feed(&mut c, &[Packet::Publish(bad)], 2).unwrap_err(),
        ProtocolError::TopicAliasInvalid
    );
}

/// The same server transcript, split at every byte boundary and fed one
/// byte at a time, gives the same events and output as fed whole.
#[test]
fn input_split_at_every_byte_gives_the_same_result() {
    for protocol in PROTOCOLS {
        let transcript = [
            connack(ConnAckProperties::default()),
            Packet::Publish(publish("a/b", QoS::AtLeastOnce, 3, b"payload-1")),
            Packet::Publish(publish("a/c", QoS::ExactlyOnce, 4, b"payload-2")),
            Packet::PubRel(ack(4)),
            Packet::PubAck(ack(1)),
            Packet::PingResp,
        ];
        let wire = bytes_of(&transcript, protocol);
        let run = |chunks: &mut dyn Iterator<Item = &[u8]>| {
            let mut c = Client::new(options(protocol));
            c.connect(0).unwrap();
            let _ = sent(&mut c);
            let mut buf = BytesMut::new();
            let mut first = true;
            for chunk in chunks {
                buf.extend_from_slice(chunk);
                let _ = c.handle_read(&mut buf, 1).unwrap();
                if first && c.is_connected() {
                    first = false;
                    pub_qos(&mut c, QoS::AtLeastOnce).unwrap();
                }
            }
            (sent(&mut c), events(&mut c))
        };
        let whole = {
            // Feed the CONNACK first so the publish (id 1) precedes its PUBACK.
            let split = encoded_len(&transcript[0], protocol);
            run(&mut [&wire[..split], &wire[split..]].into_iter())
        };
        assert_eq!(whole.1.len(), 4, "{:?}", whole.1);
        assert_eq!(run(&mut wire.chunks(1)), whole);
        for cut in 1..wire.len() {
            let split = encoded_len(&transcript[0], protocol);
            if cut <= split {
                continue;
            }
            let parts = [&wire[..split], &wire[split..cut], &wire[cut..]];
            assert_eq!(run(&mut parts.into_iter()), whole, "cut at {cut}");
        }
    }
}

mod manual_acks;

mod receive_resume;
