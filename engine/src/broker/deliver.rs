//! Delivery to one session: QoS downgrade already done by the caller, then
//! message expiry, the client's Maximum Packet Size, the outgoing buffer
//! and the connection's backlog for QoS 0, and for QoS 1/2 the session
//! queue and inflight window, with the outbound acknowledgement flow
//! (PUBACK, PUBREC, PUBCOMP) that frees the window (MQTT 5.0 sections
//! 3.3-3.7, 4.3).
//!
//! The backlog (`Conn::backlog`) is what waits behind a full outgoing
//! buffer, in order: retained messages sent on SUBSCRIBE (a snapshot of
//! the matches, streamed as the socket drains and never dropped for a full
//! buffer) and QoS 0 messages that arrived while the buffer was full or the
//! backlog not empty (bounded by `outgoing_queue_max_messages` and
//! `outgoing_queue_max_bytes`: only a subscriber that does not keep up
//! loses QoS 0 messages). [`Broker::handle_writable`] (the runtime took the
//! buffer) and the end of a SUBSCRIBE move the backlog into the buffer.

use bytes::Bytes;

use super::backlog::Backlogged;
use super::conn::{Conn, ConnState, Held};
use super::persist::persisted;
use super::session::{OutState, Outbound, Queued};
use super::{Broker, ConnId, SessionId};
use crate::acl::Action;
use crate::codec::{self, EncodeError, Packet, PubAck, Publish, QoS, ReasonCode};
use crate::persist::MessageStage;

/// How one message goes to one session.
pub(super) struct Delivery {
    /// Already downgraded to the subscription's maximum QoS.
    pub(super) qos: QoS,
    /// The RETAIN flag as this subscriber sees it (Retain As Published).
    pub(super) retain: bool,
    /// When the broker received it, for the Message Expiry Interval.
    pub(super) received_at_ms: u64,
    /// The `$share/...` filter it was delivered through, for re-dispatch.
    pub(super) shared_filter: Option<Bytes>,
}

/// The per-delivery fields of a publish, saved before they are set for one
/// subscriber and put back with [`restore`] (the publish is shared by all
/// the subscribers of one routing).
struct Saved {
    qos: QoS,
    retain: bool,
    dup: bool,
    packet_id: u16,
    expiry: Option<u32>,
}

fn save(p: &Publish) -> Saved {
    Saved {
        qos: p.qos,
        retain: p.retain,
        dup: p.dup,
        packet_id: p.packet_id,
        expiry: p.properties.message_expiry_interval_s,
    }
}

fn restore(p: &mut Publish, s: Saved) {
    p.qos = s.qos;
    p.retain = s.retain;
    p.dup = s.dup;
    p.packet_id = s.packet_id;
    p.properties.message_expiry_interval_s = s.expiry;
}

/// Remaining Message Expiry Interval, or `Err(())` when expired (MQTT 5.0 3.3.2.3.3).
fn remaining_expiry(p: &Publish, received_at_ms: u64, now_ms: u64) -> Result<Option<u32>, ()> {
    match p.properties.message_expiry_interval_s {
        None => Ok(None),
        Some(interval_s) => {
            let elapsed_s = now_ms.saturating_sub(received_at_ms) / 1000;
            if elapsed_s >= u64::from(interval_s) {
                Err(())
            } else {
                Ok(Some(interval_s - elapsed_s as u32))
            }
        }
    }
}

/// Write an outbound QoS 1/2 PUBLISH (its packet id and DUP set) with the
/// Message Expiry Interval left ([MQTT-3.3.2-6]); once delivery has
/// started an expired message is still completed (1 s left). Nothing is
/// written on an error (over the protocol's limits).
pub(super) fn write_outbound(
    c: &mut Conn,
    publish: &mut Publish,
    received_at_ms: u64,
    now_ms: u64,
) -> Result<(), EncodeError> {
    let stored = publish.properties.message_expiry_interval_s;
    if let Some(interval_s) = stored {
        let waited_s = now_ms.saturating_sub(received_at_ms) / 1000;
        let left_s = u64::from(interval_s).saturating_sub(waited_s).max(1);
        publish.properties.message_expiry_interval_s = Some(left_s as u32);
    }
    let written = c.write_publish(publish);
    publish.properties.message_expiry_interval_s = stored;
    written
}

impl Broker {
    /// Deliver one message to one session.
    pub(super) fn deliver(
        &mut self,
        session: SessionId,
        publish: &mut Publish,
        d: Delivery,
        now_ms: u64,
    ) {
        self.deliver_to(session, publish, d, false, now_ms);
    }

