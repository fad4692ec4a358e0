//! The retained-message storm (`loadgen retained`): how long subscribers
//! take to receive many retained messages at once.
//!
//! ```text
//! 1. every thread publishes its share of --topics retained messages
//!    (<prefix>/<i>, QoS 1, each acknowledged) on one connection
//! 2. once all threads have: every subscriber sends SUBSCRIBE <prefix>/#
//!    at the same moment and times until it holds all --topics of them
//!    (latency kind "retained_all": SUBSCRIBE to the last retained message)
//! 3. once all subscribers are done (or --timeout): each thread clears its
//!    share (empty retained payloads) unless --keep
//! ```

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringmq_client::MqttConnection;
use ringmq_engine::client::Event;
use ringmq_engine::codec::{PublishProperties, QoS, SubscribeFilter, SubscriptionOptions};

use crate::payload::{self, Header, PayloadWriter};
use crate::plan::{connect_all, wait_start, Plan, Shared, ThreadResult, STOP_POLL_MS};
use crate::stats::{Live, Recorder};

/// Retained topic `i`.
pub fn topic(prefix: &str, i: u64) -> Bytes {
    Bytes::from(format!("{prefix}/{i}"))
}

fn result(recorder: Recorder) -> ThreadResult {
    ThreadResult {
        recorder,
        trackers: Vec::new(),
    }
}

pub async fn retained_thread(t: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> ThreadResult {
    let subs: Vec<u32> = plan.subs_of(t).collect();
    let conns = async {
        let subs = connect_all(&plan, &shared, "sub", &subs).await?;
        let publisher = connect_all(&plan, &shared, "pub", &[t as u32]).await?;
        Ok::<_, String>((subs, publisher))
    };
    let (sub_conns, pub_conn) = match conns.await {
        Ok((subs, mut publisher)) if publisher.len() == 1 => (subs, publisher.remove(0).1),
        other => {
            let e = other
                .err()
                .unwrap_or_else(|| "no publisher connection".into());
            // Failure first: main must not see this thread as ready.
            shared.fail_setup(e);
            shared.ready.fetch_add(1, Ordering::SeqCst);
            return result(Recorder::new());
        }
    };
    shared.ready.fetch_add(1, Ordering::SeqCst);
    let mut rec = Recorder::new();
    let Some(start_ns) = wait_start(&shared).await else {
        return result(rec);
    };
    let deadline_ns = start_ns + plan.duration_ns;
    let live = &shared.live[t];
    let threads = plan.threads as u64;
    let mine: Vec<u64> = (0..plan.retained_topics)
        .filter(|i| i % threads == t as u64)
        .collect();
    let mut writer = PayloadWriter::new(plan.size_bytes);
    let stored = publish_all(&pub_conn, &plan, &shared, &mine, deadline_ns, |seq| {
        writer.stamp(Header {
            publisher: 0,
            seq,
            origin_ns: shared.clock.now_ns(),
        })
    })
    .await;
    if let Err(e) = stored {
        rec.error(live, || {
            format!("thread {t} storing retained messages: {e}")
        });
    }
    rec.sent_total = mine.len() as u64;
    rec.sent_measured = rec.sent_total;
    Live::add(&live.sent, rec.sent_total);
    shared.retained_stored.fetch_add(1, Ordering::SeqCst);
    barrier(&shared, &shared.retained_stored, plan.threads, deadline_ns).await;
    // Every subscriber of this thread subscribes now, at once.
    let tasks: Vec<_> = sub_conns
        .iter()
        .map(|(i, c)| monoio::spawn(receive_all(c.clone(), *i, plan.clone(), shared.clone(), t)))
        .collect();
    for task in tasks {
        rec.merge(task.await);
    }
    shared.retained_received.fetch_add(1, Ordering::SeqCst);
    barrier(
        &shared,
        &shared.retained_received,
        plan.threads,
        deadline_ns,
    )
    .await;
    if !plan.retained_keep {
        let cleared = publish_all(&pub_conn, &plan, &shared, &mine, u64::MAX, |_| Bytes::new());
        if let Err(e) = cleared.await {
            rec.error(live, || {
                format!("thread {t} clearing retained messages: {e}")
            });
        }
    }
    rec.mqtt_bytes_received = sub_conns.iter().map(|(_, c)| c.mqtt_bytes_received()).sum();
    rec.mqtt_bytes_sent = pub_conn.mqtt_bytes_sent();
    for (_, c) in sub_conns.iter().chain([(0, pub_conn.clone())].iter()) {
        let close = monoio::time::timeout(Duration::from_millis(3_000), c.disconnect());
        if close.await.is_err() {
            c.close();
        }
    }
    result(rec)
}

/// Waits until `count` reaches `threads`, the run stops or `deadline_ns`.
async fn barrier(
    shared: &Shared,
    count: &std::sync::atomic::AtomicUsize,
    threads: usize,
    deadline_ns: u64,
) {
    while count.load(Ordering::SeqCst) < threads
        && !shared.stopped()
        && shared.clock.now_ns() < deadline_ns
    {
        monoio::time::sleep(Duration::from_millis(STOP_POLL_MS)).await;
    }
}

/// Publishes `payload(i)` retained at QoS 1 to topic `i` for each of
/// `topics`, then waits for every PUBACK (until `deadline_ns`).
async fn publish_all(
    conn: &MqttConnection,
    plan: &Plan,
    shared: &Shared,
    topics: &[u64],
    deadline_ns: u64,
    mut payload: impl FnMut(u64) -> Bytes,
) -> Result<(), String> {
    let mut next = 0;
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::PubAcked { reason, .. } if reason.is_error() => {
                    return Err(format!("PUBACK reason 0x{:02X}", reason.0))
                }
                Event::Disconnected(r) => return Err(format!("disconnected: {r:?}")),
                _ => {}
            }
        }
        while let Some(&i) = topics.get(next) {
            let published = conn.with_client(|c| {
                c.publish(
                    topic(&plan.retained_prefix, i),
                    payload(i),
                    QoS::AtLeastOnce,
                    true,
                    PublishProperties::default(),
                )
            });
            match published {
                Ok(_) => next += 1,
                Err(e) if e.is_would_block() => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if next == topics.len() && conn.client().inflight() == 0 {
            return Ok(());
        }
        if shared.stopped() || shared.clock.now_ns() >= deadline_ns {
            return Err(format!(
                "{} of {} not acknowledged in time",
                topics.len() - next,
                topics.len()
            ));
        }
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_millis(STOP_POLL_MS)) => {},
            _ = conn.wait() => {},
        }
    }
}

