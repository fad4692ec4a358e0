//! Harness and helpers shared by conformance_v311.rs and conformance_v5.rs:
//! `Raw` (one broker, the exact bytes it writes, for the rules about the
//! wire form itself) and the `Acl` and packet helpers used with `sim::Sim`.
//! Protocol-specific `Raw` methods (CONNECT, SUBSCRIBE, ...) live in each
//! test file's own `impl Raw` block.
//!
//! Needs `mod sim;` and `mod wire;` next to `mod conformance;`.
#![allow(dead_code)]

use std::collections::HashMap;

use bytes::BytesMut;
use ringmq_engine::broker::{Authenticator, Broker, BrokerConfig, ConnId, Credentials, Event};
use ringmq_engine::codec::{Packet, Publish, ReasonCode};

use crate::sim::Sim;
use crate::wire::split_frames;

// ---------------------------------------------------------------- raw harness

#[derive(Default)]
struct Wire {
    serial: u64,
    bytes: Vec<u8>,
    closed: bool,
}

/// A client's end in [`Raw`].
#[derive(Clone, Copy, Debug)]
pub struct R {
    conn: ConnId,
    serial: u64,
}

/// One broker shard driven directly; keeps the exact bytes it writes to
/// each connection.
pub struct Raw {
    pub broker: Broker,
    pub now_ms: u64,
    wires: HashMap<ConnId, Wire>,
    serial: u64,
}

impl Raw {
    pub fn new(config: BrokerConfig) -> Raw {
        Raw {
            broker: Broker::new(config, 0, 1),
            now_ms: 1_000,
            wires: HashMap::new(),
            serial: 0,
        }
    }

    pub fn open(&mut self) -> R {
        let conn = self.broker.accept(self.now_ms).expect("accept");
        self.serial += 1;
        self.wires.insert(
            conn,
            Wire {
                serial: self.serial,
                ..Wire::default()
            },
        );
        R {
            conn,
            serial: self.serial,
        }
    }

    pub fn closed(&self, r: R) -> bool {
        !matches!(self.wires.get(&r.conn), Some(w) if w.serial == r.serial && !w.closed)
    }

    pub fn send(&mut self, r: R, bytes: &[u8]) {
        if self.closed(r) {
            return;
        }
        let mut buf = BytesMut::from(bytes);
        self.broker.handle_read(r.conn, &mut buf, self.now_ms);
        self.pump();
    }

    pub fn pump(&mut self) {
        while let Some(ev) = self.broker.poll_event() {
            let (conn, close) = match ev {
                Event::Transmit(c) => (c, false),
                Event::Close(c) => (c, true),
                Event::ToShard { .. } | Event::Authenticate { .. } => continue,
            };
            let out = self
                .broker
                .outgoing(conn)
                .map(|o| o.split())
                .unwrap_or_default();
            if let Some(w) = self.wires.get_mut(&conn) {
                if !w.closed {
                    w.bytes.extend_from_slice(&out);
                    w.closed = close;
                }
            }
            if close {
                self.broker.handle_closed(conn, self.now_ms);
            }
        }
    }

    pub fn drop_conn(&mut self, r: R) {
        if !self.closed(r) {
            if let Some(w) = self.wires.get_mut(&r.conn) {
                w.closed = true;
            }
            self.broker.handle_closed(r.conn, self.now_ms);
            self.pump();
        }
    }

    /// The frames received since the last call.
    pub fn frames(&mut self, r: R) -> Vec<Vec<u8>> {
        match self.wires.get_mut(&r.conn) {
            Some(w) if w.serial == r.serial => split_frames(&std::mem::take(&mut w.bytes)),
            _ => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------- sim helpers

/// An ACL for the tests: user "bad" and user "user" without password "pw"
/// are refused; topics and filters under "deny/" are not authorised.
pub struct Acl;

impl Authenticator for Acl {
    fn authenticate(&mut self, c: &Credentials<'_>) -> Result<(), ReasonCode> {
        match c.username {
            Some(b"bad") => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            Some(b"user") if c.password != Some(&b"pw"[..]) => {
                Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            }
            _ => Ok(()),
        }
    }
    fn may_publish(&self, _: &[u8], _: Option<&[u8]>, topic: &[u8]) -> bool {
        !topic.starts_with(b"deny/")
    }
    fn may_subscribe(&self, _: &[u8], _: Option<&[u8]>, filter: &[u8]) -> bool {
        !filter.starts_with(b"deny/")
    }
}

/// A one-shard `Sim` whose broker uses [`Acl`].
pub fn acl_sim() -> Sim {
    let mut sim = Sim::new(1);
    sim.brokers[0].set_authenticator(Box::new(Acl));
    sim
}

/// The PUBLISH packets among `packets`, in order.
pub fn publishes(packets: &[Packet]) -> Vec<Publish> {
    packets
        .iter()
        .filter_map(|p| {
            if let Packet::Publish(p) = p {
                Some(p.clone())
            } else {
                None
            }
        })
        .collect()
}
