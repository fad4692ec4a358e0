//! Client connection glue for loadgen and tests: drives an engine
//! [`Client`] over a monoio `TcpStream` with the [`conn`](crate::conn)
//! driver (batched writes: one write per wake-up of whatever accumulated)
//! plus a keep-alive timer task.
//!
//! ```text
//!   MqttConnection::with_client(|c| c.publish(..))  ──transmit──▶ writer task ──▶ socket
//!   socket ──▶ reader task ──▶ Client::handle_read ──▶ events ──▶ MqttConnection::poll_event
//!   timer task: sleeps until Client::poll_timeout, calls handle_timeout (PINGREQ)
//! ```
//!
//! Everything is single-threaded (`!Send`): a connection lives on the monoio
//! runtime of the thread that opened it. One task consumes a connection's
//! events (it waits in [`MqttConnection::wait`]); reads pause while
//! `ClientConfig::events_pause_at` events are pending, so a slow consumer
//! slows its own socket, never memory. Draining events before the next read
//! also lets the read buffer be reused in place (decoded messages are `Bytes`
//! slices of it): keep no `Message` payload past the drain if you want the
//! receive path allocation-free.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use ringmq_engine::client::{Client, ClientOptions, DisconnectReason, Event, ProtocolError};
use ringmq_engine::codec::{ConnAckProperties, ReasonCode};

use crate::clock::Clock;
use crate::conn::{CloseReason, Connection, DriverConfig, DriverHandle, Handler};
use crate::wake::WakerSlot;

/// A timer with no deadline still re-checks after this long, in ms (the
/// deadline can only appear through a command, which kicks the timer anyway).
const TIMER_IDLE_RECHECK_MS: u64 = 60_000;

/// How to open a connection.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    /// Reader/writer limits of the connection driver.
    pub driver: DriverConfig,
    /// Source address to bind before connecting (to open more connections
    /// to one server than one source address has ephemeral ports).
    pub bind_ip: Option<IpAddr>,
    /// `TCP_NODELAY` (on by default: MQTT packets are small and latency counts).
    pub nodelay: bool,
    /// TCP connect + CONNACK must finish within this many ms.
    pub connect_timeout_ms: u64,
    /// Reads pause while this many events wait for the consumer (at least 1).
    pub events_pause_at: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            driver: DriverConfig::default(),
            bind_ip: None,
            nodelay: true,
            connect_timeout_ms: 10_000,
            events_pause_at: 1,
        }
    }
}

/// Why [`MqttConnection::connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// Socket, bind or TCP connect failed.
    Io(io::Error),
    /// TCP connect + CONNACK took longer than `connect_timeout_ms`.
    Timeout,
    /// The server answered CONNACK with this failure code.
    Refused(ReasonCode),
    /// The server broke the protocol before or in CONNACK.
    Protocol(ProtocolError),
    /// The connection ended before CONNACK (EOF, reset, ...).
    Closed(DisconnectReason),
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Timeout => write!(f, "connect: timed out"),
            ConnectError::Refused(r) => {
                write!(f, "connect: refused by CONNACK (reason 0x{:02X})", r.0)
            }
            ConnectError::Protocol(e) => write!(f, "connect: protocol error: {e}"),
            ConnectError::Closed(r) => write!(f, "connect: closed before CONNACK ({r:?})"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Io(e)
    }
}

/// What CONNACK said.
#[derive(Clone, Debug)]
pub struct Connected {
    pub session_present: bool,
    pub properties: Box<ConnAckProperties>,
}

/// The state shared by the driver's tasks, the timer task and the consumer.
struct ClientHandler {
    client: RefCell<Client>,
    clock: Clock,
    handle: DriverHandle,
    events_pause_at: usize,
    /// The consumer's wake-up: events queued, outgoing space freed, closed.
    consumer: WakerSlot,
    consumer_flag: Cell<bool>,
    /// Wakes the timer task (closed, or a command made the deadline earlier).
    timer: WakerSlot,
    timer_kick: Cell<bool>,
    /// Deadline the timer task sleeps until (ms on `clock`), if any.
    timer_armed_ms: Cell<Option<u64>>,
    closed: Cell<Option<CloseReason>>,
    /// Arrival times of the queued events: `(n, ns)` means events up to
    /// the n-th ever queued arrived at `ns` (on `clock`). One entry per
    /// read (or timer / close / command) that queued events; bounded by
    /// `events_pause_at` plus the few a close adds.
    arrivals: RefCell<std::collections::VecDeque<(u64, u64)>>,
    events_queued_total: Cell<u64>,
    events_taken_total: Cell<u64>,
}

