use super::*;
use bytes::Bytes;
use ringmq_engine::codec::{Publish, PublishProperties, QoS};
use std::sync::atomic::AtomicUsize;
use std::task::Wake;
use std::time::{Duration, Instant};

fn publish(qos: QoS, seq: u32) -> RingMsg {
    RingMsg::Engine(ShardMessage::Publish {
        publish: Publish {
            dup: false,
            qos,
            retain: false,
            topic: Bytes::from_static(b"t"),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
            payload: Bytes::copy_from_slice(&seq.to_be_bytes()),
            properties: PublishProperties::default(),
        },
        received_at_ms: u64::from(seq),
        origin: 0,
        barrier: 0,
    })
}

fn seq_of(msg: &RingMsg) -> u32 {
    match msg {
        RingMsg::Engine(ShardMessage::Publish { received_at_ms, .. }) => *received_at_ms as u32,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn full_ring_then_overflow_then_policy() {
    // ring of 2 slots, overflow of 3 messages.
    let (mut meshes, _signals) = build(2, 2, 3);
    let mut m0 = meshes.remove(0);
    let push = |m: &mut Mesh, msg| m.push(1, msg);
    assert_eq!(
        push(&mut m0, publish(QoS::AtMostOnce, 0)),
        PushOutcome::Sent
    );
    assert_eq!(
        push(&mut m0, publish(QoS::AtMostOnce, 1)),
        PushOutcome::Sent
    );
    for s in 2..5 {
        assert_eq!(
            push(&mut m0, publish(QoS::AtLeastOnce, s)),
            PushOutcome::Queued
        );
    }
    assert!(m0.over_limit(1));
    // At the limit (N = 3): every message is still queued, QoS 0 too (no
    // loss at a full ring), and the producer is told to pause.
    assert_eq!(
        push(&mut m0, publish(QoS::AtMostOnce, 5)),
        PushOutcome::OverLimit
    );
    assert_eq!(
        push(&mut m0, publish(QoS::AtLeastOnce, 6)),
        PushOutcome::OverLimit
    );
    assert_eq!(
        m0.stats(),
        MeshStats {
            pushes_over_limit: 2,
            overflow_messages: 5
        }
    );
}

#[test]
fn order_is_kept_across_ring_and_overflow() {
    let (mut meshes, _signals) = build(2, 4, 1000);
    let mut m1 = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    let mut m0 = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    let mut got = Vec::new();
    let mut batch = Vec::new();
    for s in 0..100 {
        assert_ne!(
            m0.push(1, publish(QoS::AtLeastOnce, s)),
            PushOutcome::InvalidPeer
        );
        if s % 7 == 0 {
            m1.pop_batch(3, &mut batch);
            got.extend(batch.drain(..).map(|m| seq_of(&m)));
            m0.flush_overflow();
        }
    }
    for _ in 0..1000 {
        m0.flush_overflow();
        if m1.pop_batch(16, &mut batch) == 0 && m0.stats().overflow_messages == 0 {
            break;
        }
        got.extend(batch.drain(..).map(|m| seq_of(&m)));
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn push_to_self_or_unknown_shard_is_refused() {
    let (mut meshes, _signals) = build(2, 4, 4);
    assert_eq!(
        meshes[0].push(0, publish(QoS::AtMostOnce, 0)),
        PushOutcome::InvalidPeer
    );
    assert_eq!(
        meshes[0].push(7, publish(QoS::AtMostOnce, 0)),
        PushOutcome::InvalidPeer
    );
}

#[test]
fn pop_batch_respects_the_budget_and_rotates() {
    let (mut meshes, _signals) = build(3, 64, 4);
    let mut m2 = meshes.pop().unwrap_or_else(|| panic!("three meshes"));
    for s in 0..10 {
        let _ = meshes[0].push(2, publish(QoS::AtMostOnce, s));
        let _ = meshes[1].push(2, publish(QoS::AtMostOnce, 100 + s));
    }
    let mut batch = Vec::new();
    assert_eq!(m2.pop_batch(4, &mut batch), 4);
    let first = batch.iter().map(seq_of).collect::<Vec<_>>();
    batch.clear();
    assert_eq!(m2.pop_batch(4, &mut batch), 4);
    let second = batch.iter().map(seq_of).collect::<Vec<_>>();
    // The second batch starts with the other peer.
    assert_ne!(first[0] / 100, second[0] / 100, "{first:?} {second:?}");
}

struct Unpark {
    thread: std::thread::Thread,
    wakes: AtomicUsize,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// A producer thread pushing in batches and a consumer thread that parks
/// only after register + re-check: every message arrives, in order, and no
/// park ever waits for its (generous) timeout, which a lost wake-up would.
#[test]
fn cross_thread_wakeups_are_not_lost() {
    wakeups_are_not_lost(RING_INITIAL_SLOTS, false);
}

/// The same while the ring grows from its initial size to 4 times it, and
/// the producer shrinks it back whenever it finds it empty.
#[test]
fn cross_thread_wakeups_are_not_lost_while_the_ring_grows_and_shrinks() {
    wakeups_are_not_lost(4 * RING_INITIAL_SLOTS, true);
}

fn wakeups_are_not_lost(capacity_slots: usize, shrink: bool) {
    const MESSAGES: u32 = 20_000;
    const PARK_TIMEOUT: Duration = Duration::from_secs(2);
    let (mut meshes, _signals) = build(2, capacity_slots, 1 << 20);
    let mut consumer = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    let mut producer = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let consumer_thread = std::thread::spawn(move || {
        let unpark = Arc::new(Unpark {
            thread: std::thread::current(),
            wakes: AtomicUsize::new(0),
        });
        let waker = Waker::from(unpark.clone());
        let mut batch = Vec::new();
        let mut next = 0u32;
        while next < MESSAGES {
            assert!(Instant::now() < deadline, "consumer stuck at {next}");
            if consumer.pop_batch(32, &mut batch) > 0 {
                for m in batch.drain(..) {
                    assert_eq!(seq_of(&m), next);
                    next += 1;
                }
                continue;
            }
            consumer.signal().register(&waker);
            if consumer.has_work() {
                continue;
            }
            let t = Instant::now();
            std::thread::park_timeout(PARK_TIMEOUT);
            assert!(t.elapsed() < PARK_TIMEOUT, "lost wake-up at message {next}");
        }
        unpark.wakes.load(Ordering::SeqCst)
    });
    let mut s = 0;
    while s < MESSAGES {
        assert!(Instant::now() < deadline, "producer stuck at {s}");
        let batch_end = (s + 1 + s % 13).min(MESSAGES);
        while s < batch_end {
            let _ = producer.push(1, publish(QoS::AtLeastOnce, s));
            s += 1;
        }
        producer.flush_overflow();
        if shrink && s % 7 == 0 {
            producer.shrink_memory();
        }
        producer.publish_wakeups();
        if s % 101 == 0 {
            std::thread::yield_now();
        }
    }
    while producer.stats().overflow_messages > 0 {
        assert!(Instant::now() < deadline, "overflow never drained");
        producer.flush_overflow();
        producer.publish_wakeups();
        std::thread::yield_now();
    }
    let wakes = consumer_thread
        .join()
        .unwrap_or_else(|_| panic!("consumer panicked"));
    // How often the consumer was woken depends on scheduling; print it.
    eprintln!("consumer woken {wakes} times");
}

/// Moves everything `from` queued for shard 1 to `to`, in batches of 16;
/// the sequence numbers in the order they arrived.
fn drain(from: &mut Mesh, to: &mut Mesh) -> Vec<u32> {
    let mut got = Vec::new();
    let mut batch = Vec::new();
    for _ in 0..1000 {
        from.flush_overflow();
        if to.pop_batch(16, &mut batch) == 0 && from.stats().overflow_messages == 0 {
            break;
        }
        got.extend(batch.drain(..).map(|m| seq_of(&m)));
    }
    got
}

#[test]
fn qos0_past_the_overflow_limit_is_queued_in_order_not_dropped() {
    // ring of 2 slots, overflow of 2 messages: a QoS 0 burst of 100 far
    // exceeds both; every message still arrives, in order.
    let (mut meshes, _signals) = build(2, 2, 2);
    let mut m1 = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    let mut m0 = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    let mut over = 0;
    for s in 0..100 {
        match m0.push(1, publish(QoS::AtMostOnce, s)) {
            PushOutcome::OverLimit => over += 1,
            PushOutcome::Sent | PushOutcome::Queued => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(over, 96, "2 on the ring, 2 queued below the limit");
    assert!(m0.over_limit(1));
    let got = drain(&mut m0, &mut m1);
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert!(!m0.over_limit(1));
}

fn capacity(m: &Mesh, peer: ShardId) -> usize {
    m.rings()
        .find(|r| r.peer == peer)
        .map_or(0, |r| r.capacity_slots)
}

/// A ring starts small, doubles when a push finds it full (one slot kept
/// for the switch) up to `ring_capacity_slots`, then overflows as before;
/// every message arrives in order across the switches, and once the
/// consumer has drained it the ring goes back to its initial size.
#[test]
fn a_ring_grows_on_demand_and_shrinks_back_when_empty() {
    let (mut meshes, _signals) = build(2, 4 * RING_INITIAL_SLOTS, 4);
    let mut m1 = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    let mut m0 = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    assert_eq!(capacity(&m0, 1), RING_INITIAL_SLOTS);
    // Nothing popped: the rings of 64, 128 and 256 slots hold 63 + 127 +
    // 256 messages (the last ring is at the full size and keeps no slot).
    let on_rings = (RING_INITIAL_SLOTS - 1) + (2 * RING_INITIAL_SLOTS - 1) + 4 * RING_INITIAL_SLOTS;
    let mut s = 0u32;
    while m0.push(1, publish(QoS::AtMostOnce, s)) == PushOutcome::Sent {
        s += 1;
    }
    assert_eq!(s as usize, on_rings, "then the overflow queue");
    assert_eq!(capacity(&m0, 1), 4 * RING_INITIAL_SLOTS);
    // Empty only once the consumer has drained it: no shrink before.
    m0.shrink_memory();
    assert_eq!(capacity(&m0, 1), 4 * RING_INITIAL_SLOTS);
    let got = drain(&mut m0, &mut m1);
    assert_eq!(got, (0..=s).collect::<Vec<_>>());
    m0.shrink_memory();
    assert_eq!(capacity(&m0, 1), RING_INITIAL_SLOTS);
    // After the switch (its message still on the old ring) messages keep
    // their order.
    for k in 0..10 {
        assert_eq!(
            m0.push(1, publish(QoS::AtMostOnce, 1000 + k)),
            PushOutcome::Sent
        );
    }
    let mut batch = Vec::new();
    assert_eq!(m1.pop_batch(64, &mut batch), 10);
    let after: Vec<u32> = batch.drain(..).map(|m| seq_of(&m)).collect();
    assert_eq!(after, (1000..1010).collect::<Vec<_>>());
    assert!(!m1.has_work());
}

/// A ring configured below the initial size never grows (nor keeps a slot
/// for a switch).
#[test]
fn a_ring_smaller_than_the_initial_size_keeps_its_size() {
    let (mut meshes, _signals) = build(2, 8, 4);
    let mut s = 0u32;
    while meshes[0].push(1, publish(QoS::AtMostOnce, s)) == PushOutcome::Sent {
        s += 1;
    }
    assert_eq!(s, 8);
    assert_eq!(capacity(&meshes[0], 1), 8);
}

/// The shrink wakes the peer itself: the peer frees the ring it replaced
/// (and the allocator page it lies in) only when it takes the new one.
#[test]
fn a_shrink_wakes_the_peer_to_take_the_new_ring() {
    let (mut meshes, _signals) = build(2, 4 * RING_INITIAL_SLOTS, 4);
    let mut m1 = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    let mut m0 = meshes.pop().unwrap_or_else(|| panic!("two meshes"));
    for s in 0..RING_INITIAL_SLOTS as u32 {
        assert_eq!(m0.push(1, publish(QoS::AtMostOnce, s)), PushOutcome::Sent);
    }
    assert_eq!(capacity(&m0, 1), 2 * RING_INITIAL_SLOTS);
    m0.publish_wakeups();
    assert_eq!(drain(&mut m0, &mut m1).len(), RING_INITIAL_SLOTS);
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    m1.signal().register(&Waker::from(unpark.clone()));
    m0.shrink_memory();
    assert_eq!(capacity(&m0, 1), RING_INITIAL_SLOTS);
    assert_eq!(
        unpark.wakes.load(Ordering::SeqCst),
        1,
        "the peer was not woken"
    );
    // The peer takes the new ring; later messages arrive on it.
    let mut batch = Vec::new();
    assert_eq!(m1.pop_batch(16, &mut batch), 0);
    assert_eq!(m0.push(1, publish(QoS::AtMostOnce, 7)), PushOutcome::Sent);
    assert_eq!(drain(&mut m0, &mut m1), vec![7]);
}
