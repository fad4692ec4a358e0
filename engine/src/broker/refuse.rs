//! What a held acknowledgement becomes when the state it promises could
//! not be stored (a persist batch failed here or on another shard), and
//! the release of outbound QoS 2 PUBLISHes held until their inflight
//! record is on disk (`barrier.rs` holds both).
//!
//! - v5 PUBACK / PUBREC: 0x97 Quota exceeded (disk full) or 0x80
//!   Unspecified error (I/O), unless it already carried a refusal.
//! - SUBACK: each granted filter gets that code (v3.1.1: 0x80, its only
//!   failure code).
//! - v3.1.1 PUBACK / PUBREC and every PUBCOMP: the protocol has no code
//!   for it: the connection is closed without the acknowledgement, so the
//!   client sends the PUBLISH (or PUBREL) again on its next connection.
//! - A refused PUBREC also forgets the inbound packet id: the client's
//!   resend is then a new message, routed and stored again.
//! - CONNACK (a stored session created, resumed or ended): refused with
//!   that code (v3.1.1: 3, server unavailable), then the connection closes.
//! - UNSUBACK (v5): each filter removed gets 0x80 Unspecified error (the
//!   only code of UNSUBACK's that fits: it has no 0x97), and the removed
//!   subscriptions come back (`subscribe.rs`). v3.1.1's UNSUBACK has no
//!   code at all: the connection is closed without it (the subscriptions
//!   come back the same way).
//! - Anything else (PUBREL) is sent as it is.

use super::conn::ConnState;
use super::deliver::write_outbound;
use super::persist::persisted;
use super::session::OutState;
use super::{Broker, CloseCause, ConnId, SessionId};
use crate::codec::{Packet, ReasonCode};
use crate::persist::PersistFailure;

impl Broker {
    /// Send `packet`, held behind a barrier that ended with `failure`, as
    /// the refusal it becomes.
    pub(super) fn refuse_ack(
        &mut self,
        conn: ConnId,
        session: SessionId,
        packet: Packet,
        failure: PersistFailure,
        now_ms: u64,
    ) {
        let v5 = self.conns.get(conn).is_some_and(|c| c.protocol.is_v5());
        let code = failure.reason_code();
        match packet {
            Packet::PubAck(mut a) if v5 => {
                if !a.reason.is_error() {
                    a.reason = code;
                }
                self.write_packet(conn, &Packet::PubAck(a));
            }
            Packet::PubRec(mut a) if v5 => {
                self.forget_inbound_qos2(session, a.packet_id);
                if !a.reason.is_error() {
                    a.reason = code;
                }
                self.write_packet(conn, &Packet::PubRec(a));
            }
            Packet::SubAck(mut s) => {
                for r in s.reasons.iter_mut().filter(|r| !r.is_error()) {
                    *r = if v5 {
                        code
                    } else {
                        ReasonCode::UNSPECIFIED_ERROR
                    };
                }
                self.write_packet(conn, &Packet::SubAck(s));
            }
            Packet::UnsubAck(mut u) if v5 => {
                for r in u.reasons.iter_mut().filter(|r| **r == ReasonCode::SUCCESS) {
                    *r = ReasonCode::UNSPECIFIED_ERROR;
                }
                self.write_packet(conn, &Packet::UnsubAck(u));
            }
            Packet::PubRec(a) => {
                self.forget_inbound_qos2(session, a.packet_id);
                self.close_unacknowledged(conn, now_ms);
            }
            Packet::PubAck(_) | Packet::PubComp(_) | Packet::UnsubAck(_) => {
                self.close_unacknowledged(conn, now_ms)
            }
            Packet::ConnAck(_) => {
                // v5 0x97 / 0x80; v3.1.1 return code 3 (server unavailable).
                self.write_refusal(conn, code);
                self.set_close_cause(conn, CloseCause::ConnectRefused(code));
                self.close(conn, now_ms);
            }
            other => self.write_packet(conn, &other),
        }
    }

    fn close_unacknowledged(&mut self, conn: ConnId, now_ms: u64) {
        self.set_close_cause(conn, CloseCause::StorageFailed);
        self.close(conn, now_ms);
    }

    /// An inbound QoS 2 packet id whose PUBREC is refused is forgotten.
    fn forget_inbound_qos2(&mut self, session: SessionId, packet_id: u16) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if let Some(i) = s.qos.inbound_qos2.iter().position(|p| *p == packet_id) {
            s.qos.inbound_qos2.swap_remove(i);
            if persisted(&self.persist, s) {
                self.persist.inbound_qos2(&s.client_id, packet_id, false);
            }
        }
    }

    /// Write the inflight QoS 2 PUBLISH `packet_id` of `session`, held
    /// until its record was written. Sent even if the write failed: the
    /// client is online and waiting; only a restart could repeat it.
    pub(super) fn send_held_publish(
        &mut self,
        conn: ConnId,
        session: SessionId,
        packet_id: u16,
        now_ms: u64,
    ) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if !matches!(c.state, ConnState::Active(_)) {
            return;
        }
        let Some(o) = s
            .qos
            .inflight
            .iter_mut()
            .find(|o| o.packet_id == packet_id && o.state == OutState::AwaitPubRec)
        else {
            return;
        };
        if write_outbound(c, &mut o.publish, o.received_at_ms, now_ms).is_ok() {
            let (qos, len) = (o.publish.qos, o.publish.payload.len());
            self.stats.count_sent(qos, len, o.received_at_ms, now_ms);
            c.queue_transmit(conn, &mut self.events);
        }
    }
}
