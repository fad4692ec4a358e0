//! Inbound PUBLISH: topic aliases, validation, authorization, QoS 2
//! dedupe by packet id, the retained store and its replication, the
//! acknowledgement to the publisher, and the inbound PUBREL (MQTT 5.0
//! sections 3.3, 3.4-3.7, 4.3). Routing is in `route.rs`.

use super::compact::compact_publish;
use super::persist::persisted;
use super::retained::Retained;
use super::route::Source;
use super::violation::Violation;
use super::{Broker, ConnId, Event, SessionId, ShardMessage};
use crate::acl::Action;
use crate::codec::{Packet, PubAck, Publish, QoS, ReasonCode};
use crate::topic;

impl Broker {
    /// A PUBLISH from the client of `session`.
    pub(super) fn handle_publish(
        &mut self,
        conn: ConnId,
        session: SessionId,
        mut p: Publish,
        now_ms: u64,
    ) -> Result<(), Violation> {
        self.stats.count_received(p.qos, p.payload.len());
        let protocol = match self.conns.get(conn) {
            Some(c) => c.protocol,
            None => return Ok(()),
        };
        if protocol.is_v5() {
            if let Some(alias) = p.properties.topic_alias.take() {
                let alias_max = usize::from(self.config.topic_alias_max);
                let Some(c) = self.conns.get_mut(conn) else {
                    return Ok(());
                };
                let rare = c.rare_mut();
                if rare.aliases.len() < alias_max {
                    // The table is made on first use: most connections never alias.
                    let mut table = std::mem::take(&mut rare.aliases).into_vec();
                    table.resize(alias_max, None);
                    rare.aliases = table.into_boxed_slice();
                }
                // [MQTT-3.3.2-8], [MQTT-3.3.2-9]: 0 or above our maximum.
                let Some(slot) = rare.aliases.get_mut(usize::from(alias).wrapping_sub(1)) else {
                    return Err(Violation::TopicAliasInvalid);
                };
                if p.topic.is_empty() {
                    match slot {
                        Some(topic) => p.topic = topic.clone(),
                        None => return Err(Violation::TopicAliasUnknown),
                    }
                } else {
                    *slot = Some(p.topic.clone());
                }
            }
            if p.topic.is_empty() {
                return Err(Violation::TopicNameMissing);
            }
            if !p.properties.subscription_identifiers.is_empty() {
                return Err(Violation::SubscriptionIdentifierFromClient);
            }
        }
        // The codec validated the name's characters; only our level limit is left.
        if topic::check_name_levels(&p.topic, self.config.topic_levels_max).is_err() {
            return Err(Violation::TopicNameInvalid);
        }
        // Why the message is refused, if it is: the v5 PUBACK / PUBREC code.
        let refusal = match topic::reserved_name(&p.topic) {
            Some(reserved) => Some(reserved.reason_code()),
            None => match self.sessions.get(session) {
                Some(s) => {
                    let allowed =
                        self.auth
                            .may_publish(&s.client_id, s.username.as_deref(), &p.topic)
                            && self.acl_allows(session, Action::Write, &p.topic);
                    (!allowed).then_some(ReasonCode::NOT_AUTHORIZED)
                }
                None => return Ok(()),
            },
        };
        let allowed = refusal.is_none();
        if !allowed {
            // v5: PUBACK / PUBREC with the refusal below. v3.1.1 has no way
            // to say it: the message is dropped, acknowledged as usual and
            // the connection kept, as Mosquitto does ([MQTT-3.3.5-2]).
            self.stats.publishes_not_authorized += 1;
        }
        let recorded_before = self.persist.recorded;
        let packet_id = p.packet_id;
        let qos = p.qos;
        if qos == QoS::ExactlyOnce {
            let Some(s) = self.sessions.get_mut(session) else {
                return Ok(());
            };
            if s.qos.inbound_qos2.contains(&packet_id) {
                // A resend of a message we already routed: acknowledge only ([MQTT-4.3.3-10]).
                self.write_ack(conn, Packet::PubRec(PubAck::new(packet_id)));
                return Ok(());
            }
            if s.qos.inbound_qos2.len() >= usize::from(self.config.receive_maximum) {
                return Err(Violation::ReceiveMaximumExceeded);
            }
            if allowed {
                s.qos.inbound_qos2.push(packet_id);
                if persisted(&self.persist, s) {
                    self.persist.inbound_qos2(&s.client_id, packet_id, true);
                }
            }
        }
        let mut matched = true;
        // The acknowledgement of a QoS 1/2 message waits for the other
        // shards that must acknowledge it, and, with `durable`, for this
        // shard's batch holding what it changed here (`barrier.rs`).
        let mut token = 0;
        let mut acks = 0;
        if allowed {
            p.dup = false;
            #[cfg(feature = "trace-hook")]
            let traced = self.trace_start(session, &mut p);
            if qos != QoS::AtMostOnce && self.shard_count > 1 && (p.retain || self.persist.on) {
                token = self.new_barrier_token();
            }
            if p.retain {
                // Every shard stores a retained message before its
                // acknowledgement, so a subscriber on any shard that
                // subscribes after the publisher saw PUBACK gets it.
                acks += self.retain_local(&p, now_ms, token);
            }
            // With `durable`, shards that get the message answer once the
            // deliveries it made there are on disk.
            let route_token = if self.persist.on { token } else { 0 };
            let source = Source::Local(Some(session));
            let routed = self.route(&mut p, source, now_ms, now_ms, route_token);
            matched = routed.matched;
            acks += routed.acks;
            #[cfg(feature = "trace-hook")]
            if traced {
                self.trace_finish(routed);
            }
        }
        if qos != QoS::AtMostOnce {
            let wait_batch = self.recorded_since(recorded_before);
            if token == 0 && wait_batch {
                token = self.new_barrier_token();
            }
            self.open_barrier(conn, token, acks, wait_batch);
        }
        let reason = match refusal {
            Some(reason) if protocol.is_v5() => reason,
            // Accepted, but nobody subscribes to it here or on any other
            // shard: v5 says so (0x10), which tells a publisher its topic
            // is wrong (MQTT 5.0 3.4.2.1; Mosquitto and EMQX do the same).
            None if protocol.is_v5() && !matched => ReasonCode::NO_MATCHING_SUBSCRIBERS,
            _ => ReasonCode::SUCCESS,
        };
        let ack = PubAck {
            packet_id,
            reason,
            properties: Default::default(),
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.write_ack(conn, Packet::PubAck(ack)),
            QoS::ExactlyOnce => self.write_ack(conn, Packet::PubRec(ack)),
        }
        Ok(())
    }

