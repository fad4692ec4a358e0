//! What crosses a shard's boundary: the messages between shards
//! ([`ShardMessage`], handled in `ring.rs`), the events for the runtime
//! ([`Event`]), and which shard owns a client id ([`owner_shard`],
//! [`route_connect`]).

use bytes::Bytes;

use super::{ConnId, ShardId};
use crate::auth::AuthRequest;
use crate::codec::{self, Packet, Protocol, Publish};
use crate::persist::PersistFailure;

/// A message between shards (carried on the SPSC rings).
#[derive(Clone, Debug)]
pub enum ShardMessage {
    /// Deliver to this shard's local non-shared subscribers. A non-zero
    /// `barrier` (durable brokers, QoS 1/2) asks the receiver to answer
    /// `origin` with [`ShardMessage::Ack`] once what it stored is on disk.
    Publish {
        publish: Publish,
        received_at_ms: u64,
        origin: ShardId,
        barrier: u64,
    },
    /// Deliver to one local member of the shared subscription `filter`
    /// (`$share/{group}/{filter}`), chosen by the sending shard. `key`:
    /// the hash the hash policies choose by (0 for the others). `origin`
    /// and `barrier` as for `Publish`.
    SharedPublish {
        filter: Bytes,
        publish: Publish,
        received_at_ms: u64,
        key: u64,
        origin: ShardId,
        barrier: u64,
    },
    /// The receiver is the home shard of the shared subscription `filter`
    /// (policies `round_robin` and `sticky`): it chooses the member
    /// broker-wide and delivers or forwards a [`ShardMessage::SharedPublish`]
    /// (with the same `origin` and `barrier`, answered by the shard that
    /// delivers).
    SharedRoute {
        filter: Bytes,
        publish: Publish,
        received_at_ms: u64,
        origin: ShardId,
        barrier: u64,
    },
    /// Shard `shard` now has `count` local subscriptions on `filter`
    /// (a plain or a `$share/...` filter). Absolute, so re-sending is harmless.
    /// A non-zero `barrier` asks the receiver to answer with [`ShardMessage::Ack`].
    Interest {
        filter: Bytes,
        shard: ShardId,
        count: u32,
        barrier: u64,
    },
    /// Replace (or clear, with an empty payload) a retained message; acked
    /// to `origin` when `barrier` is non-zero.
    Retain {
        publish: Publish,
        received_at_ms: u64,
        origin: ShardId,
        barrier: u64,
    },
    /// The receiver has applied the message that carried `barrier`; with
    /// `failure`, it could not store what the message brought (durable
    /// brokers), and the acknowledgement held by the barrier is refused.
    Ack {
        barrier: u64,
        failure: Option<PersistFailure>,
    },
    /// Shard `shard` has restored its stored sessions and announced their
    /// subscriptions (sent after those `Interest` messages, so the ring's
    /// order says they arrived). Once every other shard said so, the
    /// receiver arms the will and expiry timers of its restored sessions.
    Restored { shard: ShardId },
}

/// What the runtime must do next.
// `ToShard` is large on purpose: boxing it would allocate once per
// cross-shard publish; the event queue is reused, so its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// `outgoing(conn)` has bytes to write.
    Transmit(ConnId),
    /// Flush `outgoing(conn)`, then close the socket (then `handle_closed`).
    Close(ConnId),
    /// Push `msg` on the ring to `shard`.
    ToShard { shard: ShardId, msg: ShardMessage },
    /// Verify `request` against the user store (slow: off the shard), then
    /// call `Broker::handle_auth_result(conn, token, verdict, now)`.
    /// `client_id` is for the logs.
    Authenticate {
        conn: ConnId,
        token: u64,
        client_id: Bytes,
        request: AuthRequest,
    },
}

/// Where a new connection belongs, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// No complete first packet yet.
    NeedMore,
    /// Serve it here (owner shard, empty client id, or not a valid CONNECT:
    /// the local broker answers errors itself).
    Local,
    /// Hand the connection to this shard.
    Shard(ShardId),
}

/// FNV-1a, stable across runs: client id ownership, a shared group's home
/// and the hash policies (`route.rs`), outbound alias lookup (`conn.rs`).
pub(super) fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Session ownership: shard of a client id (FNV-1a, stable across runs).
pub fn owner_shard(client_id: &[u8], shard_count: u16) -> ShardId {
    (fnv(client_id) % u64::from(shard_count.max(1))) as ShardId
}