    /// [`Broker::deliver`]; `from_backlog`: the message is the head of the
    /// connection's backlog, written now whatever the buffer holds.
    fn deliver_to(
        &mut self,
        session: SessionId,
        publish: &mut Publish,
        d: Delivery,
        from_backlog: bool,
        now_ms: u64,
    ) {
        let Ok(expiry) = remaining_expiry(publish, d.received_at_ms, now_ms) else {
            self.stats.dropped_expired += 1;
            return;
        };
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        // Every delivery path (live, retained, shared, from other shards)
        // comes through here: a subscriber never gets a topic it may not
        // read, whatever filter matched. No ACL: one `None` test.
        if let Some(acl) = &s.acl {
            if !acl.allows(Action::Read, &publish.topic) {
                self.stats.dropped_not_authorized += 1;
                return;
            }
        }
        let conn = s
            .conn()
            .and_then(|c| self.conns.get_mut(c).map(|conn| (c, conn)));
        let online = conn
            .as_ref()
            .is_some_and(|(_, c)| !matches!(c.state, ConnState::Closing) && !c.connack_held);
        if d.qos == QoS::AtMostOnce {
            // QoS 0 is not queued for offline sessions (documented policy).
            let Some((conn_id, c)) = conn else { return };
            if !online {
                return;
            }
            if !from_backlog
                && (c.has_backlog() || c.out.len() >= self.config.outgoing_buffer_max_bytes)
            {
                // Behind a full buffer (or behind what already waits, to
                // keep the order): the backlog, unless this subscriber is
                // that far behind.
                let bytes = publish.topic.len() + publish.payload.len();
                let rare = c.rare_mut();
                if rare.backlog_messages >= self.config.outgoing_queue_max_messages {
                    self.stats.dropped_qos0_queue_messages += 1;
                    return;
                }
                if rare.backlog_bytes + bytes > self.config.outgoing_queue_max_bytes {
                    self.stats.dropped_qos0_queue_bytes += 1;
                    return;
                }
                let mut queued = publish.clone();
                queued.qos = QoS::AtMostOnce;
                queued.retain = d.retain;
                queued.dup = false;
                queued.packet_id = 0;
                rare.backlog_messages += 1;
                rare.backlog_bytes += bytes;
                rare.backlog.push_back(Backlogged {
                    publish: queued,
                    received_at_ms: d.received_at_ms,
                    retained: false,
                });
                return;
            }
            let saved = save(publish);
            publish.qos = QoS::AtMostOnce;
            publish.retain = d.retain;
            publish.dup = false;
            publish.packet_id = 0;
            publish.properties.message_expiry_interval_s = expiry;
            // [MQTT-3.1.2-25]: too large for this client: dropped for it
            // (and so is one over the protocol's own limits).
            let fits = codec::publish_encoded_len(publish, c.protocol)
                <= c.client_packet_size_max_bytes as usize;
            let written = fits && c.write_publish(publish).is_ok();
            restore(publish, saved);
            if !written {
                self.stats.dropped_too_large += 1;
                return;
            }
            self.stats.count_sent(
                QoS::AtMostOnce,
                publish.payload.len(),
                d.received_at_ms,
                now_ms,
            );
            c.queue_transmit(conn_id, &mut self.events);
            return;
        }
        // QoS 1/2: into the session queue, then as much as the window allows.
        if s.qos.queue.len() >= self.config.session_queue_max_messages {
            self.stats.dropped_queue_full += 1;
            return;
        }
        let mut queued = publish.clone();
        queued.qos = d.qos;
        queued.retain = d.retain;
        queued.dup = false;
        queued.packet_id = 0;
        let seq = if persisted(&self.persist, s) {
            let seq = self.persist.seq();
            let filter = d.shared_filter.as_ref();
            let (stage, at) = (MessageStage::Queued, d.received_at_ms);
            self.persist
                .put_message(&s.client_id, seq, stage, &queued, at, filter);
            seq
        } else {
            0
        };
        s.qos.queue.push_back(Queued {
            publish: queued,
            received_at_ms: d.received_at_ms,
            shared_filter: d.shared_filter,
            seq,
        });
        if online {
            self.drain_queue(session, now_ms);
        }
    }

