//! `$SYS/broker/...`: the statistics each shard publishes as retained
//! messages every `sys_interval_s`.

use bytes::Bytes;

use super::route::Source;
use super::Broker;
use crate::codec::Publish;

impl Broker {
    /// `$SYS/broker/...` statistics (retained, so a new subscriber sees the
    /// latest values). Per-shard counters; shard 0 also publishes the
    /// version and uptime.
    pub(super) fn publish_sys(&mut self, now_ms: u64) {
        let stats = self.stats();
        let uptime_s = now_ms.saturating_sub(self.started_ms.unwrap_or(now_ms)) / 1000;
        let shard = self.shard;
        let mut items: Vec<(String, String)> = vec![
            (
                format!("$SYS/broker/shards/{shard}/clients/connected"),
                stats.connections.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/sessions"),
                self.sessions.len().to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/messages/received"),
                stats.messages_received.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/messages/sent"),
                stats.messages_sent.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/retained/count"),
                self.retained.count.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/messages/dropped"),
                (stats.dropped_qos0_queue_messages
                    + stats.dropped_qos0_queue_bytes
                    + stats.dropped_queue_full
                    + stats.dropped_no_shared_member
                    + stats.dropped_too_large
                    + stats.dropped_expired
                    + stats.dropped_not_authorized)
                    .to_string(),
            ),
        ];
        // The same, per reason.
        for (reason, count) in [
            ("qos0_queue_messages", stats.dropped_qos0_queue_messages),
            ("qos0_queue_bytes", stats.dropped_qos0_queue_bytes),
            ("queue_full", stats.dropped_queue_full),
            ("no_shared_member", stats.dropped_no_shared_member),
            ("too_large", stats.dropped_too_large),
            ("expired", stats.dropped_expired),
            ("not_authorized", stats.dropped_not_authorized),
        ] {
            items.push((
                format!("$SYS/broker/shards/{shard}/messages/dropped/{reason}"),
                count.to_string(),
            ));
        }
        if shard == 0 {
            items.push((
                "$SYS/broker/version".into(),
                concat!("ringmq ", env!("CARGO_PKG_VERSION")).into(),
            ));
            items.push(("$SYS/broker/uptime".into(), format!("{uptime_s} seconds")));
        }
        for (topic, value) in items {
            let mut p = Publish {
                retain: true,
                topic: Bytes::from(topic),
                payload: Bytes::from(value),
                ..Publish::default()
            };
            self.retain_local(&p, now_ms, 0);
            self.route(&mut p, Source::Local(None), now_ms, now_ms);
        }
    }
}
