//! Client-side MQTT state machine (sans-IO), used by loadgen, the
//! integration tests and the WASM client.
//!
//! The [`Client`] performs no I/O and never reads a clock: the caller passes
//! the time in as `now_ms` (milliseconds from any fixed origin, monotonic),
//! feeds it the bytes read from the transport, and writes out what it
//! produces. The same sequence of inputs always gives the same outputs.
//!
//! Methods, by role (as in quinn-proto):
//! - getters: [`Client::state`], [`Client::inflight`], [`Client::inflight_max`], ...
//! - inputs: [`Client::handle_read`], [`Client::handle_timeout`], [`Client::handle_close`]
//! - commands: [`Client::connect`], [`Client::publish`], [`Client::subscribe`],
//!   [`Client::unsubscribe`], [`Client::disconnect`]
//! - outputs: [`Client::outgoing`] (bytes to write), [`Client::poll_event`],
//!   [`Client::poll_timeout`]
//! - what each packet from the server does: `receive.rs`
//!
//! After every input or command, the caller:
//! 1. writes and drains [`Client::outgoing`] (all of it, in order; batching
//!    several commands into one write is fine and intended),
//! 2. drains [`Client::poll_event`] until `None`,
//! 3. re-arms its timer with [`Client::poll_timeout`] and calls
//!    [`Client::handle_timeout`] when it expires (early calls are harmless).
//!
//! `poll_timeout` changes after `connect`, after anything is written (the
//! keep-alive deadline moves), after a PINGREQ / PINGRESP and on disconnect.
//! Commands take no time argument; they use the latest `now_ms` the client
//! was given, which can only make a PINGREQ come early, never late.
//!
//! One `Client` is one network connection. With `clean_start = false` a
//! server's stored session is accepted (its queued messages arrive as
//! `Message` events); the caller carries its own unacknowledged publishes
//! to the next connection: [`Client::outbound_step`] on the old client,
//! then [`Client::resend_publish`] / [`Client::resend_pubrel`] on the new
//! one when the server kept the session (`outbound.rs`). The receiver side
//! of QoS 2 travels the same way: [`Client::inbound_qos2_ids`] on the old
//! client, [`Client::resume_inbound_qos2`] on the new one before `connect`
//! (kept if the CONNACK says Session Present, dropped otherwise), so that a
//! message the server sends again (DUP) because its PUBREC was lost is
//! acknowledged and not delivered a second time.
//!
//! The publish and receive paths allocate nothing in steady state: payloads
//! and topics are `Bytes` (refcounted slices of the caller's read buffer on
//! receive), the event queue and outgoing buffer are reused, and the packet
//! id tables are allocated once.

mod event;
mod options;
mod outbound;
mod packet_ids;
mod receive;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::codec::{
    decode, encode, Connect, ConnectProperties, Decoded, Disconnect, Packet, Protocol, Publish,
    PublishProperties, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscribeProperties,
    Unsubscribe, UnsubscribeProperties,
};

pub use event::{ClientError, DisconnectReason, Event, ProtocolError, ReadProgress};
pub use options::{
    ClientOptions, CONNECT_TIMEOUT_MS_DEFAULT, CONTROL_INFLIGHT_MAX, OUTGOING_MAX_BYTES_DEFAULT,
    PACKET_SIZE_MAX_BYTES_DEFAULT, RECEIVE_MAXIMUM_MAX,
};
pub use outbound::OutboundStep;

use packet_ids::{ControlKind, IdSet, PacketIds};

/// Longest topic name, in bytes (a two-byte length prefix, section 1.5.4).
const TOPIC_LEN_MAX_BYTES: usize = 65_535;

/// Largest packet size when the server sets no Maximum Packet Size.
const PACKET_SIZE_UNLIMITED_BYTES: u32 = 268_435_460;

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Created; `connect` not called yet.
    Idle,
    /// CONNECT queued, awaiting CONNACK.
    Connecting,
    /// CONNACK accepted the connection.
    Connected,
    /// Over (see the `Disconnected` event for why). Terminal.
    Disconnected,
}

