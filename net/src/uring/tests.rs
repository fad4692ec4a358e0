//! The native driver against real sockets on this thread: echo through a
//! handler, graceful close, peer close, idle connections hold no buffer,
//! detach for a hand-off.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Driver, Event, Socket, UringLimits};

mod direct;
mod hold;

/// `uring::Slot` at the time of writing (`a_connection_slot_stays_small`):
/// 88 bytes, 152 before the partial frame, its clock and the TLS state
/// moved behind `Conn::rare`, 96 while the send in flight kept its offset
/// beside its `Bytes`.
const SLOT_MAX_BYTES: usize = 88;
/// The `DriverHandle`'s shared flags (`conn::handle::Shared`), one per
/// connection: 24 bytes at the time of writing (32 while each kept an
/// `Rc` of its loop's ready list; `uring::READY`).
const SHARED_MAX_BYTES: usize = 24;
use crate::conn::{CloseReason, DriverConfig, DriverHandle, Handler};
use crate::tls::TlsSession;

/// Echoes every complete line (`\n`-terminated); leaves a partial one.
#[derive(Default)]
pub(super) struct Echo {
    handle: DriverHandle,
    out: RefCell<Vec<u8>>,
    pub(super) closed: RefCell<Vec<CloseReason>>,
    /// Ask to be detached after the first bytes.
    detach: Cell<bool>,
}

impl Handler for Echo {
    fn on_bytes(&self, buf: &mut BytesMut) {
        if self.detach.get() {
            return;
        }
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(end + 1);
            if &line[..] == b"close\n" {
                self.handle.close();
                continue;
            }
            self.out.borrow_mut().extend_from_slice(&line);
            self.handle.transmit();
        }
    }

    fn take_outgoing(&self) -> Option<Bytes> {
        let out = std::mem::take(&mut *self.out.borrow_mut());
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    fn on_closed(&self, reason: CloseReason) {
        self.closed.borrow_mut().push(reason);
    }

    fn detach_requested(&self) -> bool {
        self.detach.get()
    }
}

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Rig {
    pub(super) driver: Driver,
    listener: TcpListener,
    clock: Instant,
    events: Vec<Event>,
}

impl Rig {
    pub(super) fn new() -> Option<Rig> {
        Rig::with_limits(UringLimits::default())
    }

    fn with_limits(limits: UringLimits) -> Option<Rig> {
        let config = DriverConfig {
            close_linger_ms: 200,
            ..DriverConfig::default()
        };
        let mut driver = match Driver::new(limits, config) {
            Ok(driver) => driver,
            Err(e) => {
                // Kernels or sandboxes without the features: the shard
                // falls back to monoio. CI must run these tests.
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "native io_uring unavailable on CI: {e}"
                );
                eprintln!("SKIPPED: native io_uring unavailable: {e}");
                return None;
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        driver.add_listener(listener.as_raw_fd());
        Some(Rig {
            driver,
            listener,
            clock: Instant::now(),
            events: Vec::new(),
        })
    }

    pub(super) fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// One loop turn (at most 10 ms asleep).
    pub(super) fn turn(&mut self) {
        let now = self.now();
        self.driver.flush(now);
        self.driver
            .submit_and_wait(Some(10))
            .unwrap_or_else(|e| panic!("submit: {e}"));
        let now = self.now();
        self.events.extend(self.driver.complete(now));
        self.driver.fire_timers(now);
    }

    pub(super) fn turn_until(&mut self, what: &str, mut done: impl FnMut(&mut Rig) -> bool) {
        let deadline = Instant::now() + TEST_TIMEOUT;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.turn();
        }
    }

    /// Connects a client and drives the accepted socket with a new `Echo`.
    pub(super) fn connect(&mut self) -> (TcpStream, Rc<Echo>) {
        let addr = self
            .listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let client = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        client
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap_or_else(|e| panic!("timeout: {e}"));
        self.turn_until("accept", |r| {
            r.events.iter().any(|e| matches!(e, Event::Accepted { .. }))
        });
        let socket = match self.events.pop() {
            Some(Event::Accepted { socket, .. }) => socket,
            Some(Event::AcceptFailed { error, .. }) => panic!("accept failed: {error}"),
            _ => panic!("expected an accepted socket"),
        };
        let echo = Rc::new(Echo::default());
        assert!(self.driver.add(
            socket,
            echo.clone(),
            echo.handle.clone(),
            BytesMut::new(),
            None
        ));
        (client, echo)
    }