impl ClientHandler {
    /// Records the arrival time of the events queued since the client had
    /// `pending_before` events queued.
    fn stamp_events(&self, client: &Client, pending_before: usize, now_ns: impl FnOnce() -> u64) {
        let pending = client.pending_events();
        if pending > pending_before {
            let total = self.events_queued_total.get() + (pending - pending_before) as u64;
            self.events_queued_total.set(total);
            self.arrivals.borrow_mut().push_back((total, now_ns()));
        }
    }

    fn wake_consumer(&self) {
        self.consumer_flag.set(true);
        self.consumer.wake();
    }

    fn kick_timer(&self) {
        self.timer_kick.set(true);
        self.timer.wake();
    }

    /// After any change to the client: write what it produced, end the
    /// connection if it ended, re-arm the timer if the deadline moved earlier.
    fn after_change(&self, client: &mut Client) {
        if !client.outgoing().is_empty() {
            self.handle.transmit();
        }
        if client.is_disconnected() && !self.handle.is_closing() {
            // The writer flushes the DISCONNECT (if any) first.
            self.handle.close();
            self.kick_timer();
        }
        if let Some(deadline) = client.poll_timeout() {
            if !matches!(self.timer_armed_ms.get(), Some(armed) if deadline >= armed) {
                self.kick_timer();
            }
        }
    }
}

impl Handler for ClientHandler {
    fn on_bytes(&self, buf: &mut BytesMut) {
        let now_ns = self.clock.now_ns();
        let mut client = self.client.borrow_mut();
        let pending_before = client.pending_events();
        // A protocol error is reported as events; `after_change` closes.
        let _ = client.handle_read(buf, now_ns / 1_000_000);
        self.stamp_events(&client, pending_before, || now_ns);
        self.after_change(&mut client);
        if client.pending_events() > 0 || client.is_disconnected() {
            self.wake_consumer();
        }
    }

    fn take_outgoing(&self) -> Option<Bytes> {
        let mut client = self.client.borrow_mut();
        let out = client.outgoing();
        if out.is_empty() {
            return None;
        }
        // The split leaves an empty buffer that keeps the rest of the
        // allocation; once this batch is written and dropped, the next
        // `reserve` reclaims it (no allocation per batch in steady state).
        let batch = out.split().freeze();
        drop(client);
        // Room in the outgoing buffer again: a publisher may continue.
        self.wake_consumer();
        Some(batch)
    }

    fn reads_paused(&self) -> bool {
        self.client.borrow().pending_events() >= self.events_pause_at
    }

    fn on_closed(&self, reason: CloseReason) {
        self.closed.set(Some(reason));
        let mut client = self.client.borrow_mut();
        let pending_before = client.pending_events();
        let now_ns = self.clock.now_ns();
        client.handle_close(now_ns / 1_000_000);
        self.stamp_events(&client, pending_before, || now_ns);
        drop(client);
        self.wake_consumer();
        self.kick_timer();
    }
}

/// One MQTT client connection on the current monoio runtime.
pub struct MqttConnection {
    handler: Rc<ClientHandler>,
}

