//! The engine client's publish and receive paths allocate nothing in steady
//! state (after the first round has sized the buffers and tables), driven
//! the way loadgen drives it: payloads stamped into a reused buffer,
//! outgoing bytes split off and dropped after "writing", the read buffer
//! refilled in place after the events were taken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use ringmq_engine::client::{Client, ClientOptions, Event};
use ringmq_engine::codec::{
    encode, ConnAck, ConnAckProperties, Packet, Protocol, PubAck, Publish, PublishProperties, QoS,
    ReasonCode,
};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the thread under test. The test harness's own threads
    /// allocate when they like (on a loaded machine even while the
    /// measured loop runs), so only this thread's allocations count.
    /// Const-initialised without a destructor: reading it never allocates.
    static MEASURED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if MEASURED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: usize = 2_000;
const BATCH: usize = 32;

fn server_bytes(packets: &[Packet], protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in packets {
        encode(p, protocol, &mut out).unwrap();
    }
    out.to_vec()
}

fn connected(protocol: Protocol) -> Client {
    let mut c = Client::new(ClientOptions::new(protocol, "alloc"));
    c.connect(0).unwrap();
    let _ = c.outgoing().split();
    let mut b = BytesMut::from(
        &server_bytes(
            &[Packet::ConnAck(ConnAck {
                session_present: false,
                reason: ReasonCode::SUCCESS,
                properties: ConnAckProperties::default(),
            })],
            protocol,
        )[..],
    );
    let _ = c.handle_read(&mut b, 0).unwrap();
    assert!(matches!(c.poll_event(), Some(Event::Connected { .. })));
    c
}

/// Buffers reused across rounds.
struct Bufs {
    stamp: BytesMut,
    acks: BytesMut,
    rbuf: BytesMut,
}

/// One round: publish a batch at `qos`, "write" it, read the acks back
/// (encoded into a reused buffer); then read a batch of inbound messages
/// and take the events.
fn round(c: &mut Client, qos: QoS, topic: &Bytes, inbound: &[u8], b: &mut Bufs, seq: &mut u64) {
    let protocol = c.protocol();
    let mut ids = [0u16; BATCH];
    for id in ids.iter_mut() {
        b.stamp.reserve(64);
        b.stamp.put_u64_le(*seq);
        b.stamp.put_bytes(0, 56);
        let payload = b.stamp.split().freeze();
        *id = c
            .publish(
                topic.clone(),
                payload,
                qos,
                false,
                PublishProperties::default(),
            )
            .unwrap()
            .unwrap_or(0);
        *seq += 1;
    }
    drop(c.outgoing().split().freeze());
    if qos != QoS::AtMostOnce {
        b.acks.clear();
        for id in ids {
            encode(&Packet::PubAck(PubAck::new(id)), protocol, &mut b.acks).unwrap();
        }
        b.rbuf.extend_from_slice(&b.acks);
        let _ = c.handle_read(&mut b.rbuf, 1).unwrap();
    }
    b.rbuf.extend_from_slice(inbound);
    let _ = c.handle_read(&mut b.rbuf, 1).unwrap();
    while let Some(e) = c.poll_event() {
        assert!(
            matches!(e, Event::PubAcked { .. } | Event::Message(_)),
            "{e:?}"
        );
    }
    assert_eq!(c.inflight(), 0);
    // Inbound QoS 1 produced PUBACKs: "written".
    drop(c.outgoing().split().freeze());
}

#[test]
fn publish_and_receive_paths_do_not_allocate() {
    MEASURED.with(|m| m.set(true));
    // The counter sees allocations at all.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    drop(std::hint::black_box(vec![0u8; 100]));
    assert!(ALLOCATIONS.load(Ordering::Relaxed) > before);
    for protocol in [Protocol::V3_1_1, Protocol::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let mut c = connected(protocol);
            let topic = Bytes::from_static(b"bench/alloc/0");
            let mut bufs = Bufs {
                stamp: BytesMut::with_capacity(4096),
                acks: BytesMut::with_capacity(4096),
                rbuf: BytesMut::with_capacity(64 * 1024),
            };
            let inbound = server_bytes(
                &(0..BATCH)
                    .map(|i| {
                        Packet::Publish(Publish {
                            qos,
                            packet_id: if qos == QoS::AtMostOnce {
                                0
                            } else {
                                1000 + i as u16
                            },
                            topic: topic.clone(),
                            payload: Bytes::from(vec![7u8; 64]),
                            ..Publish::default()
                        })
                    })
                    .collect::<Vec<_>>(),
                protocol,
            );
            let mut seq = 0;
            // Warm-up: sizes the outgoing buffer, the event queue, the id tables.
            for _ in 0..20 {
                round(&mut c, qos, &topic, &inbound, &mut bufs, &mut seq);
            }
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for _ in 0..ROUNDS {
                round(&mut c, qos, &topic, &inbound, &mut bufs, &mut seq);
            }
            let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
            assert_eq!(
                allocations,
                0,
                "{protocol:?} QoS {qos:?}: {allocations} allocations in {} messages each way",
                ROUNDS * BATCH
            );
        }
    }
}
