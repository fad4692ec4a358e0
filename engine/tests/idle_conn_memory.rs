//! The engine's heap per idle connection stays small (issue 11: 0.5 KiB of
//! broker RSS per idle connection): 4,096 clients connect to one `Broker`
//! (CONNECT handled, CONNACK written and taken by the "runtime"), they stay
//! quiet until the broker has given back their outgoing buffers
//! (`OUT_RELEASE_AFTER_MS`, two walks), then the live heap is compared with
//! before, for MQTT 3.1.1 and MQTT 5 clients.
//! What is counted is every byte the engine allocated and still holds,
//! spare capacity of its tables included (4,096 is a power of two, so the
//! slabs are full and the hash tables at their usual load).
//!
//! The broker's RSS per idle connection (`bench/idle-memory.sh`) adds the
//! runtime's own share; see docs/benchmarks.md.

#![allow(unsafe_code)] // the counting allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use ringmq_engine::broker::{Broker, BrokerConfig, OUT_RELEASE_AFTER_MS};
use ringmq_engine::codec::{self, Connect, Disconnect, Packet, Protocol};

/// The most heap bytes the engine may keep for one idle connection
/// (its `Conn` and `Session` slab slots, the client-id table entry and
/// its place in the deadline wheel; no outgoing buffer once quiet), table
/// slack included; the ids here (19-22 bytes) live inside the session
/// record. 211 bytes at the time of writing, with connection logging on
/// (232 while the session's id was a boxed copy, 644 before issue 11's work, 448 before the
/// client-id table held session indices, 376 before `Conn` lost its copy
/// of the client id and its authentication and alias pointers, 312 while
/// the session's id was a second handle on the CONNECT's copy, which gave
/// it a 24-byte shared header for life, 280 before `Session` kept its
/// client id and user name in boxed slices and its subscriptions behind
/// one pointer).
const IDLE_CONN_HEAP_MAX_BYTES: usize = 216;

const CONNECTIONS: usize = 4096;

struct LiveBytes;

thread_local! {
    // `const` initialisers: touching them from the allocator never
    // allocates. Per thread, so the harness's threads do not count.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    // Live blocks, of any size.
    static BLOCKS: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    // `try_with`: during thread teardown the slot may be gone.
    if LIVE.try_with(|n| n.set(n.get() + bytes)).is_err() {
        // Nothing of the measuring thread happens then.
    }
}