impl MqttConnection {
    /// Opens TCP to `addr` (binding `config.bind_ip` first if set), sends
    /// CONNECT and waits for CONNACK. Must run inside a monoio runtime with
    /// timers enabled.
    pub async fn connect(
        addr: SocketAddr,
        options: ClientOptions,
        config: &ClientConfig,
        clock: Clock,
    ) -> Result<(MqttConnection, Connected), ConnectError> {
        let timeout = Duration::from_millis(config.connect_timeout_ms);
        let stream = match monoio::time::timeout(timeout, open_tcp(addr, config.bind_ip)).await {
            Ok(stream) => stream?,
            Err(_) => return Err(ConnectError::Timeout),
        };
        stream.set_nodelay(config.nodelay)?;
        let mut client = Client::new(options);
        client
            .connect(clock.now_ms())
            .map_err(|e| ConnectError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let handle = DriverHandle::new();
        let handler = Rc::new(ClientHandler {
            client: RefCell::new(client),
            clock,
            handle: handle.clone(),
            events_pause_at: config.events_pause_at.max(1),
            consumer: WakerSlot::new(),
            consumer_flag: Cell::new(false),
            timer: WakerSlot::new(),
            timer_kick: Cell::new(false),
            timer_armed_ms: Cell::new(None),
            closed: Cell::new(None),
            arrivals: RefCell::new(std::collections::VecDeque::new()),
            events_queued_total: Cell::new(0),
            events_taken_total: Cell::new(0),
        });
        Connection::new(stream).spawn_driver(
            BytesMut::new(),
            handler.clone(),
            handle.clone(),
            config.driver,
        );
        handle.transmit();
        monoio::spawn(timer_task(handler.clone()));
        let conn = MqttConnection { handler };
        match monoio::time::timeout(timeout, conn.await_connack()).await {
            Ok(Ok(connected)) => Ok((conn, connected)),
            Ok(Err(e)) => {
                conn.close();
                Err(e)
            }
            Err(_) => {
                conn.close();
                Err(ConnectError::Timeout)
            }
        }
    }

    async fn await_connack(&self) -> Result<Connected, ConnectError> {
        let mut protocol_error = None;
        loop {
            while let Some(event) = self.poll_event() {
                match event {
                    Event::Connected {
                        session_present,
                        properties,
                    } => {
                        return Ok(Connected {
                            session_present,
                            properties,
                        })
                    }
                    Event::ProtocolError(e) => protocol_error = Some(e),
                    Event::Disconnected(DisconnectReason::ConnectRefused(r)) => {
                        return Err(ConnectError::Refused(r))
                    }
                    Event::Disconnected(DisconnectReason::ConnectTimeout) => {
                        return Err(ConnectError::Timeout)
                    }
                    Event::Disconnected(reason) => {
                        return Err(match protocol_error {
                            Some(e) => ConnectError::Protocol(e),
                            None => ConnectError::Closed(reason),
                        })
                    }
                    // Nothing else can precede CONNACK.
                    _ => {}
                }
            }
            self.wait().await;
        }
    }

    /// Runs `f` on the client (a command: publish, subscribe, ...), then
    /// schedules the write of whatever it queued. Do not hold the borrow
    /// across an await (there is no way to: `f` is synchronous).
    ///
    /// Take events with [`MqttConnection::poll_event`], not with
    /// `Client::poll_event` inside `f` (that would skew the arrival times).
    pub fn with_client<R>(&self, f: impl FnOnce(&mut Client) -> R) -> R {
        let mut client = self.handler.client.borrow_mut();
        let pending_before = client.pending_events();
        let r = f(&mut client);
        let clock = self.handler.clock;
        self.handler
            .stamp_events(&client, pending_before, || clock.now_ns());
        self.handler.after_change(&mut client);
        r
    }

    /// Read-only access to the client (state, inflight, ...).
    pub fn client(&self) -> std::cell::Ref<'_, Client> {
        self.handler.client.borrow()
    }

    /// The next event, if one is queued. Resumes paused reads once the
    /// queue is below `events_pause_at`.
    pub fn poll_event(&self) -> Option<Event> {
        self.poll_event_timed().map(|(event, _)| event)
    }

    /// The next event and when it arrived: the time (ns on
    /// [`MqttConnection::clock`]) the read that produced it completed, so a
    /// consumer that was busy still measures latency to the arrival.
    pub fn poll_event_timed(&self) -> Option<(Event, u64)> {
        let h = &*self.handler;
        let mut client = h.client.borrow_mut();
        let event = client.poll_event()?;
        if client.pending_events() + 1 == h.events_pause_at {
            h.handle.resume_reads();
        }
        drop(client);
        let taken = h.events_taken_total.get() + 1;
        h.events_taken_total.set(taken);
        let mut arrivals = h.arrivals.borrow_mut();
        while arrivals.front().is_some_and(|(upto, _)| *upto < taken) {
            arrivals.pop_front();
        }
        let arrived_ns = arrivals.front().map(|(_, ns)| *ns);
        drop(arrivals);
        Some((event, arrived_ns.unwrap_or_else(|| h.clock.now_ns())))
    }

