//! `--rx-thread`: every subscriber on one dedicated receiving thread that
//! timestamps arrivals in the kernel, so the measured latency does not
//! queue behind loadgen's own work.
//!
//! With one runtime thread per core, a fan-out of 100 subscribers makes
//! loadgen process 100 reads one after another for every publish (about
//! 2.7 µs each on loopback, mostly the kernel's receive path), and the
//! publisher that shares the thread sends late; both were part of the
//! latency. Here the publishers keep the worker threads and this thread
//! owns the subscribers' sockets directly (blocking setup, then epoll with
//! up to [`EVENTS_PER_WAIT`] ready sockets per wake-up and reads of up to
//! [`READ_CHUNK_BYTES`] parsing every packet they hold). Each socket has
//! `SO_TIMESTAMPNS`: a read's arrival time is the kernel's receive time of
//! the last segment it returned (so never earlier than any of its
//! messages arrived), not when this thread got to it; how long the thread
//! took to get there is the receive backlog (self-check). Under SCHED_FIFO
//! the thread runs one priority below the publishers, which then preempt it.
//!
//! Plain TCP only (TLS and WebSocket records have no per-message kernel
//! time); the engine's client does the protocol (CONNECT, SUBSCRIBE,
//! PUBACK / PUBREC for QoS 1 / 2, PINGREQ).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ringmq_engine::client::{Client, Event};
use ringmq_engine::codec::ReasonCode;

use crate::plan::{Plan, Scenario, Shared, ThreadResult, NOT_STARTED, STOP_POLL_MS};
use crate::series::Series;
use crate::stats::{Live, Recorder};
use crate::subscribe::subscribe_lists;
use crate::tracker::{SeqTracker, Trackers};
use ringmq_net::rxsock::{self, Epoll};

/// Bytes one read may return (many PUBLISH packets when the broker batched).
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Ready sockets taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;
/// How long a setup step (connect, CONNACK, SUBACK) may take, in ms.
const SETUP_STEP_TIMEOUT_MS: u64 = 10_000;
/// How often the clients' keep-alive deadlines are checked, in ms.
const TIMER_CHECK_MS: u64 = 100;
/// How long the DISCONNECTs at the end may take to write, in ms.
const CLOSE_TIMEOUT_MS: u64 = 3_000;

/// One subscriber owned by the thread.
struct Sub {
    index: u32,
    sock: TcpStream,
    client: Client,
    buf: BytesMut,
    trackers: Trackers,
    /// MQTT bytes the client consumed.
    mqtt_bytes_in: u64,
    /// Reads that came without a kernel receive time (dated when read).
    unstamped_reads: u64,
    /// Registered for EPOLLOUT too (outgoing bytes waiting).
    want_write: bool,
    closed: bool,
}

