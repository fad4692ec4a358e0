//! Asks the broker for its `$SYS/broker/version` before the run, on a
//! connection of its own, within a short bounded wait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringmq_client::MqttConnection;
use ringmq_engine::client::Event;
use ringmq_engine::codec::{SubscribeFilter, SubscriptionOptions};
use ringmq_net::clock::Clock;

use crate::plan::Plan;

/// How long the broker gets to connect and send `$SYS/broker/version`, in ms.
const BROKER_VERSION_WAIT_MS: u64 = 1_000;
/// Longest broker version string kept, in bytes.
const BROKER_VERSION_MAX_BYTES: usize = 200;
const BROKER_VERSION_TOPIC: &str = "$SYS/broker/version";

/// Asks the broker for `$SYS/broker/version` on a connection of its own,
/// before the run; `None` when it does not answer within
/// [`BROKER_VERSION_WAIT_MS`] (many brokers restrict `$SYS`).
pub fn broker_version(plan: &Arc<Plan>) -> Option<String> {
    let plan = plan.clone();
    let handle = std::thread::Builder::new()
        .name("loadgen-probe".into())
        .spawn(move || {
            let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let wait = Duration::from_millis(BROKER_VERSION_WAIT_MS);
                monoio::time::timeout(wait, probe(plan.addr, &plan))
                    .await
                    .ok()
                    .flatten()
            })
        })
        .ok()?;
    handle.join().ok().flatten()
}

async fn probe(addr: SocketAddr, plan: &Plan) -> Option<String> {
    let options = plan.client_options("probe", 0);
    let config = plan.client_config("probe");
    let (conn, _) = MqttConnection::connect(addr, options, &config, Clock::new())
        .await
        .ok()?;
    let filter = SubscribeFilter {
        filter: Bytes::from_static(BROKER_VERSION_TOPIC.as_bytes()),
        options: SubscriptionOptions::default(),
    };
    conn.with_client(|c| c.subscribe(vec![filter])).ok()?;
    let mut version = None;
    while let Some(event) = conn.next_event().await {
        match event {
            Event::Message(m) if &m.topic[..] == BROKER_VERSION_TOPIC.as_bytes() => {
                let text = String::from_utf8_lossy(&m.payload);
                version = Some(text.chars().take(BROKER_VERSION_MAX_BYTES).collect());
                break;
            }
            Event::Disconnected(_) | Event::ProtocolError(_) => break,
            _ => {}
        }
    }
    conn.disconnect().await;
    version
}
