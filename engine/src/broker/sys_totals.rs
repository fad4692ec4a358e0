//! Broker-wide `$SYS/broker/...` values with the topic names Mosquitto
//! uses (`mosquitto(8)`, "Broker Status"), so dashboards and scripts made
//! for Mosquitto read ringmq. The runtime sums every shard's [`Stats`] and
//! [`Gauges`] into [`BrokerTotals`] and hands them to one shard (shard 0)
//! every `sys_interval_s`; that shard publishes them as retained messages,
//! replicated to every shard like any retained message. The per-shard
//! values stay under `$SYS/broker/shards/{n}/...` (`sys`).

use super::{Broker, Gauges, Stats};

/// Values summed over all shards by the runtime.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BrokerTotals {
    pub stats: Stats,
    pub gauges: Gauges,
    /// Sockets accepted since start (a connection handed to the shard that
    /// owns its client id counts once).
    pub sockets_accepted: u64,
    /// The most clients connected at once, as seen at these updates.
    pub clients_maximum: u64,
}

/// What the load averages follow, in this order.
const LOAD_TOPICS: [&str; 9] = [
    "messages/received",
    "messages/sent",
    "publish/received",
    "publish/sent",
    "publish/dropped",
    "bytes/received",
    "bytes/sent",
    "connections",
    "sockets",
];

/// The averaging periods of the load values, in seconds, and their names.
const LOAD_PERIODS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// Mosquitto's `$SYS/broker/load/...` values: exponentially decaying
/// moving averages of per-minute rates over 1, 5 and 15 minutes. At each
/// update, with `dt` seconds since the last one and `rate` the counter's
/// increase scaled to one minute, `value = rate + exp(-dt / period) *
/// (value - rate)`; the first update publishes 0.
#[derive(Clone, Debug, Default)]
pub struct LoadAverages {
    last: Option<(u64, [u64; LOAD_TOPICS.len()])>,
    values: [[f64; LOAD_PERIODS.len()]; LOAD_TOPICS.len()],
}

impl LoadAverages {
    /// Folds in the counters of `t` at `now_ms`.
    pub fn update(&mut self, t: &BrokerTotals, now_ms: u64) {
        let s = &t.stats;
        let counters = [
            s.packets_received,
            s.packets_sent,
            s.messages_received.iter().sum(),
            s.messages_sent.iter().sum(),
            s.dropped_total(),
            s.bytes_received,
            s.bytes_sent,
            s.connects_accepted,
            t.sockets_accepted,
        ];
        if let Some((last_ms, last)) = self.last {
            if now_ms <= last_ms {
                return;
            }
            let dt_s = (now_ms - last_ms) as f64 / 1000.0;
            for (i, values) in self.values.iter_mut().enumerate() {
                let delta = counters[i].saturating_sub(last[i]) as f64;
                let rate = delta * 60.0 / dt_s;
                for (value, (period_s, _)) in values.iter_mut().zip(LOAD_PERIODS) {
                    *value = rate + (-dt_s / period_s).exp() * (*value - rate);
                }
            }
        }
        self.last = Some((now_ms, counters));
    }

    /// `(topic, value)` of every load average, values with two decimals.
    fn items(&self) -> impl Iterator<Item = (String, String)> + '_ {
        LOAD_TOPICS
            .iter()
            .zip(&self.values)
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .zip(LOAD_PERIODS)
                    .map(move |(v, (_, period))| {
                        (
                            format!("$SYS/broker/load/{name}/{period}"),
                            format!("{v:.2}"),
                        )
                    })
            })
    }

    /// The current value of `$SYS/broker/load/{name}/{period}`.
    pub fn value(&self, name: &str, period: &str) -> Option<f64> {
        let i = LOAD_TOPICS.iter().position(|n| *n == name)?;
        let j = LOAD_PERIODS.iter().position(|(_, p)| *p == period)?;
        Some(self.values[i][j])
    }
}

