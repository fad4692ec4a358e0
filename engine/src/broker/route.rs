//! Routing a publish: the router trie's value ([`RouteNode`]: local
//! subscribers, shared groups, other shards' interest), the one walk that
//! turns a topic into deliveries, the one place a shared group's member is
//! chosen (the chooser itself is `shared.rs`), and re-dispatch of a shared
//! group's messages when a member leaves (MQTT 5.0 sections 3.3.4, 4.8).

use bytes::Bytes;

use super::config::SharedPolicy;
use super::deliver::Delivery;
use super::message::fnv;
use super::persist::persisted;
use super::session::{window_of, OutState, Queued, Session};
use super::shared::{LocalSub, Pick, SharedGroup};
use super::{Broker, Event, SessionId, ShardId, ShardMessage};
use crate::codec::{Publish, QoS};
use crate::topic;

/// Router trie value: everything subscribed with one filter.
#[derive(Default)]
pub(super) struct RouteNode {
    pub(super) subs: Vec<LocalSub>,
    pub(super) groups: Vec<SharedGroup>,
    /// Other shards with at least one non-shared subscription on this filter.
    pub(super) remote_shards: u64,
}

impl RouteNode {
    pub(super) fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.groups.is_empty() && self.remote_shards == 0
    }
}

/// Where a publish entered this shard, which decides how far it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// Received on this shard, from this session's client (`None`: made by
    /// the broker, `$SYS`). It also goes to the other shards, and shared
    /// groups choose among their members broker-wide.
    Local(Option<SessionId>),
    /// Forwarded by another shard, which already served the other shards
    /// and the shared groups: local non-shared subscribers only.
    Shard,
}

/// A shared-group message that leaves this shard during routing.
#[derive(Clone)]
pub(super) struct SharedOut {
    shard: ShardId,
    filter: Bytes,
    /// `SharedPublish` with this key, or (`home`) `SharedRoute`.
    key: u64,
    home: bool,
}

/// What routing a publish did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Routed {
    /// A subscription matched, here or on another shard (for v5 PUBACK /
    /// PUBREC 0x10 No matching subscribers).
    pub(super) matched: bool,
    /// Messages sent to other shards carrying the barrier token given to
    /// `route` (0 without one): the Acks to wait for.
    pub(super) acks: u32,
    /// Deliveries to this shard's sessions (the tracing hook's count).
    #[cfg(feature = "trace-hook")]
    pub(super) deliveries: u32,
    /// Copies sent to other shards (the tracing hook's count).
    #[cfg(feature = "trace-hook")]
    pub(super) forwarded: u32,
}

/// One match of a publish, gathered during the trie walk.
#[derive(Clone, Copy)]
pub(super) struct Match {
    session: SessionId,
    qos: u8,
    retain_as_published: bool,
    no_local: bool,
    subscription_id: Option<u32>,
    /// Index into `scratch_shared_filters` when matched through a shared group.
    shared: Option<usize>,
}