    /// Asks `echo`'s connection to detach after `line`, which the client
    /// sends; returns what the driver hands back (socket, bytes, TLS).
    fn detach(
        &mut self,
        client: &mut TcpStream,
        echo: &Echo,
        line: &[u8],
    ) -> (OwnedFd, BytesMut, Option<Box<TlsSession>>) {
        echo.detach.set(true);
        client
            .write_all(line)
            .unwrap_or_else(|e| panic!("write: {e}"));
        self.turn_until("detached", |r| {
            r.events.iter().any(|e| matches!(e, Event::Detached { .. }))
        });
        let Some(Event::Detached { fd, bytes, tls, .. }) = self.events.pop() else {
            panic!("expected a detached connection")
        };
        assert_eq!(&bytes[..], line);
        assert!(echo.closed.borrow().is_empty(), "a detach is not a close");
        (fd, bytes, tls)
    }

    /// Drives a detached socket again (as the owner shard adopts it).
    fn adopt(&mut self, fd: OwnedFd, bytes: BytesMut) -> Rc<Echo> {
        let again = Rc::new(Echo::default());
        let handle = again.handle.clone();
        let socket = Socket::Plain(fd);
        assert!(self.driver.add(socket, again.clone(), handle, bytes, None));
        again
    }

    /// Reads from `client` while turning the loop until `want` bytes came
    /// (or EOF).
    pub(super) fn read(&mut self, client: &mut TcpStream, want: usize) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let mut eof = false;
        self.turn_until("client bytes", |r| {
            let mut buf = [0u8; 256];
            match client.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                // io_uring's task work (the ring is this thread's) may
                // interrupt the client's blocking read.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("client read: {e}"),
            }
            r.turn();
            eof || got.len() >= want
        });
        (got, eof)
    }
}

