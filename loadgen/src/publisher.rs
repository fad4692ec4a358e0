//! A publisher task: paces its sends on the intended schedule (or as fast
//! as the window allows), records the send lag and, for `pub` at QoS 1/2,
//! the PUBLISH-to-ack latency; then waits for its outstanding acks.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ringmq_client::MqttConnection;
use ringmq_engine::client::Event;
use ringmq_engine::codec::{PublishProperties, QoS};
use ringmq_net::os::PreciseTimer;

use crate::payload::{Header, PayloadWriter};
use crate::plan::{Plan, Scenario, Shared, STOP_POLL_MS};
use crate::stats::{Live, Recorder};

/// Above this gap to the next intended send time, in ns, a publisher naps
/// on monoio's timer (1 ms granularity) while still taking its events; the
/// last stretch is slept on a [`PreciseTimer`] (a timerfd, ~25 µs late).
const COARSE_ABOVE_NS: u64 = 2_000_000;
/// Below this gap, in ns, a publisher busy-waits on the clock instead
/// (a timer costs more than the wait, and would overshoot it).
const BUSY_BELOW_NS: u64 = 20_000;

pub struct PubCtx {
    pub index: u32,
    pub thread: usize,
    pub start_ns: u64,
    pub plan: Arc<Plan>,
    pub shared: Arc<Shared>,
    pub rec: Rc<RefCell<Recorder>>,
}

/// Sends one publisher's messages at its pace, then waits for its acks.
pub async fn publisher(conn: Rc<MqttConnection>, ctx: PubCtx) {
    let plan = &*ctx.plan;
    let shared = &*ctx.shared;
    let live = &shared.live[ctx.thread];
    let clock = shared.clock;
    let Some(topic) = plan.pub_topics.get(ctx.index as usize).cloned() else {
        return;
    };
    let record_acks = plan.scenario == Scenario::Pub && plan.qos != QoS::AtMostOnce;
    // reqresp: requests carry this Response Topic and their sequence
    // number as Correlation Data.
    let response_topic = plan.resp_topics.get(ctx.index as usize).cloned();
    let mut replies = 0u64;
    let mut ack_origins: HashMap<u16, u64> = HashMap::with_capacity(usize::from(plan.inflight) * 2);
    let mut writer = PayloadWriter::new(plan.size_bytes);
    let measure_start_ns = ctx.start_ns + plan.warmup_ns;
    let end_ns = measure_start_ns + plan.duration_ns;
    let paced = plan.rate_per_pub > 0.0;
    let interval_ns = if paced { 1e9 / plan.rate_per_pub } else { 0.0 };
    // Publishers are staggered over one interval so their sends interleave.
    let offset_ns = interval_ns * f64::from(ctx.index) / f64::from(plan.pubs.max(1));
    let first_ns = ctx.start_ns as f64 + offset_ns;
    // Bursts: messages burst*k .. burst*(k+1) are all due at the first one's
    // time (burst 1: evenly paced).
    let burst_len = u64::from(plan.burst.max(1));
    let intended = |seq: u64| (first_ns + (seq - seq % burst_len) as f64 * interval_ns) as u64;
    let mut timer = match PreciseTimer::new() {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.rec.borrow_mut().error(live, || {
                format!(
                    "publisher {}: no precise timer ({e}); pacing at 1 ms",
                    ctx.index
                )
            });
            None
        }
    };
    // Wait for the common start (paced publishers would send nothing
    // before it anyway; unpaced ones must not start early).
    let now_ns = clock.now_ns();
    if now_ns < ctx.start_ns {
        monoio::time::sleep(Duration::from_nanos(ctx.start_ns - now_ns)).await;
    }
    let mut seq = 0u64;
    let mut disconnected = false;
    'run: loop {
        if drain_publisher_events(&conn, &ctx, &mut ack_origins, record_acks, &mut replies) {
            disconnected = true;
            break;
        }
        let now_ns = clock.now_ns();
        if seq >= plan.count || now_ns >= end_ns || shared.stopped() {
            break;
        }
        // Messages due by now (all of them when unpaced).
        let due = if !paced {
            plan.count
        } else if (now_ns as f64) < first_ns {
            0
        } else {
            let reached = (((now_ns as f64 - first_ns) / interval_ns) as u64) + 1;
            // Whole bursts: the burst that started by now is due entirely.
            let bursts = reached.div_ceil(burst_len);
            bursts.saturating_mul(burst_len).min(plan.count)
        };
        let mut burst = 0u64;
        let mut blocked = false;
        let mut sent_measured = 0u64;
        // The borrow ends with this block, before any await: the thread's
        // other tasks record into the same recorder.
        {
            let mut rec_lag = ctx.rec.borrow_mut();
            while seq < due {
                if !conn.client().can_publish(plan.qos) {
                    blocked = true;
                    break;
                }
                let origin_ns = if paced { intended(seq) } else { clock.now_ns() };
                if origin_ns >= end_ns {
                    break;
                }
                let payload = writer.stamp(Header {
                    publisher: ctx.index,
                    seq,
                    origin_ns,
                });
                let properties = match &response_topic {
                    None => PublishProperties::default(),
                    Some(t) => PublishProperties {
                        response_topic: Some(t.clone()),
                        correlation_data: Some(crate::reqresp::correlation(seq)),
                        ..PublishProperties::default()
                    },
                };
                let published = conn.with_client(|c| {
                    c.publish(topic.clone(), payload, plan.qos, plan.retain, properties)
                });
                match published {
                    Ok(packet_id) => {
                        if let (true, Some(id)) = (record_acks, packet_id) {
                            ack_origins.insert(id, origin_ns);
                        }
                        seq += 1;
                        burst += 1;
                        if origin_ns >= measure_start_ns {
                            sent_measured += 1;
                            rec_lag.series.sent(origin_ns, 1);
                            if paced {
                                let lag_ns = clock.now_ns().saturating_sub(origin_ns);
                                rec_lag.send_lag.saturating_record(lag_ns.max(1));
                            }
                        }
                        if plan.write_each {
                            // Hand this message to the socket on its own
                            // before queueing the next one.
                            break;
                        }
                    }
                    Err(e) if e.is_would_block() => {
                        blocked = true;
                        break;
                    }
                    Err(e) => {
                        rec_lag.error(live, || format!("publisher {}: {e}", ctx.index));
                        break 'run;
                    }
                }
            }
        }
        if burst > 0 {
            let mut rec = ctx.rec.borrow_mut();
            rec.sent_total += burst;
            rec.sent_measured += sent_measured;
            Live::add(&live.sent, burst);
        }
        if plan.write_each {
            // Wait until the writer took the last message (one write each).
            while !conn.is_closed() && !conn.with_client(|c| c.outgoing().is_empty()) {
                conn.wait().await;
            }
            if !blocked && seq < due {
                continue;
            }
        }
        if blocked {
            // Window or outgoing buffer full: an ack or a finished write wakes us.
            conn.wait().await;
            continue;
        }
        if !paced {
            // Not blocked, so the count or the time is up: the top decides.
            continue;
        }
        // Caught up: wait for the next intended send time.
        let next_ns = intended(seq).min(end_ns);
        let now_ns = clock.now_ns();
        let gap_ns = next_ns.saturating_sub(now_ns);
        if gap_ns > COARSE_ABOVE_NS {
            let nap = Duration::from_nanos(gap_ns - COARSE_ABOVE_NS);
            monoio::select! {
                _ = monoio::time::sleep(nap) => {},
                _ = conn.wait() => {},
            }
        } else if gap_ns > BUSY_BELOW_NS {
            let slept = match timer.as_mut() {
                Some(t) => t.sleep(Duration::from_nanos(gap_ns)).await.is_ok(),
                None => false,
            };
            if !slept {
                timer = None;
                monoio::time::sleep(Duration::from_nanos(gap_ns)).await;
            }
        } else {
            while clock.now_ns() < next_ns {
                std::hint::spin_loop();
            }
        }
    }
    // Final count first: the main thread's drain compares against it.
    shared.pub_sent[ctx.index as usize].store(seq, Ordering::SeqCst);
    shared
        .pubs_end_ns
        .fetch_max(clock.now_ns(), Ordering::SeqCst);
    shared.pubs_finished.fetch_add(1, Ordering::SeqCst);
    // QoS 1/2: wait for the outstanding acknowledgements, and reqresp's
    // replies (bounded by --drain).
    let drain_end_ns = clock.now_ns() + plan.drain_ns;
    let waiting_replies = |replies: u64| response_topic.is_some() && replies < seq;
    while !disconnected
        && (conn.client().inflight() > 0 || waiting_replies(replies))
        && clock.now_ns() < drain_end_ns
    {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_millis(STOP_POLL_MS)) => {},
            _ = conn.wait() => {},
        }
        disconnected =
            drain_publisher_events(&conn, &ctx, &mut ack_origins, record_acks, &mut replies);
    }
}

