//! A bridge's local side: an internal client of the in-tab broker
//! (`broker::internal`) that subscribes to the outbound mappings' local
//! filters (no-local, retain-as-published) and publishes what comes in.
//! It lives in the broker's state, so that the broker's driver can feed
//! it ([`poll`] in every pump); what it produces for the external side
//! (messages to send out, acknowledgements owed) waits in its queues until
//! the bridge's wake-up call takes them ([`take`]), outside the broker's
//! borrow.

use std::any::Any;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use js_sys::Function;
use ringmq_engine::client::Event as ClientEvent;
use ringmq_engine::codec::{
    Publish, PublishProperties, QoS, ReasonCode, RetainHandling, SubscribeFilter,
    SubscriptionOptions,
};

use super::topics::{self, Mapping};
use crate::broker::internal::Internal;

/// Counters of one bridge (`bridge.stats()`).
#[derive(Default)]
pub struct Stats {
    /// External messages the in-tab broker accepted.
    pub forwarded_in: Cell<u64>,
    /// External messages not published in the in-tab broker.
    pub dropped_in: Cell<u64>,
    /// In-tab messages the external broker acknowledged (QoS 0: written).
    pub forwarded_out: Cell<u64>,
    /// In-tab messages the external broker refused (reason >= 0x80).
    pub refused_out: Cell<u64>,
    /// In-tab messages dropped: QoS 0 while disconnected, the queue full
    /// (`queueMaxMessages`), the bridge closed with them queued, or no
    /// outbound mapping for their topic.
    pub dropped_out: Cell<u64>,
}

pub fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// The external connection a message came on, and its packet id there.
#[derive(Clone, Copy, Debug)]
pub struct RemoteId {
    pub generation: u64,
    pub packet_id: u16,
}

/// What the bridge owes the external broker, taken by [`take`].
#[derive(Default)]
pub struct Outputs {
    /// Messages to publish there, already mapped: `(topic, message)`.
    pub outbox: VecDeque<(Bytes, Publish)>,
    /// Acknowledgements of its messages, with the in-tab broker's reason.
    pub acks: Vec<(RemoteId, ReasonCode)>,
    /// Errors for the bridge's `error` event.
    pub errors: Vec<String>,
}

pub struct Local {
    pub id: u64,
    pub internal: Internal,
    /// The bridge itself (`bridge::Core`), kept alive by the broker.
    pub owner: Rc<dyn Any>,
    /// The bridge's wake-up call.
    wake: Function,
    mappings: Rc<[Mapping]>,
    stats: Rc<Stats>,
    /// In-tab publishes of external messages awaiting the broker's
    /// acknowledgement, by local packet id.
    pending: HashMap<u16, RemoteId>,
    out: Outputs,
}

impl Local {
    pub fn new(
        id: u64,
        internal: Internal,
        owner: Rc<dyn Any>,
        wake: Function,
        mappings: Rc<[Mapping]>,
        stats: Rc<Stats>,
    ) -> Local {
        Local {
            id,
            internal,
            owner,
            wake,
            mappings,
            stats,
            pending: HashMap::new(),
            out: Outputs::default(),
        }
    }

    /// Publishes an external message in the in-tab broker under its mapped
    /// topic. QoS 1/2: acknowledged to the external broker when the in-tab
    /// broker acknowledged it (its reason code passed on), or at once with
    /// 0x80 when it could not be published.
    pub fn publish(&mut self, remote: RemoteId, p: Publish) {
        let Some(topic) = topics::to_local(&self.mappings, &p.topic) else {
            self.refuse(remote, &p, "no inbound mapping matches");
            return;
        };
        // Only what belongs to the message travels (not the external
        // connection's topic alias or subscription identifiers).
        let properties = PublishProperties {
            topic_alias: None,
            subscription_identifiers: Vec::new(),
            ..p.properties.clone()
        };
        let qos = p.qos;
        let retain = p.retain;
        match self
            .internal
            .client
            .publish(topic, p.payload.clone(), qos, retain, properties)
        {
            Ok(Some(local_id)) => {
                self.pending.insert(local_id, remote);
            }
            Ok(None) => bump(&self.stats.forwarded_in),
            Err(e) => self.refuse(remote, &p, &e.to_string()),
        }
    }

