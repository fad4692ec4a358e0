//! SUBSCRIBE / UNSUBSCRIBE, the router trie entries behind them, the
//! interest table replicated between shards, and retained messages sent on
//! subscribe (MQTT 5.0 sections 3.8-3.11, 4.8).

use bytes::Bytes;

use super::backlog::Backlogged;
use super::conn::{Held, SubUndo};
use super::retained::{is_expired, Retained};
use super::route::RouteNode;
use super::shared::{LocalSub, SharedGroup};
use super::violation::Violation;
use super::{Broker, ConnId, Event, SessionId, ShardId, ShardMessage};
use crate::acl::Action;
use crate::codec::{
    Packet, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
use crate::persist::StoredSubscription;
use crate::topic;

impl Broker {
    /// A SUBSCRIBE from the client of `session`.
    pub(super) fn handle_subscribe(
        &mut self,
        conn: ConnId,
        session: SessionId,
        sub: Subscribe,
        now_ms: u64,
    ) -> Result<(), Violation> {
        let subscription_id = sub.properties.subscription_identifier;
        // Interest broadcasts made below carry this barrier token; `acks`
        // counts the acknowledgements they ask for.
        let token = self.new_barrier_token();
        let mut acks = 0;
        let mut reasons = Vec::with_capacity(sub.filters.len());
        // (filter, options, is_new) of each accepted non-shared subscription.
        let mut accepted: Vec<(Bytes, SubscriptionOptions, bool)> = Vec::new();
        // What to undo if the SUBACK is refused (a failed write).
        let mut undo: Vec<SubUndo> = Vec::new();
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
                return Err(Violation::NoLocalOnShared);
            }
            let Some(s) = self.sessions.get(session) else {
                return Ok(());
            };
            // Refused per filter: v5 SUBACK 0x87, v3.1.1 0x80 (the codec
            // maps every failure code to 0x80, MQTT 3.1.1 section 3.9.3).
            let permitted = self
                .auth
                .may_subscribe(&s.client_id, s.username.as_deref(), &f.filter)
                && s.acl
                    .as_ref()
                    .is_none_or(|acl| acl.allows(Action::Subscribe, &f.filter));
            if !permitted {
                reasons.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let previous = s
                .subscription(&f.filter)
                .and_then(|i| s.subscriptions.get(i))
                .cloned();
            if previous.is_none()
                && s.subscriptions.len() >= self.config.subscriptions_per_session_max
            {
                reasons.push(ReasonCode::QUOTA_EXCEEDED);
                continue;
            }
            let (is_new, interest_acks) =
                self.add_subscription(session, f.filter.clone(), f.options, subscription_id, token);
            if self.persist.on {
                let set = StoredSubscription {
                    filter: f.filter.clone(),
                    options: f.options,
                    subscription_id,
                };
                undo.push(SubUndo {
                    filter: set.filter.clone(),
                    set: Some(set),
                    previous,
                });
            }
            acks += interest_acks;
            reasons.push(ReasonCode(f.options.qos.as_u8()));
            if shared.is_none() {
                accepted.push((f.filter, f.options, is_new));
            }
        }
        // The SUBACK waits until every other shard has applied the interest
        // change, so a publish on any shard after the client saw SUBACK
        // reaches it, and with `durable` until the session's record with the
        // new subscriptions is on disk.
        let recorded_before = self.persist.recorded;
        self.persist_session(session);
        let wait_batch = self.recorded_since(recorded_before);
        self.open_barrier(conn, token, acks, wait_batch);
        self.on_refusal_undo(token, undo);
        let ack = SubAck {
            packet_id: sub.packet_id,
            reasons,
            properties: Default::default(),
        };
        self.write_ack(conn, Packet::SubAck(ack));
        // Retained messages after the SUBACK ([MQTT-3.3.1-9]: with RETAIN=1),
        // per Retain Handling ([MQTT-3.3.1-10], [MQTT-3.3.1-11]); never for
        // shared subscriptions (MQTT 5.0 4.8.2, which numbers no statement for it).
        for (filter, options, is_new) in accepted {
            let send = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => is_new,
                RetainHandling::DoNotSend => false,
            };
            if !send {
                continue;
            }
            let held = self.conns.get_mut(conn).filter(|c| c.has_held());
            match held {
                Some(c) => c.rare_mut().held.push_back(Held::Retained {
                    filter,
                    options,
                    subscription_id,
                }),
                None => self.send_retained(session, &filter, options, subscription_id, now_ms),
            }
        }
        Ok(())
    }

    /// The SUBACK of a SUBSCRIBE or the UNSUBACK of an UNSUBSCRIBE was
    /// refused (its session record could not be stored): each subscription
    /// it set or removed goes back to what it replaced (or is removed, or
    /// comes back), unless a later SUBSCRIBE or UNSUBSCRIBE changed it
    /// again, and the retained messages held for a refused subscription
    /// are not sent. The session record is rewritten as it is now.
    pub(super) fn undo_subscribe(&mut self, conn: ConnId, session: SessionId, undo: Vec<SubUndo>) {
        for SubUndo {
            filter,
            set,
            previous,
        } in undo
        {
            let current = self
                .sessions
                .get(session)
                .and_then(|s| s.subscription(&filter).and_then(|i| s.subscriptions.get(i)));
            if current != set.as_ref() {
                continue;
            }
            match previous {
                Some(p) => {
                    self.add_subscription(session, p.filter, p.options, p.subscription_id, 0);
                }
                None => {
                    self.remove_subscription(session, &filter);
                    if let Some(s) = self.sessions.get_mut(session) {
                        s.subscriptions.retain(|x| x.filter != filter);
                    }
                }
            }
            if set.is_none() {
                continue; // an UNSUBACK holds no retained message
            }
            // Its retained messages are held right behind the SUBACK.
            if let Some(held) = self
                .conns
                .get_mut(conn)
                .and_then(|c| c.rare_mut_if_any())
                .map(|r| &mut r.held)
            {
                let mut i = 0;
                while let Some(Held::Retained { filter: f, .. }) = held.get(i) {
                    if *f == filter {
                        held.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
        }
        self.persist_session(session);
    }

    /// The retained messages matching a new subscription, to its session:
    /// a snapshot of the matches joins the connection's backlog and is
    /// written as the socket drains (`deliver.rs`), never dropped for a
    /// full buffer. Called after the SUBACK is written.
    pub(super) fn send_retained(
        &mut self,
        session: SessionId,
        filter: &[u8],
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
        now_ms: u64,
    ) {
        let Some(conn) = self.sessions.get(session).and_then(|s| s.conn()) else {
            return;
        };
        let mut found: Vec<Retained> = Vec::new();
        self.retained.matching(filter, &mut found);
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        for mut r in found {
            if is_expired(&r, now_ms) {
                continue;
            }
            r.publish.properties.subscription_identifiers = subscription_id.into_iter().collect();
            r.publish.qos = r.publish.qos.min(options.qos);
            r.publish.retain = true;
            r.publish.dup = false;
            r.publish.packet_id = 0;
            c.rare_mut().backlog.push_back(Backlogged {
                publish: r.publish,
                received_at_ms: r.received_at_ms,
                retained: true,
            });
        }
        self.pump_backlog(conn, now_ms);
    }

    /// An UNSUBSCRIBE from the client of `session`. With `durable` the
    /// UNSUBACK waits, as a SUBACK does, until the session's record
    /// without the removed subscriptions is on disk, so that a restart
    /// after the client saw it does not bring them back; if that write
    /// fails the UNSUBACK is refused and the subscriptions restored
    /// (`refuse.rs`).
    pub(super) fn handle_unsubscribe(
        &mut self,
        conn: ConnId,
        session: SessionId,
        unsub: Unsubscribe,
    ) {
        let mut reasons = Vec::with_capacity(unsub.filters.len());
        // What to restore if the UNSUBACK is refused (a failed write).
        let mut undo: Vec<SubUndo> = Vec::new();
        let recorded_before = self.persist.recorded;
        for filter in unsub.filters {
            let existed = self.remove_subscription(session, &filter);
            if let Some(s) = self.sessions.get_mut(session) {
                let removed = s
                    .subscription(&filter)
                    .and_then(|i| s.subscriptions.get(i))
                    .cloned();
                s.subscriptions.retain(|x| x.filter != filter);
                if let Some(removed) = removed {
                    if self.persist.on {
                        undo.push(SubUndo {
                            filter: removed.filter.clone(),
                            set: None,
                            previous: Some(removed),
                        });
                    }
                }
            }
            reasons.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        self.persist_session(session);
        if self.recorded_since(recorded_before) {
            let token = self.new_barrier_token();
            self.open_barrier(conn, token, 0, true);
            self.on_refusal_undo(token, undo);
        }
        let ack = UnsubAck {
            packet_id: unsub.packet_id,
            reasons,
            properties: Default::default(),
        };
        self.write_ack(conn, Packet::UnsubAck(ack));
    }

    /// Add or replace a subscription ([MQTT-3.8.4-3]: same filter replaces).
    /// Returns whether it did not exist before, and how many other shards
    /// must acknowledge the interest change it caused (`barrier` non-zero).
    pub(super) fn add_subscription(
        &mut self,
        session: SessionId,
        filter: Bytes,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
        barrier: u64,
    ) -> (bool, u32) {
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
                let (node, idx) = self.shared_group(sh.filter, &filter, sh.group, true);
                let Some(g) = idx.and_then(|i| node.groups.get_mut(i)) else {
                    return (false, 0);
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
        let acks = match count {
            Some(count) => self.broadcast_interest(&filter, count, barrier),
            None => 0,
        };
        if let Some(s) = self.sessions.get_mut(session) {
            let stored = StoredSubscription {
                filter,
                options,
                subscription_id,
            };
            match s.subscription(&stored.filter) {
                Some(i) => {
                    if let Some(x) = s.subscriptions.get_mut(i) {
                        *x = stored;
                    }
                }
                None => s.subscriptions.push(stored),
            }
        }
        (is_new, acks)
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
            // Removals need no barrier: a message routed meanwhile is
            // dropped by the receiving shard, which has no subscriber left.
            self.broadcast_interest(filter, count, 0);
        }
        existed
    }

    /// Tell every other shard our subscription count on `filter`. Returns
    /// how many acknowledgements a non-zero `barrier` asks for.
    fn broadcast_interest(&mut self, filter: &Bytes, count: u32, barrier: u64) -> u32 {
        let mut acks = 0;
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
                    acks += 1;
                }
            }
        }
        acks
    }

    /// The router node of plain filter `inner` (made if missing) and the
    /// index there of shared group `group`: the existing one, else, with
    /// `create`, a new group with no member yet for the `$share/{group}/...`
    /// filter `filter`, choosing by the policy configured for `group`
    /// (`None` when missing and not created).
    fn shared_group(
        &mut self,
        inner: &[u8],
        filter: &Bytes,
        group: &[u8],
        create: bool,
    ) -> (&mut RouteNode, Option<usize>) {
        debug_assert_eq!(&filter[filter.len() - inner.len()..], inner);
        let node = self.router.get_or_insert(inner);
        let idx = match node.groups.iter().position(|g| g.name.as_ref() == group) {
            Some(i) => Some(i),
            None if !create => None,
            None => {
                node.groups.push(SharedGroup::new(
                    filter.clone(),
                    share_name(filter, group),
                    self.config.shared_policy_for(group),
                    self.shard,
                    self.shard_count,
                ));
                Some(node.groups.len() - 1)
            }
        };
        (node, idx)
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
        let node = match shared {
            Some(sh) => {
                let (node, gi) = self.shared_group(inner, filter, sh.group, count > 0);
                if let Some((gi, g)) = gi.and_then(|i| node.groups.get_mut(i).map(|g| (i, g))) {
                    g.remote_members.retain(|(s, _)| *s != shard);
                    if count > 0 {
                        g.remote_members.push((shard, count));
                    }
                    if g.members.is_empty() && g.remote_members.is_empty() {
                        node.groups.swap_remove(gi);
                    }
                }
                node
            }
            None => {
                let node = self.router.get_or_insert(inner);
                if count > 0 {
                    node.remote_shards |= 1u64 << shard;
                } else {
                    node.remote_shards &= !(1u64 << shard);
                }
                node
            }
        };
        if node.is_empty() {
            self.router.remove(inner);
        }
    }
}

/// The group name of the `$share/{group}/...` filter `filter`, as a slice of it.
fn share_name(filter: &Bytes, group: &[u8]) -> Bytes {
    let start = topic::SHARE_PREFIX.len();
    filter.slice(start..start + group.len())
}