/// `(topic, value)` of the broker-wide totals.
fn total_items(t: &BrokerTotals) -> Vec<(String, String)> {
    let (s, g) = (&t.stats, &t.gauges);
    let stored = g.retained_messages + g.queued_messages + g.inflight_messages;
    let item = |topic: &str, value: u64| (format!("$SYS/broker/{topic}"), value.to_string());
    vec![
        item("clients/connected", g.sessions_online),
        item("clients/disconnected", g.sessions_offline),
        item("clients/total", g.sessions_online + g.sessions_offline),
        item("clients/maximum", t.clients_maximum),
        item("clients/expired", s.sessions_expired),
        item("messages/received", s.packets_received),
        item("messages/sent", s.packets_sent),
        item("messages/inflight", g.inflight_messages),
        item("messages/stored", stored),
        item("store/messages/count", stored),
        item(
            "publish/messages/received",
            s.messages_received.iter().sum(),
        ),
        item("publish/messages/sent", s.messages_sent.iter().sum()),
        item("publish/messages/dropped", s.dropped_total()),
        item(
            "publish/bytes/received",
            s.payload_bytes_received.iter().sum(),
        ),
        item("publish/bytes/sent", s.payload_bytes_sent.iter().sum()),
        item("bytes/received", s.bytes_received),
        item("bytes/sent", s.bytes_sent),
        item("retained messages/count", g.retained_messages),
        item("subscriptions/count", g.subscriptions),
    ]
}

impl Broker {
    /// Publishes the broker-wide totals and load averages under
    /// `$SYS/broker/...` (the runtime calls it on one shard every
    /// `sys_interval_s`, after `load.update`).
    pub fn publish_broker_totals(
        &mut self,
        totals: &BrokerTotals,
        load: &LoadAverages,
        now_ms: u64,
    ) {
        let mut items = total_items(totals);
        items.extend(load.items());
        self.publish_sys_items(items, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(received: u64, sockets: u64) -> BrokerTotals {
        let mut t = BrokerTotals {
            sockets_accepted: sockets,
            ..BrokerTotals::default()
        };
        t.stats.messages_received = [received, 0, 0];
        t
    }

    #[test]
    fn load_follows_mosquittos_moving_average() {
        let mut load = LoadAverages::default();
        load.update(&totals(0, 0), 1_000);
        assert_eq!(
            load.value("publish/received", "1min"),
            Some(0.0),
            "first update: 0"
        );
        // 600 messages in 10 s = 3600 per minute.
        load.update(&totals(600, 6), 11_000);
        let e1 = (-10.0f64 / 60.0).exp();
        let want = 3600.0 * (1.0 - e1);
        let got = load.value("publish/received", "1min").unwrap_or(f64::NAN);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        let e15 = (-10.0f64 / 900.0).exp();
        let got15 = load.value("publish/received", "15min").unwrap_or(f64::NAN);
        assert!((got15 - 3600.0 * (1.0 - e15)).abs() < 1e-9);
        let sockets = load.value("sockets", "1min").unwrap_or(f64::NAN);
        assert!((sockets - 36.0 * (1.0 - e1)).abs() < 1e-9);
        // A steady rate converges to it.
        for k in 2..200u64 {
            load.update(&totals(600 * k, 0), 1_000 + 10_000 * k);
        }
        let got = load.value("publish/received", "1min").unwrap_or(f64::NAN);
        assert!((got - 3600.0).abs() < 1.0, "{got}");
        // Time not moving: nothing changes, no division by zero.
        load.update(&totals(1_000_000, 0), 1_000 + 10_000 * 199);
        assert!(load
            .value("publish/received", "1min")
            .is_some_and(f64::is_finite));
    }

    #[test]
    fn totals_use_mosquittos_topic_names() {
        let mut t = totals(5, 1);
        t.gauges.sessions_online = 2;
        t.gauges.sessions_offline = 1;
        t.gauges.retained_messages = 4;
        let items = total_items(&t);
        let get = |topic: &str| {
            items
                .iter()
                .find(|(t, _)| t == topic)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("$SYS/broker/clients/connected"), Some("2"));
        assert_eq!(get("$SYS/broker/clients/total"), Some("3"));
        assert_eq!(get("$SYS/broker/publish/messages/received"), Some("5"));
        assert_eq!(get("$SYS/broker/retained messages/count"), Some("4"));
        let load = LoadAverages::default();
        assert_eq!(load.items().count(), 27);
        assert!(load
            .items()
            .any(|(t, v)| t == "$SYS/broker/load/messages/received/1min" && v == "0.00"));
    }
}
