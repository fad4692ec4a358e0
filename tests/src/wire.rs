//! A blocking MQTT connection that sees the protocol (packet ids, DUP,
//! Session Present, reason codes) in 3.1.1 or 5.0, for black-box tests
//! that play a client's part across restarts of the broker (the storage
//! tests): unlike [`crate::RawClient`], reads return errors instead of
//! panicking, so a test can tell "the broker was killed" from a failure.
//!
//! Packets are built by [`crate::packet`]'s framing, independently of the
//! engine's codec.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::packet::frame;

/// Protocol level of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    /// CONNECT's protocol level byte.
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// A PUBLISH as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    /// 0 for QoS 0.
    pub packet_id: u16,
    pub payload: Vec<u8>,
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(s.len())
        .unwrap_or_else(|_| panic!("string longer than 65535 bytes"))
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(s);
    out
}

/// CONNECT. `clean` is Clean Session (3.1.1) or Clean Start (5.0);
/// `session_expiry_s` is sent as the Session Expiry Interval property in
/// 5.0 when above 0 (3.1.1 has none: a clean-session-0 session is kept).
pub fn connect_packet(
    version: Version,
    client_id: &str,
    clean: bool,
    session_expiry_s: u32,
) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(version.level());
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&60u16.to_be_bytes());
    if version == Version::V5 {
        if session_expiry_s > 0 {
            body.push(5);
            body.push(0x11);
            body.extend_from_slice(&session_expiry_s.to_be_bytes());
        } else {
            body.push(0);
        }
    }
    body.extend(string(client_id.as_bytes()));
    frame(0x10, &body)
}

/// SUBSCRIBE with one filter at `qos`.
pub fn subscribe_packet(version: Version, packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.push(0);
    }
    body.extend(string(filter.as_bytes()));
    body.push(qos);
    frame(0x82, &body)
}

/// UNSUBSCRIBE of one filter.
pub fn unsubscribe_packet(version: Version, packet_id: u16, filter: &str) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.push(0);
    }
    body.extend(string(filter.as_bytes()));
    frame(0xa2, &body)
}

/// PUBLISH (`packet_id` is written for QoS > 0 only).
pub fn publish_packet(
    version: Version,
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    retain: bool,
    dup: bool,
) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    if version == Version::V5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame(
        0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain),
        &body,
    )
}

/// PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) with
/// success (the reason code may be left out in 5.0 too).
pub fn ack_packet(first: u8, packet_id: u16) -> Vec<u8> {
    frame(first, &packet_id.to_be_bytes())
}

/// Reads a Variable Byte Integer from `body` at `at`; returns it and the
/// position after it.
fn read_varint(body: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for i in 0..4 {
        let b = *body.get(at)?;
        at += 1;
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, at));
        }
    }
    None
}

/// Decodes a PUBLISH's fixed-header byte and body.
pub fn parse_publish(version: Version, first: u8, body: &[u8]) -> Option<Publish> {
    if first >> 4 != 3 {
        return None;
    }
    let qos = (first >> 1) & 3;
    let tlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = String::from_utf8(body.get(2..2 + tlen)?.to_vec()).ok()?;
    let mut at = 2 + tlen;
    let mut packet_id = 0;
    if qos > 0 {
        packet_id = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
        at += 2;
    }
    if version == Version::V5 {
        let (props, after) = read_varint(body, at)?;
        at = after + props;
    }
    Some(Publish {
        topic,
        qos,
        dup: first & 0x08 != 0,
        retain: first & 0x01 != 0,
        packet_id,
        payload: body.get(at..)?.to_vec(),
    })
}

/// The reason code of a PUBACK / PUBREC / PUBCOMP body: 0 when 3.1.1 or
/// when 5.0 leaves it out (success).
pub fn ack_reason(body: &[u8]) -> u8 {
    body.get(2).copied().unwrap_or(0)
}

/// Whether `e` is a read timeout (not an error of the connection).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A connected, accepted MQTT connection.
pub struct Conn {
    stream: TcpStream,
    pub version: Version,
    /// CONNACK's Session Present flag.
    pub session_present: bool,
}

