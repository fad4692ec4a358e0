//! The publish path: inbound PUBLISH (aliases, QoS 2 dedupe, retain),
//! routing (one trie walk: local matches, other shards, shared groups),
//! delivery (QoS downgrade, expiry, size limits, inflight windows, queues)
//! and the acknowledgement flows in both directions (MQTT 5.0 sections
//! 3.3-3.7, 4.3, 4.6, 4.8).

use bytes::Bytes;

use super::retained::Retained;
use super::{
    Broker, ConnId, ConnState, Event, Match, OutState, Outbound, Queued, SessionId, ShardMessage,
};
use crate::codec::{self, Packet, PubAck, Publish, QoS, ReasonCode};
use crate::topic;

/// Temporarily set the per-delivery fields of a publish, restored on drop of the guard values.
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

impl Broker {
    pub(super) fn handle_publish(
        &mut self,
        conn: ConnId,
        session: SessionId,
        mut p: Publish,
        now_ms: u64,
    ) {
        self.stats.messages_received += 1;
        let protocol = match self.conns.get(conn) {
            Some(c) => c.protocol,
            None => return,
        };
        if protocol.is_v5() {
            if let Some(alias) = p.properties.topic_alias.take() {
                let alias_max = usize::from(self.config.topic_alias_max);
                let Some(c) = self.conns.get_mut(conn) else {
                    return;
                };
                if c.aliases.len() < alias_max {
                    // The table is made on first use: most connections never alias.
                    c.aliases.resize(alias_max, None);
                }
                // [MQTT-3.3.2-8], [MQTT-3.3.2-9]: 0 or above our maximum.
                let Some(slot) = c.aliases.get_mut(usize::from(alias).wrapping_sub(1)) else {
                    return self.disconnect_with(conn, ReasonCode::TOPIC_ALIAS_INVALID, now_ms);
                };
                if p.topic.is_empty() {
                    match slot {
                        Some(topic) => p.topic = topic.clone(),
                        // An alias never set is a protocol error ([MQTT-3.3.4-?] / 3.3.2.3.4).
                        None => {
                            return self.disconnect_with(conn, ReasonCode::PROTOCOL_ERROR, now_ms)
                        }
                    }
                } else {
                    *slot = Some(p.topic.clone());
                }
            }
            if p.topic.is_empty() {
                return self.disconnect_with(conn, ReasonCode::PROTOCOL_ERROR, now_ms);
            }
            if !p.properties.subscription_identifiers.is_empty() {
                // [MQTT-3.3.4-6]: a client must not send Subscription Identifiers.
                return self.disconnect_with(conn, ReasonCode::PROTOCOL_ERROR, now_ms);
            }
        }
        if topic::validate_topic_name(&p.topic, self.config.topic_levels_max).is_err() {
            return self.disconnect_with(conn, ReasonCode::TOPIC_NAME_INVALID, now_ms);
        }
        let allowed = match self.sessions.get(session) {
            Some(s) => self
                .auth
                .may_publish(&s.client_id, s.username.as_deref(), &p.topic),
            None => return,
        };
        let packet_id = p.packet_id;
        let qos = p.qos;
        if qos == QoS::ExactlyOnce {
            let Some(s) = self.sessions.get_mut(session) else {
                return;
            };
            if s.inbound_qos2.contains(&packet_id) {
                // A resend of a message we already routed: acknowledge only ([MQTT-4.3.3-10]).
                self.write_ack(conn, Packet::PubRec(PubAck::new(packet_id)));
                return;
            }
            if s.inbound_qos2.len() >= usize::from(self.config.receive_maximum) {
                // [MQTT-3.3.4-9]: more unacknowledged QoS 2 than Receive Maximum.
                return self.disconnect_with(conn, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, now_ms);
            }
            if allowed {
                s.inbound_qos2.push(packet_id);
            }
        }
        if allowed {
            p.dup = false;
            if p.retain {
                // The acknowledgement of a retained QoS 1/2 message waits until
                // every shard stored it, so a subscriber on any shard that
                // subscribes after the publisher saw PUBACK gets it.
                let barrier = if qos != QoS::AtMostOnce && self.shard_count > 1 {
                    self.new_barrier_token()
                } else {
                    0
                };
                self.retain_local(&p, now_ms, barrier);
                if barrier != 0 {
                    self.open_barrier(conn, barrier, u32::from(self.shard_count) - 1);
                }
            }
            self.route(&mut p, Some(session), now_ms, true, now_ms);
        }
        let reason = if allowed || !protocol.is_v5() {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::NOT_AUTHORIZED
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
    }

    /// Store a retained message here and replicate it to every other shard.
    /// A non-zero `barrier` asks every other shard to acknowledge.
    pub(super) fn retain_local(&mut self, p: &Publish, now_ms: u64, barrier: u64) {
        let mut stored = p.clone();
        stored.dup = false;
        stored.packet_id = 0;
        stored.retain = true;
        stored.properties.topic_alias = None;
        stored.properties.subscription_identifiers.clear();
        for shard in 0..self.shard_count {
            if shard != self.shard {
                let msg = ShardMessage::Retain {
                    publish: stored.clone(),
                    received_at_ms: now_ms,
                    origin: self.shard,
                    barrier,
                };
                self.events.push_back(Event::ToShard { shard, msg });
            }
        }
        self.store_retained(stored, now_ms);
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

    /// Route a publish: one trie walk gives local subscribers, the other
    /// shards to forward to, and a member for each matching shared group.
    /// `local_origin`: received on this shard (forward to others, pick
    /// shared members); otherwise it came from another shard's ring.
    pub(super) fn route(
        &mut self,
        publish: &mut Publish,
        origin: Option<SessionId>,
        received_at_ms: u64,
        local_origin: bool,
        now_ms: u64,
    ) {
        let mut matches = std::mem::take(&mut self.scratch_matches);
        let mut shared_remote = std::mem::take(&mut self.scratch_shared_remote);
        let mut shared_filters = std::mem::take(&mut self.scratch_shared_filters);
        matches.clear();
        shared_remote.clear();
        shared_filters.clear();
        let mut remote_mask = 0u64;
        {
            let sessions = &self.sessions;
            let conns = &self.conns;
            let inflight_max = self.config.inflight_max;
            let has_room = |sid: SessionId| -> bool {
                let Some(s) = sessions.get(sid) else {
                    return false;
                };
                let Some(conn) = s.conn.and_then(|c| conns.get(c)) else {
                    return false;
                };
                s.inflight.len() < usize::from(inflight_max.min(conn.client_receive_maximum))
            };
            self.router.for_each_match_mut(&publish.topic, |node| {
                for s in &node.subs {
                    matches.push(Match {
                        session: s.session,
                        qos: s.options.qos.as_u8(),
                        retain_as_published: s.options.retain_as_published,
                        no_local: s.options.no_local,
                        subscription_id: s.subscription_id,
                        shared: None,
                    });
                }
                if !local_origin {
                    return;
                }
                remote_mask |= node.remote_shards;
                for g in node.groups.iter_mut() {
                    let remote_total: u32 = g.remote_members.iter().map(|(_, n)| *n).sum();
                    let total = g.members.len() + remote_total as usize;
                    if total == 0 {
                        continue;
                    }
                    // Round-robin over all members broker-wide, skipping local
                    // members whose inflight window is full (remote shards
                    // check their own members).
                    let mut chosen = None;
                    for _ in 0..total {
                        let idx = g.cursor % total;
                        g.cursor = g.cursor.wrapping_add(1);
                        match g.members.get(idx) {
                            Some(m) if has_room(m.session) => {
                                chosen = Some(Ok(*m));
                                break;
                            }
                            Some(_) => {}
                            None => {
                                let mut k = (idx - g.members.len()) as u32;
                                for (shard, n) in &g.remote_members {
                                    if k < *n {
                                        chosen = Some(Err(*shard));
                                        break;
                                    }
                                    k -= n;
                                }
                                if chosen.is_some() {
                                    break;
                                }
                            }
                        }
                    }
                    // Everyone full: queue at the next local member in turn.
                    let chosen = chosen.or_else(|| {
                        g.members
                            .get(g.cursor % g.members.len().max(1))
                            .map(|m| Ok(*m))
                    });
                    match chosen {
                        Some(Ok(m)) => {
                            shared_filters.push(g.full_filter.clone());
                            matches.push(Match {
                                session: m.session,
                                qos: m.options.qos.as_u8(),
                                retain_as_published: m.options.retain_as_published,
                                no_local: false,
                                subscription_id: m.subscription_id,
                                shared: Some(shared_filters.len() - 1),
                            });
                        }
                        Some(Err(shard)) => shared_remote.push((shard, g.full_filter.clone())),
                        None => {}
                    }
                }
            });
        }

        // Other shards: one copy each, however many subscribers they have.
        if local_origin {
            let mut mask = remote_mask & !(1u64 << self.shard);
            while mask != 0 {
                let shard = mask.trailing_zeros() as u16;
                mask &= mask - 1;
                let msg = ShardMessage::Publish {
                    publish: publish.clone(),
                    received_at_ms,
                };
                self.events.push_back(Event::ToShard { shard, msg });
            }
            for (shard, filter) in shared_remote.drain(..) {
                let msg = ShardMessage::SharedPublish {
                    filter,
                    publish: publish.clone(),
                    received_at_ms,
                };
                self.events.push_back(Event::ToShard { shard, msg });
            }
        }

        // Local: one delivery per (session, shared group), at the highest
        // matching QoS with every Subscription Identifier ([MQTT-3.3.4-2],
        // [MQTT-3.3.4-4]); no-local subscriptions skip their own publisher
        // ([MQTT-3.8.3-3]).
        matches.retain(|m| !(m.no_local && Some(m.session) == origin));
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| (m.session, m.shared));
        }
        let mut ids = std::mem::take(&mut self.scratch_subscription_ids);
        std::mem::swap(&mut ids, &mut publish.properties.subscription_identifiers);
        let mut i = 0;
        while let Some(first) = matches.get(i).copied() {
            let mut qos = 0u8;
            let mut rap = false;
            publish.properties.subscription_identifiers.clear();
            while let Some(m) = matches.get(i) {
                if m.session != first.session || m.shared != first.shared {
                    break;
                }
                qos = qos.max(m.qos);
                rap |= m.retain_as_published;
                if let Some(id) = m.subscription_id {
                    publish.properties.subscription_identifiers.push(id);
                }
                i += 1;
            }
            let qos = QoS::from_u8(qos.min(publish.qos.as_u8())).unwrap_or(QoS::AtMostOnce);
            let retain = rap && publish.retain;
            let shared = first.shared.and_then(|k| shared_filters.get(k)).cloned();
            self.deliver(
                first.session,
                publish,
                qos,
                retain,
                received_at_ms,
                now_ms,
                shared,
            );
        }
        std::mem::swap(&mut ids, &mut publish.properties.subscription_identifiers);
        ids.clear();
        self.scratch_subscription_ids = ids;
        self.scratch_matches = matches;
        self.scratch_shared_remote = shared_remote;
        self.scratch_shared_filters = shared_filters;
    }

