//! The ring mesh: one bounded SPSC ring (rtrb) per ordered pair of shards,
//! and the cross-thread wake-ups that let a shard sleep when it has nothing
//! to do.
//!
//! ```text
//!   shard 0 ──ring 0→1──▶ shard 1        N shards: N × (N-1) rings,
//!      ▲  ◀──ring 1→0──    │              each `ring_capacity_slots` slots
//!      └──────── ... ──────┘              of one `RingMsg`
//! ```
//!
//! # Wake-ups (never busy-polled, never a lock on the data path)
//!
//! Each shard has one [`ShardSignal`]: an `AtomicWaker` plus a shutdown
//! flag. A shard's ring task registers its waker only when it found all its
//! inbound rings empty (and nothing else to do), then checks again; a
//! producer pushes a *batch* (everything one engine call produced), then
//! wakes each peer it pushed to once. Both sides put a `SeqCst` fence
//! between their store (waker registration / ring tail) and their load
//! (ring tail / waker state), so one of them always sees the other: no lost
//! wake-up. Waking a monoio task from another thread goes through monoio's
//! `sync` feature (the owner thread's eventfd), so a parked shard costs
//! nothing until a peer has work for it.
//!
//! # Rings that grow (and shrink back)
//!
//! A ring starts at [`RING_INITIAL_SLOTS`] slots (or
//! `ring_capacity_slots` if that is smaller) and doubles when a push finds
//! it full, up to `ring_capacity_slots`: the producer makes the larger
//! ring, sends its consumer end down the old ring as the old ring's last
//! message ([`Slot::Next`], in the one slot kept free for it), and pushes
//! on the new ring from then on; the consumer switches rings when it pops
//! that message, so the order is kept and the old ring is freed once it
//! is drained. [`Mesh::shrink_memory`] (the shard's memory release, after
//! closes) goes back to the initial size the same way for every ring that
//! is empty. A ring's slots become resident once messages have cycled
//! through them, and a slot is one [`RingMsg`] (~300 bytes): at the full
//! size the mesh of 6 shards holds 30 rings of 1,024 slots, ~9 MB, which
//! connection hand-offs alone used to make resident (docs/benchmarks.md,
//! memory per idle connection at 100,000 connections); a ring grows only
//! when its peer falls behind by more than the initial size.
//!
//! # Full-ring policy
//!
//! A push never blocks, never panics and never grows without bound:
//!
//! 1. If the peer's ring has room (and nothing is queued before it), the
//!    message goes on the ring (a ring below its full size grows first,
//!    above).
//! 2. Otherwise it is appended to a local overflow queue for that peer
//!    (FIFO after the ring, so per-publisher order is kept), which the ring
//!    task moves onto the ring on its next turn. The producer sets the
//!    ring's `space_wanted` flag; the consumer, after popping from that
//!    ring, clears it and wakes the producer.
//! 3. Once a peer's overflow holds `ring_overflow_max_messages`, every
//!    message is still queued (QoS 0 publishes too: nothing is lost here),
//!    and the caller pauses the client connection whose input produced it
//!    ([`PushOutcome::OverLimit`]) until the overflow is below the limit
//!    again: the publisher is throttled to the pace of the slowest ring it
//!    feeds, as Mosquitto throttles a publisher. The overflow can so exceed
//!    the limit only by what one engine call produces while paused
//!    connections stop adding to it (plus messages no connection's input
//!    produced, such as wills, which are bounded by the connections).
//!
//! QoS 0 messages are dropped only per subscriber that does not keep up,
//! by the engine (`outgoing_buffer_max_bytes`), never for a full ring: a
//! subscriber that reads promptly loses nothing to another subscriber's
//! (or another shard's) slowness.
//!
//! Ring consumers are never paused (two shards waiting on each other's
//! rings would deadlock); they are bounded by `ring_batch_max_messages` per
//! turn instead.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;

use atomic_waker::AtomicWaker;
use bytes::BytesMut;
use ringmq_engine::broker::{ShardId, ShardMessage};
use ringmq_net::tls::TlsSession;
use rtrb::{Consumer, Producer, RingBuffer};

