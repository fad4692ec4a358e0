//! `$SYS/broker/shards/{n}/...`: the statistics each shard publishes as
//! retained messages every `sys_interval_s` (the broker-wide totals with
//! Mosquitto's names are `sys_totals`).

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
                stats.messages_received.iter().sum::<u64>().to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/messages/sent"),
                stats.messages_sent.iter().sum::<u64>().to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/retained/count"),
                self.retained.count.to_string(),
            ),
            (
                format!("$SYS/broker/shards/{shard}/messages/dropped"),
                stats.dropped_total().to_string(),
            ),
        ];
        // The same, per reason.
        for (reason, count) in stats.drops() {
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
        self.publish_sys_items(items, now_ms);
    }

    /// Publishes each `(topic, value)` as a retained message from the
    /// broker (replicated to every shard, routed to subscribers here and
    /// on the other shards).
    pub(super) fn publish_sys_items(&mut self, items: Vec<(String, String)>, now_ms: u64) {
        for (topic, value) in items {
            let mut p = Publish {
                retain: true,
                topic: Bytes::from(topic),
                payload: Bytes::from(value),
                ..Publish::default()
            };
            self.retain_local(&p, now_ms, 0);
            self.route(&mut p, Source::Local(None), now_ms, now_ms, 0);
        }
    }
}
