//! SUBSCRIBE and wait for its SUBACK, bounded in time: how subscribers,
//! responders (`worker`) and churn cycles (`conn`) subscribe.

use std::time::Duration;

use bytes::Bytes;
use ringmq_client::MqttConnection;
use ringmq_engine::client::Event;
use ringmq_engine::codec::{QoS, SubscribeFilter, SubscriptionOptions};

/// Topic filters per SUBSCRIBE packet.
const FILTERS_PER_SUBSCRIBE: usize = 100;
/// How long a SUBSCRIBE may wait for its SUBACK, in ms.
const SUBACK_TIMEOUT_MS: u64 = 10_000;

/// [`subscribe`] within [`SUBACK_TIMEOUT_MS`]; errors name the client.
pub async fn subscribe_in_time(
    conn: &MqttConnection,
    filters: &[Bytes],
    qos: QoS,
    role: &str,
    index: u32,
) -> Result<(), String> {
    let subscribed = monoio::time::timeout(
        Duration::from_millis(SUBACK_TIMEOUT_MS),
        subscribe(conn, filters, qos),
    )
    .await;
    match subscribed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{role} {index}: {e}")),
        Err(_) => Err(format!(
            "{role} {index}: no SUBACK within {SUBACK_TIMEOUT_MS} ms"
        )),
    }
}

/// The filter lists of the SUBSCRIBE packets for `filters` at `qos`, at
/// most `FILTERS_PER_SUBSCRIBE` each, with the filters each list holds.
pub fn subscribe_lists(
    filters: &[Bytes],
    qos: QoS,
) -> impl Iterator<Item = (&[Bytes], Vec<SubscribeFilter>)> {
    filters.chunks(FILTERS_PER_SUBSCRIBE).map(move |chunk| {
        let list = chunk
            .iter()
            .map(|f| SubscribeFilter {
                filter: f.clone(),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            })
            .collect();
        (chunk, list)
    })
}

async fn subscribe(conn: &MqttConnection, filters: &[Bytes], qos: QoS) -> Result<(), String> {
    for (chunk, list) in subscribe_lists(filters, qos) {
        let id = conn
            .with_client(|c| c.subscribe(list))
            .map_err(|e| format!("SUBSCRIBE: {e}"))?;
        loop {
            match conn.next_event().await {
                Some(Event::SubAck(ack)) if ack.packet_id == id => {
                    if let Some((i, r)) = ack.reasons.iter().enumerate().find(|(_, r)| r.is_error())
                    {
                        let filter = chunk
                            .get(i)
                            .map(|f| String::from_utf8_lossy(f).into_owned());
                        return Err(format!(
                            "subscription to {:?} refused (reason 0x{:02X})",
                            filter.unwrap_or_default(),
                            r.0
                        ));
                    }
                    break;
                }
                Some(Event::Disconnected(r)) => {
                    return Err(format!("disconnected while subscribing: {r:?}"))
                }
                Some(Event::ProtocolError(e)) => return Err(format!("protocol error: {e}")),
                None => return Err("connection closed while subscribing".into()),
                // Retained or stray messages before the run: not counted.
                Some(_) => {}
            }
        }
    }
    Ok(())
}
