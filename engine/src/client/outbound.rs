//! Outbound publishes: what the client checks before writing one, its
//! encoding, and carrying unacknowledged ones to a new connection.
//!
//! A `Client` is one connection, so the caller keeps its QoS 1/2 messages
//! until they are acknowledged. When a connection is lost it asks the old
//! client where each stands ([`Client::outbound_step`]); when the next
//! connection's CONNACK says the server kept the session, it sends each one
//! again on the new client under its original packet id before anything
//! new ([MQTT-4.4.0-1]): the PUBLISH with DUP set if no PUBREC (or PUBACK)
//! had arrived ([`Client::resend_publish`]), the PUBREL if the PUBREC had
//! ([`Client::resend_pubrel`]). The server recognises a QoS 2 packet id it
//! still holds and does not deliver the message again: exactly once across
//! the reconnection. When the server kept no session, resending is the
//! caller's choice (as new publishes: at least once).

use bytes::Bytes;

use super::packet_ids::OutState;
use super::{topic_name_is_valid, Client, ClientError, State, PACKET_SIZE_UNLIMITED_BYTES};
use crate::codec::{
    encode, encode_publish, publish_encoded_len, Packet, PubAck, Publish, PublishProperties, QoS,
    ReasonCode,
};

/// Where an outbound QoS 1/2 publish stands on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundStep {
    /// QoS 1 sent, no PUBACK yet.
    AwaitPubAck,
    /// QoS 2 sent, no PUBREC yet.
    AwaitPubRec,
    /// PUBREC received and PUBREL sent, no PUBCOMP yet.
    AwaitPubComp,
}

impl Client {
    /// Where the outbound publish with `packet_id` stands (`None`: not in
    /// flight, or already acknowledged). Still answers after the
    /// connection ended, which is when a caller asks.
    pub fn outbound_step(&self, packet_id: u16) -> Option<OutboundStep> {
        match self.ids.out_state(packet_id) {
            OutState::Free => None,
            OutState::AwaitPubAck => Some(OutboundStep::AwaitPubAck),
            OutState::AwaitPubRec => Some(OutboundStep::AwaitPubRec),
            OutState::AwaitPubComp => Some(OutboundStep::AwaitPubComp),
        }
    }

    /// Sends again, with DUP set and its original `packet_id`, a QoS 1/2
    /// publish of an earlier connection that got no PUBACK / PUBREC, after
    /// a CONNACK with Session Present. Completion is reported by
    /// `Event::PubAcked` as for `publish`. Resent messages may exceed the
    /// window (the server counted them on the earlier connection). A Topic
    /// Alias belongs to the earlier connection: it is dropped (the topic
    /// must be set). Refuses QoS 0, packet id 0 or an id already in use.
    pub fn resend_publish(
        &mut self,
        packet_id: u16,
        topic: Bytes,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        mut properties: PublishProperties,
    ) -> Result<(), ClientError> {
        properties.topic_alias = None;
        self.check_publish(&topic, qos, retain, &properties)?;
        self.check_resend_id(packet_id)?;
        if qos == QoS::AtMostOnce {
            return Err(ClientError::ResendInvalid { packet_id });
        }
        let publish = Publish {
            dup: true,
            qos,
            retain,
            topic,
            packet_id,
            payload,
            properties,
        };
        self.write_publish(&publish)
    }

    /// Sends PUBREL again for a QoS 2 publish of an earlier connection whose
    /// PUBREC had arrived, after a CONNACK with Session Present; the
    /// PUBCOMP is reported by `Event::PubAcked` (v5: reason 0x92 Packet
    /// Identifier Not Found when the server had completed it already, "not
    /// an error during recovery", section 3.7.2.1).
    pub fn resend_pubrel(&mut self, packet_id: u16) -> Result<(), ClientError> {
        if self.state != State::Connected {
            return Err(ClientError::NotConnected);
        }
        self.check_resend_id(packet_id)?;
        let rel = Packet::PubRel(PubAck {
            reason: ReasonCode::SUCCESS,
            ..PubAck::new(packet_id)
        });
        encode(&rel, self.options.protocol, &mut self.outgoing).map_err(ClientError::Encode)?;
        self.ids.set_out_state(packet_id, OutState::AwaitPubComp);
        self.last_sent_ms = self.now_ms;
        Ok(())
    }

    fn check_resend_id(&self, packet_id: u16) -> Result<(), ClientError> {
        if packet_id == 0
            || self.ids.out_state(packet_id) != OutState::Free
            || self.ids.is_control(packet_id)
        {
            return Err(ClientError::ResendInvalid { packet_id });
        }
        Ok(())
    }

    /// What `publish` and `resend_publish` refuse before writing anything:
    /// no connection, a full outgoing buffer, what the server's CONNACK
    /// forbids, a bad topic name.
    pub(super) fn check_publish(
        &self,
        topic: &[u8],
        qos: QoS,
        retain: bool,
        properties: &PublishProperties,
    ) -> Result<(), ClientError> {
        if self.state != State::Connected {
            return Err(ClientError::NotConnected);
        }
        if self.outgoing.len() >= self.options.outgoing_max_bytes {
            return Err(ClientError::OutgoingFull {
                outgoing_max_bytes: self.options.outgoing_max_bytes,
            });
        }
        if qos > self.server.maximum_qos {
            return Err(ClientError::QoSNotSupported {
                maximum_qos: self.server.maximum_qos,
            });
        }
        if retain && !self.server.retain_available {
            return Err(ClientError::RetainNotSupported);
        }
        if !topic_name_is_valid(topic, properties.topic_alias.is_some()) {
            return Err(ClientError::InvalidTopic);
        }
        Ok(())
    }

    /// Encodes `publish` (checked against the server's Maximum Packet Size)
    /// and marks its packet id as awaiting PUBACK / PUBREC.
    pub(super) fn write_publish(&mut self, publish: &Publish) -> Result<(), ClientError> {
        let protocol = self.options.protocol;
        if self.server.packet_size_max_bytes < PACKET_SIZE_UNLIMITED_BYTES {
            let size_bytes = publish_encoded_len(publish, protocol);
            if size_bytes > self.server.packet_size_max_bytes as usize {
                return Err(ClientError::PacketTooLarge {
                    size_bytes,
                    max_bytes: self.server.packet_size_max_bytes,
                });
            }
        }
        encode_publish(publish, protocol, &mut self.outgoing).map_err(ClientError::Encode)?;
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self
                .ids
                .set_out_state(publish.packet_id, OutState::AwaitPubAck),
            QoS::ExactlyOnce => self
                .ids
                .set_out_state(publish.packet_id, OutState::AwaitPubRec),
        }
        self.last_sent_ms = self.now_ms;
        Ok(())
    }
}
