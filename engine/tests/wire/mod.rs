//! Hand-written MQTT wire bytes: frame and field builders, and a splitter
//! that cuts a byte stream into frames. Shared by the tests that need the
//! exact bytes (codec_malformed.rs, conformance_v311.rs, conformance_v5.rs).
#![allow(dead_code)]

/// A frame: first byte, Remaining Length, body.
pub fn fr(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut rest = body.len();
    loop {
        let b = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
pub fn s(x: &[u8]) -> Vec<u8> {
    let mut out = (x.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(x);
    out
}

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A property block: Property Length (one byte here) then the properties.
pub fn props(p: &[u8]) -> Vec<u8> {
    assert!(p.len() < 128);
    cat(&[&[p.len() as u8], p])
}

/// v3.1.1 CONNECT with these flags and payload (keep alive 60).
pub fn connect4(flags: u8, payload: &[u8]) -> Vec<u8> {
    fr(0x10, &cat(&[&s(b"MQTT"), &[4, flags, 0, 60], payload]))
}

/// v5 CONNECT with these flags, CONNECT properties and payload (keep alive 60).
pub fn connect5(flags: u8, p: &[u8], payload: &[u8]) -> Vec<u8> {
    fr(
        0x10,
        &cat(&[&s(b"MQTT"), &[5, flags, 0, 60], &props(p), payload]),
    )
}

/// Splits a byte stream into frames, reading the Remaining Length itself.
pub fn split_frames(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (len, used) = read_varint(&b[1..]);
        out.push(b[..1 + used + len].to_vec());
        b = &b[1 + used + len..];
    }
    out
}

/// (value, bytes used) of a Variable Byte Integer.
pub fn read_varint(b: &[u8]) -> (usize, usize) {
    let mut value = 0usize;
    let mut mult = 1usize;
    for (i, byte) in b.iter().enumerate() {
        value += usize::from(byte & 0x7F) * mult;
        mult *= 128;
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("truncated varint {b:?}");
}