/// What travels on a ring. Small, `Send`, no allocation per message: the
/// engine's payloads are `Bytes` (refcounted), a hand-off moves an fd.
// Slots are allocated per ring (module docs: rings that grow) and moved by
// value: boxing the engine message to shrink the enum would allocate per
// message instead. A slot is `size_of::<RingMsg>()` bytes (logged at
// start-up at debug level).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RingMsg {
    /// A message of the engine, for the peer's `Broker::handle_shard_message`.
    Engine(ShardMessage),
    /// A new connection whose client id the peer owns: the socket, and the
    /// bytes already read from it (fed to the owner's engine first); on a
    /// TLS listener also the session (handshake done, boxed: rare).
    Handoff {
        fd: OwnedFd,
        bytes: BytesMut,
        tls: Option<Box<HandoffTls>>,
        /// On a WebSocket listener: the session (upgrade done, with any
        /// partial frame header it holds; `bytes` are decoded MQTT bytes).
        ws: Option<Box<ringmq_net::ws::WsSession>>,
    },
}

/// The TLS part of a hand-off: the established session and the listener
/// setting the owner needs.
#[derive(Debug)]
pub struct HandoffTls {
    pub session: Box<TlsSession>,
    pub use_identity_as_username: bool,
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<RingMsg>();
};

/// The part of a shard that other threads may touch.
#[derive(Default)]
pub struct ShardSignal {
    waker: AtomicWaker,
    shutdown: AtomicBool,
}

impl ShardSignal {
    /// Wakes the shard's ring task (no-op if it is not parked).
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        self.waker.wake();
    }

    /// Asks the shard to shut down gracefully, from any thread.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Whether a shutdown was requested.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Registers the ring task's waker; the caller then re-checks its work.
    pub fn register(&self, waker: &Waker) {
        self.waker.register(waker);
        fence(Ordering::SeqCst);
    }
}

/// Slots a ring starts with (module docs: rings that grow).
pub const RING_INITIAL_SLOTS: usize = 64;

/// What a ring slot holds: a message, or the consumer end of the ring that
/// replaces this one (module docs: rings that grow).
// Large on purpose, as `RingMsg`.
#[allow(clippy::large_enum_variant)]
enum Slot {
    Msg(RingMsg),
    Next(Consumer<Slot>),
}

struct Outbound {
    producer: Producer<Slot>,
    /// The ring's largest size (`ring_capacity_slots`).
    capacity_max: usize,
    overflow: VecDeque<RingMsg>,
    space_wanted: Arc<AtomicBool>,
    /// Pushed to since the last `publish_wakeups`.
    dirty: bool,
    /// Pushes that went over the overflow limit (each paused, or kept its
    /// producer paused).
    over_limit: u64,
    /// Pushes that found the ring full (or messages already waiting in
    /// the overflow queue) and were queued.
    overflowed: u64,
}

struct Inbound {
    peer: ShardId,
    consumer: Consumer<Slot>,
    space_wanted: Arc<AtomicBool>,
}

impl Outbound {
    /// Puts `msg` on the ring, growing a ring below its full size that
    /// has only the slot for [`Slot::Next`] left; gives `msg` back if the
    /// ring is full.
    // The message given back is moved, as `rtrb::PushError` moves it.
    #[allow(clippy::result_large_err)]
    #[inline]
    fn try_push(&mut self, msg: RingMsg) -> Result<(), RingMsg> {
        // The capacity is the producer's own field (no shared cache line);
        // the head is read only when the cached one says there is no room.
        let capacity = self.producer.buffer().capacity();
        let growable = capacity < self.capacity_max;
        let chunk = match self
            .producer
            .write_chunk_uninit(if growable { 2 } else { 1 })
        {
            Ok(chunk) => chunk,
            Err(_) if growable => {
                self.switch_ring(capacity.saturating_mul(2).min(self.capacity_max));
                match self.producer.write_chunk_uninit(1) {
                    Ok(chunk) => chunk,
                    Err(_) => return Err(msg),
                }
            }
            Err(_) => return Err(msg),
        };
        chunk.fill_from_iter(std::iter::once(Slot::Msg(msg)));
        Ok(())
    }

    /// Replaces the ring with one of `slots` slots: its consumer end goes
    /// down the old ring (which must have a free slot: a ring below its
    /// full size keeps one, and an empty ring has them all); without room
    /// the old ring stays.
    fn switch_ring(&mut self, slots: usize) {
        let (producer, consumer) = RingBuffer::new(slots);
        if self.producer.push(Slot::Next(consumer)).is_ok() {
            self.producer = producer;
            self.dirty = true;
        }
    }
}

/// Result of [`Mesh::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// On the ring.
    Sent,
    /// In the overflow queue, below its limit.
    Queued,
    /// Queued past the overflow limit: pause the producing connection.
    OverLimit,
    /// `peer` is this shard or out of range: dropped.
    InvalidPeer,
}

/// Counters of one shard's mesh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Pushes queued past `ring_overflow_max_messages` (their producers
    /// were paused).
    pub pushes_over_limit: u64,
    pub overflow_messages: usize,
}