impl Conn {
    /// TCP connect, CONNECT, and CONNACK; an error unless CONNACK accepted
    /// the connection. Reads time out after `poll` (see [`Conn::read`]).
    pub fn open(
        addr: SocketAddr,
        version: Version,
        client_id: &str,
        clean: bool,
        session_expiry_s: u32,
        poll: Duration,
    ) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(poll))?;
        let mut conn = Conn {
            stream,
            version,
            session_present: false,
        };
        conn.send(&connect_packet(version, client_id, clean, session_expiry_s))?;
        let (first, body) = conn.read_until(Instant::now() + Duration::from_secs(10))?;
        let code = body.get(1).copied();
        if first != 0x20 || code != Some(0) {
            return Err(io::Error::other(format!(
                "{client_id}: CONNACK {first:02x} {body:02x?}"
            )));
        }
        conn.session_present = body.first().is_some_and(|f| f & 1 == 1);
        Ok(conn)
    }

    /// Writes bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// One packet: fixed-header byte and body; a timeout error after the
    /// connection's read timeout.
    pub fn read(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut first = [0u8; 1];
        self.stream.read_exact(&mut first)?;
        let mut len = 0usize;
        for i in 0..4 {
            let mut b = [0u8; 1];
            self.stream.read_exact(&mut b)?;
            len |= usize::from(b[0] & 0x7f) << (7 * i);
            if b[0] & 0x80 == 0 {
                let mut body = vec![0u8; len];
                self.stream.read_exact(&mut body)?;
                return Ok((first[0], body));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad remaining length",
        ))
    }

    /// Reads a packet, waiting through read timeouts until `deadline`.
    pub fn read_until(&mut self, deadline: Instant) -> io::Result<(u8, Vec<u8>)> {
        loop {
            match self.read() {
                Err(e) if is_timeout(&e) && Instant::now() < deadline => continue,
                other => return other,
            }
        }
    }

    /// SUBSCRIBE one filter and wait for its SUBACK; the granted code.
    pub fn subscribe(&mut self, packet_id: u16, filter: &str, qos: u8) -> io::Result<u8> {
        self.send(&subscribe_packet(self.version, packet_id, filter, qos))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (first, body) = self.read_until(deadline)?;
            if first == 0x90 {
                // 5.0: packet id, properties (length + bytes), codes.
                let at = match self.version {
                    Version::V311 => 2,
                    Version::V5 => read_varint(&body, 2)
                        .map(|(n, after)| after + n)
                        .unwrap_or(body.len()),
                };
                return body
                    .get(at)
                    .copied()
                    .ok_or_else(|| io::Error::other(format!("SUBACK {body:02x?}")));
            }
        }
    }

    /// Sends a PUBLISH.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        packet_id: u16,
        retain: bool,
    ) -> io::Result<()> {
        let p = publish_packet(self.version, topic, payload, qos, packet_id, retain, false);
        self.send(&p)
    }

    /// Publishes and completes the exchange (PUBACK, or PUBREC + PUBREL +
    /// PUBCOMP); an error if the broker refuses it. Other packets arriving
    /// meanwhile are dropped.
    pub fn publish_acked(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        packet_id: u16,
        retain: bool,
    ) -> io::Result<()> {
        self.publish(topic, payload, qos, packet_id, retain)?;
        if qos == 0 {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (first, body) = self.read_until(deadline)?;
            let id = u16::from_be_bytes([
                body.first().copied().unwrap_or(0),
                body.get(1).copied().unwrap_or(0),
            ]);
            if id != packet_id || !matches!(first >> 4, 4 | 5 | 7) {
                continue;
            }
            if ack_reason(&body) >= 0x80 {
                return Err(io::Error::other(format!("publish refused: {body:02x?}")));
            }
            match first >> 4 {
                5 => self.send(&ack_packet(0x62, packet_id))?,
                _ => return Ok(()),
            }
        }
    }

    /// DISCONNECT (normal, no properties) and close.
    pub fn disconnect(mut self) -> io::Result<()> {
        self.send(&[0xe0, 0x00])
    }
}