#[test]
fn echoes_across_split_writes_and_idle_connections_hold_no_buffer() {
    let Some(mut rig) = Rig::new() else { return };
    let (mut client, echo) = rig.connect();
    client
        .write_all(b"hel")
        .unwrap_or_else(|e| panic!("write: {e}"));
    // The partial line stays with the connection until it completes.
    rig.turn_until("partial kept", |r| {
        r.driver
            .slots
            .iter()
            .any(|s| s.conn.as_ref().is_some_and(|c| c.buffered() == 3))
    });
    client
        .write_all(b"lo\nworld\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let (got, eof) = rig.read(&mut client, 12);
    assert_eq!(got, b"hello\nworld\n");
    assert!(!eof);
    // Idle again: no receive buffer held by the connection.
    let held: usize = rig
        .driver
        .slots
        .iter()
        .filter_map(|s| s.conn.as_ref())
        .map(|c| c.rare.as_ref().map_or(0, |r| r.buf.capacity()))
        .sum();
    assert_eq!(held, 0, "an idle connection holds no buffer");
    assert!(echo.closed.borrow().is_empty());
}

#[test]
fn a_local_close_flushes_then_sends_fin_and_reports_once() {
    let Some(mut rig) = Rig::new() else { return };
    let (mut client, echo) = rig.connect();
    client
        .write_all(b"bye\nclose\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let (got, eof) = rig.read(&mut client, usize::MAX);
    assert_eq!(got, b"bye\n", "output before the close is flushed");
    assert!(eof, "FIN after the last byte");
    drop(client);
    rig.turn_until("close reported", |_| !echo.closed.borrow().is_empty());
    rig.turn_until("slot freed", |r| r.driver.connections() == 0);
    assert_eq!(*echo.closed.borrow(), vec![CloseReason::Local]);
}

#[test]
fn a_peer_close_is_reported_once_and_frees_the_slot() {
    let Some(mut rig) = Rig::new() else { return };
    let (client, echo) = rig.connect();
    drop(client);
    rig.turn_until("slot freed", |r| r.driver.connections() == 0);
    assert_eq!(*echo.closed.borrow(), vec![CloseReason::PeerClosed]);
}

#[test]
fn a_detached_connection_comes_back_with_its_socket_and_bytes() {
    let Some(mut rig) = Rig::new() else { return };
    let (mut client, echo) = rig.connect();
    let (fd, bytes, tls) = rig.detach(&mut client, &echo, b"CONNECT\n");
    assert!(tls.is_none());
    assert_eq!(rig.driver.connections(), 0);
    // Its unread bytes leave with it: no packet clock stays behind to wake
    // the loop (every hand-off's did, 30 s later).
    assert_eq!(rig.driver.next_deadline_ms(), None);
    // The socket still works: adopt it again and echo.
    rig.adopt(fd, bytes);
    let (got, _) = rig.read(&mut client, 8);
    assert_eq!(
        got, b"CONNECT\n",
        "the bytes read before the detach go first"
    );
}

/// A TLS connection on the native loop (TLS 1.2 and 1.3): the server
/// handshake's steps run on the helper threads (none inline on the loop's
/// thread), the client's lines are echoed through the session, and a
/// detach hands back the established session with the socket.
#[test]
fn tls_handshake_on_helper_threads_then_echo_and_detach() {
    tls_echo_and_detach("native12", &rustls::version::TLS12);
    tls_echo_and_detach("native13", &rustls::version::TLS13);
}

fn tls_echo_and_detach(test: &str, version: &'static rustls::SupportedProtocolVersion) {
    let Some(mut rig) = Rig::new() else { return };
    let (settings, client_config) = crate::tls::tests::server_and_client_versions(test, &[version]);
    let loaded = crate::tls::load(&settings).unwrap_or_else(|e| panic!("{e}"));
    let pool =
        crate::tls::offload::HandshakePool::start(1, "test-tls").unwrap_or_else(|e| panic!("{e}"));
    let addr = rig
        .listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let (to_client, from_test) = std::sync::mpsc::channel::<()>();
    let (to_test, from_client) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let name =
            rustls::pki_types::ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
        let conn =
            rustls::ClientConnection::new(client_config, name).unwrap_or_else(|e| panic!("{e}"));
        let sock = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        sock.set_read_timeout(Some(TEST_TIMEOUT))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(b"hello\n").unwrap_or_else(|e| panic!("{e}"));
        let mut line = [0u8; 6];
        tls.read_exact(&mut line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&line, b"hello\n");
        to_test.send(()).unwrap_or_else(|e| panic!("{e}"));
        // Wait until the test has detached the connection, then use it
        // again: the session continues on the socket.
        from_test.recv().unwrap_or_else(|e| panic!("{e}"));
        tls.write_all(b"again\n").unwrap_or_else(|e| panic!("{e}"));
        let mut again = [0u8; 6];
        tls.read_exact(&mut again).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&again, b"again\n");
    });
    rig.turn_until("accept", |r| {
        r.events.iter().any(|e| matches!(e, Event::Accepted { .. }))
    });
    let Some(Event::Accepted { socket, .. }) = rig.events.pop() else {
        panic!("expected an accepted socket")
    };
    let echo = Rc::new(Echo::default());
    let session =
        crate::tls::TlsSession::new(loaded.config.clone()).unwrap_or_else(|e| panic!("{e}"));
    let tls = crate::conn::ConnTls {
        session: Box::new(session),
        pool: Some(pool.clone()),
    };
    assert!(rig.driver.add(
        socket,
        echo.clone(),
        echo.handle.clone(),
        BytesMut::new(),
        Some(tls)
    ));
    rig.turn_until("first line echoed", |_| from_client.try_recv().is_ok());
    let counts = pool.stats().counts();
    assert!(counts.offloaded_steps >= 1, "{counts:?}");
    assert_eq!(counts.inline_steps, 0, "no handshake step on the loop");
    echo.detach.set(true);
    to_client
        .send(())
        .unwrap_or_else(|e| panic!("client gone: {e}"));
    rig.turn_until("detached", |r| {
        r.events.iter().any(|e| matches!(e, Event::Detached { .. }))
    });
    let Some(Event::Detached { fd, bytes, tls, .. }) = rig.events.pop() else {
        panic!("expected a detached connection")
    };
    let session = tls.unwrap_or_else(|| panic!("the session comes back with the socket"));
    assert!(!session.is_handshaking());
    let again = Rc::new(Echo::default());
    let tls = crate::conn::ConnTls {
        session,
        pool: Some(pool.clone()),
    };
    assert!(rig.driver.add(
        Socket::Plain(fd),
        again.clone(),
        again.handle.clone(),
        bytes,
        Some(tls)
    ));
    let deadline = Instant::now() + TEST_TIMEOUT;
    while !peer.is_finished() {
        assert!(Instant::now() < deadline, "client did not finish");
        rig.turn();
    }
    peer.join()
        .unwrap_or_else(|_| panic!("client thread panicked"));
}

