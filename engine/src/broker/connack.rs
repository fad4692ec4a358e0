//! Refusing a CONNECT and fitting a CONNACK to the client's Maximum
//! Packet Size ([MQTT-3.1.2-24]): the CONNACK side of `connect.rs`.

use bytes::Bytes;

use super::{Broker, CloseCause, ConnId};
use crate::codec::{self, ConnAck, ConnAckProperties, Packet, Protocol, ReasonCode};

impl Broker {
    /// Answer a CONNECT that failed to decode: CONNACK with `reason` in the
    /// client's protocol when its level is known, then close
    /// ([MQTT-3.1.2-2]: v3.1.1 gets return code 0x01 for a bad level).
    pub(super) fn refuse_connect(
        &mut self,
        conn: ConnId,
        level: Option<u8>,
        reason: ReasonCode,
        now_ms: u64,
    ) {
        let unsupported = reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
        let protocol = match level {
            // v5 may answer any refused CONNECT with its reason code (3.2.2.2).
            Some(5) => Some(Protocol::V5),
            // v3.1.1 / v3.1: CONNACK 0x01 for an unsupported level
            // ([MQTT-3.1.2-2]); any other malformed CONNECT is closed
            // without a CONNACK ([MQTT-3.1.4-1]).
            Some(4) if unsupported => Some(Protocol::V3_1_1),
            Some(3) if unsupported => Some(Protocol::V3_1),
            // Unknown level: answer in v3.1.1 form (0x01), which every client reads.
            Some(l) if l != 3 && l != 4 && unsupported => Some(Protocol::V3_1_1),
            _ => None,
        };
        if let (Some(protocol), Some(c)) = (protocol, self.conns.get_mut(conn)) {
            c.protocol = protocol;
            self.write_refusal(conn, reason);
        }
        self.stats.connects_refused += 1;
        self.set_close_cause(conn, CloseCause::ConnectRefused(reason));
        self.close(conn, now_ms);
    }

    /// Refuses the CONNECT at the start of `buf` with `reason` in the
    /// client's protocol, then closes `conn`: a CONNECT that
    /// [`route_connect`](super::route_connect) sent to another shard but
    /// that the runtime could not hand over (no process descriptor to move
    /// the socket with: `EMFILE`), so neither shard serves it. v5 gets
    /// `reason` (0x89 Server busy fits: the client may retry later), v3.1.1
    /// and v3.1 its return code (3, server unavailable, for 0x88 / 0x89).
    /// The CONNECT is decoded only for its protocol and Maximum Packet
    /// Size (the CONNACK must fit it, [MQTT-3.1.2-24]); one that does not
    /// decode (it did for routing) is closed without a CONNACK.
    pub fn refuse_unrouted(&mut self, conn: ConnId, buf: &[u8], reason: ReasonCode, now_ms: u64) {
        let connect = match codec::check_frame(buf, u32::MAX) {
            Ok(codec::FrameCheck::Complete { frame_len }) => buf
                .get(..frame_len)
                .map(|frame| codec::decode_packet(Bytes::copy_from_slice(frame), Protocol::V5)),
            _ => None,
        };
        if let (Some(Ok(Packet::Connect(connect))), Some(c)) = (connect, self.conns.get_mut(conn)) {
            c.protocol = connect.protocol;
            c.client_packet_size_max_bytes = connect
                .properties
                .maximum_packet_size_bytes
                .unwrap_or(u32::MAX);
            self.write_refusal(conn, reason);
        }
        self.stats.connects_refused += 1;
        self.set_close_cause(conn, CloseCause::ConnectRefused(reason));
        self.close(conn, now_ms);
    }

    /// Refuse a decoded CONNECT with `reason`, then close.
    pub(super) fn connack_refuse(&mut self, conn: ConnId, reason: ReasonCode, now_ms: u64) {
        self.stats.protocol_errors += 1;
        self.stats.connects_refused += 1;
        self.write_refusal(conn, reason);
        self.set_close_cause(conn, CloseCause::ConnectRefused(reason));
        self.close(conn, now_ms);
    }

    /// A CONNACK refusing the connection: no session is present for a
    /// refused CONNECT ([MQTT-3.2.2-6] in 5.0, [MQTT-3.2.2-4] in 3.1.1),
    /// and none is sent that exceeds the client's Maximum Packet Size.
    pub(super) fn write_refusal(&mut self, conn: ConnId, reason: ReasonCode) {
        let ack = ConnAck {
            session_present: false,
            reason,
            properties: ConnAckProperties::default(),
        };
        if let Some(ack) = self.fit_connack(conn, ack) {
            self.write_packet(conn, &Packet::ConnAck(ack));
        }
    }

    /// The CONNACK as it may be sent on `conn`, whose client declared its
    /// Maximum Packet Size in CONNECT ([MQTT-3.1.2-24]); see [`fit_connack`].
    pub(super) fn fit_connack(&self, conn: ConnId, ack: ConnAck) -> Option<ConnAck> {
        let c = self.conns.get(conn)?;
        fit_connack(ack, c.protocol, c.client_packet_size_max_bytes)
    }
}

/// `ack` as it may be sent to a client whose Maximum Packet Size is
/// `max_bytes` ([MQTT-3.1.2-24]): without its Reason String and User
/// Properties when they would make it too large ([MQTT-3.2.2-19],
/// [MQTT-3.2.2-20]); `None` when it is too large even then. The other
/// properties are not optional: they carry limits and the assigned client
/// identifier, and their absence would mean something else.
fn fit_connack(ack: ConnAck, protocol: Protocol, max_bytes: u32) -> Option<ConnAck> {
    let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut packet = Packet::ConnAck(ack);
    if codec::encoded_len(&packet, protocol) > max {
        if let Packet::ConnAck(a) = &mut packet {
            a.properties.reason_string = None;
            a.properties.user = Default::default();
        }
        if codec::encoded_len(&packet, protocol) > max {
            return None;
        }
    }
    match packet {
        Packet::ConnAck(a) => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ack_with_optional_properties() -> ConnAck {
        let mut properties = ConnAckProperties {
            receive_maximum: Some(10),
            reason_string: Some(Bytes::from_static(b"a reason string")),
            ..Default::default()
        };
        properties
            .user
            .push((Bytes::from_static(b"key"), Bytes::from_static(b"value")));
        ConnAck {
            session_present: false,
            reason: ReasonCode::SUCCESS,
            properties,
        }
    }

    fn len(ack: &ConnAck) -> u32 {
        codec::encoded_len(&Packet::ConnAck(ack.clone()), Protocol::V5) as u32
    }

    #[test]
    fn optional_connack_properties_are_dropped_to_fit_and_only_then() {
        let full = ack_with_optional_properties();
        let n = len(&full);
        assert_eq!(
            fit_connack(full.clone(), Protocol::V5, n),
            Some(full.clone())
        );
        let mut minimal = full.clone();
        minimal.properties.reason_string = None;
        minimal.properties.user.clear();
        let m = len(&minimal);
        assert!(m < n);
        for max in [m, n - 1] {
            assert_eq!(
                fit_connack(full.clone(), Protocol::V5, max),
                Some(minimal.clone())
            );
        }
        assert_eq!(fit_connack(full, Protocol::V5, m - 1), None);
    }
}