/// Decide from the first bytes of a connection which shard owns it.
/// `packet_size_max_bytes` is the broker's configured maximum packet size
/// (`BrokerConfig::packet_size_max_bytes`): a CONNECT announcing more is
/// served locally at once, so the runtime never buffers more than that to
/// route a connection, and the local broker refuses it (v5: CONNACK 0x95).
pub fn route_connect(
    buf: &[u8],
    shard: ShardId,
    shard_count: u16,
    packet_size_max_bytes: u32,
) -> Route {
    // [MQTT-3.1.0-1]: anything but CONNECT is judged by the local broker at
    // once, rather than waiting for what its first byte claims is a long packet.
    if shard_count <= 1 || buf.first().is_some_and(|b| b >> 4 != 1) {
        return Route::Local;
    }
    let frame_len = match codec::check_frame(buf, packet_size_max_bytes) {
        Ok(codec::FrameCheck::Complete { frame_len }) => frame_len,
        Ok(codec::FrameCheck::Incomplete { .. }) => return Route::NeedMore,
        Err(_) => return Route::Local,
    };
    let Some(frame) = buf.get(..frame_len) else {
        return Route::NeedMore;
    };
    match codec::decode_packet(Bytes::copy_from_slice(frame), Protocol::V5) {
        Ok(Packet::Connect(c)) if !c.client_id.is_empty() => {
            let owner = owner_shard(&c.client_id, shard_count);
            if owner == shard {
                Route::Local
            } else {
                Route::Shard(owner)
            }
        }
        _ => Route::Local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_shard_is_stable_and_in_range() {
        for n in 1..8u16 {
            for id in ["a", "b", "client-1", ""] {
                let s = owner_shard(id.as_bytes(), n);
                assert!(s < n);
                assert_eq!(s, owner_shard(id.as_bytes(), n));
            }
        }
    }

    const MAX: u32 = 1024 * 1024;

    /// The fixed header of a CONNECT announcing `remaining` bytes.
    fn connect_header(remaining: u32) -> Vec<u8> {
        let mut out = vec![0x10];
        let mut n = remaining;
        loop {
            let byte = (n % 128) as u8;
            n /= 128;
            out.push(if n > 0 { byte | 0x80 } else { byte });
            if n == 0 {
                return out;
            }
        }
    }

    #[test]
    fn route_connect_refuses_to_wait_for_an_oversize_connect() {
        // A frame of exactly the maximum (2-byte header + remaining) is worth
        // waiting for; one byte more is served locally before its body comes.
        let max = 1000;
        let header = connect_header(max - 3);
        assert_eq!(header.len(), 3);
        assert_eq!(route_connect(&header, 0, 4, max), Route::NeedMore);
        let header = connect_header(max - 2);
        assert_eq!(route_connect(&header, 0, 4, max), Route::Local);
        // The protocol's own maximum no longer decides.
        let header = connect_header(10 * MAX);
        assert_eq!(route_connect(&header, 0, 4, MAX), Route::Local);
    }

    #[test]
    fn route_connect_decides_from_the_first_packet() {
        let mut connect = bytes::BytesMut::new();
        let c = crate::codec::Connect {
            protocol: Protocol::V3_1_1,
            clean_start: true,
            keep_alive_s: 60,
            client_id: Bytes::from_static(b"abc"),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        let encoded = codec::encode(
            &Packet::Connect(Box::new(c)),
            Protocol::V3_1_1,
            &mut connect,
        );
        assert!(encoded.is_ok());
        let owner = owner_shard(b"abc", 4);
        let max = MAX;
        assert_eq!(route_connect(&connect, owner, 4, max), Route::Local);
        assert_eq!(
            route_connect(&connect, (owner + 1) % 4, 4, max),
            Route::Shard(owner)
        );
        assert_eq!(
            route_connect(&connect[..connect.len() - 1], 0, 4, max),
            Route::NeedMore
        );
        // Not a CONNECT: local at once, even if it announces a long packet.
        assert_eq!(route_connect(&[0x30, 0xFF, 0xFF], 0, 4, max), Route::Local);
        assert_eq!(route_connect(&connect, 0, 1, max), Route::Local);
    }
}
