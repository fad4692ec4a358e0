//! [`MqttConnection`]: one MQTT client connection on the current monoio
//! runtime. Commands go through [`MqttConnection::with_client`], events come
//! out of [`MqttConnection::poll_event`] / [`MqttConnection::next_event`]
//! (crate docs for the flow and the backpressure).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use ringmq_engine::client::{Client, ClientOptions, DisconnectReason, Event};
use ringmq_engine::codec::ReasonCode;
use ringmq_net::clock::Clock;
use ringmq_net::conn::{CloseReason, DriverHandle};
use ringmq_net::connect::connect_tcp;

use crate::config::{ClientConfig, Connected};
use crate::error::ConnectError;
use crate::handler::{timer_task, ClientHandler};

/// One MQTT client connection on the current monoio runtime.
pub struct MqttConnection {
    handler: Rc<ClientHandler>,
}

impl MqttConnection {
    /// Opens TCP to `addr` (binding `config.bind_ip` first if set), starts
    /// TLS and / or WebSocket if `config.transport` says so, sends CONNECT
    /// and waits for CONNACK (the TLS handshake and the WebSocket upgrade
    /// run within that wait). Must run inside a monoio runtime with
    /// timers enabled.
    pub async fn connect(
        addr: SocketAddr,
        options: ClientOptions,
        config: &ClientConfig,
        clock: Clock,
    ) -> Result<(MqttConnection, Connected), ConnectError> {
        let timeout = Duration::from_millis(config.connect_timeout_ms);
        let stream = match monoio::time::timeout(timeout, connect_tcp(addr, config.bind_ip)).await {
            Ok(stream) => stream?,
            Err(_) => return Err(ConnectError::Timeout),
        };
        stream.set_nodelay(config.nodelay)?;
        let mut client = Client::new(options);
        client
            .connect(clock.now_ms())
            .map_err(|e| ConnectError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let handle = DriverHandle::new();
        let handler = Rc::new(ClientHandler::new(
            client,
            clock,
            handle.clone(),
            config.events_pause_at,
        ));
        config.transport.wrap(stream)?.spawn_driver(
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
                        let transport_error = self.handler.transport_error.borrow_mut().take();
                        return Err(match (protocol_error, transport_error) {
                            (_, Some(e)) => e,
                            (Some(e), None) => ConnectError::Protocol(e),
                            (None, None) => ConnectError::Closed(reason),
                        });
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

    /// MQTT bytes received so far (complete packets the client consumed;
    /// TLS records and WebSocket frame headers not counted).
    pub fn mqtt_bytes_received(&self) -> u64 {
        self.handler.mqtt_bytes_in.get()
    }

    /// MQTT bytes handed to the transport so far (before TLS / WebSocket).
    pub fn mqtt_bytes_sent(&self) -> u64 {
        self.handler.mqtt_bytes_out.get()
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