/// A shard closing many connections in one turn runs at most
/// `CLOSE_STEPS_PER_TURN` close steps in it, still sends an open
/// connection's output in that turn, and completes every close (FIN, one
/// report each) over the next turns (`close` module: pacing).
#[test]
fn a_burst_of_closes_is_paced_and_yields_to_open_connections() {
    use super::conn::Phase;
    use crate::conn::pace::CLOSE_STEPS_PER_TURN;
    const CLOSES: usize = 40;
    let Some(mut rig) = Rig::new() else { return };
    let mut closing: Vec<(TcpStream, Rc<Echo>)> = (0..CLOSES).map(|_| rig.connect()).collect();
    let (mut open_client, open) = rig.connect();
    // Every close is asked for in the same turn, the open connection's
    // output behind them.
    for (_, echo) in &closing {
        echo.handle.close();
    }
    open.out.borrow_mut().extend_from_slice(b"still here\n");
    open.handle.transmit();
    let now = rig.now();
    rig.driver.flush(now);
    let phases: Vec<(Phase, bool)> = rig
        .driver
        .slots
        .iter()
        .filter_map(|s| s.conn.as_ref())
        .map(|c| (c.phase, c.sending.is_some()))
        .collect();
    let fin_sent = phases
        .iter()
        .filter(|(p, _)| *p == Phase::Lingering)
        .count();
    let waiting = phases.iter().filter(|(p, _)| *p == Phase::Flushing).count();
    assert_eq!(fin_sent, CLOSE_STEPS_PER_TURN as usize, "one turn's budget");
    assert_eq!(waiting, CLOSES - fin_sent, "the rest wait for later turns");
    assert_eq!(
        phases
            .iter()
            .filter(|(p, sending)| *p == Phase::Open && *sending)
            .count(),
        1,
        "the open connection's output left in the same turn"
    );
    assert!(
        rig.driver.has_ready(),
        "the loop must not sleep on waiting closes"
    );
    assert_eq!(rig.driver.close_steps_deferred(), waiting as u64);
    let (got, eof) = rig.read(&mut open_client, 11);
    assert_eq!(got, b"still here\n");
    assert!(!eof);
    for (client, _) in &mut closing {
        let (got, eof) = rig.read(client, usize::MAX);
        assert!(
            got.is_empty() && eof,
            "every closing connection gets its FIN"
        );
    }
    // The clients close too: the lingering ends with their FIN.
    let echoes: Vec<Rc<Echo>> = closing.into_iter().map(|(_, e)| e).collect();
    rig.turn_until("every close reported", |r| r.driver.connections() == 1);
    for echo in &echoes {
        assert_eq!(*echo.closed.borrow(), vec![CloseReason::Local], "once each");
    }
    assert!(open.closed.borrow().is_empty());
}

