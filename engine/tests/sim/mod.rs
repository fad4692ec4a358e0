//! A deterministic simulation of one or more broker shards and their
//! clients on a virtual clock: packets in, packets out, ring messages
//! delivered synchronously between shards, no sockets and no sleeping.
#![allow(dead_code)]

pub mod store;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use ringmq_engine::auth::{decide, AuthRequest, UserStore};
use ringmq_engine::broker::{owner_shard, Broker, BrokerConfig, ConnId, Event};
use ringmq_engine::codec::{
    self, ConnAck, Connect, ConnectProperties, Decoded, Packet, Protocol, PubAck, Publish,
    PublishProperties, QoS, ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscribeProperties,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

pub const V3: Protocol = Protocol::V3_1_1;
pub const V5: Protocol = Protocol::V5;

/// A client's end of a simulated connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct C {
    pub shard: usize,
    pub conn: ConnId,
    pub protocol: Protocol,
    pub serial: u64,
}

#[derive(Default)]
struct Wire {
    inbox: BytesMut,
    /// Decoded packets put back by `expect` (everything but the expected one).
    pending: Vec<Packet>,
    closed: bool,
    /// The client stopped reading (`Sim::stall`).
    stalled: bool,
    /// Bytes sent to the broker that it left unread (while it waits for an
    /// authentication verdict), fed again with the next input.
    unread: BytesMut,
}

/// An `Event::Authenticate` the simulated runtime has not answered yet.
pub struct AuthAsk {
    pub shard: usize,
    pub conn: ConnId,
    pub token: u64,
    pub client_id: Bytes,
    pub request: AuthRequest,
}

pub struct Sim {
    pub brokers: Vec<Broker>,
    pub now_ms: u64,
    wires: HashMap<(usize, ConnId), (u64, Wire)>,
    serial: u64,
    next_pid: u16,
    /// The user store the simulated runtime verifies against
    /// (`BrokerConfig::user_store` should be true with one).
    pub store: Option<UserStore>,
    /// Hold `Event::Authenticate` requests in `auth_asks` instead of
    /// answering them at once (to test what happens meanwhile).
    pub defer_auth: bool,
    pub auth_asks: Vec<AuthAsk>,
    /// The configuration every shard was built with (for `restart`).
    pub config: BrokerConfig,
    /// The simulated durable store (`BrokerConfig::durable`): `pump` hands
    /// it every persist batch (see `store.rs`).
    pub disk: store::FakeStore,
    /// Wall-clock milliseconds at engine time 0 of the current brokers.
    pub wall_base_ms: u64,
}

pub fn opts(qos: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(qos).unwrap(),
        ..Default::default()
    }
}

pub fn publish(topic: &str, payload: &str, qos: u8) -> Publish {
    Publish {
        qos: QoS::from_u8(qos).unwrap(),
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..Default::default()
    }
}

