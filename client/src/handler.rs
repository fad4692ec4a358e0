//! The state of one client connection shared by the connection driver's
//! tasks (as its [`Handler`]), the timer task and the consumer
//! ([`MqttConnection`](crate::MqttConnection)); and the timer task, which
//! sleeps until the client's deadline and lets it act (PINGREQ, timeouts).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringmq_engine::client::Client;
use ringmq_net::clock::Clock;
use ringmq_net::conn::{CloseReason, DriverHandle, Handler};
use ringmq_net::tls::TlsError;
use ringmq_net::ws::WsError;

use crate::error::ConnectError;
use ringmq_net::wake::WakerSlot;

/// A timer with no deadline still re-checks after this long, in ms (the
/// deadline can only appear through a command, which kicks the timer anyway).
const TIMER_IDLE_RECHECK_MS: u64 = 60_000;

/// The state shared by the driver's tasks, the timer task and the consumer.
pub(crate) struct ClientHandler {
    pub(crate) client: RefCell<Client>,
    pub(crate) clock: Clock,
    pub(crate) handle: DriverHandle,
    pub(crate) events_pause_at: usize,
    /// The consumer's wake-up: events queued, outgoing space freed, closed.
    pub(crate) consumer: WakerSlot,
    pub(crate) consumer_flag: Cell<bool>,
    /// Wakes the timer task (closed, or a command made the deadline earlier).
    pub(crate) timer: WakerSlot,
    pub(crate) timer_kick: Cell<bool>,
    /// Deadline the timer task sleeps until (ms on `clock`), if any.
    pub(crate) timer_armed_ms: Cell<Option<u64>>,
    pub(crate) closed: Cell<Option<CloseReason>>,
    /// Why the TLS or WebSocket session failed, if it did (says why
    /// connecting failed).
    pub(crate) transport_error: RefCell<Option<ConnectError>>,
    /// Arrival times of the queued events: `(n, ns)` means events up to
    /// the n-th ever queued arrived at `ns` (on `clock`). One entry per
    /// read (or timer / close / command) that queued events; bounded by
    /// `events_pause_at` plus the few a close adds.
    pub(crate) arrivals: RefCell<VecDeque<(u64, u64)>>,
    pub(crate) events_queued_total: Cell<u64>,
    pub(crate) events_taken_total: Cell<u64>,
    /// MQTT bytes the client consumed / handed to the driver (inside TLS
    /// and WebSocket framing).
    pub(crate) mqtt_bytes_in: Cell<u64>,
    pub(crate) mqtt_bytes_out: Cell<u64>,
}

impl ClientHandler {
    /// The shared state of a connection whose driver is not started yet.
    pub(crate) fn new(
        client: Client,
        clock: Clock,
        handle: DriverHandle,
        events_pause_at: usize,
    ) -> ClientHandler {
        ClientHandler {
            client: RefCell::new(client),
            clock,
            handle,
            events_pause_at: events_pause_at.max(1),
            consumer: WakerSlot::new(),
            consumer_flag: Cell::new(false),
            timer: WakerSlot::new(),
            timer_kick: Cell::new(false),
            timer_armed_ms: Cell::new(None),
            closed: Cell::new(None),
            transport_error: RefCell::new(None),
            arrivals: RefCell::new(VecDeque::new()),
            events_queued_total: Cell::new(0),
            events_taken_total: Cell::new(0),
            mqtt_bytes_in: Cell::new(0),
            mqtt_bytes_out: Cell::new(0),
        }
    }

    /// Records the arrival time of the events queued since the client had
    /// `pending_before` events queued.
    pub(crate) fn stamp_events(
        &self,
        client: &Client,
        pending_before: usize,
        now_ns: impl FnOnce() -> u64,
    ) {
        let pending = client.pending_events();
        if pending > pending_before {
            let total = self.events_queued_total.get() + (pending - pending_before) as u64;
            self.events_queued_total.set(total);
            self.arrivals.borrow_mut().push_back((total, now_ns()));
        }
    }

    pub(crate) fn wake_consumer(&self) {
        self.consumer_flag.set(true);
        self.consumer.wake();
    }

    pub(crate) fn kick_timer(&self) {
        self.timer_kick.set(true);
        self.timer.wake();
    }

    /// After any change to the client: write what it produced, end the
    /// connection if it ended, re-arm the timer if the deadline moved earlier.
    pub(crate) fn after_change(&self, client: &mut Client) {
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
        let len_before = buf.len();
        let read = client.handle_read(buf, now_ns / 1_000_000);
        let consumed = len_before.saturating_sub(buf.len()) as u64;
        self.mqtt_bytes_in.set(self.mqtt_bytes_in.get() + consumed);
        if read.is_err() {
            // The error is also queued as a `ProtocolError` event and the
            // client has ended (`Disconnected`): `after_change` closes.
            debug_assert!(client.is_disconnected());
        }
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
        let sent = self.mqtt_bytes_out.get() + batch.len() as u64;
        self.mqtt_bytes_out.set(sent);
        // Room in the outgoing buffer again: a publisher may continue.
        self.wake_consumer();
        Some(batch)
    }

    fn reads_paused(&self) -> bool {
        self.client.borrow().pending_events() >= self.events_pause_at
    }

    fn on_tls_failed(&self, error: &TlsError) {
        *self.transport_error.borrow_mut() = Some(ConnectError::Tls(error.to_string()));
    }

    fn on_ws_failed(&self, error: &WsError) {
        *self.transport_error.borrow_mut() = Some(ConnectError::WebSocket(error.to_string()));
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

/// Sleeps until the client's deadline, then lets it act (PINGREQ, timeouts).
pub(crate) async fn timer_task(h: Rc<ClientHandler>) {
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