    /// Waits until something may have changed for the consumer: events
    /// queued, room in the outgoing buffer, or the connection closed.
    /// Returns at once if events are already queued. Spurious returns are
    /// possible; callers re-check.
    pub async fn wait(&self) {
        let h = &*self.handler;
        h.consumer
            .wait_until(|| {
                h.consumer_flag.get()
                    || h.closed.get().is_some()
                    || h.client.borrow().pending_events() > 0
            })
            .await;
        h.consumer_flag.set(false);
    }

    /// The next event, waiting for one; `None` once the connection is
    /// closed and every event was taken.
    pub async fn next_event(&self) -> Option<Event> {
        loop {
            if let Some(event) = self.poll_event() {
                return Some(event);
            }
            if self.handler.closed.get().is_some() {
                return None;
            }
            self.wait().await;
        }
    }

    /// True once the transport is closed (the reader ended).
    pub fn is_closed(&self) -> bool {
        self.handler.closed.get().is_some()
    }

    /// Why the transport closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.handler.closed.get()
    }

    /// Sends DISCONNECT (normal), flushes and closes; resolves when the
    /// transport is closed. Pending events stay readable.
    pub async fn disconnect(&self) {
        self.with_client(|c| c.disconnect(ReasonCode::NORMAL_DISCONNECTION));
        self.handler.handle.close();
        let h = &*self.handler;
        h.consumer.wait_until(|| h.closed.get().is_some()).await;
    }

    /// Flushes what is queued and closes, without DISCONNECT (a v5 server
    /// then publishes the will). Does not wait.
    pub fn close(&self) {
        self.handler.handle.close();
        self.handler.kick_timer();
    }

    /// The clock this connection uses for the engine's `now_ms`.
    pub fn clock(&self) -> Clock {
        self.handler.clock
    }
}

impl Drop for MqttConnection {
    /// Dropping the last handle closes the connection (the tasks then end).
    fn drop(&mut self) {
        self.close();
    }
}

/// Sleeps until the client's deadline, then lets it act (PINGREQ, timeouts).
async fn timer_task(h: Rc<ClientHandler>) {
    loop {
        if h.closed.get().is_some() {
            return;
        }
        let deadline = h.client.borrow().poll_timeout();
        h.timer_armed_ms.set(deadline);
        let now_ms = h.clock.now_ms();
        let sleep_ms = deadline.map_or(TIMER_IDLE_RECHECK_MS, |d| d.saturating_sub(now_ms));
        if sleep_ms > 0 {
            let kicked = &h.timer_kick;
            monoio::select! {
                _ = monoio::time::sleep(Duration::from_millis(sleep_ms)) => {},
                _ = h.timer.wait_until(|| kicked.get()) => {},
            }
            h.timer_kick.set(false);
        }
        let mut client = h.client.borrow_mut();
        let pending_before = client.pending_events();
        let now_ns = h.clock.now_ns();
        client.handle_timeout(now_ns / 1_000_000);
        h.stamp_events(&client, pending_before, || now_ns);
        h.after_change(&mut client);
        let ended = client.is_disconnected();
        drop(client);
        if ended {
            h.wake_consumer();
        }
    }
}

