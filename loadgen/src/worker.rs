//! One worker thread: its own monoio runtime (io_uring where the kernel
//! allows, epoll otherwise) and its slice of the publishers and subscribers.
//!
//! Per publisher one task paces the sends; per subscriber one task drains
//! the messages. Nothing on the per-message path allocates: payloads are
//! stamped into a reused buffer, topics are shared `Bytes`, trackers and
//! histograms are preallocated.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringmq_client::MqttConnection;
use ringmq_engine::client::Event;
use ringmq_engine::codec::{PublishProperties, QoS, SubscribeFilter, SubscriptionOptions};
use ringmq_net::os::PreciseTimer;

use crate::payload::{self, Header, PayloadWriter};
use crate::plan::{wait_start, wait_stop, Plan, Scenario, Shared, ThreadResult, STOP_POLL_MS};
use crate::series::Series;
use crate::stats::{Live, Recorder};
use crate::tracker::{SeqTracker, Trackers};

/// Connects in progress at once per thread during setup.
const SETUP_CONNECT_CONCURRENCY: usize = 64;
/// Topic filters per SUBSCRIBE packet.
const FILTERS_PER_SUBSCRIBE: usize = 100;
/// How long a SUBSCRIBE may wait for its SUBACK, in ms.
const SUBACK_TIMEOUT_MS: u64 = 10_000;
/// Above this gap to the next intended send time, in ns, a publisher naps
/// on monoio's timer (1 ms granularity) while still taking its events; the
/// last stretch is slept on a [`PreciseTimer`] (a timerfd, ~25 µs late).
const COARSE_ABOVE_NS: u64 = 2_000_000;
/// Below this gap, in ns, a publisher busy-waits on the clock instead
/// (a timer costs more than the wait, and would overshoot it).
const BUSY_BELOW_NS: u64 = 20_000;
/// How long a thread waits for its connections to close at the end, in ms.
const CLOSE_TIMEOUT_MS: u64 = 3_000;

/// The thread's entry point: builds the runtime and runs its part.
pub fn thread_main(t: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> Option<ThreadResult> {
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build();
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            shared.fail_setup(format!("thread {t}: cannot build the monoio runtime: {e}"));
            shared.threads_done.fetch_add(1, Ordering::SeqCst);
            return None;
        }
    };
    let shared2 = shared.clone();
    let result = runtime.block_on(async move {
        match plan.scenario {
            Scenario::Conn => crate::conn::conn_thread(t, plan, shared2).await,
            _ => pubsub_thread(t, plan, shared2).await,
        }
    });
    shared.threads_done.fetch_add(1, Ordering::SeqCst);
    Some(result)
}

fn empty_result(rec: Recorder) -> ThreadResult {
    ThreadResult {
        recorder: rec,
        trackers: Vec::new(),
    }
}