/// One outbound ring, as [`Mesh::rings`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// The receiving shard.
    pub peer: ShardId,
    /// Messages on the ring, not yet taken by the peer.
    pub occupied_slots: usize,
    pub capacity_slots: usize,
    /// Messages waiting in the overflow queue for room on the ring.
    pub overflow_messages: usize,
    /// Pushes that went to the overflow queue (ring full), since start.
    pub overflowed: u64,
    /// Pushes past `ring_overflow_max_messages` (publisher paused), since start.
    pub over_limit: u64,
}

/// One shard's end of the mesh: producers to every peer, consumers from
/// every peer. Lives on the shard thread.
pub struct Mesh {
    shard: ShardId,
    outbound: Vec<Option<Outbound>>,
    inbound: Vec<Inbound>,
    signals: Arc<[ShardSignal]>,
    overflow_max_messages: usize,
    /// Inbound ring to start the next batch with (fairness).
    next_inbound: usize,
}

/// Builds the full mesh for `shard_count` shards: one [`Mesh`] per shard
/// (index = shard id) and the shared signals.
pub fn build(
    shard_count: u16,
    capacity_slots: usize,
    overflow_max_messages: usize,
) -> (Vec<Mesh>, Arc<[ShardSignal]>) {
    assert!(shard_count >= 1, "at least one shard");
    assert!(
        capacity_slots >= 1,
        "ring capacity must be at least one slot"
    );
    let n = usize::from(shard_count);
    let signals: Arc<[ShardSignal]> = (0..n).map(|_| ShardSignal::default()).collect();
    let mut meshes: Vec<Mesh> = (0..n)
        .map(|i| Mesh {
            shard: i as ShardId,
            outbound: (0..n).map(|_| None).collect(),
            inbound: Vec::with_capacity(n.saturating_sub(1)),
            signals: signals.clone(),
            overflow_max_messages,
            next_inbound: 0,
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from == to {
                continue;
            }
            let (producer, consumer) = RingBuffer::new(capacity_slots.min(RING_INITIAL_SLOTS));
            let space_wanted = Arc::new(AtomicBool::new(false));
            meshes[from].outbound[to] = Some(Outbound {
                producer,
                capacity_max: capacity_slots,
                overflow: VecDeque::new(),
                space_wanted: space_wanted.clone(),
                dirty: false,
                over_limit: 0,
                overflowed: 0,
            });
            meshes[to].inbound.push(Inbound {
                peer: from as ShardId,
                consumer,
                space_wanted,
            });
        }
    }
    (meshes, signals)
}

impl Mesh {
    /// This shard's signal.
    pub fn signal(&self) -> &ShardSignal {
        &self.signals[usize::from(self.shard)]
    }

    /// Pushes `msg` for `peer` under the full-ring policy (module docs).
    /// `peer` must be another shard; anything else drops the message and
    /// returns [`PushOutcome::InvalidPeer`] (a caller bug, not a panic).
    pub fn push(&mut self, peer: ShardId, msg: RingMsg) -> PushOutcome {
        let limit = self.overflow_max_messages;
        let Some(Some(out)) = self.outbound.get_mut(usize::from(peer)) else {
            return PushOutcome::InvalidPeer;
        };
        let msg = if out.overflow.is_empty() {
            match out.try_push(msg) {
                Ok(()) => {
                    out.dirty = true;
                    return PushOutcome::Sent;
                }
                Err(back) => back,
            }
        } else {
            msg
        };
        let outcome = Self::queue(out, msg, limit);
        // `queue` announced `space_wanted` after our push found the ring
        // full. If the consumer emptied the ring in between, it checked the
        // flag before we set it and will not wake us: wake our own ring
        // task so the overflow is moved now (otherwise it waits for an
        // unrelated wake-up: a stall).
        fence(Ordering::SeqCst);
        if !out.producer.is_full() {
            self.signals[usize::from(self.shard)].wake();
        }
        outcome
    }

    fn queue(out: &mut Outbound, msg: RingMsg, limit: usize) -> PushOutcome {
        out.space_wanted.store(true, Ordering::SeqCst);
        out.overflowed += 1;
        let below = out.overflow.len() < limit;
        out.overflow.push_back(msg);
        if below {
            return PushOutcome::Queued;
        }
        out.over_limit += 1;
        PushOutcome::OverLimit
    }

    /// Whether the overflow towards `peer` is at or past its limit.
    pub fn over_limit(&self, peer: ShardId) -> bool {
        match self.outbound.get(usize::from(peer)) {
            Some(Some(out)) => out.overflow.len() >= self.overflow_max_messages,
            _ => false,
        }
    }

