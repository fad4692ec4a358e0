//! One session's state: its subscriptions, the outbound QoS 1/2 messages in
//! flight and queued, inbound QoS 2 packet ids, the will, and the inflight
//! window check and packet id allocation every delivery path uses.

use std::collections::VecDeque;

use bytes::Bytes;

use super::conn::Conn;
use super::short_bytes::ShortBytes;
use super::slab::Slab;
use super::{ConnId, SessionId};
use crate::acl::{Action, SessionAcl};
use crate::codec::{Protocol, Publish, Will};
use crate::persist::StoredSubscription;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after the packet awaited
pub(super) enum OutState {
    AwaitPubAck,
    AwaitPubRec,
    AwaitPubComp,
}

/// A QoS 1/2 message sent to the client and not yet fully acknowledged.
pub(super) struct Outbound {
    pub(super) packet_id: u16,
    pub(super) state: OutState,
    pub(super) publish: Publish,
    pub(super) received_at_ms: u64,
    /// The `$share/...` filter it was delivered through, for re-dispatch.
    pub(super) shared_filter: Option<Bytes>,
    /// Its message record's sequence number (0: not stored; `persist.rs`).
    pub(super) seq: u64,
}

/// A message waiting for the inflight window or for the client to return.
pub(super) struct Queued {
    pub(super) publish: Publish,
    pub(super) received_at_ms: u64,
    pub(super) shared_filter: Option<Bytes>,
    /// Its message record's sequence number (0: not stored; `persist.rs`).
    pub(super) seq: u64,
}

pub(super) struct Session {
    /// Its own copy, inline up to 22 bytes, boxed beyond ([`ShortBytes`]:
    /// 24 bytes, no heap block for a short id; memory per idle connection,
    /// `connection_and_session_records_stay_small`).
    pub(super) client_id: ShortBytes,
    pub(super) username: Option<Box<[u8]>>,
    /// Its connection while online ([`Session::conn`]): 4 bytes, with
    /// [`NO_CONN`] for none (a shard never holds 2^32 - 1 connections).
    conn: u32,
    pub(super) protocol: Protocol,
    /// What this session subscribed to (the router trie holds the same
    /// options): the per-session limit, clean-up, and its stored record.
    pub(super) subscriptions: Subscriptions,
    /// Seconds the session outlives its connection; `u32::MAX` = never.
    pub(super) expiry_interval_s: u32,
    /// Its QoS 1/2 state ([`SessionQos`]), made on first use.
    pub(super) qos: LazyQos,
    next_packet_id: u16,
    /// Boxed: most sessions have none, and a will is large.
    pub(super) will: Option<Box<Will>>,
    pub(super) generation: u64,
    /// This client's view of the ACL; `None` when no ACL is installed
    /// (everything allowed). Boxed: one pointer without an ACL.
    pub(super) acl: Option<Box<SessionAcl>>,
    /// Its records are in the store (`persist.rs`): its end deletes them.
    pub(super) stored: bool,
    /// When it lost its connection, in whole engine seconds (meaningful
    /// while offline): 4 bytes, so the inline client id fits the record's
    /// 96 bytes. Only a restart reads it (the stored session's offline
    /// time), and session expiry counts in seconds.
    offline_since_s: u32,
}

/// [`Session::conn`] of a session without a connection.
const NO_CONN: u32 = u32::MAX;

/// A session's subscriptions: one pointer while it has none (most idle
/// devices of a large fleet publish only), a boxed `Vec` once it has one
/// (memory per idle connection). Reads see a slice.
#[derive(Default)]
// The box is the point: 8 bytes in every session instead of a 24-byte
// `Vec`, a second allocation only for a session that subscribed.
#[allow(clippy::box_collection)]
pub(super) struct Subscriptions(Option<Box<Vec<StoredSubscription>>>);

impl std::ops::Deref for Subscriptions {
    type Target = [StoredSubscription];

    fn deref(&self) -> &[StoredSubscription] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl std::ops::DerefMut for Subscriptions {
    fn deref_mut(&mut self) -> &mut [StoredSubscription] {
        self.0.as_deref_mut().map_or(&mut [], Vec::as_mut_slice)
    }
}

impl Subscriptions {
    pub(super) fn push(&mut self, subscription: StoredSubscription) {
        self.0.get_or_insert_with(Box::default).push(subscription);
    }

