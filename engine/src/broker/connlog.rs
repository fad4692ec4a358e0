//! Connection records for the operator's log: who connected (client id,
//! protocol, keep-alive, clean start, session present, user name) and why
//! each connection ended, as data. The engine does no logging; the runtime
//! takes the records with [`Broker::poll_connection_record`] and writes the
//! lines (rate-limited there). Off unless `BrokerConfig::log_connections`:
//! then nothing is recorded or allocated.

use bytes::Bytes;

use super::conn::ConnState;
use super::{Broker, ConnId};
use crate::codec::{DecodeError, Protocol, ReasonCode};

/// Why the engine ended a connection. A connection that ends with no
/// cause recorded was ended by its transport (the peer closed it, or an
/// I/O error): the runtime knows which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The client sent DISCONNECT with this reason code (0x00 for v3).
    ClientDisconnect(ReasonCode),
    /// No packet within 1.5 times the keep-alive.
    KeepAliveTimeout,
    /// No CONNECT within `connect_timeout_ms`.
    ConnectTimeout,
    /// The client broke a rule of the protocol: what it was, and the
    /// reason code sent (v5 DISCONNECT; a v3 client is only closed).
    ProtocolViolation {
        reason: ReasonCode,
        what: &'static str,
        /// The codec's error when the packet did not decode.
        decode: Option<DecodeError>,
    },
    /// The CONNECT was refused with this CONNACK code (v3 codes are
    /// mapped by the codec), or it could not be answered at all.
    ConnectRefused(ReasonCode),
    /// Another connection with the same client id took the session over.
    TakenOver,
    /// The broker is shutting down.
    ServerShutdown,
    /// A broker limit (the reason code sent), not a protocol violation.
    Limit(ReasonCode),
    /// Durable storage failed and the acknowledgement due has no refusal
    /// code in the client's protocol (v3.1.1 PUBACK / PUBREC, PUBCOMP):
    /// closed unacknowledged, so that the client sends again.
    StorageFailed,
}

/// One record: a connection accepted by CONNACK, or a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionRecord {
    Connected {
        conn: ConnId,
        client_id: Bytes,
        protocol: Protocol,
        keep_alive_s: u16,
        clean_start: bool,
        session_present: bool,
        username: Option<Bytes>,
    },
    Closed {
        conn: ConnId,
        /// `None` before a CONNACK.
        client_id: Option<Bytes>,
        /// `None`: ended by the transport (see [`CloseCause`]).
        cause: Option<CloseCause>,
    },
}

impl Broker {
    /// The next connection record, oldest first (empty unless
    /// `log_connections`). Take them after each call into the engine.
    pub fn poll_connection_record(&mut self) -> Option<ConnectionRecord> {
        self.connection_records.pop_front()
    }

    /// Records why the engine ends `conn`; the first cause wins (a
    /// violation answered with DISCONNECT is not also "closed").
    pub(super) fn set_close_cause(&mut self, conn: ConnId, cause: CloseCause) {
        if !self.config.log_connections {
            return;
        }
        if let Some(c) = self.conns.get_mut(conn) {
            c.rare_mut().close_cause.get_or_insert(cause);
        }
    }

    pub(super) fn record_connected(&mut self, record: ConnectionRecord) {
        if !self.config.log_connections {
            return;
        }
        self.connection_records.push_back(record);
    }

    /// `conn` stops being active (DISCONNECT, take-over, closed by the
    /// broker): it is closing from now on. When logging, it keeps its
    /// session's client id for its close record (the session may be
    /// resumed by another connection, or end, before that record).
    pub(super) fn set_closing(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let was = std::mem::replace(&mut c.state, ConnState::Closing);
        let Some(session) = was.session() else {
            return;
        };
        if !self.config.log_connections {
            return;
        }
        // A copy, inline when short (`ShortBytes`): a burst of client
        // DISCONNECTs keeps thousands of these until their sockets close,
        // and a 16-byte block each extended the shard's first page of that
        // size, which its thread's name keeps for good (docs/benchmarks.md,
        // "Memory given back after 100,000 closes").
        let client_id = self.sessions.get(session).map(|s| s.client_id.clone());
        if let (Some(c), Some(id)) = (self.conns.get_mut(conn), client_id) {
            c.rare_mut().client_id = Some(id);
        }
    }

    /// `conn` is gone: its record, if logging. Call it before its session
    /// is detached (the record names the session's client id).
    pub(super) fn record_closed(&mut self, conn: ConnId) {
        if !self.config.log_connections {
            return;
        }
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let state = c.state;
        let (cause, kept) = c
            .rare_mut_if_any()
            .map_or((None, None), |r| (r.close_cause.take(), r.client_id.take()));
        let client_id = match state.session() {
            Some(session) => self
                .sessions
                .get(session)
                .map(|s| Bytes::copy_from_slice(&s.client_id)),
            None => kept.map(|id| Bytes::copy_from_slice(&id)),
        };
        let record = ConnectionRecord::Closed {
            conn,
            client_id,
            cause,
        };
        self.connection_records.push_back(record);
    }
}