    /// The external broker acknowledged outbound message `local_id`:
    /// acknowledge it to the in-tab broker (PUBACK / PUBREC; the local side
    /// is in `manual_acks` mode). Not awaited any more (the local side
    /// ended): nothing is owed.
    pub fn acknowledge(&mut self, local_id: u16) {
        if self
            .internal
            .client
            .acknowledge(local_id, ReasonCode::SUCCESS)
            .is_err()
        {
            // Not connected any more, or acknowledged already.
        }
    }

    fn refuse(&mut self, remote: RemoteId, p: &Publish, why: &str) {
        bump(&self.stats.dropped_in);
        self.out.errors.push(format!(
            "message on `{}` not forwarded in: {why}",
            String::from_utf8_lossy(&p.topic)
        ));
        if p.qos.as_u8() > 0 {
            self.out.acks.push((remote, ReasonCode::UNSPECIFIED_ERROR));
        }
    }

    /// Subscribes to the outbound mappings' local filters.
    fn subscribe(&mut self) {
        let filters: Vec<SubscribeFilter> = self
            .mappings
            .iter()
            .filter(|m| m.direction.outbound())
            .map(|m| SubscribeFilter {
                filter: m.local_filter().clone(),
                options: SubscriptionOptions {
                    qos: m.qos,
                    // What the bridge publishes here never goes back out.
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendAtSubscribe,
                },
            })
            .collect();
        if filters.is_empty() {
            return;
        }
        if let Err(e) = self.internal.client.subscribe(filters) {
            self.out.errors.push(format!("local subscription: {e}"));
        }
    }

    /// Acts on the internal client's events; true if there were any.
    fn poll(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.internal.client.poll_event() {
            any = true;
            match event {
                ClientEvent::Connected { .. } => self.subscribe(),
                ClientEvent::Message(p) => match topics::to_remote(&self.mappings, &p.topic) {
                    Some((topic, _)) => self.out.outbox.push_back((topic, p)),
                    None => {
                        bump(&self.stats.dropped_out);
                        // Nothing will send it: done with it here.
                        if p.qos != QoS::AtMostOnce {
                            self.acknowledge(p.packet_id);
                        }
                    }
                },
                ClientEvent::PubAcked { packet_id, reason } => {
                    if let Some(remote) = self.pending.remove(&packet_id) {
                        bump(&self.stats.forwarded_in);
                        self.out.acks.push((remote, reason));
                    }
                }
                ClientEvent::SubAck(ack) => {
                    if let Some(r) = ack.reasons.iter().find(|r| r.is_error()) {
                        self.out.errors.push(format!(
                            "the in-tab broker refused an outbound subscription (reason 0x{:02X})",
                            r.0
                        ));
                    }
                }
                ClientEvent::Disconnected(reason) => {
                    self.out
                        .errors
                        .push(format!("local side disconnected: {reason:?}"));
                }
                _ => {}
            }
        }
        any
    }

    fn has_outputs(&self) -> bool {
        !(self.out.outbox.is_empty() && self.out.acks.is_empty() && self.out.errors.is_empty())
    }
}

/// The broker's pump calls this: every bridge's events; a bridge with
/// something for its external side gets its wake-up call in `wake` (to be
/// made after the broker's state is released). True if anything happened.
pub fn poll(bridges: &mut [Local], wake: &mut Vec<Function>) -> bool {
    let mut any = false;
    for b in bridges {
        let had = b.has_outputs();
        any |= b.poll();
        if !had && b.has_outputs() {
            wake.push(b.wake.clone());
        }
    }
    any
}

/// Takes what bridge `id` owes its external side.
pub fn take(bridges: &mut [Local], id: u64) -> Outputs {
    bridges
        .iter_mut()
        .find(|b| b.id == id)
        .map(|b| std::mem::take(&mut b.out))
        .unwrap_or_default()
}