    /// Keeps those `keep` says; the box goes with the last one.
    pub(super) fn retain(&mut self, keep: impl FnMut(&StoredSubscription) -> bool) {
        if let Some(v) = &mut self.0 {
            v.retain(keep);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }

    /// Takes them all, leaving none.
    pub(super) fn take(&mut self) -> Vec<StoredSubscription> {
        self.0.take().map_or_else(Vec::new, |v| *v)
    }
}

/// A session's QoS 1/2 messages in flight and queued and the QoS 2 packet
/// ids it received: boxed behind [`LazyQos`], so that a session that never
/// had any pays one pointer (docs/benchmarks.md, memory per idle
/// connection).
pub(super) struct SessionQos {
    pub(super) inflight: VecDeque<Outbound>,
    pub(super) queue: VecDeque<Queued>,
    /// QoS 2 packet ids received and PUBREC'd, awaiting PUBREL.
    pub(super) inbound_qos2: Vec<u16>,
}

/// What a session without QoS 1/2 state reads.
static NO_QOS: SessionQos = SessionQos {
    inflight: VecDeque::new(),
    queue: VecDeque::new(),
    inbound_qos2: Vec::new(),
};

/// A session's [`SessionQos`], allocated on the first mutable access:
/// reading one that was never made sees empty queues. Code that may take
/// `&mut` of a session that has none (a resume, a pump of its queue)
/// checks first, so that an idle session stays without one.
#[derive(Default)]
pub(super) struct LazyQos(Option<Box<SessionQos>>);

impl std::ops::Deref for LazyQos {
    type Target = SessionQos;

    fn deref(&self) -> &SessionQos {
        self.0.as_deref().unwrap_or(&NO_QOS)
    }
}

impl std::ops::DerefMut for LazyQos {
    fn deref_mut(&mut self) -> &mut SessionQos {
        self.0.get_or_insert_with(|| {
            Box::new(SessionQos {
                inflight: VecDeque::new(),
                queue: VecDeque::new(),
                inbound_qos2: Vec::new(),
            })
        })
    }
}

/// The state of a session's inflight window, as seen by a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Window {
    /// No connection: messages can only be queued.
    Offline,
    /// Connected, every slot of the window in use.
    Full,
    /// Connected with room for another QoS 1/2 message.
    Open,
    /// The ACL does not let this session read the message at hand: a
    /// shared group never chooses it (set by the router, not by
    /// [`Session::window`]).
    Refused,
}

/// The window of session `sid` of this shard for a message on `topic`
/// ([`Window::Offline`] for a session that is gone, [`Window::Refused`]
/// when its ACL does not let it read `topic`).
pub(super) fn window_of(
    sessions: &Slab<Session>,
    conns: &Slab<Conn>,
    inflight_max: u16,
    sid: SessionId,
    topic: &[u8],
) -> Window {
    match sessions.get(sid) {
        None => Window::Offline,
        Some(s)
            if s.acl
                .as_ref()
                .is_some_and(|a| !a.allows(Action::Read, topic)) =>
        {
            Window::Refused
        }
        Some(s) => s.window(conns, inflight_max),
    }
}

impl Session {
    /// A new session with nothing subscribed, queued or in flight.
    pub(super) fn new(
        client_id: &[u8],
        protocol: Protocol,
        expiry_interval_s: u32,
        generation: u64,
    ) -> Session {
        Session {
            client_id: ShortBytes::new(client_id),
            username: None,
            conn: NO_CONN,
            protocol,
            subscriptions: Subscriptions::default(),
            expiry_interval_s,
            qos: LazyQos::default(),
            next_packet_id: 1,
            will: None,
            generation,
            acl: None,
            stored: false,
            offline_since_s: 0,
        }
    }

    /// When it lost its connection, in engine ms (whole seconds).
    pub(super) fn offline_since_ms(&self) -> u64 {
        u64::from(self.offline_since_s) * 1000
    }

    /// Records when it lost its connection (`now_ms`, engine ms), rounded
    /// up to the second: a restart then counts it offline up to a second
    /// less, never more, so rounding never expires a session early.
    pub(super) fn set_offline_since_ms(&mut self, now_ms: u64) {
        self.offline_since_s = u32::try_from(now_ms.div_ceil(1000)).unwrap_or(u32::MAX);
    }

