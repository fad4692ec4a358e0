//! What the client does with each packet from the server: CONNACK (the
//! server's limits), PUBLISH (topic aliases, PUBACK / PUBREC, exactly-once
//! on receive), PUBREL, the acknowledgements of its own PUBLISH, SUBSCRIBE
//! and UNSUBSCRIBE, PINGRESP and DISCONNECT.

use super::packet_ids::{ControlKind, OutState};
use super::{Client, ClientError, DisconnectReason, Event, ProtocolError, State};
use crate::codec::{encode, ConnAck, EncodeError, Packet, PubAck, Publish, QoS, ReasonCode};

impl Client {
    /// Queues PUBACK / PUBREC / PUBREL / PUBCOMP.
    fn send_ack(
        &mut self,
        make: fn(PubAck) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
    ) -> Result<(), ProtocolError> {
        self.write_ack(make, packet_id, reason)
            .map_err(ProtocolError::Encode)
    }

    fn write_ack(
        &mut self,
        make: fn(PubAck) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
    ) -> Result<(), EncodeError> {
        let ack = PubAck {
            reason,
            ..PubAck::new(packet_id)
        };
        encode(&make(ack), self.options.protocol, &mut self.outgoing)?;
        self.last_sent_ms = self.now_ms;
        Ok(())
    }

    /// With [`ClientOptions::manual_acks`](super::ClientOptions::manual_acks):
    /// acknowledges the inbound message `packet_id` (a `Message` event) now
    /// that the caller has taken it over: PUBACK for QoS 1, PUBREC for QoS 2,
    /// with `reason` (v5; v3 acknowledgements carry none). A failure code
    /// (>= 0x80) ends a QoS 2 flow: no PUBREL is expected for it.
    pub fn acknowledge(&mut self, packet_id: u16, reason: ReasonCode) -> Result<(), ClientError> {
        if self.state != State::Connected {
            return Err(ClientError::NotConnected);
        }
        if !self.awaiting_ack.remove(packet_id) {
            return Err(ClientError::NotAwaitingAck { packet_id });
        }
        let make = if self.inbound_qos2.contains(packet_id) {
            if reason.is_error() {
                self.inbound_qos2.remove(packet_id);
            }
            Packet::PubRec
        } else {
            Packet::PubAck
        };
        self.write_ack(make, packet_id, reason)
            .map_err(ClientError::Encode)
    }

    /// Carries the receiver side of QoS 2 over from an earlier connection
    /// of the same session: `ids` (from [`Client::inbound_qos2_ids`] on the
    /// old client) are messages already delivered whose PUBREL has not
    /// arrived. Call before `connect` (only valid in [`State::Idle`]). If the
    /// CONNACK says Session Present, a PUBLISH the server sends again under
    /// one of these ids (DUP: it did not get the PUBREC) is answered with
    /// PUBREC and not delivered again, and its PUBREL completes it; if the
    /// server kept no session they are forgotten. Packet id 0 is refused.
    pub fn resume_inbound_qos2(&mut self, ids: &[u16]) -> Result<(), ClientError> {
        if self.state != State::Idle {
            return Err(ClientError::AlreadyStarted);
        }
        if let Some(&packet_id) = ids.iter().find(|&&id| id == 0) {
            return Err(ClientError::ResendInvalid { packet_id });
        }
        for &id in ids {
            self.inbound_qos2.insert(id);
        }
        Ok(())
    }

    pub(super) fn handle_packet(&mut self, packet: Packet) -> Result<(), ProtocolError> {
        if self.state == State::Connecting {
            return match packet {
                Packet::ConnAck(connack) => self.handle_connack(connack),
                other => Err(ProtocolError::UnexpectedPacket {
                    packet_type: other.packet_type(),
                }),
            };
        }
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => self.complete(ack, 4, OutState::AwaitPubAck),
            Packet::PubRec(ack) => self.handle_pubrec(ack),
            Packet::PubComp(ack) => self.complete(ack, 7, OutState::AwaitPubComp),
            Packet::PubRel(ack) => {
                let reason = if self.inbound_qos2.remove(ack.packet_id) {
                    ReasonCode::SUCCESS
                } else {
                    // Section 3.7.2.1: PUBCOMP 0x92 for an unknown id (v5);
                    // v3 PUBCOMP has no reason code, so it is plain.
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.send_ack(Packet::PubComp, ack.packet_id, reason)
            }
            Packet::SubAck(suback) => {
                self.complete_control(suback.packet_id, ControlKind::Subscribe, 9)?;
                self.events.push_back(Event::SubAck(suback));
                Ok(())
            }
            Packet::UnsubAck(unsuback) => {
                self.complete_control(unsuback.packet_id, ControlKind::Unsubscribe, 11)?;
                self.events.push_back(Event::UnsubAck(unsuback));
                Ok(())
            }
            Packet::PingResp => {
                self.ping_sent_ms = None;
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                self.finish(DisconnectReason::Server(disconnect.reason));
                Ok(())
            }
            other => Err(ProtocolError::UnexpectedPacket {
                packet_type: other.packet_type(),
            }),
        }
    }

