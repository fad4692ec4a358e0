//! What a shard counts ([`Stats`]: counters, bumped on the paths they
//! count, a few integer additions per publish, no allocation) and what it
//! measures on demand ([`Gauges`]: walked over the sessions when the
//! runtime asks, never on the publish path). The runtime sums them over
//! the shards for `/metrics` and the broker-wide `$SYS` totals.

use super::conn::ConnState;
use super::Broker;
use crate::codec::QoS;

/// Upper bounds of the publish latency buckets, in milliseconds
/// ([`LatencyHistogram`]); one more bucket holds everything above.
pub const LATENCY_BUCKETS_MS: [u64; 13] =
    [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/// Read-to-write latency of routed publishes: from the moment the broker
/// read the PUBLISH (on any shard) to the moment its copy for one
/// subscriber was written into that subscriber's outgoing buffer, where
/// the connection's writer takes it on its next write. Time spent in a
/// session queue (inflight window full, client offline) or behind a full
/// outgoing buffer counts; resends on reconnection do not. Millisecond
/// resolution of the process clock: a value of 0 or 1 ms lands in the
/// first bucket. Fixed buckets, no allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `counts[i]`: latencies in `(LATENCY_BUCKETS_MS[i-1], LATENCY_BUCKETS_MS[i]]`;
    /// the last one: above the last bound. Not cumulative.
    pub counts: [u64; LATENCY_BUCKETS_MS.len() + 1],
    /// Sum of the recorded latencies, in milliseconds.
    pub sum_ms: u64,
}

impl LatencyHistogram {
    /// Records one latency. Most values fall in the first buckets, so the
    /// linear scan stops after a compare or two.
    #[inline]
    pub fn record(&mut self, latency_ms: u64) {
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|&bound| latency_ms <= bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum_ms = self.sum_ms.saturating_add(latency_ms);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another shard's histogram.
    pub fn add(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
    }
}

/// Counters of one shard (also published under `$SYS`). Indexed by QoS
/// where an array: `[QoS 0, QoS 1, QoS 2]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open connections (sockets accepted and not yet closed, before and
    /// after CONNECT): a gauge, filled in by [`Broker::stats`].
    pub connections: u64,
    /// Sockets refused at `accept` because `connections_max` was reached.
    pub connections_refused_limit: u64,
    /// CONNECTs accepted (CONNACK 0x00 sent).
    pub connects_accepted: u64,
    /// CONNECTs refused for what they carried (malformed, unsupported
    /// version, invalid client id, a will that may not be published);
    /// refused logins are `logins_refused`.
    pub connects_refused: u64,
    /// Sessions that ended because their expiry interval passed while
    /// offline.
    pub sessions_expired: u64,
    /// PUBLISH packets received from clients (wills included, as
    /// published), by QoS.
    pub messages_received: [u64; 3],
    /// Their payload bytes, by QoS.
    pub payload_bytes_received: [u64; 3],
    /// PUBLISH packets written to subscribers, by the QoS they were sent with.
    pub messages_sent: [u64; 3],
    /// Their payload bytes, by QoS.
    pub payload_bytes_sent: [u64; 3],
    /// MQTT packets of any type received (decoded) and written.
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Bytes of the MQTT packets received (whole frames) and of the
    /// batches the runtime took to write ([`Broker::outgoing`]).
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// QoS 0 messages dropped because the subscriber did not keep up: its
    /// outgoing buffer was full and its backlog held
    /// `outgoing_queue_max_messages` messages.
    pub dropped_qos0_queue_messages: u64,
    /// As `dropped_qos0_queue_messages`, the backlog being at
    /// `outgoing_queue_max_bytes`.
    pub dropped_qos0_queue_bytes: u64,
    /// Messages dropped because a session queue was full.
    pub dropped_queue_full: u64,
    /// Retained messages not stored because of the retained limits.
    pub dropped_retained_limit: u64,
    /// Shared-group messages from another shard whose group had no member here any more.
    pub dropped_no_shared_member: u64,
    /// Messages dropped because they exceeded a client's Maximum Packet Size
    /// or the protocol's own limits (a PUBLISH that does not encode).
    pub dropped_too_large: u64,
    /// Messages dropped because their Message Expiry Interval passed.
    pub dropped_expired: u64,
    /// Deliveries withheld because the ACL denies the subscriber reading
    /// the topic (a `#` subscriber does not get what it may not read).
    pub dropped_not_authorized: u64,
    /// PUBLISH packets (wills included) refused by the ACL or the
    /// authenticator, or for a topic reserved for the broker (`$SYS`,
    /// `$share/`).
    pub publishes_not_authorized: u64,
    /// Connections ended for a protocol violation (see `violation.rs`), a
    /// packet that did not decode, or a refused CONNECT.
    pub protocol_errors: u64,
    /// Logins refused (bad user name or password, not authorized, bad
    /// authentication method, server busy) and failed re-authentications.
    pub logins_refused: u64,
    /// Read-to-write latency of routed publishes.
    pub latency: LatencyHistogram,
}

