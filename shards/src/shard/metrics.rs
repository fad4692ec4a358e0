//! A shard's side of the metrics (`crate::metrics`): answering a snapshot
//! request from its ring task, and on shard 0 the broker-wide `$SYS`
//! totals every `sys_interval_s` (Mosquitto's topic names, computed from
//! every shard's snapshot: `Broker::publish_broker_totals`).

use std::rc::Rc;
use std::time::Duration;

use ringmq_engine::broker::{BrokerTotals, LoadAverages};

use super::state::Shard;
use crate::metrics;

impl Shard {
    /// Whether a snapshot was asked of this shard and not given yet.
    pub(super) fn metrics_pending(&self) -> bool {
        self.metrics.pending(self.id)
    }

    /// Writes this shard's snapshot if one was asked for (never waits).
    pub(super) fn answer_metrics(&self) {
        if !self.metrics_pending() {
            return;
        }
        let broker = self.broker.borrow();
        let mesh = self.mesh.borrow();
        self.metrics.answer(self.id, |s| {
            s.stats = broker.stats();
            s.gauges = broker.gauges();
            s.sockets_accepted = self.sockets_accepted.get();
            s.rings.clear();
            s.rings.extend(mesh.rings());
        });
    }
}

/// Shard 0: at start-up and then every `sys_interval_s`, gathers every
/// shard's snapshot and publishes the broker-wide `$SYS/broker/...`
/// values. The values are as fresh as the snapshots (a shard that does
/// not answer within `metrics::GATHER_TIMEOUT_MS` contributes its
/// previous one). The first publish comes before any connection, as the
/// shards' own (`Broker::start`): its retained messages and the code it
/// runs the first time (the load averages' `exp`) are part of the idle
/// broker, not of the first burst of connections.
pub(super) async fn sys_totals_task(shard: Rc<Shard>, interval_s: u32) {
    let mut totals = SysTotals::new(&shard);
    loop {
        if shard.is_stopping() {
            return;
        }
        let snapshots = shard.metrics.gather().await;
        totals.publish(&shard, &snapshots);
        monoio::time::sleep(Duration::from_secs(u64::from(interval_s))).await;
    }
}

/// What the `$SYS` totals carry from one tick to the next.
pub(super) struct SysTotals {
    load: LoadAverages,
    clients_maximum: u64,
}

impl SysTotals {
    /// Counting starts now: traffic before the first tick is in its rate.
    pub(super) fn new(shard: &Shard) -> SysTotals {
        let mut load = LoadAverages::default();
        load.update(&BrokerTotals::default(), shard.now_ms());
        SysTotals {
            load,
            clients_maximum: 0,
        }
    }

    /// Publishes the broker-wide values computed from `snapshots`. The
    /// `$SYS` values stay: in the lasting heap (`ringmq_net::lasting`).
    pub(super) fn publish(&mut self, shard: &Shard, snapshots: &[metrics::ShardSnapshot]) {
        ringmq_net::lasting::scope(|| self.publish_values(shard, snapshots));
    }

    fn publish_values(&mut self, shard: &Shard, snapshots: &[metrics::ShardSnapshot]) {
        let (stats, gauges, sockets_accepted) = metrics::totals(snapshots);
        self.clients_maximum = gauges.sessions_online.max(self.clients_maximum);
        let totals = BrokerTotals {
            stats,
            gauges,
            sockets_accepted,
            clients_maximum: self.clients_maximum,
        };
        let now = shard.now_ms();
        self.load.update(&totals, now);
        shard
            .broker
            .borrow_mut()
            .publish_broker_totals(&totals, &self.load, now);
        shard.drain_events(None);
    }
}
