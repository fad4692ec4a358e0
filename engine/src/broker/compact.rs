//! Owned copies of decoded packets. Decoded topics, payloads and properties
//! are slices of the connection's read buffer; keeping one for long (a
//! retained message, a will) would pin that whole buffer.

use bytes::Bytes;

use crate::codec::{Publish, UserProperties, Will};

/// A copy of a publish whose topic, payload and properties are their own
/// allocations.
pub(super) fn compact_publish(p: Publish) -> Publish {
    let mut properties = p.properties;
    properties.response_topic = own_opt(properties.response_topic);
    properties.correlation_data = own_opt(properties.correlation_data);
    properties.content_type = own_opt(properties.content_type);
    properties.user = own_user(&properties.user);
    Publish {
        topic: own(&p.topic),
        payload: own(&p.payload),
        properties,
        ..p
    }
}

/// Copy of a will whose fields no longer point into the read buffer (a
/// session may hold it for a long time).
pub(super) fn compact_will(w: Will) -> Will {
    let mut properties = w.properties;
    properties.content_type = own_opt(properties.content_type);
    properties.response_topic = own_opt(properties.response_topic);
    properties.correlation_data = own_opt(properties.correlation_data);
    properties.user = own_user(&properties.user);
    Will {
        topic: own(&w.topic),
        payload: own(&w.payload),
        qos: w.qos,
        retain: w.retain,
        properties,
    }
}

/// An owned copy (not a slice of a read buffer).
fn own(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

fn own_opt(b: Option<Bytes>) -> Option<Bytes> {
    b.as_ref().map(own)
}

fn own_user(user: &[(Bytes, Bytes)]) -> UserProperties {
    user.iter().map(|(k, v)| (own(k), own(v))).collect()
}
