//! Owned copies of decoded packets. Decoded topics, payloads and properties
//! are slices of the connection's read buffer; keeping one for long (a
//! retained message, a will) would pin that whole buffer.

use bytes::Bytes;

use crate::codec::{Publish, UserProperties, Will};

/// `$p` (a `PublishProperties` or a `WillProperties`: the same fields
/// may point into the read buffer) with those fields copied.
macro_rules! own_properties {
    ($p:expr) => {{
        let mut p = $p;
        p.response_topic = own_opt(p.response_topic);
        p.correlation_data = own_opt(p.correlation_data);
        p.content_type = own_opt(p.content_type);
        p.user = own_user(&p.user);
        p
    }};
}

/// A copy of a publish whose topic, payload and properties are their own
/// allocations.
pub(super) fn compact_publish(p: Publish) -> Publish {
    Publish {
        topic: own(&p.topic),
        payload: own(&p.payload),
        properties: own_properties!(p.properties),
        ..p
    }
}

/// Copy of a will whose fields no longer point into the read buffer (a
/// session may hold it for a long time).
pub(super) fn compact_will(w: Will) -> Will {
    Will {
        topic: own(&w.topic),
        payload: own(&w.payload),
        properties: own_properties!(w.properties),
        ..w
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