async fn open_tcp(addr: SocketAddr, bind_ip: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(ip) = bind_ip else {
        return TcpStream::connect_addr(addr).await;
    };
    // monoio's connect makes its own socket, so a bound one is connected
    // non-blocking by hand and adopted once writable.
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // A second descriptor of the same socket, to read SO_ERROR once the
    // connect finished (monoio's stream does not expose its fd as AsFd).
    let probe = socket.try_clone()?;
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    stream.writable(false).await?;
    if let Some(e) = probe.take_error()? {
        return Err(e);
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ringmq_engine::client::State;
    use ringmq_engine::codec::{
        decode, encode, ConnAck, Decoded, Packet, Protocol, PubAck, Publish, QoS,
    };
    use std::io::{Read, Write};

    /// A scripted server on a std thread: accepts one connection, answers
    /// CONNECT with CONNACK, a QoS 1 PUBLISH with PUBACK, PINGREQ with
    /// PINGRESP, and sends one QoS 0 message after the first PUBLISH.
    fn scripted_server(protocol: Protocol) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
            let mut buf = BytesMut::new();
            let mut kinds = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    return kinds;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Decoded::Packet(p)) = decode(&mut buf, protocol, 1 << 20) {
                    kinds.push(p.packet_type());
                    let mut out = BytesMut::new();
                    let reply = match p {
                        Packet::Connect(_) => Some(Packet::ConnAck(ConnAck {
                            session_present: false,
                            reason: ReasonCode::SUCCESS,
                            properties: ConnAckProperties::default(),
                        })),
                        Packet::Publish(p) if p.qos == QoS::AtLeastOnce => {
                            let msg = Packet::Publish(Publish {
                                topic: Bytes::from_static(b"back"),
                                payload: p.payload.clone(),
                                ..Publish::default()
                            });
                            let _ = encode(&msg, protocol, &mut out);
                            Some(Packet::PubAck(PubAck::new(p.packet_id)))
                        }
                        Packet::PingReq => Some(Packet::PingResp),
                        _ => None,
                    };
                    if let Some(r) = reply {
                        let _ = encode(&r, protocol, &mut out);
                    }
                    let _ = s.write_all(&out);
                }
            }
        });
        (addr, t)
    }

    fn runtime() -> monoio::FusionRuntime<
        monoio::time::TimeDriver<monoio::IoUringDriver>,
        monoio::time::TimeDriver<monoio::LegacyDriver>,
    > {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    #[test]
    fn connect_publish_receive_ping_disconnect() {
        for protocol in [Protocol::V3_1_1, Protocol::V5] {
            let (addr, server) = scripted_server(protocol);
            runtime().block_on(async move {
                let mut options = ClientOptions::new(protocol, "net-test");
                options.keep_alive_s = 1;
                let (conn, connected) =
                    MqttConnection::connect(addr, options, &ClientConfig::default(), Clock::new())
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                assert!(!connected.session_present);
                let id = conn.with_client(|c| {
                    c.publish(
                        Bytes::from_static(b"t"),
                        Bytes::from_static(b"hi"),
                        QoS::AtLeastOnce,
                        false,
                        Default::default(),
                    )
                });
                assert_eq!(id, Ok(Some(1)));
                let mut acked = false;
                let mut got = false;
                while !(acked && got) {
                    match conn.next_event().await {
                        Some(Event::PubAcked { packet_id: 1, .. }) => acked = true,
                        Some(Event::Message(m)) => {
                            assert_eq!(&m.payload[..], b"hi");
                            got = true;
                        }
                        other => panic!("{other:?}"),
                    }
                }
                // Keep-alive 1 s: a PINGREQ goes out and PINGRESP comes back.
                monoio::time::sleep(Duration::from_millis(1_300)).await;
                assert_eq!(conn.client().state(), State::Connected);
                conn.disconnect().await;
                assert!(conn.is_closed());
            });
            let kinds = server.join().unwrap_or_else(|_| panic!("server thread"));
            assert_eq!(
                kinds,
                vec![1, 3, 12, 14],
                "CONNECT, PUBLISH, PINGREQ, DISCONNECT"
            );
        }
    }

    #[test]
    fn refused_connection_reports_io_error() {
        // Bind then drop: nothing listens on this port.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"));
        runtime().block_on(async move {
            for bind_ip in [
                None,
                Some("127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))),
            ] {
                let config = ClientConfig {
                    bind_ip,
                    ..ClientConfig::default()
                };
                let r = MqttConnection::connect(
                    addr,
                    ClientOptions::new(Protocol::V3_1_1, "x"),
                    &config,
                    Clock::new(),
                )
                .await;
                assert!(matches!(r, Err(ConnectError::Io(_))), "{:?}", r.err());
            }
        });
    }
}