pub fn connect_packet(protocol: Protocol, client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol,
        clean_start: clean,
        keep_alive_s: 60,
        client_id: Bytes::copy_from_slice(client_id.as_bytes()),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub fn will(topic: &str, payload: &str, qos: u8, delay_s: Option<u32>) -> Will {
    let mut w = Will {
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::from_u8(qos).unwrap(),
        retain: false,
        properties: Default::default(),
    };
    w.properties.will_delay_interval_s = delay_s;
    w
}

/// The environment variable that selects the configuration profile the
/// scenario tests start from (see [`base`]).
pub const PROFILE_VAR: &str = "RINGMQ_SIM_PROFILE";

/// A profile: its name and the configuration it starts from.
pub type Profile = (&'static str, fn() -> BrokerConfig);

/// The accepted values of [`PROFILE_VAR`] and the configuration each names.
pub const PROFILES: &[Profile] = &[
    ("native", BrokerConfig::default),
    ("in-tab", BrokerConfig::in_tab),
];

/// The configuration the scenario tests start from: the native broker's
/// defaults, or with `RINGMQ_SIM_PROFILE=in-tab` the in-tab broker's
/// (`BrokerConfig::in_tab`, the wasm package's limits), so the same
/// scenarios run against both. Tests that set fields build their config as
/// `BrokerConfig { field: x, ..base() }`. An unknown profile panics: a
/// typo must not quietly run the native profile twice.
pub fn base() -> BrokerConfig {
    match std::env::var(PROFILE_VAR) {
        Err(std::env::VarError::NotPresent) => BrokerConfig::default(),
        Err(std::env::VarError::NotUnicode(v)) => {
            panic!(
                "{PROFILE_VAR}={v:?} is not UTF-8; accepted values: {}",
                profile_names()
            )
        }
        Ok(name) => match PROFILES.iter().find(|(n, _)| *n == name) {
            Some((_, config)) => config(),
            None => panic!(
                "unknown {PROFILE_VAR}={name:?}; accepted values: {}",
                profile_names()
            ),
        },
    }
}

fn profile_names() -> String {
    PROFILES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Sim {
    /// `shards` brokers with the profile's configuration ([`base`]).
    pub fn new(shards: u16) -> Sim {
        Sim::with_config(shards, base())
    }

    pub fn with_config(shards: u16, config: BrokerConfig) -> Sim {
        let brokers = (0..shards)
            .map(|s| Broker::new(config.clone(), s, shards))
            .collect();
        Sim {
            brokers,
            now_ms: 1_000,
            wires: HashMap::new(),
            serial: 0,
            next_pid: 0,
            store: None,
            defer_auth: false,
            auth_asks: Vec::new(),
            config,
            disk: store::FakeStore::default(),
            wall_base_ms: 0,
        }
    }

    /// A simulation whose runtime verifies against `store`.
    pub fn with_store(shards: u16, config: BrokerConfig, store: UserStore) -> Sim {
        let mut sim = Sim::with_config(
            shards,
            BrokerConfig {
                user_store: true,
                ..config
            },
        );
        sim.store = Some(store);
        sim
    }

    /// Answers every deferred authentication request (as the runtime's
    /// helper threads would), then lets the broker read what it left.
    pub fn answer_auth(&mut self) {
        let asks = std::mem::take(&mut self.auth_asks);
        for ask in asks {
            self.answer(ask);
        }
        self.pump();
    }

    fn answer(&mut self, ask: AuthAsk) {
        let empty = UserStore::default();
        let store = self.store.as_ref().unwrap_or(&empty);
        // A fixed nonce: deterministic, and enough for the simulation.
        let verdict = decide(store, ask.request, &[0x5a; 18]);
        self.brokers[ask.shard].handle_auth_result(ask.conn, ask.token, verdict, self.now_ms);
        self.refeed(ask.shard, ask.conn);
    }

    /// Feeds a connection's unread input again (after a verdict).
    fn refeed(&mut self, shard: usize, conn: ConnId) {
        let Some((_, w)) = self.wires.get_mut(&(shard, conn)) else {
            return;
        };
        if w.closed || w.unread.is_empty() {
            return;
        }
        let mut buf = std::mem::take(&mut w.unread);
        self.brokers[shard].handle_read(conn, &mut buf, self.now_ms);
        if let Some((_, w)) = self.wires.get_mut(&(shard, conn)) {
            w.unread = buf;
        }
    }

    pub fn pid(&mut self) -> u16 {
        self.next_pid = self.next_pid % 60_000 + 1;
        self.next_pid
    }

    /// Open a socket on `shard` (no bytes sent yet).
    pub fn open(&mut self, shard: usize, protocol: Protocol) -> C {
        let conn = self.brokers[shard].accept(self.now_ms).expect("accept");
        self.serial += 1;
        self.wires
            .insert((shard, conn), (self.serial, Wire::default()));
        C {
            shard,
            conn,
            protocol,
            serial: self.serial,
        }
    }

    /// Open a socket on the client id's owner shard and send CONNECT.
    pub fn connect_with(&mut self, connect: Connect) -> (C, ConnAck) {
        let shards = self.brokers.len() as u16;
        let shard = if connect.client_id.is_empty() {
            0
        } else {
            owner_shard(&connect.client_id, shards) as usize
        };
        let c = self.open(shard, connect.protocol);
        self.send(c, Packet::Connect(Box::new(connect)));
        let ack = self.expect(c, |p| matches!(p, Packet::ConnAck(_)));
        let Packet::ConnAck(ack) = ack else {
            unreachable!()
        };
        (c, ack)
    }

    pub fn connect(&mut self, protocol: Protocol, client_id: &str, clean: bool) -> C {
        let (c, ack) = self.connect_with(connect_packet(protocol, client_id, clean));
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {client_id}");
        c
    }

    pub fn encode(&self, c: C, packet: &Packet) -> BytesMut {
        let mut b = BytesMut::new();
        codec::encode(packet, c.protocol, &mut b).expect("encode");
        b
    }

    pub fn send(&mut self, c: C, packet: Packet) {
        let bytes = self.encode(c, &packet);
        self.send_raw(c, &bytes);
    }

    pub fn send_raw(&mut self, c: C, bytes: &[u8]) {
        if self.is_closed(c) {
            return;
        }
        let mut buf = match self.wires.get_mut(&(c.shard, c.conn)) {
            Some((_, w)) => std::mem::take(&mut w.unread),
            None => BytesMut::new(),
        };
        buf.extend_from_slice(bytes);
        self.brokers[c.shard].handle_read(c.conn, &mut buf, self.now_ms);
        if let Some((_, w)) = self.wires.get_mut(&(c.shard, c.conn)) {
            w.unread = buf;
        }
        self.pump();
    }

    /// Deliver every pending event: bytes to clients, closes, ring messages.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for shard in 0..self.brokers.len() {
                while let Some(ev) = self.brokers[shard].poll_event() {
                    progressed = true;
                    match ev {
                        Event::Transmit(conn) => {
                            let stalled = self
                                .wires
                                .get(&(shard, conn))
                                .is_some_and(|(_, w)| w.stalled);
                            if stalled {
                                // The client does not read: the bytes stay
                                // in the broker's buffer.
                                continue;
                            }
                            let now = self.now_ms;
                            // As the runtime does: the socket took the last
                            // batch, refill, then take.
                            self.brokers[shard].handle_writable(conn, now);
                            let out = self.brokers[shard]
                                .outgoing(conn)
                                .map(|o| o.split())
                                .unwrap_or_default();
                            if let Some((_, w)) = self.wires.get_mut(&(shard, conn)) {
                                if !w.closed {
                                    w.inbox.extend_from_slice(&out);
                                }
                            }
                        }
                        Event::Close(conn) => {
                            let out = self.brokers[shard]
                                .outgoing(conn)
                                .map(|o| o.split())
                                .unwrap_or_default();
                            if let Some((_, w)) = self.wires.get_mut(&(shard, conn)) {
                                if !w.closed {
                                    w.inbox.extend_from_slice(&out);
                                    w.closed = true;
                                }
                            }
                            self.brokers[shard].handle_closed(conn, self.now_ms);
                        }
                        Event::ToShard { shard: to, msg } => {
                            let now = self.now_ms;
                            self.brokers[to as usize].handle_shard_message(msg, now);
                        }
                        Event::Authenticate {
                            conn,
                            token,
                            client_id,
                            request,
                        } => {
                            let ask = AuthAsk {
                                shard,
                                conn,
                                token,
                                client_id,
                                request,
                            };
                            if self.defer_auth {
                                self.auth_asks.push(ask);
                            } else {
                                self.answer(ask);
                            }
                        }
                    }
                }
                progressed |= self.disk.take(shard, &mut self.brokers, self.now_ms);
            }
            if !progressed {
                return;
            }
        }
    }

    /// The process dies (every connection gone, nothing flushed) and a new
    /// one starts `downtime_ms` later: new brokers restore what the store
    /// holds. Returns the records that failed to restore.
    pub fn restart(&mut self, downtime_ms: u64) -> Vec<ringmq_engine::persist::RestoreError> {
        self.now_ms += downtime_ms;
        self.start_again()
    }

    /// As `restart`, the new process's engine clock starting again at
    /// 1,000 ms (the wall clock, given with `set_wall_clock`, goes on).
    pub fn restart_fresh_epoch(
        &mut self,
        downtime_ms: u64,
    ) -> Vec<ringmq_engine::persist::RestoreError> {
        let wall_now = self.wall_base_ms + self.now_ms + downtime_ms;
        self.now_ms = 1_000;
        self.wall_base_ms = wall_now - self.now_ms;
        self.start_again()
    }

    fn start_again(&mut self) -> Vec<ringmq_engine::persist::RestoreError> {
        self.wires.clear();
        let shards = self.brokers.len() as u16;
        self.brokers = (0..shards)
            .map(|s| Broker::new(self.config.clone(), s, shards))
            .collect();
        for b in &mut self.brokers {
            b.set_wall_clock(self.now_ms, self.wall_base_ms + self.now_ms);
        }
        let errors = self.disk.restore_into(&mut self.brokers, self.now_ms);
        self.pump();
        errors
    }

    /// The store answers its held batches (of `shard`, or all) with `result`.
    pub fn complete_disk(
        &mut self,
        shard: Option<usize>,
        result: Result<(), ringmq_engine::persist::PersistFailure>,
    ) {
        self.disk
            .complete(shard, result, &mut self.brokers, self.now_ms);
        self.pump();
    }

    /// The client stops (`true`) or resumes reading its socket; resuming
    /// takes what the broker buffered meanwhile, as a socket draining would.
    pub fn stall(&mut self, c: C, stalled: bool) {
        if let Some((_, w)) = self.wires.get_mut(&(c.shard, c.conn)) {
            w.stalled = stalled;
        }
        if !stalled {
            let now = self.now_ms;
            self.brokers[c.shard].handle_writable(c.conn, now);
            let out = self.brokers[c.shard]
                .outgoing(c.conn)
                .map(|o| o.split())
                .unwrap_or_default();
            if let Some((_, w)) = self.wires.get_mut(&(c.shard, c.conn)) {
                w.inbox.extend_from_slice(&out);
            }
        }
        self.pump();
    }

    /// The client drops its socket without DISCONNECT.
    pub fn drop_conn(&mut self, c: C) {
        if let Some((_, w)) = self.wires.get_mut(&(c.shard, c.conn)) {
            if !w.closed {
                w.closed = true;
                self.brokers[c.shard].handle_closed(c.conn, self.now_ms);
            }
        }
        self.pump();
    }

    pub fn is_closed(&self, c: C) -> bool {
        // Closed unless the wire exists, is this connection's and is open.
        // (`!is_some_and` rather than `is_none_or`, which needs Rust 1.82;
        // the workspace's rust-version is 1.80.)
        !self
            .wires
            .get(&(c.shard, c.conn))
            .is_some_and(|(serial, w)| *serial == c.serial && !w.closed)
    }

    /// Move the virtual clock and run due timers.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now_ms + ms;
        loop {
            let next = self.brokers.iter().filter_map(|b| b.poll_timeout()).min();
            match next {
                Some(t) if t <= target => {
                    self.now_ms = self.now_ms.max(t);
                    let now = self.now_ms;
                    for b in &mut self.brokers {
                        if b.poll_timeout().is_some_and(|d| d <= now) {
                            b.handle_timeout(now);
                        }
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now_ms = target;
    }

    /// Every packet the client has received so far.
    pub fn recv(&mut self, c: C) -> Vec<Packet> {
        let Some((serial, w)) = self.wires.get_mut(&(c.shard, c.conn)) else {
            return Vec::new();
        };
        if *serial != c.serial {
            return Vec::new();
        }
        let mut out = std::mem::take(&mut w.pending);
        loop {
            match codec::decode(&mut w.inbox, c.protocol, u32::MAX)
                .expect("broker sent a malformed packet")
            {
                Decoded::Packet(p) => out.push(p),
                Decoded::Incomplete { .. } => return out,
            }
        }
    }

    /// The first received packet matching `pred`; the others stay for the next `recv`.
    pub fn expect(&mut self, c: C, pred: impl Fn(&Packet) -> bool) -> Packet {
        let mut got = self.recv(c);
        match got.iter().position(&pred) {
            Some(i) => {
                let p = got.remove(i);
                if let Some((_, w)) = self.wires.get_mut(&(c.shard, c.conn)) {
                    w.pending = got;
                }
                p
            }
            None => panic!("expected packet not received; got {got:?}"),
        }
    }

    /// Received PUBLISH packets, acknowledging QoS 1/2 as a client would.
    pub fn messages(&mut self, c: C) -> Vec<Publish> {
        let mut out = Vec::new();
        for p in self.recv(c) {
            if let Packet::Publish(p) = p {
                out.push(p);
            }
        }
        for p in out.clone() {
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => self.send(c, Packet::PubAck(PubAck::new(p.packet_id))),
                QoS::ExactlyOnce => {
                    self.send(c, Packet::PubRec(PubAck::new(p.packet_id)));
                    let _ = self.recv(c); // PUBREL
                    self.send(c, Packet::PubComp(PubAck::new(p.packet_id)));
                }
            }
        }
        out
    }

    pub fn payloads(&mut self, c: C) -> Vec<String> {
        self.messages(c)
            .iter()
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect()
    }

    pub fn subscribe_with(
        &mut self,
        c: C,
        filters: &[(&str, SubscriptionOptions)],
        id: Option<u32>,
    ) -> Vec<ReasonCode> {
        let pid = self.pid();
        let sub = Subscribe {
            packet_id: pid,
            filters: filters
                .iter()
                .map(|(f, o)| SubscribeFilter {
                    filter: Bytes::copy_from_slice(f.as_bytes()),
                    options: *o,
                })
                .collect(),
            properties: SubscribeProperties {
                subscription_identifier: id,
                user: Vec::new(),
            },
        };
        self.send(c, Packet::Subscribe(sub));
        let Packet::SubAck(SubAck {
            packet_id, reasons, ..
        }) = self.expect(c, |p| matches!(p, Packet::SubAck(_)))
        else {
            unreachable!()
        };
        assert_eq!(packet_id, pid);
        reasons
    }

    pub fn subscribe(&mut self, c: C, filter: &str, qos: u8) -> ReasonCode {
        self.subscribe_with(c, &[(filter, opts(qos))], None)[0]
    }

    pub fn unsubscribe(&mut self, c: C, filter: &str) -> Vec<ReasonCode> {
        let pid = self.pid();
        let u = Unsubscribe {
            packet_id: pid,
            filters: vec![Bytes::copy_from_slice(filter.as_bytes())],
            properties: Default::default(),
        };
        self.send(c, Packet::Unsubscribe(u));
        let Packet::UnsubAck(UnsubAck {
            packet_id, reasons, ..
        }) = self.expect(c, |p| matches!(p, Packet::UnsubAck(_)))
        else {
            unreachable!()
        };
        assert_eq!(packet_id, pid);
        reasons
    }

    /// Publish and complete the QoS flow as the sender.
    pub fn publish(&mut self, c: C, mut p: Publish) {
        if p.qos != QoS::AtMostOnce && p.packet_id == 0 {
            p.packet_id = self.pid();
        }
        let (qos, pid) = (p.qos, p.packet_id);
        self.send(c, Packet::Publish(p));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                let ack = self.expect(c, |x| matches!(x, Packet::PubAck(a) if a.packet_id == pid));
                let Packet::PubAck(a) = ack else {
                    unreachable!()
                };
                assert!(!a.reason.is_error(), "PUBACK {:?}", a.reason);
            }
            QoS::ExactlyOnce => {
                self.expect(c, |x| matches!(x, Packet::PubRec(a) if a.packet_id == pid));
                self.send(c, Packet::PubRel(PubAck::new(pid)));
                self.expect(c, |x| matches!(x, Packet::PubComp(a) if a.packet_id == pid));
            }
        }
    }

    pub fn pub_simple(&mut self, c: C, topic: &str, payload: &str, qos: u8) {
        self.publish(c, publish(topic, payload, qos));
    }

    pub fn disconnect(&mut self, c: C) {
        self.send(c, Packet::Disconnect(Default::default()));
    }

    pub fn ping_ok(&mut self, c: C) -> bool {
        self.send(c, Packet::PingReq);
        self.recv(c).iter().any(|p| matches!(p, Packet::PingResp))
    }

    /// The reason of a DISCONNECT the client received, if any.
    pub fn disconnect_reason(&mut self, c: C) -> Option<ReasonCode> {
        self.recv(c).into_iter().find_map(|p| match p {
            Packet::Disconnect(d) => Some(d.reason),
            _ => None,
        })
    }
}

pub fn props_expiry(s: u32) -> PublishProperties {
    PublishProperties {
        message_expiry_interval_s: Some(s),
        ..Default::default()
    }
}
