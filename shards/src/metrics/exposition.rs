//! `GET /metrics`: the snapshots of every shard in the Prometheus text
//! exposition format 0.0.4. Broker-wide values are sums over the shards
//! (retained messages: one replica, every shard holds all of them);
//! families named `ringmq_shard_*` and `ringmq_ring_*` have a `shard`
//! label (or `from` / `to` for the ring between two shards). Every family
//! is in docs/operations.md, "Metrics reference".

use std::fmt::Display;

use ringmq_engine::broker::LATENCY_BUCKETS_MS;

use super::{totals, ShardSnapshot};

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the exposition needs besides the snapshots.
pub struct Meta {
    pub uptime_s: u64,
    /// Slots of each ring (`runtime.ring_capacity_slots`).
    pub ring_capacity_slots: usize,
}

/// Writes families and samples; `# HELP` and `# TYPE` once per family.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.text
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &dyn Display)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text
                    .push_str(&format!("{k}=\"{}\"", escape(&v.to_string())));
            }
            self.text.push('}');
        }
        self.text.push_str(&format!(" {value}\n"));
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one sample per value of `label`.
    fn by(&mut self, name: &str, kind: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        self.family(name, kind, help);
        for (l, v) in values {
            self.sample(name, &[(label, l)], v);
        }
    }

    /// A family with one sample per shard.
    fn per_shard(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        snapshots: &[ShardSnapshot],
        value: impl Fn(&ShardSnapshot) -> u64,
    ) {
        self.family(name, kind, help);
        for s in snapshots {
            self.sample(name, &[("shard", &s.shard)], value(s));
        }
    }
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn by_qos(v: &[u64; 3]) -> [(&'static str, u64); 3] {
    [("0", v[0]), ("1", v[1]), ("2", v[2])]
}

/// The whole page.
pub fn render(snapshots: &[ShardSnapshot], meta: &Meta) -> String {
    let (s, g, sockets) = totals(snapshots);
    let mut o = Out {
        text: String::with_capacity(16 * 1024),
    };
    o.family(
        "ringmq_build_info",
        "gauge",
        "Always 1; the version as a label.",
    );
    o.sample(
        "ringmq_build_info",
        &[("version", &env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.single(
        "ringmq_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        meta.uptime_s,
    );
    o.single(
        "ringmq_shards",
        "gauge",
        "Shards (threads) serving.",
        snapshots.len(),
    );
    o.per_shard(
        "ringmq_shard_up",
        "gauge",
        "1 if the shard answered this scrape within the gather timeout, else 0 (its values are then from its previous answer).",
        snapshots,
        |x| u64::from(x.fresh),
    );

    // Connections and sessions.
    o.single(
        "ringmq_connections",
        "gauge",
        "Open client connections (before and after CONNECT).",
        s.connections,
    );
    o.single(
        "ringmq_connections_accepted_total",
        "counter",
        "Client sockets accepted (a connection handed to the shard that owns its client id counts once).",
        sockets,
    );
    o.by(
        "ringmq_connections_refused_total",
        "counter",
        "Connections refused, by reason: connections_max reached, an invalid CONNECT, a refused login.",
        "reason",
        &[
            ("connections_max", s.connections_refused_limit),
            ("connect_invalid", s.connects_refused),
            ("auth", s.logins_refused),
        ],
    );
    o.single(
        "ringmq_connects_total",
        "counter",
        "CONNECTs accepted (CONNACK 0x00).",
        s.connects_accepted,
    );
    o.by(
        "ringmq_sessions",
        "gauge",
        "Sessions: online (connected) or offline (kept for a returning client).",
        "state",
        &[
            ("online", g.sessions_online),
            ("offline", g.sessions_offline),
        ],
    );
    o.single(
        "ringmq_sessions_expired_total",
        "counter",
        "Offline sessions ended by their expiry interval.",
        s.sessions_expired,
    );
    o.single(
        "ringmq_subscriptions",
        "gauge",
        "Subscriptions of all sessions (shared ones included).",
        g.subscriptions,
    );
    o.single(
        "ringmq_retained_messages",
        "gauge",
        "Retained messages (every shard holds a full replica; this is one).",
        g.retained_messages,
    );
    o.single(
        "ringmq_retained_bytes",
        "gauge",
        "Payload bytes of the retained messages (one replica).",
        g.retained_bytes,
    );
    o.single(
        "ringmq_retained_refused_total",
        "counter",
        "Retained messages not stored because of limits.retained_messages_max or retained_bytes_max (summed over the replicas).",
        s.dropped_retained_limit,
    );

    // Traffic.
    o.by(
        "ringmq_messages_received_total",
        "counter",
        "PUBLISH packets received from clients (wills included), by QoS.",
        "qos",
        &by_qos(&s.messages_received),
    );
    o.by(
        "ringmq_messages_sent_total",
        "counter",
        "PUBLISH packets written to subscribers, by the QoS sent with.",
        "qos",
        &by_qos(&s.messages_sent),
    );
    o.by(
        "ringmq_message_bytes_received_total",
        "counter",
        "Payload bytes of the PUBLISH packets received, by QoS.",
        "qos",
        &by_qos(&s.payload_bytes_received),
    );
    o.by(
        "ringmq_message_bytes_sent_total",
        "counter",
        "Payload bytes of the PUBLISH packets sent, by QoS.",
        "qos",
        &by_qos(&s.payload_bytes_sent),
    );
    o.single(
        "ringmq_packets_received_total",
        "counter",
        "MQTT packets of any type received.",
        s.packets_received,
    );
    o.single(
        "ringmq_packets_sent_total",
        "counter",
        "MQTT packets of any type written.",
        s.packets_sent,
    );
    o.single(
        "ringmq_bytes_received_total",
        "counter",
        "Bytes of the MQTT packets received.",
        s.bytes_received,
    );
    o.single(
        "ringmq_bytes_sent_total",
        "counter",
        "Bytes of the MQTT packets handed to the connections' writers.",
        s.bytes_sent,
    );
    o.by(
        "ringmq_messages_dropped_total",
        "counter",
        "Messages dropped for one subscriber, by reason. Rings between shards never drop (see ringmq_ring_*).",
        "reason",
        &s.drops(),
    );
    o.single(
        "ringmq_publishes_not_authorized_total",
        "counter",
        "PUBLISH packets and wills refused by the ACL, or to $SYS / $share topics.",
        s.publishes_not_authorized,
    );
    o.single("ringmq_auth_failures_total", "counter", "Logins refused (bad user name or password, not authorized, server busy) and failed re-authentications.", s.logins_refused);
    o.single("ringmq_protocol_errors_total", "counter", "Connections ended for a protocol violation or an undecodable packet, and refused CONNECTs.", s.protocol_errors);
    o.single(
        "ringmq_inflight_messages",
        "gauge",
        "Outbound QoS 1/2 messages sent and not yet acknowledged.",
        g.inflight_messages,
    );
    o.single(
        "ringmq_queued_messages",
        "gauge",
        "QoS 1/2 messages queued in sessions (inflight window full, or offline).",
        g.queued_messages,
    );
    o.single(
        "ringmq_backlog_messages",
        "gauge",
        "QoS 0 messages waiting behind full outgoing buffers.",
        g.backlog_messages,
    );

    // Latency.
    let name = "ringmq_publish_latency_seconds";
    o.family(
        name,
        "histogram",
        "From reading a PUBLISH to writing its copy into one subscriber's outgoing buffer, per delivery (millisecond clock).",
    );
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound_ms, count) in LATENCY_BUCKETS_MS.iter().zip(s.latency.counts.iter()) {
        cumulative += count;
        let le = *bound_ms as f64 / 1000.0;
        o.sample(&bucket, &[("le", &le)], cumulative);
    }
    o.sample(&bucket, &[("le", &"+Inf")], s.latency.count());
    o.sample(
        &format!("{name}_sum"),
        &[],
        s.latency.sum_ms as f64 / 1000.0,
    );
    o.sample(&format!("{name}_count"), &[], s.latency.count());

    // Per shard.
    o.per_shard(
        "ringmq_shard_connections",
        "gauge",
        "Open client connections, per shard.",
        snapshots,
        |x| x.stats.connections,
    );
    o.per_shard(
        "ringmq_shard_sessions_online",
        "gauge",
        "Connected sessions, per shard (the shard owning the client id).",
        snapshots,
        |x| x.gauges.sessions_online,
    );
    o.per_shard(
        "ringmq_shard_messages_received_total",
        "counter",
        "PUBLISH packets received, per shard.",
        snapshots,
        |x| x.stats.messages_received.iter().sum(),
    );
    o.per_shard(
        "ringmq_shard_messages_sent_total",
        "counter",
        "PUBLISH packets sent, per shard.",
        snapshots,
        |x| x.stats.messages_sent.iter().sum(),
    );
    o.per_shard(
        "ringmq_shard_inflight_messages",
        "gauge",
        "Outbound QoS 1/2 messages in flight, per shard.",
        snapshots,
        |x| x.gauges.inflight_messages,
    );
    o.per_shard(
        "ringmq_shard_queued_messages",
        "gauge",
        "QoS 1/2 messages queued in sessions, per shard.",
        snapshots,
        |x| x.gauges.queued_messages,
    );

    // Rings between shards.
    o.single(
        "ringmq_ring_capacity_slots",
        "gauge",
        "Slots of each ring between two shards (runtime.ring_capacity_slots).",
        meta.ring_capacity_slots,
    );
    type RingValue = fn(&crate::mesh::RingStats) -> u64;
    let rings: [(&str, &str, &str, RingValue); 4] = [
        ("ringmq_ring_occupied_slots", "gauge", "Messages on the ring from shard `from` to shard `to`, not yet taken.", |r| r.occupied_slots as u64),
        ("ringmq_ring_overflow_messages", "gauge", "Messages waiting in the overflow queue for room on the ring.", |r| r.overflow_messages as u64),
        ("ringmq_ring_overflowed_total", "counter", "Messages that found the ring full and went to the overflow queue (nothing is dropped).", |r| r.overflowed),
        ("ringmq_ring_publisher_pauses_total", "counter", "Pushes past runtime.ring_overflow_max_messages: the publishing connection was paused.", |r| r.over_limit),
    ];
    for (name, kind, help, value) in rings {
        o.family(name, kind, help);
        for snap in snapshots {
            for r in &snap.rings {
                o.sample(name, &[("from", &snap.shard), ("to", &r.peer)], value(r));
            }
        }
    }
    #[cfg(feature = "otel")]
    tracing_families(&mut o);
    o.text
}

/// OpenTelemetry export (feature `otel`; zeros while `[tracing]` is off).
#[cfg(feature = "otel")]
fn tracing_families(o: &mut Out) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &crate::otel::COUNTERS;
    o.single(
        "ringmq_tracing_spans_exported_total",
        "counter",
        "Spans the OTLP collector accepted.",
        c.exported.load(Relaxed),
    );
    o.by(
        "ringmq_tracing_spans_dropped_total",
        "counter",
        "Spans not exported, by reason: queue_full (tracing.queue_max_spans reached; the shard never waits), export_failed (the collector refused or could not be reached).",
        "reason",
        &[
            ("queue_full", c.dropped_queue_full.load(Relaxed)),
            ("export_failed", c.export_failed.load(Relaxed)),
        ],
    );
}

#[cfg(test)]
mod tests;
