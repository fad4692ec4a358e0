//! [`ClientOptions`]: what the client puts in CONNECT and the limits it
//! enforces on itself, each named with its unit.

use bytes::Bytes;

use crate::codec::{Protocol, UserProperties, Will};

/// Largest value of a two-byte window (Receive Maximum, section 3.1.2.11.3).
pub const RECEIVE_MAXIMUM_MAX: u16 = 65_535;

/// Default largest packet accepted from the server: 16 MiB.
pub const PACKET_SIZE_MAX_BYTES_DEFAULT: u32 = 16 * 1024 * 1024;

/// Default cap on bytes waiting in the outgoing buffer before `publish`
/// refuses with [`ClientError::OutgoingFull`](super::ClientError::OutgoingFull): 1 MiB.
pub const OUTGOING_MAX_BYTES_DEFAULT: usize = 1024 * 1024;

/// Default time allowed between CONNECT and CONNACK: 10 s.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// SUBSCRIBE / UNSUBSCRIBE packets that may await their acknowledgement at
/// once. Bounds the client's control-plane table.
pub const CONTROL_INFLIGHT_MAX: usize = 1024;

/// Everything [`Client::new`](super::Client::new) needs.
///
/// Fields marked "v5" are only sent when `protocol` is [`Protocol::V5`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    pub protocol: Protocol,
    /// May be empty (v3.1.1 then requires `clean_start`; v5 servers assign one).
    pub client_id: Bytes,
    /// Clean Session (v3) / Clean Start (v5).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 disables PINGREQ. A v5 server may override it
    /// with Server Keep Alive in CONNACK.
    pub keep_alive_s: u16,
    /// v5: Session Expiry Interval in seconds (`None`: absent, meaning 0).
    pub session_expiry_s: Option<u32>,
    pub will: Option<Will>,
    pub username: Option<Bytes>,
    pub password: Option<Bytes>,
    /// v5: Receive Maximum advertised to the server (section 3.1.2.11.3).
    /// Enforced in every version on inbound QoS 2 messages awaiting PUBREL
    /// (QoS 1 messages are acknowledged as soon as they are read).
    /// Must be at least 1.
    pub receive_maximum: u16,
    /// Cap on outbound QoS 1/2 PUBLISH packets awaiting PUBACK / PUBCOMP; the
    /// window used is the smaller of this and the server's Receive Maximum.
    /// Must be at least 1.
    pub inflight_max: u16,
    /// Largest packet accepted from the server, in bytes (advertised in v5
    /// CONNECT as Maximum Packet Size); a larger one is a protocol error.
    pub packet_size_max_bytes: u32,
    /// v5: Topic Alias Maximum advertised; 0 means the server must not use
    /// topic aliases towards this client.
    pub topic_alias_max: u16,
    /// `publish` refuses with `OutgoingFull` once this many unsent bytes are
    /// buffered. Acknowledgements are always appended (the protocol requires
    /// them), so the buffer may exceed this by the acks of one read.
    pub outgoing_max_bytes: usize,
    /// Time allowed between `connect` and CONNACK.
    pub connect_timeout_ms: u64,
    /// Time allowed between PINGREQ and PINGRESP; 0 means one keep-alive
    /// interval.
    pub pingresp_timeout_ms: u64,
    /// v5: User Properties sent in CONNECT.
    pub user_properties: UserProperties,
    /// Inbound QoS 1 / 2 messages are not acknowledged when read: the caller
    /// sends each PUBACK / PUBREC with [`Client::acknowledge`](super::Client::acknowledge)
    /// once it has taken the message over (a bridge: once its own broker
    /// accepted it). PUBCOMP still answers PUBREL by itself.
    pub manual_acks: bool,
}

impl ClientOptions {
    /// Options with the defaults: clean start, keep-alive 60 s, windows of
    /// 65_535, 16 MiB packets, no will, no credentials.
    pub fn new(protocol: Protocol, client_id: impl Into<Bytes>) -> Self {
        ClientOptions {
            protocol,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive_s: 60,
            session_expiry_s: None,
            will: None,
            username: None,
            password: None,
            receive_maximum: RECEIVE_MAXIMUM_MAX,
            inflight_max: RECEIVE_MAXIMUM_MAX,
            packet_size_max_bytes: PACKET_SIZE_MAX_BYTES_DEFAULT,
            topic_alias_max: 0,
            outgoing_max_bytes: OUTGOING_MAX_BYTES_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            pingresp_timeout_ms: 0,
            user_properties: UserProperties::new(),
            manual_acks: false,
        }
    }
}
