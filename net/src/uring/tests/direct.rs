//! Direct descriptors (`uring::direct`): accepted into the ring's table,
//! echo and close by slot, the slot reused after its close, detach through
//! a process descriptor and adoption back into the table, the table-full
//! and table-off fallbacks to process descriptors.

use std::io::Write;

use super::Rig;
use crate::conn::CloseReason;
use crate::uring::direct::FdRef;
use crate::uring::{Event, Socket, UringLimits};

/// How many of the driven connections are in the direct table.
fn direct_conns(rig: &Rig) -> usize {
    rig.driver
        .slots
        .iter()
        .filter_map(|s| s.conn.as_ref())
        .filter(|c| matches!(c.fd.get(), FdRef::Direct(_)))
        .count()
}

/// Slots held by connections (not reserved by an accept in flight).
fn slots_held(rig: &Rig) -> Option<u32> {
    let table = rig.driver.direct.as_ref()?;
    Some(table.in_use() - rig.driver.accept_reserved())
}

fn rig_with_table(slots: u32) -> Option<Rig> {
    let rig = Rig::with_limits(UringLimits {
        direct_fds: slots,
        ..UringLimits::default()
    })?;
    if slots > 0 && rig.driver.direct_slots() == 0 {
        // A kernel without the opcodes (before 6.8): the loop runs on
        // process descriptors; CI's kernel has them.
        let error = rig.driver.direct_error().map(|e| e.to_string());
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "direct descriptors unavailable on CI: {error:?}"
        );
        eprintln!("SKIPPED: direct descriptors unavailable: {error:?}");
        return None;
    }
    Some(rig)
}

