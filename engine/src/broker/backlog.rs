//! One item of a connection's backlog (`Conn::backlog`): a message that
//! waits behind a full outgoing buffer. Below both `conn.rs` (which holds
//! the queue) and `deliver.rs` (which fills and drains it).

use crate::codec::Publish;

/// A message waiting in a connection's backlog, its per-subscriber fields
/// (QoS, RETAIN, Subscription Identifiers) already set.
pub(super) struct Backlogged {
    pub(super) publish: Publish,
    pub(super) received_at_ms: u64,
    /// A retained message sent on SUBSCRIBE: never dropped for a full
    /// buffer, not counted against the backlog's bounds.
    pub(super) retained: bool,
}

impl Backlogged {
    /// The bytes this entry counts against `outgoing_queue_max_bytes`.
    pub(super) fn bytes(&self) -> usize {
        self.publish.topic.len() + self.publish.payload.len()
    }
}
