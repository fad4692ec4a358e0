//! Builders for the raw MQTT packets the black-box tests send (MQTT 3.1.1
//! and 5.0 wire format). Written independently of the engine's codec, so a
//! codec bug cannot hide in both sides of a test.

/// Remaining length as the 1-4 byte varint of section 2.1.4.
pub fn varint(mut n: usize) -> Vec<u8> {
    assert!(n <= 268_435_455, "remaining length too large");
    let mut out = Vec::with_capacity(4);
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// Fixed header byte + remaining length + body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// CONNECT v3.1.1.
pub fn connect_v311(client_id: &str, clean: bool, keep_alive_s: u16) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(4);
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive_s.to_be_bytes());
    body.extend(string(client_id.as_bytes()));
    frame(0x10, &body)
}

/// CONNECT v5 with no properties.
pub fn connect_v5(client_id: &str, clean_start: bool, keep_alive_s: u16) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(5);
    body.push(if clean_start { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive_s.to_be_bytes());
    body.push(0); // properties length
    body.extend(string(client_id.as_bytes()));
    frame(0x10, &body)
}

/// SUBSCRIBE v3.1.1 with one filter.
pub fn subscribe_v311(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(string(filter.as_bytes()));
    body.push(qos);
    frame(0x82, &body)
}

/// PUBLISH v3.1.1 (`packet_id` is written for QoS > 0 only).
pub fn publish_v311(topic: &str, payload: &[u8], qos: u8, packet_id: u16, retain: bool) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// PINGREQ.
pub const PINGREQ: [u8; 2] = [0xc0, 0x00];
/// PINGRESP.
pub const PINGRESP: [u8; 2] = [0xd0, 0x00];
/// DISCONNECT (v3.1.1; v5 with reason 0x00 and no properties).
pub const DISCONNECT: [u8; 2] = [0xe0, 0x00];

/// CONNECT (level 4 = v3.1.1, 5 = v5, no properties) with an optional user
/// name and password, clean start, keep-alive 60 s.
pub fn connect_login(
    level: u8,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(level);
    let mut flags = 0x02;
    if user.is_some() {
        flags |= 0x80;
    }
    if password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if level == 5 {
        body.push(0); // properties length
    }
    body.extend(string(client_id.as_bytes()));
    if let Some(u) = user {
        body.extend(string(u.as_bytes()));
    }
    if let Some(p) = password {
        body.extend(string(p.as_bytes()));
    }
    frame(0x10, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(16_383), [0xff, 0x7f]);
        assert_eq!(varint(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(varint(268_435_455), [0xff, 0xff, 0xff, 0x7f]);
    }

    #[test]
    fn connect_v311_bytes() {
        // Spec example layout: 10 0d 00 04 'MQTT' 04 02 00 3c 00 01 'a'
        assert_eq!(
            connect_v311("a", true, 60),
            [
                0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01,
                b'a'
            ]
        );
    }
}