async fn pubsub_thread(t: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> ThreadResult {
    let setup = setup(t, &plan, &shared).await;
    let (sub_conns, pub_conns) = match setup {
        Ok(conns) => conns,
        Err(e) => {
            // Failure first: main must not see this thread as ready.
            shared.fail_setup(e);
            shared.ready.fetch_add(1, Ordering::SeqCst);
            return empty_result(Recorder::new());
        }
    };
    // The per-second series is allocated before the run, not during it.
    let mut series = Series::new(0, plan.duration_ns);
    shared.ready.fetch_add(1, Ordering::SeqCst);
    let Some(start_ns) = wait_start(&shared).await else {
        return empty_result(Recorder::new());
    };
    series.set_start(start_ns + plan.warmup_ns);
    let rec = Rc::new(RefCell::new(Recorder::with_series(series)));
    let mut sub_tasks = Vec::new();
    for (index, conn) in &sub_conns {
        let ctx = SubCtx {
            index: *index,
            thread: t,
            start_ns,
            plan: plan.clone(),
            shared: shared.clone(),
            rec: rec.clone(),
        };
        sub_tasks.push(monoio::spawn(subscriber(conn.clone(), ctx)));
    }
    let mut pub_tasks = Vec::new();
    for (index, conn) in &pub_conns {
        let ctx = PubCtx {
            index: *index,
            thread: t,
            start_ns,
            plan: plan.clone(),
            shared: shared.clone(),
            rec: rec.clone(),
        };
        pub_tasks.push(monoio::spawn(publisher(conn.clone(), ctx)));
    }
    wait_stop(&shared).await;
    for (_, conn) in &sub_conns {
        conn.with_client(|c| c.disconnect(ringmq_engine::codec::ReasonCode::NORMAL_DISCONNECTION));
    }
    let mut trackers = Vec::new();
    for task in sub_tasks {
        trackers.extend(task.await);
    }
    for task in pub_tasks {
        task.await;
    }
    for (_, conn) in &pub_conns {
        let _ =
            monoio::time::timeout(Duration::from_millis(CLOSE_TIMEOUT_MS), conn.disconnect()).await;
    }
    let recorder = std::mem::take(&mut *rec.borrow_mut());
    ThreadResult { recorder, trackers }
}

type Conns = Vec<(u32, Rc<MqttConnection>)>;

/// Connects and subscribes this thread's subscribers, then connects its
/// publishers.
async fn setup(t: usize, plan: &Arc<Plan>, shared: &Arc<Shared>) -> Result<(Conns, Conns), String> {
    let subs: Vec<u32> = plan.subs_of(t).collect();
    let sub_conns = connect_all(plan, shared, "sub", &subs).await?;
    let qos = plan.qos;
    for (index, conn) in &sub_conns {
        let filters = plan.filters_of(*index);
        let subscribed = monoio::time::timeout(
            Duration::from_millis(SUBACK_TIMEOUT_MS),
            subscribe(conn, &filters, qos),
        )
        .await;
        match subscribed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("subscriber {index}: {e}")),
            Err(_) => {
                return Err(format!(
                    "subscriber {index}: no SUBACK within {SUBACK_TIMEOUT_MS} ms"
                ))
            }
        }
    }
    let pubs: Vec<u32> = plan.pubs_of(t).collect();
    let pub_conns = connect_all(plan, shared, "pub", &pubs).await?;
    Ok((sub_conns, pub_conns))
}

async fn connect_all(
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    role: &'static str,
    indices: &[u32],
) -> Result<Conns, String> {
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(SETUP_CONNECT_CONCURRENCY) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let options = plan.client_options(role, u64::from(i));
                let config = plan.client_config(role);
                let (addr, clock) = (plan.addr, shared.clock);
                monoio::spawn(async move {
                    MqttConnection::connect(addr, options, &config, clock).await
                })
            })
            .collect();
        for (task, &i) in tasks.into_iter().zip(chunk) {
            match task.await {
                Ok((conn, _)) => out.push((i, Rc::new(conn))),
                Err(e) => return Err(format!("{role} {i} ({}): {e}", plan.addr)),
            }
        }
    }
    Ok(out)
}