    /// The runtime took the outgoing buffer of `conn` (its previous batch
    /// is written, or being written): refill it from the backlog.
    pub(super) fn pump_backlog(&mut self, conn: ConnId, now_ms: u64) {
        let queue_max = self.config.session_queue_max_messages;
        loop {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            let Some(session) = c.state.session() else {
                return;
            };
            if c.out.len() >= self.config.outgoing_buffer_max_bytes {
                return;
            }
            let Some(head) = c.rare().and_then(|r| r.backlog.front()) else {
                return;
            };
            if head.publish.qos != QoS::AtMostOnce {
                // A retained QoS 1/2 message enters the session queue only
                // when it has room (acknowledgements free it), so that a
                // large retained set is not dropped at the queue's bound.
                let full = self
                    .sessions
                    .get(session)
                    .is_none_or(|s| s.qos.queue.len() >= queue_max);
                if full {
                    return;
                }
            }
            let rare = c.rare_mut();
            let Some(mut b) = rare.backlog.pop_front() else {
                return;
            };
            if !b.retained {
                rare.backlog_messages -= 1;
                rare.backlog_bytes -= b.bytes();
            }
            let delivery = Delivery {
                qos: b.publish.qos,
                retain: b.publish.retain,
                received_at_ms: b.received_at_ms,
                shared_filter: None,
            };
            self.deliver_to(session, &mut b.publish, delivery, true, now_ms);
        }
    }

