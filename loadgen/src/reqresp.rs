//! The request/response scenario (`loadgen reqresp`, MQTT 5 only).
//!
//! ```text
//! requester i ──PUBLISH <prefix>/req/i, Response Topic <prefix>/resp/i, Correlation Data seq──▶ broker
//! broker ──▶ responder (subscribed to <prefix>/req/+, a $share group when there are several)
//! responder ──PUBLISH <prefix>/resp/i, same Correlation Data, same payload──▶ broker ──▶ requester i
//! ```
//!
//! Requesters are the publisher tasks (`publisher`, paced as in `pubsub`),
//! each subscribed to its own response topic; the round trip runs from the
//! request's intended send time (its payload header) to the reply's
//! arrival. A reply whose Correlation Data is not its payload's sequence
//! number is an error (the broker must carry both unchanged).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use ringmq_client::MqttConnection;
use ringmq_engine::client::Event;
use ringmq_engine::codec::{Publish, PublishProperties};

use crate::payload;
use crate::plan::{Plan, Shared};
use crate::stats::{Live, Recorder};

/// Replies a responder holds while it has no room to send them.
pub const RESPONDER_BACKLOG_MAX: usize = 65_536;

/// Correlation Data of request `seq`: its 8 bytes, big-endian.
pub fn correlation(seq: u64) -> Bytes {
    Bytes::copy_from_slice(&seq.to_be_bytes())
}

/// The request topic of requester `i` and its response topic.
pub fn topics(prefix: &str, i: u32) -> (Bytes, Bytes) {
    (
        Bytes::from(format!("{prefix}/req/{i}")),
        Bytes::from(format!("{prefix}/resp/{i}")),
    )
}

/// The filter responders subscribe to (shared when there are several, so
/// each request is answered once).
pub fn request_filter(prefix: &str, responders: u32) -> Bytes {
    if responders > 1 {
        Bytes::from(format!("$share/loadgen-resp/{prefix}/req/+"))
    } else {
        Bytes::from(format!("{prefix}/req/+"))
    }
}

/// Accounts a reply that reached a requester; `arrived_ns` is when the
/// read that brought it completed.
pub fn record_reply(
    rec: &mut Recorder,
    live: &Live,
    reply: &Publish,
    arrived_ns: u64,
    measure_start_ns: u64,
) {
    Live::add(&live.received, 1);
    let header = payload::parse(&reply.payload);
    let correlated = match (&header, &reply.properties.correlation_data) {
        (Some(h), Some(c)) => c[..] == h.seq.to_be_bytes(),
        _ => false,
    };
    let Some(h) = header.filter(|_| correlated) else {
        rec.error(live, || {
            "a reply's Correlation Data does not match its request".to_string()
        });
        return;
    };
    rec.received_total += 1;
    if h.origin_ns >= measure_start_ns {
        rec.received_measured += 1;
        let latency_ns = arrived_ns.saturating_sub(h.origin_ns).max(1);
        rec.latency.saturating_record(latency_ns);
        rec.series.received(arrived_ns, Some(latency_ns));
    }
}

/// What a responder task needs.
pub struct RespCtx {
    pub index: u32,
    pub thread: usize,
    pub plan: Arc<Plan>,
    pub shared: Arc<Shared>,
    pub rec: Rc<RefCell<Recorder>>,
}

/// Answers requests until the connection closes. Replies that find no
/// room (inflight window, outgoing buffer) wait in order; past
/// [`RESPONDER_BACKLOG_MAX`] waiting replies a request is dropped with an
/// error (loadgen's responder could not keep up: the run says so).
pub async fn responder(conn: Rc<MqttConnection>, ctx: RespCtx) {
    let live = &ctx.shared.live[ctx.thread];
    let qos = ctx.plan.qos;
    let mut waiting: VecDeque<(Bytes, Bytes, PublishProperties)> = VecDeque::new();
    loop {
        let mut blocked = false;
        while let Some((topic, payload, props)) = waiting.pop_front() {
            let sent = conn.with_client(|c| {
                c.publish(topic.clone(), payload.clone(), qos, false, props.clone())
            });
            match sent {
                Ok(_) => {}
                Err(e) if e.is_would_block() => {
                    waiting.push_front((topic, payload, props));
                    blocked = true;
                    break;
                }
                Err(e) => {
                    let mut rec = ctx.rec.borrow_mut();
                    rec.error(live, || format!("responder {}: {e}", ctx.index));
                }
            }
        }
        let (mut ended, mut taken) = (false, 0usize);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(m) => {
                    let Some(topic) = m.properties.response_topic.clone() else {
                        ctx.rec.borrow_mut().error(live, || {
                            format!("responder {}: a request without Response Topic", ctx.index)
                        });
                        continue;
                    };
                    if waiting.len() >= RESPONDER_BACKLOG_MAX {
                        ctx.rec.borrow_mut().error(live, || {
                            format!(
                                "responder {}: over {RESPONDER_BACKLOG_MAX} replies waiting; request dropped",
                                ctx.index
                            )
                        });
                        continue;
                    }
                    let props = PublishProperties {
                        correlation_data: m.properties.correlation_data.clone(),
                        ..PublishProperties::default()
                    };
                    waiting.push_back((topic, m.payload, props));
                    taken += 1;
                }
                Event::Disconnected(reason) => {
                    ended = true;
                    if !ctx.shared.stopped() {
                        ctx.rec.borrow_mut().error(live, || {
                            format!("responder {} disconnected: {reason:?}", ctx.index)
                        });
                    }
                }
                _ => {}
            }
        }
        if ended || conn.is_closed() {
            return;
        }
        if taken > 0 && !blocked {
            continue;
        }
        conn.wait().await;
    }
}