/// What the server allowed in CONNACK (v5; v3 servers allow everything).
#[derive(Clone, Copy, Debug)]
struct ServerLimits {
    maximum_qos: QoS,
    retain_available: bool,
    packet_size_max_bytes: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            packet_size_max_bytes: PACKET_SIZE_UNLIMITED_BYTES,
        }
    }
}

/// The client state machine. See the module documentation for the calling
/// contract.
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    state: State,
    outgoing: BytesMut,
    events: VecDeque<Event>,
    ids: PacketIds,
    /// Inbound QoS 2 packet ids whose PUBREL has not arrived.
    inbound_qos2: IdSet,
    /// Inbound QoS 1/2 ids the caller has not acknowledged (`manual_acks`).
    awaiting_ack: IdSet,
    /// Inbound topic aliases (index = alias - 1), sized at connect.
    topic_aliases: Vec<Option<Bytes>>,
    server: ServerLimits,
    /// Outbound QoS 1/2 window: min(inflight_max, server Receive Maximum).
    inflight_max: u16,
    keep_alive_ms: u64,
    /// Latest time given to any input.
    now_ms: u64,
    connect_sent_ms: u64,
    last_sent_ms: u64,
    ping_sent_ms: Option<u64>,
}

impl Client {
    /// A client in state [`State::Idle`]. Nothing is written until `connect`.
    pub fn new(options: ClientOptions) -> Self {
        let inflight_max = options.inflight_max.max(1);
        let keep_alive_ms = u64::from(options.keep_alive_s) * 1000;
        Client {
            options,
            state: State::Idle,
            outgoing: BytesMut::new(),
            // Grows (amortised) to the most events the caller lets accumulate,
            // then stays: an idle client holds no queue memory.
            events: VecDeque::new(),
            ids: PacketIds::new(),
            inbound_qos2: IdSet::default(),
            awaiting_ack: IdSet::default(),
            topic_aliases: Vec::new(),
            server: ServerLimits::default(),
            inflight_max,
            keep_alive_ms,
            now_ms: 0,
            connect_sent_ms: 0,
            last_sent_ms: 0,
            ping_sent_ms: None,
        }
    }

    // ----- getters -------------------------------------------------------

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub fn protocol(&self) -> Protocol {
        self.options.protocol
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub fn is_disconnected(&self) -> bool {
        self.state == State::Disconnected
    }

    /// Outbound QoS 1/2 publishes awaiting PUBACK / PUBCOMP.
    pub fn inflight(&self) -> u16 {
        self.ids.out_inflight()
    }

    /// The outbound window in use: the smaller of `inflight_max` and the
    /// server's Receive Maximum (known after CONNACK).
    pub fn inflight_max(&self) -> u16 {
        self.inflight_max
    }

    /// Inbound QoS 2 messages awaiting PUBREL.
    pub fn inbound_qos2_pending(&self) -> u16 {
        self.inbound_qos2.len()
    }

    /// The packet ids of inbound QoS 2 messages delivered (as `Message`
    /// events) whose PUBREL has not arrived, lowest first. Still answers
    /// after the connection ended, which is when a caller asks: it hands
    /// them to the next connection with [`Client::resume_inbound_qos2`].
    pub fn inbound_qos2_ids(&self) -> Vec<u16> {
        self.inbound_qos2.ids()
    }

    /// Events queued and not yet taken with `poll_event`.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Effective keep-alive interval (the server's, if it set one).
    pub fn keep_alive_ms(&self) -> u64 {
        self.keep_alive_ms
    }

    /// True when a `publish` of this QoS would not be refused for a full
    /// window or a full outgoing buffer.
    pub fn can_publish(&self, qos: QoS) -> bool {
        self.state == State::Connected
            && self.outgoing.len() < self.options.outgoing_max_bytes
            && (qos == QoS::AtMostOnce || self.ids.out_inflight() < self.inflight_max)
    }

    // ----- outputs -------------------------------------------------------

    /// Bytes to write to the transport, in order. The caller takes them
    /// (`split()`, or `std::mem::swap` with an empty buffer of its own, which
    /// keeps both allocations in use) and writes them all.
    pub fn outgoing(&mut self) -> &mut BytesMut {
        &mut self.outgoing
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called (ms on the caller's clock),
    /// or `None` when no timer is needed.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Connecting => Some(
                self.connect_sent_ms
                    .saturating_add(self.options.connect_timeout_ms),
            ),
            State::Connected => match self.ping_sent_ms {
                Some(sent) => Some(sent.saturating_add(self.pingresp_timeout_ms())),
                None if self.keep_alive_ms > 0 => {
                    Some(self.last_sent_ms.saturating_add(self.keep_alive_ms))
                }
                None => None,
            },
            State::Idle | State::Disconnected => None,
        }
    }