/// Takes a publisher's events (reqresp: counting its replies); true if
/// the connection ended.
fn drain_publisher_events(
    conn: &MqttConnection,
    ctx: &PubCtx,
    ack_origins: &mut HashMap<u16, u64>,
    record_acks: bool,
    replies: &mut u64,
) -> bool {
    let live = &ctx.shared.live[ctx.thread];
    let mut ended = false;
    let mut rec = ctx.rec.borrow_mut();
    // `acked_ns`: when the read that brought the ack completed.
    while let Some((event, acked_ns)) = conn.poll_event_timed() {
        match event {
            Event::PubAcked { packet_id, reason } => {
                rec.acked += 1;
                if reason.is_error() {
                    rec.ack_failures += 1;
                }
                if record_acks {
                    let measure_start_ns = ctx.start_ns + ctx.plan.warmup_ns;
                    if let Some(origin) = ack_origins
                        .remove(&packet_id)
                        .filter(|origin| *origin >= measure_start_ns)
                    {
                        let latency_ns = acked_ns.saturating_sub(origin).max(1);
                        rec.latency.saturating_record(latency_ns);
                        rec.series.latency(acked_ns, latency_ns);
                    }
                }
            }
            Event::Disconnected(reason) => {
                ended = true;
                if !ctx.shared.stopped() {
                    rec.error(live, || {
                        format!("publisher {} disconnected: {reason:?}", ctx.index)
                    });
                }
            }
            Event::ProtocolError(e) => rec.error(live, || format!("publisher {}: {e}", ctx.index)),
            Event::Message(reply) => {
                *replies += 1;
                let measure_start_ns = ctx.start_ns + ctx.plan.warmup_ns;
                crate::reqresp::record_reply(&mut rec, live, &reply, acked_ns, measure_start_ns);
            }
            _ => {}
        }
    }
    ended || conn.is_closed()
}