/// Gathering (`UringLimits::gather_wait_us`) never holds a lone wake-up:
/// a loop asleep longer than the gather wait wakes at once for one
/// completion (here the eventfd waker another thread calls), and an idle
/// loop sleeps until its timeout, not for the gather wait only.
#[test]
fn gathering_wakes_at_once_for_a_late_completion_and_sleeps_when_idle() {
    let Some(mut rig) = Rig::new() else { return };
    // Idle: the whole timeout is slept (a gather timer ending the sleep
    // early would spin an idle shard).
    let started = Instant::now();
    rig.driver
        .submit_and_wait(Some(50))
        .unwrap_or_else(|e| panic!("submit: {e}"));
    let slept = started.elapsed();
    assert!(
        slept >= Duration::from_millis(45),
        "idle sleep ended after {slept:?}, before its 50 ms timeout"
    );
    let now = rig.now();
    rig.driver.complete(now).for_each(drop);
    // A wake-up 30 ms into a 5 s sleep (far past the gather wait) ends it
    // at once, although fewer completions than gathered for are pending.
    let waker = rig.driver.waker();
    let wake_at = Instant::now() + Duration::from_millis(30);
    let other = std::thread::spawn(move || {
        std::thread::sleep(wake_at.saturating_duration_since(Instant::now()));
        waker.wake_by_ref();
    });
    let started = Instant::now();
    rig.driver
        .submit_and_wait(Some(5_000))
        .unwrap_or_else(|e| panic!("submit: {e}"));
    let slept = started.elapsed();
    other
        .join()
        .unwrap_or_else(|_| panic!("waker thread panicked"));
    assert!(
        slept >= Duration::from_millis(25) && slept < Duration::from_millis(1_000),
        "woken after {slept:?}, expected about 30 ms"
    );
}

/// A thread runs at most one native loop (its ready list is the
/// thread's): a second is refused, and one can start again once the
/// first is gone.
#[test]
fn one_native_loop_per_thread() {
    let Some(rig) = Rig::new() else { return };
    let second = Driver::new(UringLimits::default(), DriverConfig::default());
    assert_eq!(
        second.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::AlreadyExists)
    );
    drop(rig);
    assert!(Driver::new(UringLimits::default(), DriverConfig::default()).is_ok());
}

/// A chunk of the slab fills mimalloc's 12,288-byte size class: the
/// global allocator (`mimalloc::MiMalloc`) asks `mi_malloc_aligned`, which
/// for blocks of this size adds the alignment less one to the request, so
/// [`ringmq_chunked::CLASS_CHUNK_MAX_BYTES`] bytes (a chunk of slots is at most that)
/// get a 12,288-byte block and exactly 12,288 bytes one of the next class
/// (14,336): the default chunk of 128 slots of 88 bytes left 1 KiB of its
/// block unused, one of 128 engine records of 96 bytes 2 KiB. The
/// engine's slabs keep to the same budget (`broker::slab::SLAB_CHUNK_LEN`).
#[test]
fn the_slab_chunk_fills_its_size_class() {
    extern "C" {
        fn mi_malloc_aligned(size: usize, alignment: usize) -> *mut u8;
        fn mi_usable_size(p: *const u8) -> usize;
        fn mi_free(p: *mut u8);
    }
    let align = std::mem::align_of::<super::Slot>();
    let usable = |bytes: usize| {
        // SAFETY: mi_malloc_aligned returns a live block (or null, for
        // which mi_usable_size answers 0), freed right after its size is
        // read.
        unsafe {
            let p = mi_malloc_aligned(bytes, align);
            let n = mi_usable_size(p);
            mi_free(p);
            n
        }
    };
    let chunk = super::SLOT_CHUNK_LEN * std::mem::size_of::<super::Slot>();
    assert!(chunk <= ringmq_chunked::CLASS_CHUNK_MAX_BYTES);
    assert_eq!(usable(chunk), 12_288, "a chunk of {chunk} bytes");
    assert_eq!(usable(ringmq_chunked::CLASS_CHUNK_MAX_BYTES), 12_288);
    assert!(
        usable(12_288) > 12_288,
        "mimalloc serves 12,288 aligned bytes from its 12,288-byte class now: the budget can grow"
    );
    assert!(
        chunk + std::mem::size_of::<super::Slot>() > ringmq_chunked::CLASS_CHUNK_MAX_BYTES,
        "one more slot would fit"
    );
}