impl Stats {
    /// Messages dropped for one subscriber, by reason (the names of
    /// `$SYS/broker/shards/{n}/messages/dropped/{reason}` and of the
    /// `reason` label on `/metrics`). Retained messages not stored are not
    /// deliveries: not included.
    pub fn drops(&self) -> [(&'static str, u64); 7] {
        [
            ("qos0_queue_messages", self.dropped_qos0_queue_messages),
            ("qos0_queue_bytes", self.dropped_qos0_queue_bytes),
            ("queue_full", self.dropped_queue_full),
            ("no_shared_member", self.dropped_no_shared_member),
            ("too_large", self.dropped_too_large),
            ("expired", self.dropped_expired),
            ("not_authorized", self.dropped_not_authorized),
        ]
    }

    /// Every message dropped for one subscriber, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops().iter().map(|(_, n)| n).sum()
    }

    /// Adds another shard's counters (broker-wide totals).
    pub fn add(&mut self, o: &Stats) {
        fn add3(a: &mut [u64; 3], b: &[u64; 3]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.connections += o.connections;
        self.connections_refused_limit += o.connections_refused_limit;
        self.connects_accepted += o.connects_accepted;
        self.connects_refused += o.connects_refused;
        self.sessions_expired += o.sessions_expired;
        add3(&mut self.messages_received, &o.messages_received);
        add3(&mut self.payload_bytes_received, &o.payload_bytes_received);
        add3(&mut self.messages_sent, &o.messages_sent);
        add3(&mut self.payload_bytes_sent, &o.payload_bytes_sent);
        self.packets_received += o.packets_received;
        self.packets_sent += o.packets_sent;
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.dropped_qos0_queue_messages += o.dropped_qos0_queue_messages;
        self.dropped_qos0_queue_bytes += o.dropped_qos0_queue_bytes;
        self.dropped_queue_full += o.dropped_queue_full;
        self.dropped_retained_limit += o.dropped_retained_limit;
        self.dropped_no_shared_member += o.dropped_no_shared_member;
        self.dropped_too_large += o.dropped_too_large;
        self.dropped_expired += o.dropped_expired;
        self.dropped_not_authorized += o.dropped_not_authorized;
        self.publishes_not_authorized += o.publishes_not_authorized;
        self.protocol_errors += o.protocol_errors;
        self.logins_refused += o.logins_refused;
        self.latency.add(&o.latency);
    }

    /// Counts one PUBLISH received from a client.
    #[inline]
    pub(super) fn count_received(&mut self, qos: QoS, payload_bytes: usize) {
        let i = qos_index(qos);
        self.messages_received[i] += 1;
        self.payload_bytes_received[i] += payload_bytes as u64;
    }

    /// Counts one PUBLISH written for a subscriber, read at
    /// `received_at_ms`.
    #[inline]
    pub(super) fn count_sent(
        &mut self,
        qos: QoS,
        payload_bytes: usize,
        received_at_ms: u64,
        now_ms: u64,
    ) {
        let i = qos_index(qos);
        self.messages_sent[i] += 1;
        self.payload_bytes_sent[i] += payload_bytes as u64;
        self.packets_sent += 1;
        self.latency.record(now_ms.saturating_sub(received_at_ms));
    }
}

fn qos_index(qos: QoS) -> usize {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// What one shard holds right now, measured by walking its sessions and
/// connections ([`Broker::gauges`], O(sessions + connections)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Sessions with a connection (CONNECT accepted).
    pub sessions_online: u64,
    /// Sessions kept without a connection (persistent sessions).
    pub sessions_offline: u64,
    /// Subscriptions of this shard's sessions (shared ones included).
    pub subscriptions: u64,
    /// Retained messages and their payload bytes in this shard's replica
    /// (every shard holds all of them).
    pub retained_messages: u64,
    pub retained_bytes: u64,
    /// Outbound QoS 1/2 messages sent and not yet acknowledged.
    pub inflight_messages: u64,
    /// QoS 1/2 messages queued in sessions (window full or offline).
    pub queued_messages: u64,
    /// QoS 0 messages waiting behind full outgoing buffers.
    pub backlog_messages: u64,
}

impl Gauges {
    /// Adds another shard's gauges. Retained messages are a replica on
    /// every shard: the largest one is kept, not the sum.
    pub fn add(&mut self, other: &Gauges) {
        self.sessions_online += other.sessions_online;
        self.sessions_offline += other.sessions_offline;
        self.subscriptions += other.subscriptions;
        self.retained_messages = self.retained_messages.max(other.retained_messages);
        self.retained_bytes = self.retained_bytes.max(other.retained_bytes);
        self.inflight_messages += other.inflight_messages;
        self.queued_messages += other.queued_messages;
        self.backlog_messages += other.backlog_messages;
    }
}

impl Broker {
    /// This shard's counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.connections = self.conns.len() as u64;
        s
    }

