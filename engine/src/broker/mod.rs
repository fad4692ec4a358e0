//! One shard's broker state machine: connections, sessions, the router
//! replica (local subscriptions + interest of other shards) and retained
//! messages. Sans-IO: see the crate docs for the input/output contract.
//!
//! Use, per shard (the runtime's loop):
//! 1. `accept(now)` for each new socket -> `ConnId` (or `None`: refuse, close).
//! 2. `handle_read(conn, &mut buf, now)` with the socket's read buffer; the
//!    broker consumes every complete frame and leaves a partial one.
//! 3. `handle_closed(conn, now)` on EOF / error; `handle_shard_message` for
//!    ring messages; `handle_timeout(now)` when `poll_timeout()` is due.
//! 4. Then drain `poll_event()` until `None`: `Transmit(conn)` -> write
//!    `outgoing(conn)`; `Close(conn)` -> flush and close the socket, then call
//!    `handle_closed`; `ToShard` -> push on that shard's ring.
//! (STUB: being written.)

use bytes::BytesMut;

use crate::codec::Publish;

/// Index of a connection inside one shard.
pub type ConnId = usize;
/// Index of a shard, `0..shard_count`.
pub type ShardId = u16;

/// Limits and behaviour of one broker (identical on every shard).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub connections_max: usize,
    pub packet_size_max_bytes: u32,
    pub allow_anonymous: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig { connections_max: 100_000, packet_size_max_bytes: 1 << 20, allow_anonymous: true }
    }
}

/// A message between shards (carried on the SPSC rings).
#[derive(Clone, Debug)]
pub enum ShardMessage {
    /// Deliver to this shard's local subscribers.
    Publish { publish: Publish, received_at_ms: u64 },
}

/// What the runtime must do next.
#[derive(Debug)]
pub enum Event {
    /// `outgoing(conn)` has bytes to write.
    Transmit(ConnId),
    /// Flush `outgoing(conn)`, then close the socket.
    Close(ConnId),
    /// Push `msg` on the ring to `shard`.
    ToShard { shard: ShardId, msg: ShardMessage },
}

/// Where a new connection belongs, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    NeedMore,
    Local,
    Shard(ShardId),
}

/// Session ownership: shard of a client id (FNV-1a, stable across runs).
pub fn owner_shard(client_id: &[u8], shard_count: u16) -> ShardId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shard_count.max(1))) as ShardId
}

/// Decide from the first bytes of a connection which shard owns it.
pub fn route_connect(_buf: &[u8], _shard: ShardId, _shard_count: u16) -> Route {
    todo!()
}

pub struct Broker {}

impl Broker {
    pub fn new(_config: BrokerConfig, _shard: ShardId, _shard_count: u16) -> Broker {
        todo!()
    }
    pub fn accept(&mut self, _now_ms: u64) -> Option<ConnId> {
        todo!()
    }
    pub fn handle_read(&mut self, _conn: ConnId, _buf: &mut BytesMut, _now_ms: u64) {
        todo!()
    }
    pub fn handle_closed(&mut self, _conn: ConnId, _now_ms: u64) {
        todo!()
    }
    pub fn handle_shard_message(&mut self, _msg: ShardMessage, _now_ms: u64) {
        todo!()
    }
    pub fn handle_timeout(&mut self, _now_ms: u64) {
        todo!()
    }
    pub fn poll_timeout(&self) -> Option<u64> {
        todo!()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }
    pub fn outgoing(&mut self, _conn: ConnId) -> Option<&mut BytesMut> {
        todo!()
    }
    /// Server shutdown: v5 clients get DISCONNECT 0x8B, all connections close.
    pub fn shutdown(&mut self, _now_ms: u64) {
        todo!()
    }
}
