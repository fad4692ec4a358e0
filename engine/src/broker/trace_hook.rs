//! The publish tracing hook (cargo feature `trace-hook`, off by default).
//!
//! The engine knows nothing of OpenTelemetry, clocks or exporters: it calls
//! a [`PublishTracer`] the runtime installs, once before routing an
//! accepted PUBLISH from a client ([`PublishTracer::start`], which may
//! rewrite the message's user properties, e.g. its `traceparent`, before
//! any copy is made for subscribers, other shards or the retained store)
//! and once after ([`PublishTracer::finish`], with what routing did).
//! Without the feature none of this is compiled, and the publish path is
//! the same code as before.

use bytes::Bytes;

use super::route::Routed;
use super::{Broker, SessionId};
use crate::codec::{Publish, QoS};

/// An accepted PUBLISH about to be routed.
pub struct PublishStart<'a> {
    /// The publisher's client id.
    pub client_id: &'a [u8],
    pub topic: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
    /// The message's User Properties (MQTT 5; empty for 3.1.1), in order.
    /// What the tracer leaves here is what every subscriber, every other
    /// shard and the retained store get.
    pub user_properties: &'a mut Vec<(Bytes, Bytes)>,
}

/// What routing the message started by [`PublishTracer::start`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishRouted {
    /// Deliveries to sessions of this shard (one per subscriber session and
    /// shared group, whatever happened to it next: queued, written, or
    /// dropped for a limit).
    pub deliveries: u32,
    /// Copies sent to other shards (each delivers to its own subscribers).
    pub forwarded: u32,
    /// Whether a subscription matched here or on another shard.
    pub matched: bool,
}

/// Installed with [`Broker::set_publish_tracer`]; called on the shard's
/// thread, synchronously, in the publish path: it must not block.
pub trait PublishTracer {
    /// Before routing. Returns whether [`PublishTracer::finish`] must
    /// follow for this message.
    fn start(&mut self, publish: PublishStart<'_>) -> bool;
    /// After routing the message of the last `start` that returned true.
    fn finish(&mut self, routed: PublishRouted);
}

impl Broker {
    /// Install (or, with `None`, remove) the publish tracer.
    pub fn set_publish_tracer(&mut self, tracer: Option<Box<dyn PublishTracer>>) {
        self.tracer = tracer;
    }

    /// [`PublishTracer::start`] for `p` from `session`, if a tracer is set.
    pub(super) fn trace_start(&mut self, session: SessionId, p: &mut Publish) -> bool {
        let Some(tracer) = self.tracer.as_mut() else {
            return false;
        };
        let Some(s) = self.sessions.get(session) else {
            return false;
        };
        tracer.start(PublishStart {
            client_id: &s.client_id,
            topic: &p.topic,
            qos: p.qos,
            retain: p.retain,
            user_properties: &mut p.properties.user,
        })
    }

    /// [`PublishTracer::finish`] with what `route` returned.
    pub(super) fn trace_finish(&mut self, routed: Routed) {
        if let Some(tracer) = self.tracer.as_mut() {
            tracer.finish(PublishRouted {
                deliveries: routed.deliveries,
                forwarded: routed.forwarded,
                matched: routed.matched,
            });
        }
    }
}