    /// What this shard holds now. O(sessions + connections): for the
    /// runtime's occasional snapshot (a scrape, the `$SYS` tick), never
    /// per message.
    pub fn gauges(&self) -> Gauges {
        let mut g = Gauges {
            retained_messages: self.retained.count as u64,
            retained_bytes: self.retained.payload_bytes as u64,
            ..Gauges::default()
        };
        for s in self.sessions.values() {
            if s.conn().is_some() {
                g.sessions_online += 1;
            } else {
                g.sessions_offline += 1;
            }
            g.subscriptions += s.subscriptions.len() as u64;
            g.inflight_messages += s.qos.inflight.len() as u64;
            g.queued_messages += s.qos.queue.len() as u64;
        }
        for c in self.conns.values() {
            if c.state != ConnState::Closing {
                g.backlog_messages += c.rare().map_or(0, |r| r.backlog_messages) as u64;
            }
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_bucket_at_both_sides_of_each_bound() {
        let mut h = LatencyHistogram::default();
        for (i, &bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
            h.record(bound);
            assert_eq!(h.counts[i], 1, "{bound} ms in bucket {i}");
            h.record(bound + 1);
            assert_eq!(h.counts[i + 1], 1, "{} ms in bucket {}", bound + 1, i + 1);
            h = LatencyHistogram::default();
        }
        h.record(0);
        assert_eq!(h.counts[0], 1);
        h.record(u64::MAX);
        assert_eq!(h.counts[LATENCY_BUCKETS_MS.len()], 1);
        assert_eq!(h.count(), 2);
        assert_eq!(h.sum_ms, u64::MAX, "saturates");
    }

    #[test]
    fn histograms_and_gauges_add_up() {
        let mut a = LatencyHistogram::default();
        a.record(3);
        let mut b = LatencyHistogram::default();
        b.record(3);
        b.record(700);
        a.add(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.sum_ms, 706);
        assert_eq!(a.counts[2], 2);
        let mut g = Gauges {
            sessions_online: 1,
            retained_messages: 5,
            ..Gauges::default()
        };
        g.add(&Gauges {
            sessions_online: 2,
            retained_messages: 4,
            ..Gauges::default()
        });
        assert_eq!(g.sessions_online, 3);
        assert_eq!(g.retained_messages, 5, "a replica, not a sum");
    }
}
