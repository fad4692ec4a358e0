//! Heap bytes the engine keeps per idle connection: 10 000 MQTT 3.1.1
//! clients connect to one `Broker` (CONNECT handled, CONNACK taken), then
//! the live heap is compared with before. Complements bench/idle-memory.sh,
//! which measures the whole broker's RSS.
//!
//! `cargo run --release -p ringmq-bench --example engine_conn_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::BytesMut;
use ringmq_engine::broker::{Broker, BrokerConfig};
use ringmq_engine::codec::{self, Connect, Packet, Protocol};

struct LiveBytes;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// only addition is an atomic byte counter.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds GlobalAlloc::alloc's contract for `layout`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was returned by System.alloc for this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

const CONNECTIONS: usize = 10_000;

fn main() {
    let mut broker = Broker::new(BrokerConfig::default(), 0, 1);
    let mut ids = Vec::with_capacity(CONNECTIONS);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for i in 0..CONNECTIONS {
        let conn = broker.accept(0).expect("below connections_max");
        ids.push(conn);
        let connect = Connect {
            protocol: Protocol::V3_1_1,
            clean_start: true,
            keep_alive_s: 60,
            client_id: format!("loadgen-1234-conn-{i}").into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        let mut buf = BytesMut::new();
        codec::encode(
            &Packet::Connect(Box::new(connect)),
            Protocol::V3_1_1,
            &mut buf,
        )
        .expect("encode");
        broker.handle_read(conn, &mut buf, 0);
        drop(buf);
        while broker.poll_event().is_some() {}
        if let Some(out) = broker.outgoing(conn) {
            out.clear();
        }
    }
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let per_conn = (after - before) / CONNECTIONS as isize;
    println!("engine: {per_conn} heap bytes live per idle MQTT 3.1.1 connection ({CONNECTIONS} connections)");
    // Every socket closes (no DISCONNECT), then the runtime's periodic
    // release: what the engine still holds is what it failed to give back.
    for &conn in &ids {
        broker.handle_closed(conn, 1);
        while broker.poll_event().is_some() {}
    }
    broker.shrink_memory();
    let closed = LIVE_BYTES.load(Ordering::Relaxed);
    println!(
        "engine: {} heap bytes live more than before they connected, after they all closed and shrink_memory",
        closed - before
    );
}