    /// Store a retained message here and replicate it to every other shard.
    /// A non-zero `barrier` asks every other shard to acknowledge; returns
    /// how many acknowledgements that is (0 without a barrier).
    pub(super) fn retain_local(&mut self, p: &Publish, now_ms: u64, barrier: u64) -> u32 {
        let mut stored = p.clone();
        stored.dup = false;
        stored.packet_id = 0;
        stored.retain = true;
        stored.properties.topic_alias = None;
        stored.properties.subscription_identifiers.clear();
        let mut acks = 0;
        for shard in 0..self.shard_count {
            if shard != self.shard {
                let msg = ShardMessage::Retain {
                    publish: stored.clone(),
                    received_at_ms: now_ms,
                    origin: self.shard,
                    barrier,
                };
                self.events.push_back(Event::ToShard { shard, msg });
                if barrier != 0 {
                    acks += 1;
                }
            }
        }
        self.persist_retained(&stored, now_ms);
        self.store_retained(stored, now_ms);
        acks
    }

    pub(super) fn store_retained(&mut self, publish: Publish, received_at_ms: u64) {
        let r = Retained {
            publish: compact_publish(publish),
            received_at_ms,
        };
        let (count_max, bytes_max) = (
            self.config.retained_messages_max,
            self.config.retained_bytes_max,
        );
        if !self.retained.set(r, count_max, bytes_max) {
            self.stats.dropped_retained_limit += 1;
        }
    }

    /// PUBREL from the client: the inbound QoS 2 flow ends with PUBCOMP.
    /// With `durable` the PUBCOMP waits until the packet id's record is
    /// deleted; the delete is recorded even for an id not found, so that a
    /// PUBREL sent again after a failed write deletes it then.
    pub(super) fn handle_pubrel(&mut self, conn: ConnId, session: SessionId, pid: u16) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let mut comp = PubAck::new(pid);
        match s.qos.inbound_qos2.iter().position(|p| *p == pid) {
            Some(i) => {
                s.qos.inbound_qos2.swap_remove(i);
            }
            None => comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        }
        if persisted(&self.persist, s) {
            self.persist.inbound_qos2(&s.client_id, pid, false);
            let token = self.new_barrier_token();
            self.open_barrier(conn, token, 0, true);
        }
        self.write_ack(conn, Packet::PubComp(comp));
    }
}