async fn subscribe(conn: &MqttConnection, filters: &[Bytes], qos: QoS) -> Result<(), String> {
    for chunk in filters.chunks(FILTERS_PER_SUBSCRIBE) {
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

struct SubCtx {
    index: u32,
    thread: usize,
    start_ns: u64,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    rec: Rc<RefCell<Recorder>>,
}

/// Drains one subscriber's messages until its connection closes.
async fn subscriber(conn: Rc<MqttConnection>, ctx: SubCtx) -> Vec<(u32, u32, SeqTracker)> {
    let plan = &*ctx.plan;
    let live = &ctx.shared.live[ctx.thread];
    let mut trackers = Trackers::default();
    // Every wired publisher has a tracker from the start, so a publisher
    // whose messages never arrive still counts as lost.
    for p in (0..plan.pubs).filter(|p| plan.wired(ctx.index, *p)) {
        trackers.insert(p, SeqTracker::default());
    }
    let measure_start_ns = ctx.start_ns + plan.warmup_ns;
    let measure_end_ns = measure_start_ns + plan.duration_ns;
    let from_origin = plan.scenario == Scenario::PubSub;
    loop {
        let mut received = 0u64;
        let mut ended = false;
        {
            let mut rec = ctx.rec.borrow_mut();
            // `now_ns`: when the read that brought the event completed.
            while let Some((event, now_ns)) = conn.poll_event_timed() {
                match event {
                    Event::Message(m) => {
                        received += 1;
                        let measured = if from_origin {
                            None
                        } else {
                            Some(now_ns >= measure_start_ns && now_ns < measure_end_ns)
                        };
                        record_message(
                            &mut rec,
                            &mut trackers,
                            &m.payload,
                            now_ns,
                            measure_start_ns,
                            measured,
                        );
                    }
                    Event::Disconnected(reason) => {
                        ended = true;
                        if !ctx.shared.stopped() {
                            rec.error(live, || {
                                format!("subscriber {} disconnected: {reason:?}", ctx.index)
                            });
                        }
                    }
                    Event::ProtocolError(e) => {
                        rec.error(live, || format!("subscriber {}: {e}", ctx.index))
                    }
                    _ => {}
                }
            }
        }
        Live::add(&live.received, received);
        if ended || conn.is_closed() {
            break;
        }
        conn.wait().await;
    }
    trackers
        .into_iter()
        .map(|(p, t)| (ctx.index, p, t))
        .collect()
}

/// Accounts one received message. `measured_by_arrival`: `None` to measure
/// by the payload's origin (same-process publisher), or whether the arrival
/// time fell in the measured window (publishers elsewhere).
fn record_message(
    rec: &mut Recorder,
    trackers: &mut Trackers,
    payload: &[u8],
    now_ns: u64,
    measure_start_ns: u64,
    measured_by_arrival: Option<bool>,
) {
    let header = payload::parse(payload);
    match measured_by_arrival {
        None => {
            let Some(h) = header else {
                rec.foreign += 1;
                return;
            };
            rec.received_total += 1;
            trackers.entry(h.publisher).or_default().record(h.seq);
            if h.origin_ns >= measure_start_ns {
                rec.received_measured += 1;
                let latency_ns = now_ns.saturating_sub(h.origin_ns).max(1);
                rec.latency.saturating_record(latency_ns);
                rec.series.received(now_ns, Some(latency_ns));
            }
        }
        Some(in_window) => {
            rec.received_total += 1;
            if in_window {
                rec.received_measured += 1;
                rec.series.received(now_ns, None);
            }
            match header {
                // Unknown publishers get a tracker on first sight (once each).
                Some(h) => trackers.entry(h.publisher).or_default().record(h.seq),
                None => rec.foreign += 1,
            }
        }
    }
}

struct PubCtx {
    index: u32,
    thread: usize,
    start_ns: u64,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    rec: Rc<RefCell<Recorder>>,
}

/// Sends one publisher's messages at its pace, then waits for its acks.
async fn publisher(conn: Rc<MqttConnection>, ctx: PubCtx) {
    let plan = &*ctx.plan;
    let shared = &*ctx.shared;
    let live = &shared.live[ctx.thread];
    let clock = shared.clock;
    let Some(topic) = plan.pub_topics.get(ctx.index as usize).cloned() else {
        return;
    };
    let record_acks = plan.scenario == Scenario::Pub && plan.qos != QoS::AtMostOnce;
    let mut ack_origins: HashMap<u16, u64> = HashMap::with_capacity(usize::from(plan.inflight) * 2);
    let mut writer = PayloadWriter::new(plan.size_bytes);
    let measure_start_ns = ctx.start_ns + plan.warmup_ns;
    let end_ns = measure_start_ns + plan.duration_ns;
    let paced = plan.rate_per_pub > 0.0;
    let interval_ns = if paced { 1e9 / plan.rate_per_pub } else { 0.0 };
    // Publishers are staggered over one interval so their sends interleave.
    let offset_ns = interval_ns * f64::from(ctx.index) / f64::from(plan.pubs.max(1));
    let first_ns = ctx.start_ns as f64 + offset_ns;
    let intended = |seq: u64| (first_ns + seq as f64 * interval_ns) as u64;
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
        if drain_publisher_events(&conn, &ctx, &mut ack_origins, record_acks) {
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
            ((((now_ns as f64 - first_ns) / interval_ns) as u64) + 1).min(plan.count)
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
                let published = conn.with_client(|c| {
                    c.publish(
                        topic.clone(),
                        payload,
                        plan.qos,
                        plan.retain,
                        PublishProperties::default(),
                    )
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
    // QoS 1/2: wait for the outstanding acknowledgements (bounded by --drain).
    let drain_end_ns = clock.now_ns() + plan.drain_ns;
    while !disconnected && conn.client().inflight() > 0 && clock.now_ns() < drain_end_ns {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_millis(STOP_POLL_MS)) => {},
            _ = conn.wait() => {},
        }
        disconnected = drain_publisher_events(&conn, &ctx, &mut ack_origins, record_acks);
    }
}

/// Takes a publisher's events; true if the connection ended.
fn drain_publisher_events(
    conn: &MqttConnection,
    ctx: &PubCtx,
    ack_origins: &mut HashMap<u16, u64>,
    record_acks: bool,
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
            _ => {}
        }
    }
    ended || conn.is_closed()
}