    /// Its connection, while online.
    pub(super) fn conn(&self) -> Option<ConnId> {
        (self.conn != NO_CONN).then_some(self.conn as ConnId)
    }

    /// Sets (or clears) its connection. A connection id is a slab key
    /// below the shard's connection count, so it fits 32 bits.
    pub(super) fn set_conn(&mut self, conn: Option<ConnId>) {
        self.conn = conn.and_then(|c| u32::try_from(c).ok()).unwrap_or(NO_CONN);
        debug_assert_eq!(self.conn(), conn, "connection id of 2^32 - 1 or more");
    }

    /// The index of the subscription on `filter`, if any.
    pub(super) fn subscription(&self, filter: &[u8]) -> Option<usize> {
        self.subscriptions.iter().position(|x| x.filter == filter)
    }

    /// Packet ids are allocated after `packet_id` next (restored inflight
    /// messages keep theirs).
    pub(super) fn allocate_after(&mut self, packet_id: u16) {
        self.next_packet_id = packet_id.wrapping_add(1);
    }

    /// Whether this session's inflight window (see [`Conn::inflight_window`])
    /// has room; `conns` is the shard's connections.
    pub(super) fn window(&self, conns: &Slab<Conn>, inflight_max: u16) -> Window {
        match self.conn().and_then(|c| conns.get(c)) {
            None => Window::Offline,
            Some(c) if self.qos.inflight.len() < c.inflight_window(inflight_max) => Window::Open,
            Some(_) => Window::Full,
        }
    }

    /// The next free non-zero packet id ([MQTT-2.2.1-3]); the caller puts
    /// the message in `inflight` under it.
    pub(super) fn next_packet_id(&mut self) -> u16 {
        let mut pid = self.next_packet_id;
        while pid == 0 || self.qos.inflight.iter().any(|o| o.packet_id == pid) {
            pid = pid.wrapping_add(1);
        }
        self.next_packet_id = pid.wrapping_add(1);
        pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offline time is kept in whole seconds, rounded up: a restart
    /// may count a session offline up to a second less than it was, never
    /// more (so the rounding never expires one early), and the client id
    /// reads back whole, inline or boxed.
    #[test]
    fn offline_time_rounds_up_to_the_second_and_the_id_reads_back() {
        for id in [&b"dev-1"[..], &[b'x'; 40][..]] {
            let mut s = Session::new(id, Protocol::V5, 60, 1);
            assert_eq!(&s.client_id[..], id);
            for (now_ms, kept_ms) in [
                (0, 0),
                (1, 1000),
                (1000, 1000),
                (1001, 2000),
                (59_999, 60_000),
            ] {
                s.set_offline_since_ms(now_ms);
                assert_eq!(s.offline_since_ms(), kept_ms, "went offline at {now_ms} ms");
            }
        }
    }

    /// Every connection holds one `Conn` and one `Session` slot (plus the
    /// client-id map entry and a deadline wheel entry): rare parts (wills,
    /// ACL views, topic alias tables, authentication in progress, held
    /// acknowledgements and the backlog in `ConnRare`, QoS 1/2 state in
    /// `SessionQos`) are boxed so that an idle connection pays a pointer
    /// for each
    /// (docs/benchmarks.md, memory per idle connection).
    #[test]
    fn connection_and_session_records_stay_small() {
        let (conn, session) = (std::mem::size_of::<Conn>(), std::mem::size_of::<Session>());
        eprintln!("Conn {conn} bytes, Session {session} bytes");
        // 160 and 152 before the client id, the authentication and the
        // outbound aliases left `Conn` (keep-alive in seconds, the
        // session's key in 4 bytes in `ConnState`) and the session's
        // connection id took 4 bytes; `Session` 144 before its client id
        // and user name became boxed slices (16 bytes each, not 32), its
        // subscriptions one pointer (not a 24-byte `Vec`) and its
        // connection id a plain `u32` with a sentinel.
        assert!(conn <= 96, "Conn is {conn} bytes");
        assert!(session <= 96, "Session is {session} bytes");
    }
}
