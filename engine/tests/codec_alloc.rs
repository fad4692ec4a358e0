//! The publish path of the codec touches no heap: decoding a PUBLISH (v3.1.1,
//! and v5 with non-user properties) from a `BytesMut` or a `Bytes`, and
//! re-encoding it into a pre-sized `BytesMut`, performs zero allocations
//! (DESIGN section 4). Counted by a wrapping global allocator.
//!
//! Only allocations made on the measuring thread while it measures are
//! counted (a thread-local switch), so the test harness's own threads cannot
//! disturb the count.

mod counting_alloc;

use bytes::{Bytes, BytesMut};
use counting_alloc::allocations_in;
use ringmq_engine::codec::*;

fn v3_publish() -> Publish {
    Publish {
        qos: QoS::AtLeastOnce,
        topic: Bytes::from_static(b"sensors/building-7/floor-3/temperature"),
        packet_id: 42,
        payload: Bytes::from(vec![0xAB; 256]),
        ..Publish::default()
    }
}

/// v5 with a couple of non-user properties.
fn v5_publish() -> Publish {
    Publish {
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval_s: Some(3_600),
            topic_alias: Some(7),
            content_type: Some(Bytes::from_static(b"application/json")),
            correlation_data: Some(Bytes::from_static(b"req-0001")),
            ..PublishProperties::default()
        },
        ..v3_publish()
    }
}

const ROUNDS: usize = 200;

/// A read buffer holding `ROUNDS + 1` copies of the frame, like a socket
/// buffer after a burst.
fn inbox(p: &Publish, protocol: Protocol) -> BytesMut {
    let mut inbox = BytesMut::new();
    for _ in 0..=ROUNDS {
        encode_publish(p, protocol, &mut inbox).unwrap();
    }
    inbox
}

fn decode_reencode_from_bytes_mut(p: &Publish, protocol: Protocol) {
    let mut inbox = inbox(p, protocol);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let step = |inbox: &mut BytesMut, out: &mut BytesMut| {
        let Ok(Decoded::Packet(Packet::Publish(d))) = decode(inbox, protocol, 1 << 20) else {
            panic!("decode failed");
        };
        assert_eq!(&d, p);
        out.clear();
        encode_publish(&d, protocol, out).unwrap();
    };
    // Warm up: the first split of a BytesMut moves it to shared storage
    // (one allocation, once per buffer, not per packet).
    step(&mut inbox, &mut out);
    let n = allocations_in(|| {
        for _ in 0..ROUNDS {
            step(&mut inbox, &mut out);
        }
    });
    assert!(inbox.is_empty());
    assert_eq!(
        n, 0,
        "{protocol:?}: {n} allocations in {ROUNDS} decode + encode rounds"
    );
}

#[test]
fn publish_decode_and_reencode_allocate_nothing() {
    decode_reencode_from_bytes_mut(&v3_publish(), Protocol::V3_1_1);
    decode_reencode_from_bytes_mut(&v5_publish(), Protocol::V5);

    // From a frame already held as `Bytes` (e.g. handed over between shards).
    for (p, protocol) in [
        (v3_publish(), Protocol::V3_1_1),
        (v5_publish(), Protocol::V5),
    ] {
        let frame =
            BytesMut::from(&encode_to_bytes(&Packet::Publish(p.clone()), protocol).unwrap()[..])
                .freeze();
        let mut out = BytesMut::with_capacity(64 * 1024);
        // Warm up: a `Bytes` made from a Vec is promoted to shared storage
        // on its first clone.
        drop(decode_packet(frame.clone(), protocol));
        let n = allocations_in(|| {
            for _ in 0..ROUNDS {
                let Ok(Packet::Publish(d)) = decode_packet(frame.clone(), protocol) else {
                    panic!("decode failed");
                };
                out.clear();
                encode_publish(&d, protocol, &mut out).unwrap();
                out.clear();
                encode(&Packet::Publish(d), protocol, &mut out).unwrap();
            }
        });
        assert_eq!(n, 0, "{protocol:?} from Bytes: {n} allocations");
    }

    // The counter works: a user property is a Vec push.
    let mut with_user = v5_publish();
    with_user
        .properties
        .user
        .push((Bytes::from_static(b"k"), Bytes::from_static(b"v")));
    let frame = encode_to_bytes(&Packet::Publish(with_user), Protocol::V5).unwrap();
    drop(decode_packet(frame.clone(), Protocol::V5));
    let n = allocations_in(|| drop(decode_packet(frame.clone(), Protocol::V5)));
    assert!(n >= 1, "the counting allocator saw nothing");
}
