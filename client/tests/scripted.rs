//! The client glue against a scripted server on a std thread: connect,
//! publish, receive, keep-alive ping, disconnect; connect errors.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringmq_client::{ClientConfig, Clock, ConnectError, MqttConnection};
use ringmq_engine::client::{ClientOptions, Event, State};
use ringmq_engine::codec::{
    decode, encode, ConnAck, ConnAckProperties, Decoded, Packet, Protocol, PubAck, Publish, QoS,
    ReasonCode,
};

/// A scripted server on a std thread: accepts one connection, answers
/// CONNECT with CONNACK, a QoS 1 PUBLISH with PUBACK, PINGREQ with
/// PINGRESP, and sends one QoS 0 message after the first PUBLISH.
fn scripted_server(protocol: Protocol) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        let mut buf = BytesMut::new();
        let mut kinds = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return kinds;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Ok(Decoded::Packet(p)) = decode(&mut buf, protocol, 1 << 20) {
                kinds.push(p.packet_type());
                let mut out = BytesMut::new();
                let reply = match p {
                    Packet::Connect(_) => Some(Packet::ConnAck(ConnAck {
                        session_present: false,
                        reason: ReasonCode::SUCCESS,
                        properties: ConnAckProperties::default(),
                    })),
                    Packet::Publish(p) if p.qos == QoS::AtLeastOnce => {
                        let msg = Packet::Publish(Publish {
                            topic: Bytes::from_static(b"back"),
                            payload: p.payload.clone(),
                            ..Publish::default()
                        });
                        encode(&msg, protocol, &mut out).unwrap_or_else(|e| panic!("{e:?}"));
                        Some(Packet::PubAck(PubAck::new(p.packet_id)))
                    }
                    Packet::PingReq => Some(Packet::PingResp),
                    _ => None,
                };
                if let Some(r) = reply {
                    encode(&r, protocol, &mut out).unwrap_or_else(|e| panic!("{e:?}"));
                }
                if s.write_all(&out).is_err() {
                    return kinds; // the client is gone
                }
            }
        }
    });
    (addr, t)
}

fn runtime() -> monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
> {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

#[test]
fn connect_publish_receive_ping_disconnect() {
    for protocol in [Protocol::V3_1_1, Protocol::V5] {
        let (addr, server) = scripted_server(protocol);
        runtime().block_on(async move {
            let mut options = ClientOptions::new(protocol, "net-test");
            options.keep_alive_s = 1;
            let (conn, connected) =
                MqttConnection::connect(addr, options, &ClientConfig::default(), Clock::new())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            assert!(!connected.session_present);
            let id = conn.with_client(|c| {
                c.publish(
                    Bytes::from_static(b"t"),
                    Bytes::from_static(b"hi"),
                    QoS::AtLeastOnce,
                    false,
                    Default::default(),
                )
            });
            assert_eq!(id, Ok(Some(1)));
            let mut acked = false;
            let mut got = false;
            while !(acked && got) {
                match conn.next_event().await {
                    Some(Event::PubAcked { packet_id: 1, .. }) => acked = true,
                    Some(Event::Message(m)) => {
                        assert_eq!(&m.payload[..], b"hi");
                        got = true;
                    }
                    other => panic!("{other:?}"),
                }
            }
            // Keep-alive 1 s: a PINGREQ goes out and PINGRESP comes back.
            monoio::time::sleep(Duration::from_millis(1_300)).await;
            assert_eq!(conn.client().state(), State::Connected);
            conn.disconnect().await;
            assert!(conn.is_closed());
        });
        let kinds = server.join().unwrap_or_else(|_| panic!("server thread"));
        assert_eq!(
            kinds,
            vec![1, 3, 12, 14],
            "CONNECT, PUBLISH, PINGREQ, DISCONNECT"
        );
    }
}

#[test]
fn refused_connection_reports_io_error() {
    // Bind then drop: nothing listens on this port.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    runtime().block_on(async move {
        for bind_ip in [
            None,
            Some("127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))),
        ] {
            let config = ClientConfig {
                bind_ip,
                ..ClientConfig::default()
            };
            let r = MqttConnection::connect(
                addr,
                ClientOptions::new(Protocol::V3_1_1, "x"),
                &config,
                Clock::new(),
            )
            .await;
            assert!(matches!(r, Err(ConnectError::Io(_))), "{:?}", r.err());
        }
    });
}
