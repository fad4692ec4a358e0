//! SUBSCRIBE / UNSUBSCRIBE, the router trie entries behind them, the
//! interest table replicated between shards, and retained messages sent on
//! subscribe (MQTT 5.0 sections 3.8-3.11, 4.8).

use bytes::Bytes;

use super::retained::{is_expired, Retained};
use super::{Broker, ConnId, Event, LocalSub, SessionId, ShardId, ShardMessage, SharedGroup};
use crate::codec::{
    Packet, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
use crate::topic;

impl Broker {
    pub(super) fn handle_subscribe(
        &mut self,
        conn: ConnId,
        session: SessionId,
        sub: Subscribe,
        now_ms: u64,
    ) {
        let subscription_id = sub.properties.subscription_identifier;
        // Interest broadcasts made below carry this barrier token.
        let token = self.new_barrier_token();
        self.barrier_token = token;
        self.barrier_sends = 0;
        let mut reasons = Vec::with_capacity(sub.filters.len());
        // (filter, options, is_new) of each accepted non-shared subscription.
        let mut accepted: Vec<(Bytes, SubscriptionOptions, bool)> = Vec::new();
        for f in sub.filters {
            let shared = match topic::parse_shared(&f.filter) {
                Ok(s) => s,
                Err(_) => {
                    reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
            };
            let inner = shared.map_or(&f.filter[..], |s| s.filter);
            if topic::validate_topic_filter(inner, self.config.topic_levels_max).is_err() {
                reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            if shared.is_some() && f.options.no_local {
                // [MQTT-3.8.3-4]: No Local on a shared subscription.
                self.barrier_token = 0;
                return self.disconnect_with(conn, ReasonCode::PROTOCOL_ERROR, now_ms);
            }
            let Some(s) = self.sessions.get(session) else {
                self.barrier_token = 0;
                return;
            };
            if !self
                .auth
                .may_subscribe(&s.client_id, s.username.as_deref(), &f.filter)
            {
                reasons.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let exists = s.subscriptions.contains(&f.filter);
            if !exists && s.subscriptions.len() >= self.config.subscriptions_per_session_max {
                reasons.push(ReasonCode::QUOTA_EXCEEDED);
                continue;
            }
            let is_new =
                self.add_subscription(session, f.filter.clone(), f.options, subscription_id);
            reasons.push(ReasonCode(f.options.qos.as_u8()));
            if shared.is_none() {
                accepted.push((f.filter, f.options, is_new));
            }
        }
        self.barrier_token = 0;
        // The SUBACK waits until every other shard has applied the interest
        // change, so a publish on any shard after the client saw SUBACK
        // reaches it.
        if self.barrier_sends > 0 {
            self.open_barrier(conn, token, self.barrier_sends);
        }
        let ack = SubAck {
            packet_id: sub.packet_id,
            reasons,
            properties: Default::default(),
        };
        self.write_ack(conn, Packet::SubAck(ack));
        // Retained messages after the SUBACK ([MQTT-3.3.1-9]: with RETAIN=1),
        // per Retain Handling ([MQTT-3.3.1-10], [MQTT-3.3.1-11]); never for
        // shared subscriptions ([MQTT-3.8.4-?] / 4.8.2).
        for (filter, options, is_new) in accepted {
            let send = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => is_new,
                RetainHandling::DoNotSend => false,
            };
            if !send {
                continue;
            }
            let held = self.conns.get_mut(conn).filter(|c| !c.held.is_empty());
            match held {
                Some(c) => c.held.push_back(super::Held::Retained {
                    filter,
                    options,
                    subscription_id,
                }),
                None => self.send_retained(session, &filter, options, subscription_id, now_ms),
            }
        }
    }

    pub(super) fn send_retained(
        &mut self,
        session: SessionId,
        filter: &[u8],
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
        now_ms: u64,
    ) {
        let mut found: Vec<Retained> = Vec::new();
        self.retained.matching(filter, &mut found);
        for mut r in found {
            if is_expired(&r, now_ms) {
                continue;
            }
            r.publish.properties.subscription_identifiers = subscription_id.into_iter().collect();
            let qos = r.publish.qos.min(options.qos);
            self.deliver(
                session,
                &mut r.publish,
                qos,
                true,
                r.received_at_ms,
                now_ms,
                None,
            );
        }
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        conn: ConnId,
        session: SessionId,
        unsub: Unsubscribe,
    ) {
        let mut reasons = Vec::with_capacity(unsub.filters.len());
        for filter in unsub.filters {
            let existed = self.remove_subscription(session, &filter);
            if let Some(s) = self.sessions.get_mut(session) {
                s.subscriptions.retain(|x| *x != filter);
            }
            reasons.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        let ack = UnsubAck {
            packet_id: unsub.packet_id,
            reasons,
            properties: Default::default(),
        };
        self.write_ack(conn, Packet::UnsubAck(ack));
    }

    /// Add or replace a subscription ([MQTT-3.8.4-3]: same filter replaces).
    /// Returns true when it did not exist before.
    pub(super) fn add_subscription(
        &mut self,
        session: SessionId,
        filter: Bytes,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    ) -> bool {
        // Own copy: the subscription outlives the SUBSCRIBE's read buffer.
        let filter = Bytes::copy_from_slice(&filter);
        let sub = LocalSub {
            session,
            options,
            subscription_id,
        };
        let shared = topic::parse_shared(&filter).ok().flatten();
        let (is_new, count) = match shared {
            Some(sh) => {
                let node = self.router.get_or_insert(sh.filter);
                let pos = node.groups.iter().position(|g| g.name.as_ref() == sh.group);
                let idx = match pos {
                    Some(i) => i,
                    None => {
                        let start = filter.len() - sh.filter.len();
                        node.groups.push(SharedGroup {
                            full_filter: filter.clone(),
                            name: filter.slice(7..7 + sh.group.len()),
                            members: Vec::new(),
                            remote_members: Vec::new(),
                            cursor: 0,
                        });
                        debug_assert_eq!(&filter[start..], sh.filter);
                        node.groups.len() - 1
                    }
                };
                let Some(g) = node.groups.get_mut(idx) else {
                    return false;
                };
                match g.members.iter_mut().find(|m| m.session == session) {
                    Some(m) => {
                        *m = sub;
                        (false, None)
                    }
                    None => {
                        g.members.push(sub);
                        (true, Some(g.members.len() as u32))
                    }
                }
            }
            None => {
                let node = self.router.get_or_insert(&filter);
                match node.subs.iter_mut().find(|m| m.session == session) {
                    Some(m) => {
                        *m = sub;
                        (false, None)
                    }
                    None => {
                        node.subs.push(sub);
                        (true, (node.subs.len() == 1).then_some(1))
                    }
                }
            }
        };
        if let Some(count) = count {
            self.broadcast_interest(&filter, count);
        }
        if let Some(s) = self.sessions.get_mut(session) {
            if !s.subscriptions.contains(&filter) {
                s.subscriptions.push(filter);
            }
        }
        is_new
    }

    /// Remove a session's subscription from the trie. True if it existed.
    pub(super) fn remove_subscription(&mut self, session: SessionId, filter: &Bytes) -> bool {
        let shared = topic::parse_shared(filter).ok().flatten();
        let inner: &[u8] = shared.map_or(&filter[..], |s| s.filter);
        let Some(node) = self.router.get_mut(inner) else {
            return false;
        };
        let (existed, count) = match shared {
            Some(sh) => {
                let Some(gi) = node.groups.iter().position(|g| g.name.as_ref() == sh.group) else {
                    return false;
                };
                let Some(g) = node.groups.get_mut(gi) else {
                    return false;
                };
                let before = g.members.len();
                g.members.retain(|m| m.session != session);
                let existed = g.members.len() != before;
                let count = g.members.len() as u32;
                if g.members.is_empty() && g.remote_members.is_empty() {
                    node.groups.swap_remove(gi);
                }
                (existed, existed.then_some(count))
            }
            None => {
                let before = node.subs.len();
                node.subs.retain(|m| m.session != session);
                let existed = node.subs.len() != before;
                (existed, (existed && node.subs.is_empty()).then_some(0))
            }
        };
        if node.is_empty() {
            self.router.remove(inner);
        }
        if let Some(count) = count {
            self.broadcast_interest(filter, count);
        }
        existed
    }

    fn broadcast_interest(&mut self, filter: &Bytes, count: u32) {
        let barrier = self.barrier_token;
        for shard in 0..self.shard_count {
            if shard != self.shard {
                let msg = ShardMessage::Interest {
                    filter: filter.clone(),
                    shard: self.shard,
                    count,
                    barrier,
                };
                self.events.push_back(Event::ToShard { shard, msg });
                if barrier != 0 {
                    self.barrier_sends += 1;
                }
            }
        }
    }

    /// Another shard's subscription count on `filter` changed.
    pub(super) fn apply_interest(&mut self, filter: &Bytes, shard: ShardId, count: u32) {
        if shard >= self.shard_count || shard == self.shard {
            return;
        }
        let Ok(shared) = topic::parse_shared(filter) else {
            return;
        };
        let inner: &[u8] = shared.map_or(&filter[..], |s| s.filter);
        let node = self.router.get_or_insert(inner);
        match shared {
            Some(sh) => {
                let gi = match node.groups.iter().position(|g| g.name.as_ref() == sh.group) {
                    Some(i) => i,
                    None if count == 0 => node.groups.len(),
                    None => {
                        node.groups.push(SharedGroup {
                            full_filter: filter.clone(),
                            name: filter.slice(7..7 + sh.group.len()),
                            members: Vec::new(),
                            remote_members: Vec::new(),
                            cursor: 0,
                        });
                        node.groups.len() - 1
                    }
                };
                if let Some(g) = node.groups.get_mut(gi) {
                    g.remote_members.retain(|(s, _)| *s != shard);
                    if count > 0 {
                        g.remote_members.push((shard, count));
                    }
                    if g.members.is_empty() && g.remote_members.is_empty() {
                        node.groups.swap_remove(gi);
                    }
                }
            }
            None => {
                if count > 0 {
                    node.remote_shards |= 1u64 << shard;
                } else {
                    node.remote_shards &= !(1u64 << shard);
                }
            }
        }
        if node.is_empty() {
            self.router.remove(inner);
        }
    }
}
