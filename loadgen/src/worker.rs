//! One worker thread: its own monoio runtime (io_uring where the kernel
//! allows, epoll otherwise) and its slice of the publishers and subscribers.
//!
//! Per publisher one task paces the sends (`publisher`); per subscriber one
//! task drains the messages. Nothing on the per-message path allocates: payloads are
//! stamped into a reused buffer, topics are shared `Bytes`, trackers and
//! histograms are preallocated.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ringmq_client::MqttConnection;
use ringmq_engine::client::Event;

use crate::payload;
use crate::plan::{
    connect_all, wait_start, wait_stop, Conns, Plan, Scenario, Shared, ThreadResult,
};
use crate::publisher::{publisher, PubCtx};
use crate::reqresp::{responder, RespCtx};
use crate::series::Series;
use crate::stats::{Live, Recorder};
use crate::tracker::{SeqTracker, Trackers};

/// How long a thread waits for its connections to close at the end, in ms.
const CLOSE_TIMEOUT_MS: u64 = 3_000;

/// The thread's entry point: builds the runtime and runs its part.
pub fn thread_main(t: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> Option<ThreadResult> {
    if let Some(tid) = crate::selfcheck::current_thread_id() {
        shared.tids[t].store(tid, Ordering::Relaxed);
    }
    if let Some(cpu) = (!plan.pin.is_empty()).then(|| plan.pin[t % plan.pin.len()]) {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            shared.fail_setup(format!("thread {t}: cannot pin to CPU {cpu}: {e}"));
            shared.threads_done.fetch_add(1, Ordering::SeqCst);
            return None;
        }
    }
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
            Scenario::Retained => crate::retained::retained_thread(t, plan, shared2).await,
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
    let (sub_conns, pub_conns, resp_conns) = match setup {
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
    let mut resp_tasks = Vec::new();
    for (index, conn) in &resp_conns {
        let ctx = RespCtx {
            index: *index,
            thread: t,
            plan: plan.clone(),
            shared: shared.clone(),
            rec: rec.clone(),
        };
        resp_tasks.push(monoio::spawn(responder(conn.clone(), ctx)));
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
    for (_, conn) in sub_conns.iter().chain(&resp_conns) {
        conn.with_client(|c| c.disconnect(ringmq_engine::codec::ReasonCode::NORMAL_DISCONNECTION));
    }
    let mut trackers = Vec::new();
    for task in sub_tasks {
        trackers.extend(task.await);
    }
    for task in resp_tasks {
        task.await;
    }
    for task in pub_tasks {
        task.await;
    }
    for (_, conn) in &pub_conns {
        let _ =
            monoio::time::timeout(Duration::from_millis(CLOSE_TIMEOUT_MS), conn.disconnect()).await;
    }
    let mut recorder = std::mem::take(&mut *rec.borrow_mut());
    let bytes = |conns: &Conns, f: fn(&MqttConnection) -> u64| -> u64 {
        conns.iter().map(|(_, c)| f(c)).sum()
    };
    recorder.mqtt_bytes_received = bytes(&sub_conns, MqttConnection::mqtt_bytes_received);
    if plan.scenario == Scenario::ReqResp {
        // The replies reach the requesters.
        recorder.mqtt_bytes_received += bytes(&pub_conns, MqttConnection::mqtt_bytes_received);
    }
    recorder.mqtt_bytes_sent = bytes(&pub_conns, MqttConnection::mqtt_bytes_sent);
    ThreadResult { recorder, trackers }
}

/// Connects and subscribes this thread's subscribers (and reqresp's
/// responders), then connects its publishers (reqresp: subscribed to their
/// response topics).
async fn setup(
    t: usize,
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
) -> Result<(Conns, Conns, Conns), String> {
    let subs: Vec<u32> = plan.subs_of(t).collect();
    let sub_conns = connect_all(plan, shared, "sub", &subs).await?;
    for (index, conn) in &sub_conns {
        crate::subscribe::subscribe_in_time(
            conn,
            &plan.filters_of(*index),
            plan.qos,
            "subscriber",
            *index,
        )
        .await?;
    }
    let resps: Vec<u32> = plan.responders_of(t).collect();
    let resp_conns = connect_all(plan, shared, "resp", &resps).await?;
    for (index, conn) in &resp_conns {
        let filter = [plan.request_filter.clone()];
        crate::subscribe::subscribe_in_time(conn, &filter, plan.qos, "responder", *index).await?;
    }
    let pubs: Vec<u32> = plan.pubs_of(t).collect();
    let pub_conns = connect_all(plan, shared, "pub", &pubs).await?;
    for (index, conn) in &pub_conns {
        if let Some(topic) = plan.resp_topics.get(*index as usize) {
            crate::subscribe::subscribe_in_time(
                conn,
                std::slice::from_ref(topic),
                plan.qos,
                "requester",
                *index,
            )
            .await?;
        }
    }
    Ok((sub_conns, pub_conns, resp_conns))
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
            let taking_ns = ctx.shared.clock.now_ns();
            // `now_ns`: when the read that brought the event completed.
            while let Some((event, now_ns)) = conn.poll_event_timed() {
                match event {
                    Event::Message(m) => {
                        received += 1;
                        if now_ns >= measure_start_ns && now_ns < measure_end_ns {
                            let backlog_ns = taking_ns.saturating_sub(now_ns);
                            rec.recv_backlog.saturating_record(backlog_ns.max(1));
                        }
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
pub(crate) fn record_message(
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
                // In the second it was sent, like the count above: a
                // message still in flight when the window ends is in
                // `msgs_received` and in the series alike.
                rec.series.received(h.origin_ns, Some(latency_ns));
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