    fn handle_connack(&mut self, connack: ConnAck) -> Result<(), ProtocolError> {
        if connack.reason.is_error() {
            self.finish(DisconnectReason::ConnectRefused(connack.reason));
            return Ok(());
        }
        if connack.session_present && self.options.clean_start {
            return Err(ProtocolError::SessionPresentWithCleanStart);
        }
        if !connack.session_present {
            // A new session: ids carried from an earlier connection
            // (`resume_inbound_qos2`) name nothing the server still holds.
            self.inbound_qos2.clear();
        }
        let p = &connack.properties;
        if let Some(receive_maximum) = p.receive_maximum {
            self.inflight_max = self.options.inflight_max.clamp(1, receive_maximum.max(1));
        }
        if let Some(qos) = p.maximum_qos.and_then(QoS::from_u8) {
            self.server.maximum_qos = qos;
        }
        if let Some(retain) = p.retain_available {
            self.server.retain_available = retain != 0;
        }
        if let Some(max) = p.maximum_packet_size_bytes {
            self.server.packet_size_max_bytes = max;
        }
        if let Some(keep_alive_s) = p.server_keep_alive_s {
            // Section 3.2.2.3.14: the client MUST use the server's value.
            self.keep_alive_ms = u64::from(keep_alive_s) * 1000;
        }
        self.state = State::Connected;
        self.events.push_back(Event::Connected {
            session_present: connack.session_present,
            properties: Box::new(connack.properties),
        });
        Ok(())
    }

    fn handle_publish(&mut self, mut publish: Publish) -> Result<(), ProtocolError> {
        self.resolve_topic_alias(&mut publish)?;
        let packet_id = publish.packet_id;
        let manual = self.options.manual_acks;
        match publish.qos {
            QoS::AtMostOnce => {}
            // A resend of a message the caller still holds: its coming
            // acknowledgement answers both; deliver nothing.
            QoS::AtLeastOnce | QoS::ExactlyOnce if self.awaiting_ack.contains(packet_id) => {
                return Ok(())
            }
            QoS::AtLeastOnce if manual => {
                self.awaiting_ack.insert(packet_id);
            }
            QoS::AtLeastOnce => self.send_ack(Packet::PubAck, packet_id, ReasonCode::SUCCESS)?,
            QoS::ExactlyOnce => {
                if self.inbound_qos2.contains(packet_id) {
                    // A resend before PUBREL: acknowledge again, deliver
                    // nothing ([MQTT-4.3.3-9] / v3.1.1 4.3.3).
                    return self.send_ack(Packet::PubRec, packet_id, ReasonCode::SUCCESS);
                }
                if self.inbound_qos2.len() >= self.options.receive_maximum.max(1) {
                    return Err(ProtocolError::ReceiveMaximumExceeded);
                }
                self.inbound_qos2.insert(packet_id);
                if manual {
                    self.awaiting_ack.insert(packet_id);
                } else {
                    self.send_ack(Packet::PubRec, packet_id, ReasonCode::SUCCESS)?;
                }
            }
        }
        self.events.push_back(Event::Message(publish));
        Ok(())
    }

    /// Replaces an empty topic with the one its alias names, or records a new
    /// alias (section 3.3.2.3.4). Cloning a `Bytes` is a refcount increment.
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), ProtocolError> {
        let Some(alias) = publish.properties.topic_alias else {
            return if publish.topic.is_empty() {
                Err(ProtocolError::TopicAliasInvalid)
            } else {
                Ok(())
            };
        };
        let slot = usize::from(alias)
            .checked_sub(1)
            .and_then(|i| self.topic_aliases.get_mut(i))
            .ok_or(ProtocolError::TopicAliasInvalid)?;
        if publish.topic.is_empty() {
            publish.topic = slot.clone().ok_or(ProtocolError::TopicAliasInvalid)?;
        } else {
            *slot = Some(publish.topic.clone());
        }
        Ok(())
    }

    fn handle_pubrec(&mut self, ack: PubAck) -> Result<(), ProtocolError> {
        match self.ids.out_state(ack.packet_id) {
            OutState::AwaitPubRec if ack.reason.is_error() => {
                // Section 4.3.3: a failed PUBREC ends the flow; no PUBREL.
                self.ids.set_out_state(ack.packet_id, OutState::Free);
                self.events.push_back(Event::PubAcked {
                    packet_id: ack.packet_id,
                    reason: ack.reason,
                });
                Ok(())
            }
            // A duplicate PUBREC (after PUBREL was sent) gets PUBREL again.
            OutState::AwaitPubRec | OutState::AwaitPubComp => {
                self.ids
                    .set_out_state(ack.packet_id, OutState::AwaitPubComp);
                self.send_ack(Packet::PubRel, ack.packet_id, ReasonCode::SUCCESS)
            }
            OutState::Free | OutState::AwaitPubAck => Err(ProtocolError::UnknownPacketId {
                packet_type: 5,
                packet_id: ack.packet_id,
            }),
        }
    }

    /// Frees `ack.packet_id` (PUBACK or PUBCOMP) if it was in `expected`
    /// state and reports it; an ack for any other id is a protocol error.
    fn complete(
        &mut self,
        ack: PubAck,
        packet_type: u8,
        expected: OutState,
    ) -> Result<(), ProtocolError> {
        if self.ids.out_state(ack.packet_id) != expected {
            return Err(ProtocolError::UnknownPacketId {
                packet_type,
                packet_id: ack.packet_id,
            });
        }
        self.ids.set_out_state(ack.packet_id, OutState::Free);
        self.events.push_back(Event::PubAcked {
            packet_id: ack.packet_id,
            reason: ack.reason,
        });
        Ok(())
    }

    /// Frees the packet id of a SUBSCRIBE or UNSUBSCRIBE (`kind`) that
    /// the server acknowledged with a packet of `packet_type` (SUBACK 9,
    /// UNSUBACK 11); an id not in flight is a protocol error.
    fn complete_control(
        &mut self,
        packet_id: u16,
        kind: ControlKind,
        packet_type: u8,
    ) -> Result<(), ProtocolError> {
        if self.ids.remove_control(packet_id, kind) {
            Ok(())
        } else {
            Err(ProtocolError::UnknownPacketId {
                packet_type,
                packet_id,
            })
        }
    }
}