/// One subscriber: SUBSCRIBE `<prefix>/#`, then take retained messages
/// until it holds all of them (or the run's deadline).
async fn receive_all(
    conn: Rc<MqttConnection>,
    index: u32,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    thread: usize,
) -> Recorder {
    let mut rec = Recorder::new();
    let live = &shared.live[thread];
    let clock = shared.clock;
    let deadline_ns = shared.start_ns() + plan.duration_ns;
    let total = plan.retained_topics;
    let mut seen = vec![0u64; total.div_ceil(64) as usize];
    let mut unique = 0u64;
    let filter = SubscribeFilter {
        filter: Bytes::from(format!("{}/#", plan.retained_prefix)),
        options: SubscriptionOptions {
            qos: plan.qos,
            ..SubscriptionOptions::default()
        },
    };
    let subscribed_ns = clock.now_ns();
    if let Err(e) = conn.with_client(|c| c.subscribe(vec![filter])) {
        rec.error(live, || format!("subscriber {index}: SUBSCRIBE: {e}"));
        return rec;
    }
    while unique < total {
        let mut received = 0;
        while let Some((event, arrived_ns)) = conn.poll_event_timed() {
            match event {
                Event::Message(m) if m.retain => {
                    received += 1;
                    rec.received_total += 1;
                    let Some(seq) = payload::parse(&m.payload).map(|h| h.seq) else {
                        rec.foreign += 1;
                        continue;
                    };
                    let (word, bit) = ((seq / 64) as usize, seq % 64);
                    match seen.get_mut(word) {
                        Some(w) if *w & (1 << bit) == 0 && seq < total => {
                            *w |= 1 << bit;
                            unique += 1;
                            if unique == total {
                                let took = arrived_ns.saturating_sub(subscribed_ns).max(1);
                                rec.latency.saturating_record(took);
                                shared.pubs_end_ns.fetch_max(arrived_ns, Ordering::SeqCst);
                            }
                        }
                        Some(_) => rec.foreign += 1,
                        None => rec.foreign += 1,
                    }
                }
                Event::SubAck(ack) => {
                    if let Some(r) = ack.reasons.iter().find(|r| r.is_error()) {
                        rec.error(live, || format!("subscriber {index}: SUBACK 0x{:02X}", r.0));
                        return rec;
                    }
                }
                Event::Disconnected(r) => {
                    rec.error(live, || format!("subscriber {index} disconnected: {r:?}"));
                    return rec;
                }
                _ => {}
            }
        }
        rec.received_measured += received;
        Live::add(&live.received, received);
        if unique >= total || shared.stopped() || clock.now_ns() >= deadline_ns {
            break;
        }
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_millis(STOP_POLL_MS)) => {},
            _ = conn.wait() => {},
        }
    }
    rec.missing = total - unique;
    rec
}