impl Broker {
    /// Route a publish: one trie walk gives local subscribers, the other
    /// shards to forward to, and a member for each matching shared group.
    /// A non-zero `barrier` goes with the forwarded copies: each receiver
    /// acknowledges it (`barrier.rs`).
    pub(super) fn route(
        &mut self,
        publish: &mut Publish,
        source: Source,
        received_at_ms: u64,
        now_ms: u64,
        barrier: u64,
    ) -> Routed {
        let mut matches = std::mem::take(&mut self.scratch_matches);
        let mut shared_remote = std::mem::take(&mut self.scratch_shared_remote);
        let mut shared_filters = std::mem::take(&mut self.scratch_shared_filters);
        matches.clear();
        shared_remote.clear();
        shared_filters.clear();
        let local_origin = matches!(source, Source::Local(_));
        let mut remote_mask = 0u64;
        {
            let sessions = &self.sessions;
            let conns = &self.conns;
            let inflight_max = self.config.inflight_max;
            let topic = &publish.topic;
            let window = |sid| window_of(sessions, conns, inflight_max, sid, topic);
            let load = |sid| {
                sessions
                    .get(sid)
                    .map_or(0, |s: &Session| s.qos.inflight.len() + s.qos.queue.len())
            };
            let this_shard = self.shard;
            let publisher_id = match source {
                Source::Local(Some(sid)) => sessions.get(sid).map(|s| &s.client_id[..]),
                _ => None,
            };
            self.router.for_each_match_mut(topic, |node| {
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
                    if g.chosen_at_home(this_shard) {
                        shared_remote.push(SharedOut {
                            shard: g.home,
                            filter: g.full_filter.clone(),
                            key: 0,
                            home: true,
                        });
                        continue;
                    }
                    let key = match g.policy {
                        SharedPolicy::HashClientId => publisher_id.map_or(0, fnv),
                        SharedPolicy::HashTopic => fnv(topic),
                        _ => 0,
                    };
                    match g.pick(true, None, key, window, load) {
                        Some(Pick::Local(m)) => {
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
                        Some(Pick::Remote(shard)) => shared_remote.push(SharedOut {
                            shard,
                            filter: g.full_filter.clone(),
                            key,
                            home: false,
                        }),
                        None => {}
                    }
                }
            });
        }

        let mut matched = !shared_remote.is_empty();
        let mut sent = 0u32;
        let origin = self.shard;
        // Other shards: one copy each, however many subscribers they have.
        if local_origin {
            let mut mask = remote_mask & !(1u64 << self.shard);
            matched |= mask != 0;
            while mask != 0 {
                let shard = mask.trailing_zeros() as u16;
                mask &= mask - 1;
                let msg = ShardMessage::Publish {
                    publish: publish.clone(),
                    received_at_ms,
                    origin,
                    barrier,
                };
                self.events.push_back(Event::ToShard { shard, msg });
                sent += 1;
            }
            for out in shared_remote.drain(..) {
                sent += 1;
                let msg = if out.home {
                    ShardMessage::SharedRoute {
                        filter: out.filter,
                        publish: publish.clone(),
                        received_at_ms,
                        origin,
                        barrier,
                    }
                } else {
                    ShardMessage::SharedPublish {
                        filter: out.filter,
                        publish: publish.clone(),
                        received_at_ms,
                        key: out.key,
                        origin,
                        barrier,
                    }
                };
                self.events.push_back(Event::ToShard {
                    shard: out.shard,
                    msg,
                });
            }
        }

        // Local: one delivery per (session, shared group), at the highest
        // matching QoS with every Subscription Identifier ([MQTT-3.3.4-2],
        // [MQTT-3.3.4-4]); no-local subscriptions skip their own publisher
        // ([MQTT-3.8.3-3]).
        let publisher = match source {
            Source::Local(publisher) => publisher,
            Source::Shard => None,
        };
        matches.retain(|m| !(m.no_local && Some(m.session) == publisher));
        matched |= !matches.is_empty();
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| (m.session, m.shared));
        }
        let mut ids = std::mem::take(&mut self.scratch_subscription_ids);
        std::mem::swap(&mut ids, &mut publish.properties.subscription_identifiers);
        let mut i = 0;
        #[cfg(feature = "trace-hook")]
        let mut deliveries = 0u32;
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
            let delivery = Delivery {
                qos: QoS::from_u8(qos.min(publish.qos.as_u8())).unwrap_or(QoS::AtMostOnce),
                retain: rap && publish.retain,
                received_at_ms,
                shared_filter: first.shared.and_then(|k| shared_filters.get(k)).cloned(),
            };
            self.deliver(first.session, publish, delivery, now_ms);
            #[cfg(feature = "trace-hook")]
            {
                deliveries += 1;
            }
        }
        std::mem::swap(&mut ids, &mut publish.properties.subscription_identifiers);
        ids.clear();
        self.scratch_subscription_ids = ids;
        self.scratch_matches = matches;
        self.scratch_shared_remote = shared_remote;
        self.scratch_shared_filters = shared_filters;
        Routed {
            matched,
            acks: if barrier != 0 { sent } else { 0 },
            #[cfg(feature = "trace-hook")]
            deliveries,
            #[cfg(feature = "trace-hook")]
            forwarded: sent,
        }
    }

    /// A shared-group delivery chosen by another shard: pick a local member.
    pub(super) fn deliver_shared_local(
        &mut self,
        full_filter: &Bytes,
        publish: &mut Publish,
        received_at_ms: u64,
        key: u64,
        now_ms: u64,
    ) {
        match self.pick_shared(full_filter, &publish.topic, false, None, key) {
            Some(Pick::Local(member)) => {
                self.deliver_to_member(member, full_filter, publish, received_at_ms, now_ms)
            }
            // The group left this shard meanwhile: nobody to give it to here.
            _ => self.stats.dropped_no_shared_member += 1,
        }
    }

    /// This shard is the home of the group `full_filter` (`round_robin`,
    /// `sticky`): choose its member broker-wide, deliver here or send it to
    /// the member's shard. Returns whether it went on to another shard
    /// (with `origin` and `barrier`, which that shard answers).
    pub(super) fn route_shared_home(
        &mut self,
        full_filter: &Bytes,
        publish: &mut Publish,
        received_at_ms: u64,
        (origin, barrier): (ShardId, u64),
        now_ms: u64,
    ) -> bool {
        match self.pick_shared(full_filter, &publish.topic, true, None, 0) {
            Some(Pick::Local(member)) => {
                self.deliver_to_member(member, full_filter, publish, received_at_ms, now_ms)
            }
            Some(Pick::Remote(shard)) => {
                let msg = ShardMessage::SharedPublish {
                    filter: full_filter.clone(),
                    publish: publish.clone(),
                    received_at_ms,
                    key: 0,
                    origin,
                    barrier,
                };
                self.events.push_back(Event::ToShard { shard, msg });
                return true;
            }
            None => self.stats.dropped_no_shared_member += 1,
        }
        false
    }

    /// Deliver a shared-group message to `member` of this shard.
    fn deliver_to_member(
        &mut self,
        member: LocalSub,
        full_filter: &Bytes,
        publish: &mut Publish,
        received_at_ms: u64,
        now_ms: u64,
    ) {
        let saved_ids = std::mem::take(&mut publish.properties.subscription_identifiers);
        if let Some(id) = member.subscription_id {
            publish.properties.subscription_identifiers.push(id);
        }
        let delivery = Delivery {
            qos: publish.qos.min(member.options.qos),
            retain: member.options.retain_as_published && publish.retain,
            received_at_ms,
            shared_filter: Some(full_filter.clone()),
        };
        self.deliver(member.session, publish, delivery, now_ms);
        publish.properties.subscription_identifiers = saved_ids;
    }

    /// The member of the shared group `full_filter` for a message on
    /// `topic` (see [`SharedGroup::pick`]).
    fn pick_shared(
        &mut self,
        full_filter: &Bytes,
        topic: &[u8],
        with_remote: bool,
        exclude: Option<SessionId>,
        key: u64,
    ) -> Option<Pick> {
        let shared = topic::parse_shared(full_filter).ok().flatten()?;
        let (name, inner) = (shared.group, shared.filter);
        let sessions = &self.sessions;
        let conns = &self.conns;
        let inflight_max = self.config.inflight_max;
        let node = self.router.get_mut(inner)?;
        let g = node.groups.iter_mut().find(|g| g.name.as_ref() == name)?;
        let window = |sid| window_of(sessions, conns, inflight_max, sid, topic);
        let load = |sid| {
            sessions
                .get(sid)
                .map_or(0, |s: &Session| s.qos.inflight.len() + s.qos.queue.len())
        };
        g.pick(with_remote, exclude, key, window, load)
    }

    /// The next local member of the shared group `full_filter` other than
    /// `exclude`.
    fn pick_shared_member(
        &mut self,
        full_filter: &Bytes,
        topic: &[u8],
        exclude: Option<SessionId>,
    ) -> Option<LocalSub> {
        match self.pick_shared(full_filter, topic, false, exclude, 0)? {
            Pick::Local(m) => Some(m),
            Pick::Remote(_) => None,
        }
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
        if !s.qos.inflight.iter().any(|o| o.shared_filter.is_some())
            && !s.qos.queue.iter().any(|q| q.shared_filter.is_some())
        {
            return;
        }
        let durable = persisted(&self.persist, s);
        let mut keep = std::collections::VecDeque::new();
        for o in s.qos.inflight.drain(..) {
            // Only QoS 1 in flight moves: a QoS 2 delivery in progress must be
            // completed to the same client ([MQTT-4.8.2-4], [MQTT-4.8.2-5]).
            let qos1 = o.state == OutState::AwaitPubAck;
            match &o.shared_filter {
                Some(f) if qos1 => {
                    if durable {
                        self.persist.delete_message(&s.client_id, o.seq);
                    }
                    moved.push((f.clone(), o.publish, o.received_at_ms));
                }
                _ => keep.push_back(o),
            }
        }
        s.qos.inflight = keep;
        let mut keep_q = std::collections::VecDeque::new();
        for q in s.qos.queue.drain(..) {
            match q.shared_filter {
                Some(f) => {
                    if durable {
                        self.persist.delete_message(&s.client_id, q.seq);
                    }
                    moved.push((f, q.publish, q.received_at_ms));
                }
                None => keep_q.push_back(q),
            }
        }
        s.qos.queue = keep_q;
        for (filter, mut publish, received_at_ms) in moved {
            publish.dup = false;
            match self.pick_shared_member(&filter, &publish.topic, Some(session)) {
                Some(m) => {
                    let delivery = Delivery {
                        qos: publish.qos,
                        retain: publish.retain,
                        received_at_ms,
                        shared_filter: Some(filter),
                    };
                    self.deliver(m.session, &mut publish, delivery, now_ms);
                }
                None => {
                    // No other member: it stays with this session (at the
                    // end of its queue, so under a new record).
                    if let Some(s) = self.sessions.get_mut(session) {
                        let seq = if durable {
                            let seq = self.persist.seq();
                            let stage = crate::persist::MessageStage::Queued;
                            let (at, f) = (received_at_ms, Some(&filter));
                            self.persist
                                .put_message(&s.client_id, seq, stage, &publish, at, f);
                            seq
                        } else {
                            0
                        };
                        s.qos.queue.push_back(Queued {
                            publish,
                            received_at_ms,
                            shared_filter: Some(filter),
                            seq,
                        });
                    }
                }
            }
        }
    }
}