    /// A shared-group delivery chosen by another shard: pick a local member.
    pub(super) fn deliver_shared_local(
        &mut self,
        full_filter: &Bytes,
        publish: &mut Publish,
        received_at_ms: u64,
        now_ms: u64,
    ) {
        let Some(member) = self.pick_shared_member(full_filter, None) else {
            // The group left this shard meanwhile: nobody to give it to here.
            self.stats.dropped_no_shared_member += 1;
            return;
        };
        let saved_ids = std::mem::take(&mut publish.properties.subscription_identifiers);
        if let Some(id) = member.subscription_id {
            publish.properties.subscription_identifiers.push(id);
        }
        let qos = publish.qos.min(member.options.qos);
        let retain = member.options.retain_as_published && publish.retain;
        self.deliver(
            member.session,
            publish,
            qos,
            retain,
            received_at_ms,
            now_ms,
            Some(full_filter.clone()),
        );
        publish.properties.subscription_identifiers = saved_ids;
    }

    /// The next local member of a shared group in round-robin order,
    /// preferring members with room in their inflight window.
    fn pick_shared_member(
        &mut self,
        full_filter: &Bytes,
        exclude: Option<SessionId>,
    ) -> Option<super::LocalSub> {
        let shared = topic::parse_shared(full_filter).ok().flatten()?;
        let (name, inner) = (shared.group, shared.filter);
        let inflight_max = self.config.inflight_max;
        let node = self.router.get_mut(inner)?;
        let g = node.groups.iter_mut().find(|g| g.name.as_ref() == name)?;
        let n = g.members.len();
        let mut fallback = None;
        for _ in 0..n {
            let idx = g.cursor % n;
            g.cursor = g.cursor.wrapping_add(1);
            let Some(m) = g.members.get(idx).copied() else {
                continue;
            };
            if Some(m.session) == exclude {
                continue;
            }
            let online_room = self.sessions.get(m.session).and_then(|s| {
                let c = self.conns.get(s.conn?)?;
                Some(s.inflight.len() < usize::from(inflight_max.min(c.client_receive_maximum)))
            });
            match online_room {
                Some(true) => return Some(m),
                Some(false) => fallback = fallback.or(Some(m)),
                None => {}
            }
        }
        if exclude.is_some() {
            return fallback;
        }
        fallback.or_else(|| g.members.get(g.cursor % n.max(1)).copied())
    }

