//! The `conn` scenario: open many connections at a rate, hold them with
//! keep-alive for --duration, report connect latency and failures. With
//! `--churn`, each connection instead subscribes, disconnects and closes
//! at once (CONNECT, SUBSCRIBE, DISCONNECT per cycle; cycle latency).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringmq_client::{ClientConfig, MqttConnection};
use ringmq_engine::codec::{QoS, ReasonCode};

use crate::plan::{wait_start, wait_stop, Plan, Shared, ThreadResult};
use crate::stats::{Live, Recorder};

/// How long the end of the run waits for connections to close, in ms.
const CLOSE_TIMEOUT_MS: u64 = 5_000;
/// Poll period while waiting for connects to finish, in ms.
const POLL_MS: u64 = 1;

pub async fn conn_thread(t: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> ThreadResult {
    shared.ready.fetch_add(1, Ordering::SeqCst);
    let rec = Rc::new(RefCell::new(Recorder::new()));
    let Some(start_ns) = wait_start(&shared).await else {
        return ThreadResult {
            recorder: Recorder::new(),
            trackers: Vec::new(),
        };
    };
    let live = &shared.live[t];
    let clock = shared.clock;
    let threads = plan.threads as u64;
    let mine: Vec<u64> = (0..plan.conn_count)
        .filter(|i| i % threads == t as u64)
        .collect();
    let rate_per_thread = plan.conn_rate_per_s / plan.threads as f64;
    let interval_ns = if rate_per_thread > 0.0 {
        1e9 / rate_per_thread
    } else {
        0.0
    };
    let conns: Rc<RefCell<Vec<Rc<MqttConnection>>>> =
        Rc::new(RefCell::new(Vec::with_capacity(mine.len())));
    let in_progress = Rc::new(Cell::new(0usize));
    let concurrency = plan.conn_concurrency.max(1);
    for (k, &index) in mine.iter().enumerate() {
        if shared.stopped() {
            break;
        }
        if interval_ns > 0.0 {
            let intended = start_ns + (k as f64 * interval_ns) as u64;
            let now = clock.now_ns();
            if intended > now {
                monoio::time::sleep(Duration::from_nanos(intended - now)).await;
            }
        }
        while in_progress.get() >= concurrency {
            monoio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        in_progress.set(in_progress.get() + 1);
        let options = plan.client_options("conn", index);
        let config = ClientConfig {
            bind_ip: plan.source_ip(index),
            ..plan.client_config("conn")
        };
        let (addr, shared2, rec2, conns2, in_progress2) = (
            plan.addr,
            shared.clone(),
            rec.clone(),
            conns.clone(),
            in_progress.clone(),
        );
        let churn = plan.conn_churn.then(|| churn_filter(&plan, index));
        monoio::spawn(async move {
            let live = &shared2.live[t];
            let t0 = clock.now_ns();
            let result = match MqttConnection::connect(addr, options, &config, clock).await {
                Ok((conn, _)) => match &churn {
                    Some(filter) => churn_cycle(conn, filter).await.map(|()| None),
                    None => Ok(Some(conn)),
                },
                Err(e) => Err(e.to_string()),
            };
            let elapsed_ns = clock.now_ns().saturating_sub(t0).max(1);
            in_progress2.set(in_progress2.get() - 1);
            let mut rec = rec2.borrow_mut();
            match result {
                Ok(held) => {
                    rec.conns_opened += 1;
                    rec.latency.saturating_record(elapsed_ns);
                    if let Some(conn) = held {
                        Live::add(&live.conns_open, 1);
                        conns2.borrow_mut().push(Rc::new(conn));
                    }
                }
                Err(e) => {
                    rec.conns_failed += 1;
                    Live::add(&live.conns_failed, 1);
                    let source = config
                        .bind_ip
                        .map(|ip| format!(" from {ip}"))
                        .unwrap_or_default();
                    rec.error(live, || format!("connection {index}{source}: {e}"));
                }
            }
        });
    }
    while in_progress.get() > 0 {
        monoio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    shared
        .pubs_end_ns
        .fetch_max(clock.now_ns(), Ordering::SeqCst);
    shared.opened_threads.fetch_add(1, Ordering::SeqCst);
    wait_stop(&shared).await;
    let conns = std::mem::take(&mut *conns.borrow_mut());
    let dropped = conns.iter().filter(|c| c.is_closed()).count() as u64;
    for c in &conns {
        c.with_client(|c| c.disconnect(ReasonCode::NORMAL_DISCONNECTION));
    }
    let deadline = clock.now_ns() + CLOSE_TIMEOUT_MS * 1_000_000;
    while conns.iter().any(|c| !c.is_closed()) && clock.now_ns() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    live.conns_open
        .fetch_sub(conns.len() as u64, Ordering::Relaxed);
    drop(conns);
    let mut recorder = std::mem::take(&mut *rec.borrow_mut());
    recorder.conns_dropped = dropped;
    ThreadResult {
        recorder,
        trackers: Vec::new(),
    }
}

/// Connection `index`'s own churn topic filter.
fn churn_filter(plan: &Plan, index: u64) -> Bytes {
    Bytes::from(format!("{}/churn/{index}", plan.client_prefix))
}

/// The rest of a churn cycle on a connected client: SUBSCRIBE (QoS 0,
/// SUBACK within the usual limit), then DISCONNECT and wait for the close.
async fn churn_cycle(conn: MqttConnection, filter: &Bytes) -> Result<(), String> {
    crate::subscribe::subscribe_in_time(
        &conn,
        std::slice::from_ref(filter),
        QoS::AtMostOnce,
        "churn",
        0,
    )
    .await?;
    let closed =
        monoio::time::timeout(Duration::from_millis(CLOSE_TIMEOUT_MS), conn.disconnect()).await;
    closed.map_err(|_| format!("not closed within {CLOSE_TIMEOUT_MS} ms of DISCONNECT"))
}
