//! The client's publishes across connections: the queue fed into the
//! inflight window (`drain_queue`) and, after a reconnection, the
//! publishes of the lost connection sent again (`resume`): under their
//! packet ids when the broker kept the session, which makes QoS 2
//! exactly-once across the reconnection.

use ringmq_engine::client::OutboundStep;

use super::state::{Calls, Inner};
use crate::js;

/// Publishes of a lost connection, on the new one. Session kept: each goes
/// again under its packet id, before anything new ([MQTT-4.4.0-1]): the
/// PUBLISH with DUP, or the PUBREL when the PUBREC had come; the broker
/// delivers a QoS 2 message it had already received no second time. No
/// session: one whose PUBREC had come was accepted by the broker (and
/// forwarded), so it resolves with 0; the others go as new publishes (at
/// least once).
pub fn resume(inner: &mut Inner, session_present: bool, calls: &mut Calls) {
    let queue = std::mem::take(&mut inner.queue);
    for mut p in queue {
        let Some((id, step)) = p.resume.take() else {
            inner.queue.push_back(p);
            continue;
        };
        if !session_present {
            if step == OutboundStep::AwaitPubComp {
                calls.push((p.waiter.resolve, vec![0u8.into()]));
            } else {
                inner.queue.push_back(p);
            }
            continue;
        }
        let Some(engine) = inner.engine.as_mut() else {
            inner.queue.push_back(p);
            continue;
        };
        let sent = match step {
            OutboundStep::AwaitPubComp => engine.resend_pubrel(id),
            OutboundStep::AwaitPubAck | OutboundStep::AwaitPubRec => engine.resend_publish(
                id,
                p.topic.clone(),
                p.payload.clone(),
                p.qos,
                p.retain,
                p.properties.clone(),
            ),
        };
        match sent {
            Ok(()) => {
                inner.inflight.insert(id, p);
            }
            // The outgoing buffer is full (or the server now refuses it):
            // it goes as a new publish instead, at least once.
            Err(_) if step != OutboundStep::AwaitPubComp => inner.queue.push_back(p),
            Err(e) => calls.push((
                p.waiter.reject,
                vec![js::error(&format!("resend PUBREL: {e}"), None)],
            )),
        }
    }
}

/// Publishes queued messages while the window has room.
pub fn drain_queue(inner: &mut Inner, calls: &mut Calls) {
    while let Some(p) = inner.queue.pop_front() {
        let Some(engine) = inner.engine.as_mut().filter(|e| e.is_connected()) else {
            inner.queue.push_front(p);
            return;
        };
        match engine.publish(
            p.topic.clone(),
            p.payload.clone(),
            p.qos,
            p.retain,
            p.properties.clone(),
        ) {
            Ok(Some(id)) => {
                inner.inflight.insert(id, p);
            }
            Ok(None) => calls.push((p.waiter.resolve, vec![0u8.into()])),
            Err(e) if e.is_would_block() => {
                inner.queue.push_front(p);
                return;
            }
            Err(e) => calls.push((
                p.waiter.reject,
                vec![js::error(&format!("publish: {e}"), None)],
            )),
        }
    }
}