    // ----- commands ------------------------------------------------------

    /// Queues CONNECT. Only valid in [`State::Idle`].
    pub fn connect(&mut self, now_ms: u64) -> Result<(), ClientError> {
        if self.state != State::Idle {
            return Err(ClientError::AlreadyStarted);
        }
        self.observe(now_ms);
        let o = &self.options;
        let properties = if o.protocol.is_v5() {
            ConnectProperties {
                session_expiry_interval_s: o.session_expiry_s,
                receive_maximum: (o.receive_maximum != RECEIVE_MAXIMUM_MAX)
                    .then_some(o.receive_maximum.max(1)),
                maximum_packet_size_bytes: (o.packet_size_max_bytes < PACKET_SIZE_UNLIMITED_BYTES)
                    .then_some(o.packet_size_max_bytes),
                topic_alias_maximum: (o.topic_alias_max > 0).then_some(o.topic_alias_max),
                user: o.user_properties.clone(),
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        };
        let connect = Connect {
            protocol: o.protocol,
            clean_start: o.clean_start,
            keep_alive_s: o.keep_alive_s,
            client_id: o.client_id.clone(),
            will: o.will.clone(),
            username: o.username.clone(),
            password: o.password.clone(),
            properties,
        };
        encode(
            &Packet::Connect(Box::new(connect)),
            o.protocol,
            &mut self.outgoing,
        )
        .map_err(ClientError::Encode)?;
        if o.protocol.is_v5() && o.topic_alias_max > 0 {
            self.topic_aliases = vec![None; usize::from(o.topic_alias_max)];
        }
        self.state = State::Connecting;
        self.connect_sent_ms = now_ms;
        self.last_sent_ms = now_ms;
        Ok(())
    }

    /// Queues a PUBLISH. Returns its packet id for QoS 1/2 (`None` for QoS 0);
    /// completion is reported by `Event::PubAcked` with that id.
    ///
    /// Refuses (writing nothing) when not connected, when the outbound window
    /// or the outgoing buffer is full (`is_would_block()` errors: retry after
    /// the next event or write), or when the server's CONNACK forbids it.
    pub fn publish(
        &mut self,
        topic: Bytes,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        properties: PublishProperties,
    ) -> Result<Option<u16>, ClientError> {
        self.check_publish(&topic, qos, retain, &properties)?;
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            if self.ids.out_inflight() >= self.inflight_max {
                return Err(ClientError::InflightFull {
                    inflight_max: self.inflight_max,
                });
            }
            self.ids.allocate().ok_or(ClientError::PacketIdsExhausted)?
        };
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id,
            payload,
            properties,
        };
        self.write_publish(&publish)?;
        Ok((packet_id != 0).then_some(packet_id))
    }

    /// Queues a SUBSCRIBE; returns its packet id (answered by `Event::SubAck`).
    /// Filters are not validated here: the server's SUBACK judges them.
    pub fn subscribe(&mut self, filters: Vec<SubscribeFilter>) -> Result<u16, ClientError> {
        self.subscribe_with_properties(filters, SubscribeProperties::default())
    }

    /// [`Client::subscribe`] with v5 properties (subscription identifier, user).
    pub fn subscribe_with_properties(
        &mut self,
        filters: Vec<SubscribeFilter>,
        properties: SubscribeProperties,
    ) -> Result<u16, ClientError> {
        let empty = filters.is_empty();
        self.send_filters(empty, ControlKind::Subscribe, |packet_id| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
    }

    /// Queues an UNSUBSCRIBE; returns its packet id (answered by `Event::UnsubAck`).
    pub fn unsubscribe(&mut self, filters: Vec<Bytes>) -> Result<u16, ClientError> {
        let empty = filters.is_empty();
        self.send_filters(empty, ControlKind::Unsubscribe, |packet_id| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties: UnsubscribeProperties::default(),
            })
        })
    }

    /// Queues DISCONNECT (with `reason` in v5; v3 DISCONNECT has no body) and
    /// ends the connection: the caller writes the outgoing bytes, then closes.
    /// A no-op once disconnected.
    pub fn disconnect(&mut self, reason: ReasonCode) {
        if matches!(self.state, State::Idle | State::Disconnected) {
            self.state = State::Disconnected;
            return;
        }
        self.queue_disconnect(reason);
        self.finish(DisconnectReason::Client(reason));
    }

    // ----- inputs --------------------------------------------------------

    /// Decodes every whole packet at the front of `buf` (consuming them;
    /// a partial packet stays for the next call) and handles each.
    ///
    /// `Err` means the server broke the protocol: a DISCONNECT is queued
    /// (v5), `ProtocolError` and `Disconnected` events are queued, and the
    /// caller writes the outgoing bytes and closes. Bytes arriving after
    /// the connection ended are discarded.
    pub fn handle_read(
        &mut self,
        buf: &mut BytesMut,
        now_ms: u64,
    ) -> Result<ReadProgress, ProtocolError> {
        self.observe(now_ms);
        let mut progress = ReadProgress {
            packets: 0,
            needed_bytes: 0,
        };
        loop {
            if matches!(self.state, State::Idle | State::Disconnected) {
                buf.clear();
                return Ok(progress);
            }
            let decoded = decode(
                buf,
                self.options.protocol,
                self.options.packet_size_max_bytes,
            );
            match decoded {
                Ok(Decoded::Packet(packet)) => {
                    progress.packets += 1;
                    if let Err(e) = self.handle_packet(packet) {
                        return Err(self.fail(e));
                    }
                }
                Ok(Decoded::Incomplete { needed_bytes }) => {
                    progress.needed_bytes = needed_bytes;
                    return Ok(progress);
                }
                Err(e) => return Err(self.fail(ProtocolError::Decode(e))),
            }
        }
    }

    /// Acts on expired deadlines: CONNACK timeout, PINGRESP timeout, or
    /// queueing a PINGREQ when nothing was sent for a keep-alive interval.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.observe(now_ms);
        match self.state {
            State::Connecting => {
                if now_ms >= self.connect_sent_ms + self.options.connect_timeout_ms {
                    self.finish(DisconnectReason::ConnectTimeout);
                }
            }
            State::Connected => {
                if let Some(sent) = self.ping_sent_ms {
                    if now_ms >= sent.saturating_add(self.pingresp_timeout_ms()) {
                        // [MQTT-3.1.2-24] is the server's rule; a client "SHOULD
                        // close the Network Connection" (section 3.1.2.10).
                        self.finish(DisconnectReason::KeepAliveTimeout);
                    }
                } else if self.keep_alive_ms > 0
                    && now_ms >= self.last_sent_ms.saturating_add(self.keep_alive_ms)
                {
                    if let Err(e) =
                        encode(&Packet::PingReq, self.options.protocol, &mut self.outgoing)
                    {
                        self.fail(ProtocolError::Encode(e));
                        return;
                    }
                    self.ping_sent_ms = Some(now_ms);
                    self.last_sent_ms = now_ms;
                }
            }
            State::Idle | State::Disconnected => {}
        }
    }

    /// The transport closed (EOF or error). Queues `Disconnected(TransportClosed)`
    /// unless the connection had already ended.
    pub fn handle_close(&mut self, now_ms: u64) {
        self.observe(now_ms);
        if self.state != State::Disconnected {
            self.finish(DisconnectReason::TransportClosed);
        }
    }

    // ----- internals -----------------------------------------------------

    fn observe(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn pingresp_timeout_ms(&self) -> u64 {
        match self.options.pingresp_timeout_ms {
            0 => self.keep_alive_ms.max(1000),
            ms => ms,
        }
    }

    fn control_id(&mut self) -> Result<u16, ClientError> {
        if self.state != State::Connected {
            return Err(ClientError::NotConnected);
        }
        if self.ids.control_len() >= CONTROL_INFLIGHT_MAX {
            return Err(ClientError::ControlInflightFull);
        }
        self.ids.allocate().ok_or(ClientError::PacketIdsExhausted)
    }

    /// Queues the SUBSCRIBE or UNSUBSCRIBE (`kind`) that `make` builds
    /// around a new packet id, and returns the id; `empty`: the caller gave
    /// no filters, an error before any id is taken.
    fn send_filters(
        &mut self,
        empty: bool,
        kind: ControlKind,
        make: impl FnOnce(u16) -> Packet,
    ) -> Result<u16, ClientError> {
        if empty {
            return Err(ClientError::NoFilters);
        }
        let packet_id = self.control_id()?;
        self.send_control(&make(packet_id), packet_id, kind)?;
        Ok(packet_id)
    }

    fn send_control(
        &mut self,
        packet: &Packet,
        packet_id: u16,
        kind: ControlKind,
    ) -> Result<(), ClientError> {
        encode(packet, self.options.protocol, &mut self.outgoing).map_err(ClientError::Encode)?;
        let inserted = self.ids.insert_control(packet_id, kind);
        debug_assert!(inserted, "control_id checked the bound");
        self.last_sent_ms = self.now_ms;
        Ok(())
    }

    /// Ends the connection with `reason` and reports it.
    ///
    /// `inbound_qos2` is kept: the server may still hold those messages in
    /// the session, and the caller carries the ids to the next connection
    /// (`inbound_qos2_ids` / `resume_inbound_qos2`).
    fn finish(&mut self, reason: DisconnectReason) {
        self.state = State::Disconnected;
        self.ping_sent_ms = None;
        self.awaiting_ack.clear();
        self.events.push_back(Event::Disconnected(reason));
    }

    /// Reports a protocol error, queues DISCONNECT (v5) and ends the connection.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        let reason = error.reason_code();
        self.events.push_back(Event::ProtocolError(error));
        if self.state == State::Connected {
            self.queue_disconnect(reason);
        }
        self.finish(DisconnectReason::ProtocolError(reason));
        error
    }

    fn queue_disconnect(&mut self, reason: ReasonCode) {
        let packet = Packet::Disconnect(Disconnect {
            reason,
            ..Disconnect::default()
        });
        // DISCONNECT always encodes (no variable-length fields); an error here
        // only means the connection ends without telling the server why.
        let _ = encode(&packet, self.options.protocol, &mut self.outgoing);
    }
}

/// Checks a topic name as the client sends it: non-empty unless a Topic
/// Alias stands in, at most 65_535 bytes, UTF-8 without U+0000, and no
/// wildcards ([MQTT-3.3.2-2], [MQTT-4.7.3-1]).
fn topic_name_is_valid(topic: &[u8], has_alias: bool) -> bool {
    if topic.is_empty() {
        return has_alias;
    }
    topic.len() <= TOPIC_LEN_MAX_BYTES
        && !topic.iter().any(|b| matches!(b, b'+' | b'#' | 0))
        && std::str::from_utf8(topic).is_ok()
}