    /// Send queued messages while the session is online and its inflight
    /// window has room.
    pub(super) fn drain_queue(&mut self, session: SessionId, now_ms: u64) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let Some(conn_id) = s.conn() else { return };
        let Some(c) = self.conns.get_mut(conn_id) else {
            return;
        };
        if !matches!(c.state, ConnState::Active(_)) || c.connack_held || s.qos.queue.is_empty() {
            // (An empty queue: no `&mut` of a session's QoS state it may not have.)
            return;
        }
        let window = c.inflight_window(self.config.inflight_max);
        let durable = persisted(&self.persist, s);
        let mut wrote = false;
        // QoS 2 PUBLISHes of a stored session held until their inflight
        // record (with the packet id) is on disk: a restart then resends
        // them with the same id, so the client never takes one twice.
        let mut held: Vec<u16> = Vec::new();
        while s.qos.inflight.len() < window {
            let Some(mut q) = s.qos.queue.pop_front() else {
                break;
            };
            let dropped = if remaining_expiry(&q.publish, q.received_at_ms, now_ms).is_err() {
                Some(&mut self.stats.dropped_expired)
            } else if codec::publish_encoded_len(&q.publish, c.protocol)
                > c.client_packet_size_max_bytes as usize
            {
                Some(&mut self.stats.dropped_too_large)
            } else {
                None
            };
            if let Some(counter) = dropped {
                *counter += 1;
                if durable {
                    self.persist.delete_message(&s.client_id, q.seq);
                }
                continue;
            }
            let pid = s.next_packet_id();
            q.publish.packet_id = pid;
            let hold = durable && q.publish.qos == QoS::ExactlyOnce;
            if hold {
                held.push(pid);
            } else if write_outbound(c, &mut q.publish, q.received_at_ms, now_ms).is_err() {
                // Over the protocol's limits: dropped, and the packet id
                // is not taken (it never entered the inflight window).
                self.stats.dropped_too_large += 1;
                if durable {
                    self.persist.delete_message(&s.client_id, q.seq);
                }
                continue;
            } else {
                let (qos, len) = (q.publish.qos, q.publish.payload.len());
                self.stats.count_sent(qos, len, q.received_at_ms, now_ms);
                wrote = true;
            }
            let state = if q.publish.qos == QoS::ExactlyOnce {
                OutState::AwaitPubRec
            } else {
                OutState::AwaitPubAck
            };
            if durable {
                let (stage, at) = (MessageStage::PublishSent(pid), q.received_at_ms);
                let filter = q.shared_filter.as_ref();
                let client_id = &s.client_id;
                self.persist
                    .put_message(client_id, q.seq, stage, &q.publish, at, filter);
            }
            s.qos.inflight.push_back(Outbound {
                packet_id: pid,
                state,
                publish: q.publish,
                received_at_ms: q.received_at_ms,
                shared_filter: q.shared_filter,
                seq: q.seq,
            });
        }
        if wrote {
            c.queue_transmit(conn_id, &mut self.events);
        }
        if !held.is_empty() {
            let token = self.new_barrier_token();
            self.open_barrier(conn_id, token, 0, true);
            if let Some(c) = self.conns.get_mut(conn_id) {
                c.rare_mut()
                    .held
                    .extend(held.into_iter().map(Held::Publish));
            }
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) from the client: the outbound
    /// message awaiting it leaves the inflight window, which then refills
    /// from the queue. An unknown packet id is ignored.
    pub(super) fn complete_outbound(
        &mut self,
        session: SessionId,
        pid: u16,
        awaited: OutState,
        now_ms: u64,
    ) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if let Some(i) = s
            .qos
            .inflight
            .iter()
            .position(|o| o.packet_id == pid && o.state == awaited)
        {
            if let Some(o) = s.qos.inflight.remove(i) {
                if persisted(&self.persist, s) {
                    self.persist.delete_message(&s.client_id, o.seq);
                }
            }
            self.drain_queue(session, now_ms);
        }
    }

    /// PUBREC from the client: answer PUBREL, or end the flow if it refused.
    pub(super) fn handle_pubrec(
        &mut self,
        conn: ConnId,
        session: SessionId,
        pid: u16,
        reason: ReasonCode,
        now_ms: u64,
    ) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let found = s
            .qos
            .inflight
            .iter()
            .position(|o| o.packet_id == pid && o.state != OutState::AwaitPubAck);
        let durable = persisted(&self.persist, s);
        match found {
            Some(i) if reason.is_error() => {
                // The receiver refused it: the flow ends here (MQTT 5.0 4.3.3).
                if let Some(o) = s.qos.inflight.remove(i) {
                    if durable {
                        self.persist.delete_message(&s.client_id, o.seq);
                    }
                }
                self.drain_queue(session, now_ms);
            }
            Some(i) => {
                let Some(o) = s.qos.inflight.get_mut(i) else {
                    return;
                };
                o.state = OutState::AwaitPubComp;
                if !durable {
                    self.write_packet(conn, &Packet::PubRel(PubAck::new(pid)));
                    return;
                }
                // The PUBREL waits for the record of its stage: a restart
                // before it would send the PUBLISH again, which a client
                // that had the PUBREL would take as a new message.
                let (stage, at) = (MessageStage::PubRelSent(pid), o.received_at_ms);
                let (seq, publish) = (o.seq, &o.publish);
                self.persist
                    .put_message(&s.client_id, seq, stage, publish, at, None);
                let token = self.new_barrier_token();
                self.open_barrier(conn, token, 0, true);
                self.write_ack(conn, Packet::PubRel(PubAck::new(pid)));
            }
            None => {
                let mut rel = PubAck::new(pid);
                rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                self.write_packet(conn, &Packet::PubRel(rel));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::*;
    use crate::broker::BrokerConfig;
    use crate::codec::{Connect, Protocol};

    /// A broker with one connected v5 client "c", its connection and session.
    fn connected() -> (Broker, ConnId, SessionId) {
        let mut broker = Broker::new(BrokerConfig::default(), 0, 1);
        let Some(conn) = broker.accept(0) else {
            panic!("accept refused")
        };
        let connect = Connect {
            protocol: Protocol::V5,
            clean_start: true,
            keep_alive_s: 0,
            client_id: Bytes::from_static(b"c"),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        let mut buf = BytesMut::new();
        assert!(codec::encode(&Packet::Connect(Box::new(connect)), Protocol::V5, &mut buf).is_ok());
        broker.handle_read(conn, &mut buf, 0);
        let Some(session) = broker.by_client_id.get(&broker.sessions, b"c") else {
            panic!("no session")
        };
        if let Some(out) = broker.outgoing(conn) {
            out.clear(); // the CONNACK
        }
        (broker, conn, session)
    }

    /// A publish whose topic is over the 65,535 bytes a string field can
    /// hold: it cannot be encoded.
    fn unencodable(qos: QoS) -> Publish {
        Publish {
            qos,
            topic: Bytes::from(vec![b'a'; 70_000]),
            payload: Bytes::from_static(b"x"),
            ..Publish::default()
        }
    }

    #[test]
    fn a_publish_that_does_not_encode_is_dropped_not_sent() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let (mut broker, conn, session) = connected();
            let delivery = Delivery {
                qos,
                retain: false,
                received_at_ms: 0,
                shared_filter: None,
            };
            broker.deliver(session, &mut unencodable(qos), delivery, 0);
            let stats = broker.stats();
            assert_eq!(stats.messages_sent, [0; 3], "{qos:?}");
            assert_eq!(stats.dropped_too_large, 1, "{qos:?}");
            assert!(
                broker.outgoing(conn).is_some_and(|o| o.is_empty()),
                "{qos:?}"
            );
            // No inflight slot is taken by it, nothing stays queued.
            let Some(s) = broker.sessions.get(session) else {
                panic!("session gone")
            };
            assert!(
                s.qos.inflight.is_empty() && s.qos.queue.is_empty(),
                "{qos:?}"
            );
        }
    }

    #[test]
    fn a_failed_encode_assigns_no_topic_alias() {
        let (mut broker, conn, _) = connected();
        let Some(c) = broker.conns.get_mut(conn) else {
            panic!("connection gone")
        };
        c.aliases_out_max = 2;
        let mut p = unencodable(QoS::AtMostOnce);
        assert!(c.write_publish(&mut p).is_err());
        assert!(c.out.is_empty());
        let no_alias = match c.rare().and_then(|r| r.aliases_out.as_ref()) {
            None => true,
            Some(a) => a.is_empty(),
        };
        assert!(no_alias);
        assert_eq!(p.properties.topic_alias, None);
    }
}