    /// Deliver one message to one session at `qos` (already downgraded).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver(
        &mut self,
        session: SessionId,
        publish: &mut Publish,
        qos: QoS,
        retain: bool,
        received_at_ms: u64,
        now_ms: u64,
        shared_filter: Option<Bytes>,
    ) {
        let Ok(expiry) = remaining_expiry(publish, received_at_ms, now_ms) else {
            self.stats.dropped_expired += 1;
            return;
        };
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let conn = s
            .conn
            .and_then(|c| self.conns.get_mut(c).map(|conn| (c, conn)));
        let online = conn
            .as_ref()
            .is_some_and(|(_, c)| !matches!(c.state, ConnState::Closing));
        if qos == QoS::AtMostOnce {
            // QoS 0 is not queued for offline sessions (documented policy).
            let Some((conn_id, c)) = conn else { return };
            if !online {
                return;
            }
            if c.out.len() >= self.config.outgoing_buffer_max_bytes {
                self.stats.dropped_qos0_buffer_full += 1;
                return;
            }
            let saved = save(publish);
            publish.qos = QoS::AtMostOnce;
            publish.retain = retain;
            publish.dup = false;
            publish.packet_id = 0;
            publish.properties.message_expiry_interval_s = expiry;
            let fits = codec::publish_encoded_len(publish, c.protocol)
                <= c.client_packet_size_max_bytes as usize;
            if fits {
                c.write_publish(publish);
            }
            restore(publish, saved);
            if !fits {
                // [MQTT-3.1.2-25]: too large for this client: dropped for it.
                self.stats.dropped_too_large += 1;
                return;
            }
            self.stats.messages_sent += 1;
            c.queue_transmit(conn_id, &mut self.events);
            return;
        }
        // QoS 1/2: into the session queue, then as much as the window allows.
        if s.queue.len() >= self.config.session_queue_max_messages {
            self.stats.dropped_queue_full += 1;
            return;
        }
        let mut queued = publish.clone();
        queued.qos = qos;
        queued.retain = retain;
        queued.dup = false;
        queued.packet_id = 0;
        s.queue.push_back(Queued {
            publish: queued,
            received_at_ms,
            shared_filter,
        });
        if online {
            self.drain_queue(session, now_ms);
        }
    }

    /// Send queued messages while the session is online and its inflight
    /// window (min of our inflight_max and the client's Receive Maximum,
    /// [MQTT-3.3.4-7]) has room.
    pub(super) fn drain_queue(&mut self, session: SessionId, now_ms: u64) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let Some(conn_id) = s.conn else { return };
        let Some(c) = self.conns.get_mut(conn_id) else {
            return;
        };
        if !matches!(c.state, ConnState::Active(_)) {
            return;
        }
        let window = usize::from(self.config.inflight_max.min(c.client_receive_maximum));
        let mut wrote = false;
        while s.inflight.len() < window {
            let Some(mut q) = s.queue.pop_front() else {
                break;
            };
            let Ok(expiry) = remaining_expiry(&q.publish, q.received_at_ms, now_ms) else {
                self.stats.dropped_expired += 1;
                continue;
            };
            if codec::publish_encoded_len(&q.publish, c.protocol)
                > c.client_packet_size_max_bytes as usize
            {
                self.stats.dropped_too_large += 1;
                continue;
            }
            // Packet ids: next free non-zero id ([MQTT-2.2.1-3]).
            let mut pid = s.next_packet_id;
            while pid == 0 || s.inflight.iter().any(|o| o.packet_id == pid) {
                pid = pid.wrapping_add(1);
            }
            s.next_packet_id = pid.wrapping_add(1);
            q.publish.packet_id = pid;
            let stored_expiry = q.publish.properties.message_expiry_interval_s;
            q.publish.properties.message_expiry_interval_s = expiry;
            c.write_publish(&mut q.publish);
            q.publish.properties.message_expiry_interval_s = stored_expiry;
            let state = if q.publish.qos == QoS::ExactlyOnce {
                OutState::AwaitPubRec
            } else {
                OutState::AwaitPubAck
            };
            s.inflight.push_back(Outbound {
                packet_id: pid,
                state,
                publish: q.publish,
                received_at_ms: q.received_at_ms,
                shared_filter: q.shared_filter,
            });
            self.stats.messages_sent += 1;
            wrote = true;
        }
        if wrote {
            c.queue_transmit(conn_id, &mut self.events);
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
            .inflight
            .iter()
            .position(|o| o.packet_id == pid && o.state == awaited)
        {
            s.inflight.remove(i);
            self.drain_queue(session, now_ms);
        }
    }

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
            .inflight
            .iter()
            .position(|o| o.packet_id == pid && o.state != OutState::AwaitPubAck);
        match found {
            Some(i) if reason.is_error() => {
                // The receiver refused it: the flow ends here (MQTT 5.0 4.3.3).
                s.inflight.remove(i);
                self.drain_queue(session, now_ms);
            }
            Some(i) => {
                if let Some(o) = s.inflight.get_mut(i) {
                    o.state = OutState::AwaitPubComp;
                }
                self.write_packet(conn, &Packet::PubRel(PubAck::new(pid)));
            }
            None => {
                let mut rel = PubAck::new(pid);
                rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                self.write_packet(conn, &Packet::PubRel(rel));
            }
        }
    }

    pub(super) fn handle_pubrel(&mut self, conn: ConnId, session: SessionId, pid: u16) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let mut comp = PubAck::new(pid);
        match s.inbound_qos2.iter().position(|p| *p == pid) {
            Some(i) => {
                s.inbound_qos2.swap_remove(i);
            }
            None => comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        }
        self.write_ack(conn, Packet::PubComp(comp));
    }

    /// A session lost its connection: QoS 1 messages it got through a shared
    /// subscription and has not acknowledged, and queued messages not yet
    /// sent, go to another online member of the group on this shard, if
    /// there is one (MQTT 5.0 4.8.2).
    pub(super) fn redispatch_shared(&mut self, session: SessionId, now_ms: u64) {
        let mut moved: Vec<(Bytes, Publish, u64)> = Vec::new();
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if !s.inflight.iter().any(|o| o.shared_filter.is_some())
            && !s.queue.iter().any(|q| q.shared_filter.is_some())
        {
            return;
        }
        let mut keep = std::collections::VecDeque::new();
        for o in s.inflight.drain(..) {
            // Only QoS 1 in flight moves: a QoS 2 delivery in progress must be
            // completed to the same client ([MQTT-4.8.2-4], [MQTT-4.8.2-5]).
            let qos1 = o.state == OutState::AwaitPubAck;
            match &o.shared_filter {
                Some(f) if qos1 => moved.push((f.clone(), o.publish, o.received_at_ms)),
                _ => keep.push_back(o),
            }
        }
        s.inflight = keep;
        let mut keep_q = std::collections::VecDeque::new();
        for q in s.queue.drain(..) {
            match q.shared_filter {
                Some(f) => moved.push((f, q.publish, q.received_at_ms)),
                None => keep_q.push_back(q),
            }
        }
        s.queue = keep_q;
        for (filter, mut publish, received_at_ms) in moved {
            publish.dup = false;
            match self.pick_shared_member(&filter, Some(session)) {
                Some(m) => {
                    let qos = publish.qos;
                    let retain = publish.retain;
                    self.deliver(
                        m.session,
                        &mut publish,
                        qos,
                        retain,
                        received_at_ms,
                        now_ms,
                        Some(filter),
                    );
                }
                None => {
                    // No other member: it stays with this session.
                    if let Some(s) = self.sessions.get_mut(session) {
                        s.queue.push_back(Queued {
                            publish,
                            received_at_ms,
                            shared_filter: Some(filter),
                        });
                    }
                }
            }
        }
    }

    /// `$SYS/broker/...` statistics (retained, so a new subscriber sees the
    /// latest values). Per-shard counters; shard 0 also publishes the
    /// version and uptime.
    pub(super) fn publish_sys(&mut self, now_ms: u64) {
        let stats = self.stats();
        let uptime_s = now_ms.saturating_sub(self.started_ms.unwrap_or(now_ms)) / 1000;
        let shard = self.shard;
        let mut items: Vec<(String, String)> = vec![
            (
                format!("$SYS/broker/shards/{shard}/clients/connected"),
                stats.connections.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/sessions"),
                self.sessions.len().to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/messages/received"),
                stats.messages_received.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/messages/sent"),
                stats.messages_sent.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/retained/count"),
                self.retained.count.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/messages/dropped"),
                (stats.dropped_qos0_buffer_full
                    + stats.dropped_queue_full
                    + stats.dropped_no_shared_member
                    + stats.dropped_too_large
                    + stats.dropped_expired)
                    .to_string(),
            ),
        ];
        if shard == 0 {
            items.push((
                "$SYS/broker/version".into(),
                concat!("ringmq ", env!("CARGO_PKG_VERSION")).into(),
            ));
            items.push(("$SYS/broker/uptime".into(), format!("{uptime_s} seconds")));
        }
        for (topic, value) in items {
            let mut p = Publish {
                retain: true,
                topic: Bytes::from(topic),
                payload: Bytes::from(value),
                ..Publish::default()
            };
            self.retain_local(&p, now_ms, 0);
            self.route(&mut p, None, now_ms, true, now_ms);
        }
    }
}

/// A copy of a publish whose topic, payload and properties are their own
/// allocations. Decoded packets are slices of the connection's read buffer;
/// keeping one for long (a retained message) would pin that whole buffer.
fn compact_publish(p: Publish) -> Publish {
    let mut properties = p.properties;
    properties.response_topic = own_opt(properties.response_topic);
    properties.correlation_data = own_opt(properties.correlation_data);
    properties.content_type = own_opt(properties.content_type);
    properties.user = own_user(&properties.user);
    Publish {
        topic: own(&p.topic),
        payload: own(&p.payload),
        properties,
        ..p
    }
}

/// An owned copy (not a slice of a read buffer).
pub(super) fn own(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

pub(super) fn own_opt(b: Option<Bytes>) -> Option<Bytes> {
    b.as_ref().map(own)
}

pub(super) fn own_user(user: &[(Bytes, Bytes)]) -> crate::codec::UserProperties {
    user.iter().map(|(k, v)| (own(k), own(v))).collect()
}