/// The thread's entry point (thread index `t`, after the workers).
pub fn rx_thread_main(t: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> Option<ThreadResult> {
    if let Some(tid) = crate::selfcheck::current_thread_id() {
        shared.tids[t].store(tid, Ordering::Relaxed);
    }
    let result = run(t, &plan, &shared);
    shared.threads_done.fetch_add(1, Ordering::SeqCst);
    result
}

fn run(t: usize, plan: &Plan, shared: &Shared) -> Option<ThreadResult> {
    let setup = (|| {
        pin_and_prioritize(t, plan)?;
        let subs = (0..plan.subs)
            .map(|i| connect_sub(plan, shared, i))
            .collect::<Result<Vec<_>, String>>()?;
        let epoll = Epoll::new().map_err(|e| format!("rx thread: epoll: {e}"))?;
        for (slot, s) in subs.iter().enumerate() {
            s.sock
                .set_nonblocking(true)
                .map_err(|e| format!("subscriber {}: {e}", s.index))?;
            epoll
                .add(s.sock.as_raw_fd(), slot as u64)
                .map_err(|e| format!("subscriber {}: epoll: {e}", s.index))?;
        }
        Ok((subs, epoll))
    })();
    let (mut subs, epoll) = match setup {
        Ok(v) => v,
        Err(e) => {
            shared.fail_setup(e);
            shared.ready.fetch_add(1, Ordering::SeqCst);
            return None;
        }
    };
    let mut series = Series::new(0, plan.duration_ns);
    shared.ready.fetch_add(1, Ordering::SeqCst);
    let start_ns = loop {
        if shared.stopped() {
            return None;
        }
        let s = shared.start_ns();
        if s != NOT_STARTED {
            break s;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    series.set_start(start_ns + plan.warmup_ns);
    let mut rec = Recorder::with_series(series);
    receive(t, plan, shared, &mut subs, &epoll, start_ns, &mut rec);
    close_all(&mut subs, &shared.live[t], &mut rec);
    rec.mqtt_bytes_received = subs.iter().map(|s| s.mqtt_bytes_in).sum();
    let unstamped: u64 = subs.iter().map(|s| s.unstamped_reads).sum();
    if unstamped > 0 {
        rec.error(&shared.live[t], || {
            format!("{unstamped} reads came without a kernel receive time (SO_TIMESTAMPNS): dated when read")
        });
    }
    let trackers = subs
        .into_iter()
        .flat_map(|s| {
            let index = s.index;
            s.trackers.into_iter().map(move |(p, tr)| (index, p, tr))
        })
        .collect();
    Some(ThreadResult {
        recorder: rec,
        trackers,
    })
}

/// Pins the thread like a worker; under SCHED_FIFO / SCHED_RR one priority
/// below the publishers' threads.
fn pin_and_prioritize(t: usize, plan: &Plan) -> Result<(), String> {
    if let Some(cpu) = (!plan.pin.is_empty()).then(|| plan.pin[t % plan.pin.len()]) {
        monoio::utils::bind_to_cpu_set([cpu])
            .map_err(|e| format!("rx thread: cannot pin to CPU {cpu}: {e}"))?;
    }
    ringmq_net::rxsock::step_down_realtime_priority()
        .map_err(|e| format!("rx thread: lowering its real-time priority: {e}"))?;
    Ok(())
}

/// Connects, subscribes (blocking, bounded) and enables kernel receive
/// timestamps on subscriber `index`.
fn connect_sub(plan: &Plan, shared: &Shared, index: u32) -> Result<Sub, String> {
    let err = |e: &dyn std::fmt::Display| format!("sub {index} ({}): {e}", plan.addr);
    let step = Duration::from_millis(SETUP_STEP_TIMEOUT_MS);
    let sock = TcpStream::connect_timeout(&plan.addr, step).map_err(|e| err(&e))?;
    sock.set_nodelay(true).map_err(|e| err(&e))?;
    sock.set_read_timeout(Some(step)).map_err(|e| err(&e))?;
    sock.set_write_timeout(Some(step)).map_err(|e| err(&e))?;
    rxsock::enable_rx_timestamps(sock.as_raw_fd()).map_err(|e| err(&e))?;
    let mut sub = Sub {
        index,
        sock,
        client: Client::new(plan.client_options("sub", u64::from(index))),
        buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
        trackers: Trackers::default(),
        mqtt_bytes_in: 0,
        unstamped_reads: 0,
        want_write: false,
        closed: false,
    };
    for p in (0..plan.pubs).filter(|p| plan.wired(index, *p)) {
        sub.trackers.insert(p, SeqTracker::default());
    }
    let clock = shared.clock;
    sub.client.connect(clock.now_ms()).map_err(|e| err(&e))?;
    sub.exchange(shared, |e| match e {
        Event::Connected { .. } => Some(Ok(())),
        Event::Disconnected(r) => Some(Err(format!("CONNECT refused or closed: {r:?}"))),
        _ => None,
    })
    .map_err(|e| err(&e))?;
    let filters = plan.filters_of(index);
    for (_, list) in subscribe_lists(&filters, plan.qos) {
        let id = sub.client.subscribe(list).map_err(|e| err(&e))?;
        sub.exchange(shared, |e| match e {
            Event::SubAck(ack) if ack.packet_id == id => {
                Some(match ack.reasons.iter().find(|r| r.is_error()) {
                    Some(r) => Err(format!("subscription refused (reason 0x{:02X})", r.0)),
                    None => Ok(()),
                })
            }
            Event::Disconnected(r) => Some(Err(format!("disconnected while subscribing: {r:?}"))),
            _ => None,
        })
        .map_err(|e| err(&e))?;
    }
    Ok(sub)
}

impl Sub {
    /// Setup (blocking socket): writes what the client queued, then reads
    /// until `done` decides on an event.
    fn exchange(
        &mut self,
        shared: &Shared,
        mut done: impl FnMut(&Event) -> Option<Result<(), String>>,
    ) -> Result<(), String> {
        let out = self.client.outgoing().split();
        self.sock.write_all(&out).map_err(|e| e.to_string())?;
        loop {
            while let Some(event) = self.client.poll_event() {
                if let Some(r) = done(&event) {
                    return r;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.sock.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let before = self.buf.len();
            let read = self
                .client
                .handle_read(&mut self.buf, shared.clock.now_ms());
            self.mqtt_bytes_in += before.saturating_sub(self.buf.len()) as u64;
            if let Err(e) = read {
                return Err(e.to_string());
            }
            let out = self.client.outgoing().split();
            self.sock.write_all(&out).map_err(|e| e.to_string())?;
        }
    }
}

/// Takes the subscribers' messages until the run stops.
fn receive(
    t: usize,
    plan: &Plan,
    shared: &Shared,
    subs: &mut [Sub],
    epoll: &Epoll,
    start_ns: u64,
    rec: &mut Recorder,
) {
    let live = &shared.live[t];
    let clock = shared.clock;
    let window = Window {
        start_ns: start_ns + plan.warmup_ns,
        end_ns: start_ns + plan.warmup_ns + plan.duration_ns,
        from_origin: plan.scenario == Scenario::PubSub,
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
    let mut next_timer_ms = clock.now_ms() + TIMER_CHECK_MS;
    let timeout_ms = i32::try_from(STOP_POLL_MS).unwrap_or(i32::MAX);
    while !shared.stopped() && subs.iter().any(|s| !s.closed) {
        let ready = match epoll.wait(&mut events, timeout_ms) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                rec.error(live, || format!("rx thread: epoll_wait: {e}"));
                break;
            }
        };
        let offset_ns = rxsock::realtime_offset_ns(clock);
        let mut received = 0u64;
        for ev in events.iter().take(ready) {
            let (token, flags) = (ev.u64, ev.events);
            let Some(sub) = usize::try_from(token).ok().and_then(|i| subs.get_mut(i)) else {
                continue;
            };
            if sub.closed {
                continue;
            }
            if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                != 0
            {
                received += sub.read_ready(shared, live, rec, &window, offset_ns);
            }
            sub.flush(epoll, token, live, rec);
        }
        Live::add(&live.received, received);
        let now_ms = clock.now_ms();
        if now_ms >= next_timer_ms {
            next_timer_ms = now_ms + TIMER_CHECK_MS;
            for (slot, sub) in subs.iter_mut().enumerate().filter(|(_, s)| !s.closed) {
                if sub.client.poll_timeout().is_some_and(|d| d <= now_ms) {
                    sub.client.handle_timeout(now_ms);
                    let now_ns = clock.now_ns();
                    sub.take_events(shared, live, rec, &window, now_ns, now_ns);
                    sub.flush(epoll, slot as u64, live, rec);
                }
            }
        }
    }
}

/// The measured window and how messages are measured (see
/// `worker::record_message`).
struct Window {
    start_ns: u64,
    end_ns: u64,
    from_origin: bool,
}

impl Sub {
    /// Reads everything the socket holds; returns the messages taken.
    fn read_ready(
        &mut self,
        shared: &Shared,
        live: &Live,
        rec: &mut Recorder,
        window: &Window,
        offset_ns: i128,
    ) -> u64 {
        let clock = shared.clock;
        let mut taken = 0;
        loop {
            if self.buf.capacity() - self.buf.len() < READ_CHUNK_BYTES / 2 {
                self.buf.reserve(READ_CHUNK_BYTES);
            }
            let room = self.buf.capacity() - self.buf.len();
            match rxsock::recv_timestamped(self.sock.as_raw_fd(), &mut self.buf) {
                Ok((0, _)) => {
                    let now_ns = clock.now_ns();
                    self.client.handle_close(now_ns / 1_000_000);
                    taken += self.take_events(shared, live, rec, window, now_ns, now_ns);
                    self.closed = true;
                    return taken;
                }
                Ok((n, stamp)) => {
                    let now_ns = clock.now_ns();
                    // Without a kernel stamp: when this thread read it
                    // (counted, and reported as an error at the end).
                    self.unstamped_reads += u64::from(stamp.is_none());
                    let arrived_ns =
                        stamp.map_or(now_ns, |s| rxsock::to_clock_ns(s, offset_ns, now_ns));
                    let before = self.buf.len();
                    let read = self.client.handle_read(&mut self.buf, now_ns / 1_000_000);
                    self.mqtt_bytes_in += before.saturating_sub(self.buf.len()) as u64;
                    // A protocol error is queued as events too; the client
                    // has ended and `flush` closes.
                    debug_assert!(read.is_ok() || self.client.is_disconnected());
                    taken += self.take_events(shared, live, rec, window, arrived_ns, now_ns);
                    if n < room || self.client.is_disconnected() {
                        // Drained (level-triggered epoll reports more).
                        return taken;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return taken,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !shared.stopped() {
                        rec.error(live, || format!("subscriber {}: read: {e}", self.index));
                    }
                    let now_ns = clock.now_ns();
                    self.client.handle_close(now_ns / 1_000_000);
                    taken += self.take_events(shared, live, rec, window, now_ns, now_ns);
                    self.closed = true;
                    return taken;
                }
            }
        }
    }

    /// Takes the client's events: messages (arrived at `arrived_ns`, taken
    /// at `now_ns`) are recorded; returns how many.
    fn take_events(
        &mut self,
        shared: &Shared,
        live: &Live,
        rec: &mut Recorder,
        window: &Window,
        arrived_ns: u64,
        now_ns: u64,
    ) -> u64 {
        let mut taken = 0;
        let in_window = arrived_ns >= window.start_ns && arrived_ns < window.end_ns;
        while let Some(event) = self.client.poll_event() {
            match event {
                Event::Message(m) => {
                    taken += 1;
                    if in_window {
                        let backlog_ns = now_ns.saturating_sub(arrived_ns);
                        rec.recv_backlog.saturating_record(backlog_ns.max(1));
                    }
                    let measured = (!window.from_origin).then_some(in_window);
                    crate::worker::record_message(
                        rec,
                        &mut self.trackers,
                        &m.payload,
                        arrived_ns,
                        window.start_ns,
                        measured,
                    );
                }
                Event::Disconnected(reason) if !shared.stopped() => {
                    rec.error(live, || {
                        format!("subscriber {} disconnected: {reason:?}", self.index)
                    });
                }
                Event::ProtocolError(e) => {
                    rec.error(live, || format!("subscriber {}: {e}", self.index))
                }
                _ => {}
            }
        }
        taken
    }

    /// Writes what the client queued (acks, PINGREQ) without blocking;
    /// waits for EPOLLOUT while some is left; closes an ended client once
    /// its bytes are out.
    fn flush(&mut self, epoll: &Epoll, token: u64, live: &Live, rec: &mut Recorder) {
        let out = self.client.outgoing();
        while !out.is_empty() {
            match self.sock.write(out) {
                Ok(0) => break,
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    rec.error(live, || format!("subscriber {}: write: {e}", self.index));
                    out.clear();
                    self.closed = true;
                    break;
                }
            }
        }
        let pending = !out.is_empty();
        if self.client.is_disconnected() && !pending {
            self.closed = true;
        }
        if self.closed {
            if let Err(e) = epoll.remove(self.sock.as_raw_fd()) {
                rec.error(live, || format!("subscriber {}: epoll: {e}", self.index));
            }
            return;
        }
        if pending != self.want_write {
            self.want_write = pending;
            if let Err(e) = epoll.modify(self.sock.as_raw_fd(), token, pending) {
                rec.error(live, || format!("subscriber {}: epoll: {e}", self.index));
            }
        }
    }
}

/// Sends DISCONNECT on every open subscriber (blocking, bounded) and
/// closes them.
fn close_all(subs: &mut [Sub], live: &Live, rec: &mut Recorder) {
    for sub in subs.iter_mut().filter(|s| !s.closed) {
        sub.client.disconnect(ReasonCode::NORMAL_DISCONNECTION);
        let out = sub.client.outgoing().split();
        let timeout = Some(Duration::from_millis(CLOSE_TIMEOUT_MS));
        let written = sub
            .sock
            .set_nonblocking(false)
            .and_then(|()| sub.sock.set_write_timeout(timeout))
            .and_then(|()| sub.sock.write_all(&out))
            .and_then(|()| sub.sock.shutdown(std::net::Shutdown::Both));
        if let Err(e) = written {
            // The run is over: a broker that already closed is no error.
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::NotConnected
            ) {
                rec.error(live, || format!("subscriber {}: closing: {e}", sub.index));
            }
        }
        sub.closed = true;
    }
}
