//! Broker-level protocol violations: the rules of MQTT a client can break
//! in a packet the codec accepted (or could not decode once connected), the
//! reason code each one is answered with, and the one place where a
//! violation ends the connection ([`Broker::violation`]).
//!
//! Refusals come in two kinds, kept apart:
//! - connection-fatal: a [`Violation`]. A v5 client gets DISCONNECT with
//!   its reason code, then every client is closed ([MQTT-4.13.1-1]).
//! - packet-scoped: a reason code in the acknowledgement of that packet
//!   (PUBACK/PUBREC 0x87, SUBACK 0x8F/0x87/0x97, PUBREL/PUBCOMP 0x92); the
//!   connection goes on. Those are written where the acknowledgement is
//!   built (`publish.rs`, `subscribe.rs`, `deliver.rs`), never here.
//!
//! A refused CONNECT is neither: it is answered with a CONNACK code
//! (`connect.rs`). Disconnects the broker starts for its own reasons (keep
//! alive, takeover, shutdown) are not violations either.

use super::{Broker, CloseCause, ConnId};
use crate::codec::{DecodeError, ReasonCode};

/// A rule of the protocol a connected client broke; the connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Violation {
    /// A first packet other than CONNECT ([MQTT-3.1.0-1]): closed, no answer.
    NotConnect,
    /// A packet that does not decode on an established connection.
    Decode(DecodeError),
    /// A packet a client may not send now: a second CONNECT
    /// ([MQTT-3.1.0-2]), AUTH from a client that did not use enhanced
    /// authentication ([MQTT-4.12.0-7]) or with another method than its
    /// CONNECT's ([MQTT-4.12.1-1]), an AUTH out of turn, or a
    /// server-to-client packet.
    UnexpectedPacket,
    /// Topic Alias 0 or above our Topic Alias Maximum ([MQTT-3.3.2-8],
    /// [MQTT-3.3.2-9]).
    TopicAliasInvalid,
    /// An empty topic with a Topic Alias never set on this connection
    /// (MQTT 5.0 3.3.4, which numbers no statement for it).
    TopicAliasUnknown,
    /// An empty topic without a Topic Alias (MQTT 5.0 3.3.2.3.4).
    TopicNameMissing,
    /// A topic name that is empty, has wildcards ([MQTT-3.3.2-2]) or more
    /// levels than our `topic_levels_max`.
    TopicNameInvalid,
    /// A Subscription Identifier in a PUBLISH from a client ([MQTT-3.3.4-6]).
    SubscriptionIdentifierFromClient,
    /// More unacknowledged QoS 2 PUBLISH than our Receive Maximum
    /// ([MQTT-3.3.4-7]).
    ReceiveMaximumExceeded,
    /// No Local on a shared subscription ([MQTT-3.8.3-4]).
    NoLocalOnShared,
    /// A non-zero Session Expiry Interval in DISCONNECT after 0 in CONNECT
    /// ([MQTT-3.14.2-2]).
    SessionExpiryFromZero,
}

impl Violation {
    /// The reason code of the DISCONNECT (v5). Every one is a valid
    /// DISCONNECT reason code (MQTT 5.0 3.14.2.1).
    pub(super) fn reason_code(self) -> ReasonCode {
        match self {
            Violation::Decode(e) => match e.reason_code() {
                // Only a CONNECT has a protocol name and level; once
                // connected any CONNECT is a Protocol Error ([MQTT-3.1.0-2]),
                // and 0x84 is a CONNACK code, not a DISCONNECT one.
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => ReasonCode::PROTOCOL_ERROR,
                reason => reason,
            },
            Violation::TopicAliasInvalid => ReasonCode::TOPIC_ALIAS_INVALID,
            Violation::TopicNameInvalid => ReasonCode::TOPIC_NAME_INVALID,
            Violation::ReceiveMaximumExceeded => ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            Violation::NotConnect
            | Violation::UnexpectedPacket
            | Violation::TopicAliasUnknown
            | Violation::TopicNameMissing
            | Violation::SubscriptionIdentifierFromClient
            | Violation::NoLocalOnShared
            | Violation::SessionExpiryFromZero => ReasonCode::PROTOCOL_ERROR,
        }
    }
}

impl Violation {
    /// What was wrong, for the log.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Violation::NotConnect => "first packet is not CONNECT",
            Violation::Decode(_) => "packet does not decode",
            Violation::UnexpectedPacket => "packet not allowed now (second CONNECT, AUTH without method, or a server-to-client packet)",
            Violation::TopicAliasInvalid => "topic alias 0 or above the maximum",
            Violation::TopicAliasUnknown => "topic alias never set on this connection",
            Violation::TopicNameMissing => "empty topic name without a topic alias",
            Violation::TopicNameInvalid => "invalid topic name (empty, wildcards, or too many levels)",
            Violation::SubscriptionIdentifierFromClient => "subscription identifier in a PUBLISH from a client",
            Violation::ReceiveMaximumExceeded => "more unacknowledged QoS 2 PUBLISH than the receive maximum",
            Violation::NoLocalOnShared => "no local on a shared subscription",
            Violation::SessionExpiryFromZero => "session expiry set in DISCONNECT after 0 in CONNECT",
        }
    }
}

impl Broker {
    /// End `conn` for `v`: counted, DISCONNECT with its reason code (v5,
    /// after CONNECT), then closed with the will published.
    pub(super) fn violation(&mut self, conn: ConnId, v: Violation, now_ms: u64) {
        self.stats.protocol_errors += 1;
        let reason = v.reason_code();
        self.set_close_cause(
            conn,
            CloseCause::ProtocolViolation {
                reason,
                what: v.describe(),
                decode: match v {
                    Violation::Decode(e) => Some(e),
                    _ => None,
                },
            },
        );
        self.disconnect_with(conn, reason, now_ms);
    }
}
