//! A bridge's outbound QoS 1/2 messages (in-tab -> external), kept until
//! the external broker acknowledged them: at least once across
//! reconnections, also when the external client gives up and starts
//! again, and without loss when its queue (`queueMaxMessages`) is full.
//!
//! The local side receives them in `manual_acks` mode: the in-tab broker
//! gets the PUBACK / PUBREC of a message only once the external broker
//! acknowledged it (PUBACK / PUBCOMP, any reason code), so until then the
//! message stays in the bridge's session in the in-tab broker, which
//! stops sending more beyond its window (`inflightMax`) and queues the
//! rest (`sessionQueueMaxMessages`, the in-tab broker's limit).
//!
//! Here: `waiting` holds what the external client cannot take yet (not
//! connected and not reconnecting, or its queue full), oldest first;
//! `sent` what it took, by local packet id, until acknowledged. A message
//! the client rejects (it gave up reconnecting and dropped its queue)
//! goes back to the front of `waiting` and is sent again, as a new
//! publish, once it can take it.

use std::collections::{HashMap, VecDeque};

use crate::client::Message;

#[derive(Default)]
pub struct Outbound {
    waiting: VecDeque<(u16, Message)>,
    sent: HashMap<u16, Message>,
}

impl Outbound {
    /// A message the local side received, with its local packet id.
    pub fn push(&mut self, local_id: u16, m: Message) {
        self.waiting.push_back((local_id, m));
    }

    /// The oldest waiting message, recorded as sent.
    pub fn next(&mut self) -> Option<(u16, Message)> {
        let (id, m) = self.waiting.pop_front()?;
        self.sent.insert(id, m.clone());
        Some((id, m))
    }

    /// The external broker acknowledged `local_id`: forget it.
    pub fn acknowledged(&mut self, local_id: u16) -> bool {
        self.sent.remove(&local_id).is_some()
    }

    /// The external client dropped `local_id`: it waits again, first.
    pub fn rejected(&mut self, local_id: u16) {
        if let Some(m) = self.sent.remove(&local_id) {
            self.waiting.push_front((local_id, m));
        }
    }

    /// Messages not handed to the external client.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The bridge closed: the waiting messages are dropped; how many.
    pub fn drop_waiting(&mut self) -> usize {
        let n = self.waiting.len();
        self.waiting.clear();
        n
    }
}
