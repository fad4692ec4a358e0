//! Durable state, engine side (issue #13): what a shard stores, the byte
//! encoding of each record, and the types the runtime's store exchanges
//! with [`crate::broker::Broker`]. No I/O here: the broker records
//! [`PersistOp`]s as its state changes (only with `BrokerConfig::durable`),
//! the runtime takes them as a [`PersistBatch`] once per loop turn
//! (`Broker::take_persist_batch`), writes the batch, and reports the
//! outcome (`Broker::handle_persisted`); acknowledgements that promise
//! durability wait for it. At start-up the runtime feeds every stored
//! record back (`Broker::restore`, then `Broker::finish_restore`).
//!
//! Keys (so the store routes records to shards without decoding values):
//! - [`Keyspace::Sessions`]: `u16` big-endian length + client id.
//! - [`Keyspace::Messages`]: the session key, then a `u64` big-endian
//!   sequence number (unique within the session; order = queue order).
//! - [`Keyspace::InboundQos2`]: the session key, then the `u16` big-endian
//!   packet id of an inbound QoS 2 message awaiting PUBREL.
//! - [`Keyspace::Retained`]: the topic name's bytes. Written (and deleted)
//!   only by the shard `owner_shard(topic, shard_count)`, so each key has
//!   one writer; every shard restores every retained record.
//!
//! Values: see `record.rs` (first byte: format version).
//!
//! Times in records are wall-clock milliseconds: the engine adds the
//! offset given by `Broker::set_wall_clock` to its own `now_ms`.

mod reader;
mod record;

use bytes::Bytes;

pub use record::{
    check_inbound_qos2, inbound_qos2_value, MessageRecord, MessageStage, RetainedRecord,
    SessionRecord, StoredSubscription, FORMAT_VERSION,
};

/// The record families of the store (one table / partition each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyspace {
    /// One record per session that outlives its connection.
    Sessions,
    /// Queued and inflight outbound QoS 1/2 messages of those sessions.
    Messages,
    /// Inbound QoS 2 packet ids awaiting PUBREL (exactly-once dedupe).
    InboundQos2,
    /// Retained messages, by topic.
    Retained,
}

impl Keyspace {
    /// Every keyspace, in the order a store should restore them.
    pub const ALL: [Keyspace; 4] = [
        Keyspace::Sessions,
        Keyspace::Messages,
        Keyspace::InboundQos2,
        Keyspace::Retained,
    ];

    /// A stable name (table or directory names, `ringmq storage` output).
    pub fn name(self) -> &'static str {
        match self {
            Keyspace::Sessions => "sessions",
            Keyspace::Messages => "messages",
            Keyspace::InboundQos2 => "inbound_qos2",
            Keyspace::Retained => "retained",
        }
    }

    /// The keyspace named `name`, if any.
    pub fn from_name(name: &str) -> Option<Keyspace> {
        Keyspace::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One change to the store: put `value` under `key`, or delete `key`
/// (`value: None`). Ops of a batch apply in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistOp {
    pub keyspace: Keyspace,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Every op a shard recorded since its previous batch. `id`s increase by
/// one per shard, from 1; the store completes batches in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistBatch {
    pub id: u64,
    pub ops: Vec<PersistOp>,
}

/// Why a batch could not be made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistFailure {
    /// An I/O error (v5 acknowledgements refused with 0x80 Unspecified error).
    Io,
    /// No space left (v5 acknowledgements refused with 0x97 Quota exceeded).
    DiskFull,
}

impl PersistFailure {
    /// The v5 reason code of an acknowledgement refused for this failure.
    pub fn reason_code(self) -> crate::codec::ReasonCode {
        match self {
            PersistFailure::Io => crate::codec::ReasonCode::UNSPECIFIED_ERROR,
            PersistFailure::DiskFull => crate::codec::ReasonCode::QUOTA_EXCEEDED,
        }
    }
}

/// A stored record that cannot be restored: which part was wrong. The
/// record is skipped; the runtime reports it with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The key does not have the layout of its keyspace.
    BadKey(Keyspace),
    /// The value is empty (no format version byte).
    Empty,
    /// A format version this build does not know.
    UnknownVersion(u8),
    /// The value ends inside this field (a torn write).
    Truncated(&'static str),
    /// This field holds a value out of its range.
    Invalid(&'static str),
    /// Bytes after the last field.
    TrailingBytes,
    /// The stored PUBLISH does not decode.
    Publish(crate::codec::DecodeError),
    /// A session record given to a shard that does not own its client id
    /// (`owner_shard(client_id, shard_count)`).
    WrongShard,
}

impl core::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RestoreError::BadKey(k) => write!(f, "malformed {} key", k.name()),
            RestoreError::Empty => write!(f, "empty value"),
            RestoreError::UnknownVersion(v) => write!(f, "unknown format version {v}"),
            RestoreError::Truncated(field) => write!(f, "value truncated in {field}"),
            RestoreError::Invalid(field) => write!(f, "invalid {field}"),
            RestoreError::TrailingBytes => write!(f, "trailing bytes after the record"),
            RestoreError::Publish(e) => write!(f, "stored PUBLISH does not decode: {e}"),
            RestoreError::WrongShard => write!(f, "client id owned by another shard"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// The key of a session (`u16` BE length + client id).
pub fn session_key(client_id: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(2 + client_id.len());
    push_client_id(&mut k, client_id);
    Bytes::from(k)
}

/// The key of a queued or inflight message of a session.
pub fn message_key(client_id: &[u8], seq: u64) -> Bytes {
    let mut k = Vec::with_capacity(10 + client_id.len());
    push_client_id(&mut k, client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    Bytes::from(k)
}

/// The key of an inbound QoS 2 packet id of a session.
pub fn inbound_qos2_key(client_id: &[u8], packet_id: u16) -> Bytes {
    let mut k = Vec::with_capacity(4 + client_id.len());
    push_client_id(&mut k, client_id);
    k.extend_from_slice(&packet_id.to_be_bytes());
    Bytes::from(k)
}

fn push_client_id(k: &mut Vec<u8>, client_id: &[u8]) {
    // Client ids are bounded by `client_id_max_bytes` (far below 65,535)
    // and by the protocol's string length: the cast cannot truncate.
    k.extend_from_slice(&(client_id.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    k.extend_from_slice(client_id.get(..usize::from(u16::MAX)).unwrap_or(client_id));
}

/// The client id of a Sessions, Messages or InboundQos2 key, and the rest
/// of the key after it (what the store needs to route a record to its
/// owner shard: `owner_shard(client_id, shard_count)`).
pub fn split_client_key(keyspace: Keyspace, key: &[u8]) -> Result<(&[u8], &[u8]), RestoreError> {
    let bad = RestoreError::BadKey(keyspace);
    let (len, rest) = key.split_first_chunk::<2>().ok_or(bad.clone())?;
    let len = usize::from(u16::from_be_bytes(*len));
    let client_id = rest.get(..len).ok_or(bad.clone())?;
    let tail = rest.get(len..).ok_or(bad.clone())?;
    let tail_ok = match keyspace {
        Keyspace::Sessions => tail.is_empty(),
        Keyspace::Messages => tail.len() == 8,
        Keyspace::InboundQos2 => tail.len() == 2,
        Keyspace::Retained => false,
    };
    if !tail_ok {
        return Err(bad);
    }
    Ok((client_id, tail))
}

#[cfg(test)]
mod tests;