#[test]
fn connections_are_accepted_into_the_table_echo_and_give_their_slot_back() {
    let Some(mut rig) = rig_with_table(64) else {
        return;
    };
    let (mut a, echo_a) = rig.connect();
    let (mut b, _echo_b) = rig.connect();
    assert_eq!(direct_conns(&rig), 2, "both accepted into the table");
    assert_eq!(slots_held(&rig), Some(2));
    let touched = rig.driver.direct.as_ref().map(|t| t.next);
    a.write_all(b"one\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    b.write_all(b"two\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(rig.read(&mut a, 4).0, b"one\n");
    assert_eq!(rig.read(&mut b, 4).0, b"two\n");
    // A local close by slot: flush, FIN (shutdown in the ring), report.
    a.write_all(b"bye\nclose\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let (got, eof) = rig.read(&mut a, usize::MAX);
    assert_eq!(got, b"bye\n");
    assert!(eof, "FIN after the last byte");
    drop(a);
    rig.turn_until("slot closed and free", |r| {
        r.driver.connections() == 1 && slots_held(r) == Some(1)
    });
    assert_eq!(*echo_a.closed.borrow(), vec![CloseReason::Local]);
    // The peer's close frees the other one; a new connection reuses a slot.
    drop(b);
    rig.turn_until("both free", |r| r.driver.connections() == 0);
    let (mut c, _echo_c) = rig.connect();
    c.write_all(b"three\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(rig.read(&mut c, 6).0, b"three\n");
    assert_eq!(slots_held(&rig), Some(1));
    let now_touched = rig.driver.direct.as_ref().map(|t| t.next);
    assert_eq!(now_touched, touched, "freed slots are reused");
}

#[test]
fn a_direct_connection_detaches_with_a_process_descriptor_and_is_adopted_back() {
    let Some(mut rig) = rig_with_table(64) else {
        return;
    };
    // What the shard loop does for `nodelay = true`: a direct socket has
    // no descriptor for setsockopt, and Linux copies it from the listener.
    socket2::SockRef::from(&rig.listener)
        .set_nodelay(true)
        .unwrap_or_else(|e| panic!("TCP_NODELAY: {e}"));
    let (mut client, echo) = rig.connect();
    assert_eq!(direct_conns(&rig), 1);
    let (fd, bytes, _) = rig.detach(&mut client, &echo, b"CONNECT\n");
    // The slot it had is closed and free again.
    rig.turn_until("slot free", |r| slots_held(r) == Some(0));
    // A real descriptor: the socket answers getpeername, and it has the
    // listener's TCP_NODELAY.
    assert!(
        Socket::Plain(fd.try_clone().unwrap_or_else(|e| panic!("dup: {e}")))
            .peer_addr()
            .is_some()
    );
    let nodelay = socket2::SockRef::from(&fd)
        .nodelay()
        .unwrap_or_else(|e| panic!("getsockopt: {e}"));
    assert!(nodelay, "TCP_NODELAY is inherited from the listener");
    // Adopted (as from another shard): moved into the table, the process
    // descriptor closed, the bytes read go first.
    rig.adopt(fd, bytes);
    assert_eq!(
        direct_conns(&rig),
        1,
        "a handed-over socket joins the table"
    );
    let (got, _) = rig.read(&mut client, 8);
    assert_eq!(got, b"CONNECT\n");
    client
        .write_all(b"more\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(rig.read(&mut client, 5).0, b"more\n");
}

#[test]
fn a_full_table_falls_back_to_process_descriptors() {
    const CONNECTIONS: usize = 20;
    let Some(mut rig) = rig_with_table(2) else {
        return;
    };
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(rig.connect());
    }
    // Which of the accepts in flight (two with a slot) wins a connection
    // is the kernel's choice: at most two in the table, the rest on
    // process descriptors, all served.
    let direct = direct_conns(&rig);
    assert!((1..=2).contains(&direct), "{direct} in the table");
    assert_eq!(rig.driver.connections(), CONNECTIONS);
    for (i, (client, _)) in clients.iter_mut().enumerate() {
        let line = format!("line {i}\n");
        client
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
        assert_eq!(rig.read(client, line.len()).0, line.as_bytes());
    }
    drop(clients);
    rig.turn_until("all closed", |r| {
        r.driver.connections() == 0 && slots_held(r) == Some(0)
    });
}

#[test]
fn without_a_table_connections_use_process_descriptors() {
    let Some(mut rig) = rig_with_table(0) else {
        return;
    };
    assert_eq!(rig.driver.direct_slots(), 0);
    assert!(rig.driver.direct_error().is_none(), "off is not an error");
    let (mut client, _echo) = rig.connect();
    assert_eq!(direct_conns(&rig), 0);
    client
        .write_all(b"plain\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(rig.read(&mut client, 6).0, b"plain\n");
}

/// An accepted socket the loop drops without driving (the engine refused
/// it) is closed: its slot comes back.
#[test]
fn a_dropped_direct_socket_is_closed() {
    let Some(mut rig) = rig_with_table(8) else {
        return;
    };
    let addr = rig
        .listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let mut client = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
    rig.turn_until("accept", |r| {
        r.events.iter().any(|e| matches!(e, Event::Accepted { .. }))
    });
    let Some(Event::Accepted { socket, .. }) = rig.events.pop() else {
        panic!("expected an accepted socket")
    };
    assert!(socket.is_direct());
    assert_eq!(socket.peer_addr(), client.local_addr().ok());
    assert_eq!(socket.local_addr(), Some(addr));
    drop(socket);
    rig.turn_until("slot closed", |r| slots_held(r) == Some(0));
    let mut buf = [0u8; 8];
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("timeout: {e}"));
    let n = std::io::Read::read(&mut client, &mut buf).unwrap_or_else(|e| panic!("read: {e}"));
    assert_eq!(n, 0, "the client sees the close");
}

/// After a burst of closes the shard's memory release merges the free
/// list's slots into ranges (one entry each slot, then a few), and the
/// table still works: new connections take freed slots and echo.
#[test]
fn the_release_after_closes_merges_the_free_list_and_the_table_still_works() {
    let Some(mut rig) = rig_with_table(64) else {
        return;
    };
    let mut clients: Vec<_> = (0..6).map(|_| rig.connect()).collect();
    assert_eq!(slots_held(&rig), Some(6));
    let touched = rig.driver.direct.as_ref().map(|t| t.next);
    clients.clear();
    rig.turn_until("all closed", |r| r.driver.connections() == 0);
    rig.turn_until("all slots free", |r| slots_held(r) == Some(0));
    let before = rig.driver.direct.as_ref().map(|t| t.free_ranges().0);
    assert!(before >= Some(6), "one entry per closed slot: {before:?}");
    rig.driver.shrink_memory();
    let (ranges, capacity) = rig
        .driver
        .direct
        .as_ref()
        .map_or((usize::MAX, 0), |t| t.free_ranges());
    assert!(ranges <= 2, "the six slots merged: {ranges} ranges");
    assert_eq!(capacity, ranges, "no spare room kept");
    assert_eq!(slots_held(&rig), Some(0));
    let mut again: Vec<_> = (0..6).map(|_| rig.connect()).collect();
    for (i, (c, _echo)) in again.iter_mut().enumerate() {
        let line = format!("again {i}\n");
        c.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
        assert_eq!(rig.read(c, line.len()).0, line.as_bytes());
    }
    assert_eq!(slots_held(&rig), Some(6));
    let now_touched = rig.driver.direct.as_ref().map(|t| t.next);
    assert_eq!(
        now_touched, touched,
        "the freed slots are taken again, none above them"
    );
}
