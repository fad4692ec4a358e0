//! Connection deadlines (CONNECT timeout, keep-alive) in the broker's
//! deadline wheel: exact to 1.5 x keep-alive (never before, at most one
//! tick after), one entry per connection and none left after it closes,
//! and one wake-up of the shard for all connections due in a tick.
//! Keep-alive itself is covered by broker_session.rs and the conformance
//! transcripts (3.1.1 [MQTT-3.1.2-24], 5.0 [MQTT-3.1.2-22]).

mod sim;

use ringmq_engine::broker::{BrokerConfig, DEADLINE_TICK_MS};
use ringmq_engine::codec::{Packet, Protocol};
use sim::*;

fn connect_ka(sim: &mut Sim, v: Protocol, id: &str, keep_alive_s: u16) -> C {
    let mut c = connect_packet(v, id, true);
    c.keep_alive_s = keep_alive_s;
    sim.connect_with(c).0
}

/// The deadline is exact to the tick: a connection that connected at an
/// odd millisecond is open 1 ms before 1.5 x keep-alive, closed no later
/// than one tick after it.
#[test]
fn keep_alive_deadline_is_never_early_and_at_most_one_tick_late() {
    for v in [V3, V5] {
        for offset in [0, 1, 37, 99] {
            let mut sim = Sim::new(1);
            sim.advance(offset);
            let a = connect_ka(&mut sim, v, "ka", 4);
            sim.advance(6_000 - 1);
            assert!(!sim.is_closed(a), "offset {offset}: not before 6 s");
            sim.advance(DEADLINE_TICK_MS);
            assert!(sim.is_closed(a), "offset {offset}: within a tick of 6 s");
        }
    }
}

/// One entry per connection in the wheel, whatever its traffic; none for
/// keep-alive 0 once connected; none left after a connection closed, by
/// the client, by the broker or by a keep-alive timeout.
#[test]
fn one_wheel_entry_per_connection_and_none_after_close() {
    let mut sim = Sim::new(1);
    let mut conns = Vec::new();
    for i in 0..100 {
        conns.push(connect_ka(&mut sim, V3, &format!("c{i}"), 60));
    }
    let silent = connect_ka(&mut sim, V5, "silent", 0);
    let connecting = sim.open(0, V3);
    assert_eq!(
        sim.brokers[0].scheduled_deadlines(),
        101,
        "100 + the CONNECT timeout"
    );
    for _ in 0..10 {
        for &c in &conns {
            assert!(sim.ping_ok(c));
        }
        sim.advance(30_000);
    }
    assert_eq!(
        sim.brokers[0].scheduled_deadlines(),
        100,
        "pings add no entries"
    );
    assert!(sim.is_closed(connecting), "CONNECT timeout");
    for &c in &conns[..50] {
        sim.drop_conn(c);
    }
    for &c in &conns[50..60] {
        sim.disconnect(c);
    }
    assert_eq!(sim.brokers[0].scheduled_deadlines(), 40);
    sim.advance(90_000);
    for &c in &conns[60..] {
        assert!(sim.is_closed(c), "keep-alive timeout");
    }
    assert_eq!(sim.brokers[0].scheduled_deadlines(), 0);
    assert!(!sim.is_closed(silent), "keep-alive 0 is never cut");
}

/// Connections that connected spread over one second and then stay
/// silent all time out within one second and one tick of each other, on
/// at most one wake-up per tick: the broker does not wake per connection.
#[test]
fn deadlines_due_in_one_tick_share_one_wakeup() {
    let no_sys = BrokerConfig {
        sys_interval_s: 0,
        ..base()
    };
    let mut sim = Sim::with_config(1, no_sys);
    let mut conns = Vec::new();
    for i in 0..1_000 {
        conns.push(connect_ka(&mut sim, V3, &format!("w{i}"), 10));
        sim.now_ms += 1;
    }
    // Drive the clock by hand, counting the broker's wake-ups.
    let mut wakeups = 0;
    let end = sim.now_ms + 20_000;
    while let Some(due) = sim.brokers[0].poll_timeout().filter(|&d| d <= end) {
        sim.now_ms = sim.now_ms.max(due);
        let now = sim.now_ms;
        sim.brokers[0].handle_timeout(now);
        sim.pump();
        wakeups += 1;
    }
    for &c in &conns {
        assert!(sim.is_closed(c));
    }
    assert_eq!(sim.brokers[0].scheduled_deadlines(), 0);
    // 1,000 deadlines over one second: at most one wake-up per tick of it
    // (plus the first tick boundary), not 1,000.
    let ticks = 1_000 / DEADLINE_TICK_MS as usize + 2;
    assert!(wakeups <= ticks, "{wakeups} wake-ups for 1,000 deadlines");
}

/// A connection that keeps talking is moved at most once per grace
/// period: with pings every 10 s and keep-alive 10 s, a minute of traffic
/// wakes the broker for it a handful of times, and it is never cut.
#[test]
fn a_talking_connection_is_checked_lazily() {
    let mut sim = Sim::new(1);
    let a = connect_ka(&mut sim, V5, "talk", 10);
    let mut wakeups = 0;
    for _ in 0..6 {
        let target = sim.now_ms + 10_000;
        while let Some(due) = sim.brokers[0].poll_timeout().filter(|&d| d <= target) {
            sim.now_ms = sim.now_ms.max(due);
            let now = sim.now_ms;
            sim.brokers[0].handle_timeout(now);
            sim.pump();
            wakeups += 1;
        }
        sim.now_ms = target;
        sim.send(a, Packet::PingReq);
        assert!(!sim.is_closed(a));
    }
    // What the wheel needs: one check per 15 s grace at most (4 in a
    // minute), plus the `$SYS` ticks (every 10 s by default).
    let sys_ticks = 60_000 / 10_000 + 1;
    assert!(wakeups <= 4 + sys_ticks, "{wakeups} wake-ups");
    assert!(sim.ping_ok(a));
}