    /// Moves queued messages onto rings that have room again (FIFO).
    pub fn flush_overflow(&mut self) {
        for out in self.outbound.iter_mut().flatten() {
            while let Some(msg) = out.overflow.pop_front() {
                match out.try_push(msg) {
                    Ok(()) => out.dirty = true,
                    Err(back) => {
                        out.overflow.push_front(back);
                        break;
                    }
                }
            }
            if out.overflow.is_empty() {
                out.space_wanted.store(false, Ordering::SeqCst);
            } else {
                // Announce, then look once more: the consumer may have made
                // room between our push and the flag (it checks the flag
                // after popping).
                out.space_wanted.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
            }
        }
    }

    /// Wakes every peer pushed to since the last call (once per batch).
    pub fn publish_wakeups(&mut self) {
        for (peer, out) in self.outbound.iter_mut().enumerate() {
            if let Some(out) = out {
                if out.dirty {
                    out.dirty = false;
                    self.signals[peer].wake();
                }
            }
        }
    }

    /// Wakes every peer whose ring we have messages queued for (a safety net
    /// against a lost wake-up while a publisher waits; `shard` docs).
    pub fn wake_overflow_peers(&self) {
        for (peer, out) in self.outbound.iter().enumerate() {
            if let Some(out) = out {
                if !out.overflow.is_empty() {
                    self.signals[peer].wake();
                }
            }
        }
    }

    /// Pops up to `budget` messages from the inbound rings into `batch`,
    /// round-robin across peers; wakes producers waiting for room.
    /// Returns how many were popped.
    pub fn pop_batch(&mut self, budget: usize, batch: &mut Vec<RingMsg>) -> usize {
        let n = self.inbound.len();
        let mut popped = 0;
        for k in 0..n {
            let i = (self.next_inbound + k) % n;
            let inbound = &mut self.inbound[i];
            let mut from_this = 0;
            while popped < budget {
                match inbound.consumer.pop() {
                    Ok(Slot::Msg(msg)) => {
                        batch.push(msg);
                        popped += 1;
                        from_this += 1;
                    }
                    // The old ring is drained: the rest is on the new one
                    // (the old one is freed here).
                    Ok(Slot::Next(next)) => inbound.consumer = next,
                    Err(_) => break,
                }
            }
            if from_this > 0 {
                fence(Ordering::SeqCst);
                if inbound.space_wanted.swap(false, Ordering::SeqCst) {
                    self.signals[usize::from(inbound.peer)].wake();
                }
            }
            if popped >= budget {
                break;
            }
        }
        if n > 0 {
            self.next_inbound = (self.next_inbound + 1) % n;
        }
        popped
    }

    /// Whether the ring task has ring work right now: an inbound message,
    /// or a queued message that fits on its ring.
    pub fn has_work(&self) -> bool {
        self.inbound.iter().any(|i| !i.consumer.is_empty())
            || self
                .outbound
                .iter()
                .flatten()
                .any(|o| !o.overflow.is_empty() && !o.producer.is_full())
    }

    /// The state of every outbound ring of this shard, by peer (`/metrics`).
    pub fn rings(&self) -> impl Iterator<Item = RingStats> + '_ {
        self.outbound.iter().enumerate().filter_map(|(peer, out)| {
            let out = out.as_ref()?;
            let capacity_slots = out.producer.buffer().capacity();
            Some(RingStats {
                peer: peer as ShardId,
                occupied_slots: capacity_slots.saturating_sub(out.producer.slots()),
                capacity_slots,
                overflow_messages: out.overflow.len(),
                overflowed: out.overflowed,
                over_limit: out.over_limit,
            })
        })
    }

    /// Puts every empty ring that grew back at its initial size, so that
    /// the memory a burst made resident is freed (module docs: rings that
    /// grow). For the shard's memory release, after closes. Wakes the peers
    /// it switched (a peer frees the old ring when it takes the new one), so
    /// no caller has to remember to.
    pub fn shrink_memory(&mut self) {
        for out in self.outbound.iter_mut().flatten() {
            let initial = out.capacity_max.min(RING_INITIAL_SLOTS);
            let capacity = out.producer.buffer().capacity();
            if capacity > initial && out.overflow.is_empty() && out.producer.slots() == capacity {
                out.switch_ring(initial);
            }
        }
        self.publish_wakeups();
    }

    /// Counters.
    pub fn stats(&self) -> MeshStats {
        let mut s = MeshStats::default();
        for out in self.outbound.iter().flatten() {
            s.pushes_over_limit += out.over_limit;
            s.overflow_messages += out.overflow.len();
        }
        s
    }
}

#[cfg(test)]
mod tests;