/// An idle connection's slab entry on the native loop (docs/benchmarks.md,
/// memory per idle connection): at most its size at the time of writing,
/// so that a field added to every connection is a decision, not a drift.
#[test]
fn a_connection_slot_stays_small() {
    let slot = std::mem::size_of::<super::Slot>();
    let shared = crate::conn::shared_bytes();
    eprintln!("uring::Slot {slot} bytes, the handle's shared flags {shared} bytes");
    assert!(
        slot <= SLOT_MAX_BYTES,
        "uring::Slot is {slot} bytes (at most {SLOT_MAX_BYTES})"
    );
    // Its own allocation (plus the `Rc` counts): 56 bytes while the monoio
    // tasks' two wakers were inline, unused on the native loop.
    assert!(
        shared <= SHARED_MAX_BYTES,
        "the driver handle's shared state is {shared} bytes (at most {SHARED_MAX_BYTES})"
    );
}

/// Echoes more lines than the ring has buffers, one receive each: the
/// ring hands out its buffers in turn, so every buffer's first page is
/// touched.
fn touch_every_buffer(rig: &mut Rig, client: &mut TcpStream, buffers: usize) {
    for i in 0..buffers + 8 {
        let line = format!("{i:06}\n");
        client
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
        let (got, _) = rig.read(client, line.len());
        assert_eq!(got, line.as_bytes());
    }
}

/// The receive buffers' pages go back to the kernel after closes where the
/// kernel allows it (`bufring` module docs), and receiving still works
/// (into zeroed pages); elsewhere they stay resident, as documented.
#[test]
fn the_receive_buffers_pages_are_given_back_after_closes() {
    let Some(mut rig) = Rig::new() else { return };
    let buffers = usize::from(UringLimits::default().recv_buffers);
    let (mut client, _echo) = rig.connect();
    touch_every_buffer(&mut rig, &mut client, buffers);
    let touched = rig.driver.bufs.resident_pages();
    assert!(
        touched >= buffers,
        "{touched} pages resident, expected every buffer's first"
    );
    drop(client);
    rig.turn_until("slot freed", |r| r.driver.connections() == 0);
    rig.driver.shrink_memory();
    let after = rig.driver.bufs.resident_pages();
    if rig.driver.recv_copy_in_enter {
        assert_eq!(after, 0, "every page given back ({touched} before)");
    } else {
        eprintln!("the kernel runs receives outside io_uring_enter here: buffers kept");
        assert_eq!(after, touched, "kept where the release is not sound");
    }
    // Receiving after the release: the kernel writes into fresh pages.
    let (mut client, _echo) = rig.connect();
    client
        .write_all(b"after release\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let (got, _) = rig.read(&mut client, 14);
    assert_eq!(got, b"after release\n");
    if rig.driver.recv_copy_in_enter {
        assert!(rig.driver.bufs.resident_pages() > 0);
    }
}

/// A loop whose connections went quiet gives the receive buffers' pages
/// back while the connections stay (memory per idle connection), and they
/// go on receiving afterwards.
#[test]
fn the_receive_buffers_pages_are_given_back_while_connections_idle() {
    let Some(mut rig) = Rig::new() else { return };
    let buffers = usize::from(UringLimits::default().recv_buffers);
    let (mut client, _echo) = rig.connect();
    assert!(!rig.driver.take_receive_activity(), "nothing received yet");
    touch_every_buffer(&mut rig, &mut client, buffers);
    assert!(rig.driver.take_receive_activity());
    assert!(!rig.driver.take_receive_activity(), "taken");
    let touched = rig.driver.bufs.resident_pages();
    assert!(touched >= buffers, "{touched} pages resident");
    let released = rig.driver.release_idle_receive_buffers();
    let after = rig.driver.bufs.resident_pages();
    assert_eq!(rig.driver.connections(), 1, "the connection stays");
    if rig.driver.recv_copy_in_enter {
        assert!(released);
        assert_eq!(after, 0, "every page given back ({touched} before)");
    } else {
        eprintln!("the kernel runs receives outside io_uring_enter here: buffers kept");
        assert!(!released);
        assert_eq!(after, touched, "kept where the release is not sound");
    }
    // The same connection receives into fresh pages.
    client
        .write_all(b"after release\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let (got, _) = rig.read(&mut client, 14);
    assert_eq!(got, b"after release\n");
    assert!(rig.driver.take_receive_activity());
}