fn count_blocks(blocks: isize) {
    if BLOCKS.try_with(|n| n.set(n.get() + blocks)).is_err() {
        // As in `add`.
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System` upholds the GlobalAlloc contract; the bookkeeping
// only touches a thread-local `Cell`, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        count_blocks(1);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        count_blocks(1);
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract; `ptr`
        // came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        count_blocks(-1);
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn blocks() -> isize {
    BLOCKS.with(Cell::get)
}

/// What `CONNECTIONS` idle clients cost a broker.
struct Measured {
    /// Heap bytes per idle connection.
    per_conn: usize,
    /// Heap bytes left after they all closed.
    after: isize,
    /// Heap blocks held per connection while all of them were closing
    /// (each sent DISCONNECT, none of the sockets closed yet).
    blocks_while_closing: isize,
}

/// Heap bytes per connection `CONNECTIONS` idle clients of `protocol`
/// (with `username` in their CONNECT, if any) leave in a broker, and what
/// stays after they all sent DISCONNECT and closed.
fn per_idle_connection(protocol: Protocol, username: Option<&str>) -> Measured {
    let mut broker = Broker::new(
        BrokerConfig {
            sys_interval_s: 0,
            // As the broker binary runs by default (`runtime.log_connections`).
            log_connections: true,
            ..BrokerConfig::default()
        },
        0,
        1,
    );
    // Client ids and CONNECT frames are made before measuring, and read
    // from one buffer, as the runtime's shard-wide read buffer.
    let frames: Vec<BytesMut> = (0..CONNECTIONS)
        .map(|i| {
            let connect = Connect {
                protocol,
                clean_start: true,
                keep_alive_s: 60,
                client_id: format!("loadgen-1234-conn-{i}").into(),
                will: None,
                username: username.map(|u| bytes::Bytes::copy_from_slice(u.as_bytes())),
                password: None,
                properties: Default::default(),
            };
            let mut buf = BytesMut::new();
            codec::encode(&Packet::Connect(Box::new(connect)), protocol, &mut buf)
                .expect("a CONNECT encodes");
            buf
        })
        .collect();
    let mut disconnect = BytesMut::new();
    let packet = Packet::Disconnect(Disconnect::default());
    codec::encode(&packet, protocol, &mut disconnect).expect("a DISCONNECT encodes");
    let mut ids = Vec::with_capacity(CONNECTIONS);
    let mut read = BytesMut::with_capacity(4096);
    // Once, so that the buffer is shared (`split_to`) before measuring.
    read.extend_from_slice(&frames[0]);
    drop(read.split_to(read.len()).freeze());
    let before = live();
    for frame in &frames {
        let conn = broker.accept(0).expect("below connections_max");
        ids.push(conn);
        read.extend_from_slice(frame);
        broker.handle_read(conn, &mut read, 0);
        assert!(read.is_empty(), "the CONNECT was read whole");
        while broker.poll_event().is_some() {}
        while broker.poll_connection_record().is_some() {}
        // The runtime takes the CONNACK (as `take_outgoing` does).
        let out = broker.take_outgoing(conn).expect("a CONNACK was written");
        drop(out); // sent
    }
    // Quiet: the first walk sees the batches just taken, the second
    // releases the buffers; then nothing is due before keep-alive.
    let quiet_ms = 2 * OUT_RELEASE_AFTER_MS;
    broker.handle_timeout(OUT_RELEASE_AFTER_MS);
    broker.handle_timeout(quiet_ms);
    assert_eq!(
        broker.poll_timeout(),
        Some(90_000),
        "idle connections wake the broker only for their keep-alive (1.5 x 60 s)"
    );
    let held = live() - before;
    // Every client leaves with a DISCONNECT; the runtime closes the
    // sockets afterwards (after flushing), as a burst of them comes.
    let blocks_before = blocks();
    for &conn in &ids {
        read.extend_from_slice(&disconnect);
        broker.handle_read(conn, &mut read, quiet_ms);
        while broker.poll_event().is_some() {}
        while broker.poll_connection_record().is_some() {}
    }
    let blocks_while_closing = (blocks() - blocks_before) / CONNECTIONS as isize;
    for &conn in &ids {
        broker.handle_closed(conn, quiet_ms);
        while broker.poll_event().is_some() {}
        while broker.poll_connection_record().is_some() {}
    }
    broker.shrink_memory();
    Measured {
        per_conn: held as usize / CONNECTIONS,
        after: live() - before,
        blocks_while_closing,
    }
}

fn check(protocol: Protocol) {
    let Measured {
        per_conn,
        after,
        blocks_while_closing,
    } = per_idle_connection(protocol, None);
    eprintln!("{protocol:?}: {per_conn} heap bytes per idle connection, {after} after all closed");
    assert!(
        per_conn <= IDLE_CONN_HEAP_MAX_BYTES,
        "{per_conn} bytes per idle {protocol:?} connection (at most {IDLE_CONN_HEAP_MAX_BYTES})"
    );
    // Every byte allocated for the connections is given back (the
    // deadline wheel kept its root node, 368 bytes, until it was let go
    // of once empty).
    assert_eq!(after, 0, "bytes stayed after every connection closed");
    // A closing connection keeps its close cause and its client id (for
    // its close record) in one block, its rare part: the id inside it, not
    // a block of its own (a burst of closes made thousands of those at
    // once, and they extended the shard's first page of their size for
    // good; docs/benchmarks.md, "Memory given back after 100,000 closes").
    assert!(
        blocks_while_closing <= 1,
        "{blocks_while_closing} heap blocks per connection while {CONNECTIONS} were closing"
    );
}

#[test]
fn an_idle_v3_1_1_connection_keeps_little_engine_heap() {
    check(Protocol::V3_1_1);
}

#[test]
fn an_idle_v5_connection_keeps_little_engine_heap() {
    check(Protocol::V5);
}

/// A user name costs an idle connection its bytes and no more: the
/// session keeps its own copy, and the connection log's record gets
/// another (a second handle on the session's `Bytes` would give it a
/// shared header for life: 24 bytes more).
#[test]
fn a_user_name_costs_an_idle_connection_only_its_bytes() {
    let name = "device-user";
    let without = per_idle_connection(Protocol::V3_1_1, None).per_conn;
    let Measured {
        per_conn: with,
        after,
        ..
    } = per_idle_connection(Protocol::V3_1_1, Some(name));
    eprintln!("with a user name: {with} heap bytes per idle connection ({without} without)");
    assert!(
        with <= without + name.len(),
        "{with} bytes per idle connection with a {}-byte user name, {without} without",
        name.len()
    );
    assert_eq!(after, 0, "bytes stayed after every connection closed");
}
