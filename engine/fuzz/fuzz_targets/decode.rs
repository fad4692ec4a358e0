//! Fuzz target `decode`: arbitrary bytes through the streaming `decode` and
//! through `decode_packet`, for each protocol version. Decoding must never
//! panic; every packet that decodes must re-encode (`encoded_len` exact) and
//! re-decode to an equal packet.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringmq_engine::codec::{
    check_frame, decode, decode_packet, encode, encoded_len, Decoded, FrameCheck, Packet, Protocol,
};

/// Small enough that the size check is exercised, big enough for the
/// fuzzer's inputs.
const PACKET_SIZE_MAX_BYTES: u32 = 64 * 1024;

fn round_trip(packet: &Packet, protocol: Protocol) {
    let len = encoded_len(packet, protocol);
    let mut out = BytesMut::new();
    let written = match encode(packet, protocol, &mut out) {
        Ok(n) => n,
        Err(e) => panic!("decoded packet does not encode: {e}: {packet:?}"),
    };
    assert_eq!(written, len, "encoded_len disagrees: {packet:?}");
    assert_eq!(out.len(), len);
    match decode_packet(out.freeze(), protocol) {
        Ok(again) => assert_eq!(&again, packet, "round trip changed the packet"),
        Err(e) => panic!("re-encoded packet does not decode: {e}: {packet:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5] {
        // A stream of frames, as a connection's read buffer would hold them.
        let mut buf = BytesMut::from(data);
        loop {
            let check = check_frame(&buf, PACKET_SIZE_MAX_BYTES);
            match decode(&mut buf, protocol, PACKET_SIZE_MAX_BYTES) {
                Ok(Decoded::Packet(p)) => {
                    assert!(matches!(check, Ok(FrameCheck::Complete { .. })));
                    round_trip(&p, protocol);
                }
                Ok(Decoded::Incomplete { needed_bytes }) => {
                    assert!(needed_bytes >= 1);
                    assert_eq!(check, Ok(FrameCheck::Incomplete { needed_bytes }));
                    break;
                }
                Err(e) => {
                    // Frame-level errors come from the header check.
                    if check.is_err() {
                        assert_eq!(check, Err(e));
                    }
                    let _ = e.reason_code();
                    break;
                }
            }
        }
        // The whole input as one frame.
        if let Ok(p) = decode_packet(Bytes::copy_from_slice(data), protocol) {
            round_trip(&p, protocol);
        }
    }
});
