//! Record values, format version 1. Every value starts with the version
//! byte; integers are big-endian; `str16` = `u16` length + bytes; `opt(x)`
//! = a byte 0 (absent) or 1 followed by `x`; a PUBLISH is `u32` length +
//! its MQTT 5.0 frame encoded with QoS 0, no DUP, no packet id, no topic
//! alias (so the codec's bounds-checked decoder reads it back).
//!
//! ```text
//! session:  1 | protocol level u8 | expiry_s u32 | opt(offline_since_wall_ms u64)
//!             | opt(username str16) | opt(will: qos u8, retain u8, opt(delay_s u32), publish)
//!             | n u16 | n x (filter str16, options u8, subscription_id u32 (0 = none))
//! message:  1 | stage u8 (0 queued, 1 PUBLISH sent, 2 PUBREL sent) | packet_id u16
//!             | qos u8 | retain u8 | received_at_wall_ms u64 | opt(shared filter str16)
//!             | opt(publish)      (absent once PUBREL was sent)
//! inbound QoS 2: 1
//! retained: 1 | qos u8 | received_at_wall_ms u64 | publish
//! ```
//! Options byte: bits 0-1 QoS, bit 2 No Local, bit 3 Retain As Published,
//! bits 4-5 Retain Handling (the SUBSCRIBE encoding).

use bytes::Bytes;

use super::reader::{Reader, Writer};
use super::RestoreError;
use crate::codec::{
    Protocol, Publish, PublishProperties, QoS, RetainHandling, SubscriptionOptions, Will,
    WillProperties,
};

/// The format version written by this build (the first byte of a value).
pub const FORMAT_VERSION: u8 = 1;

/// One subscription of a stored session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSubscription {
    pub filter: Bytes,
    pub options: SubscriptionOptions,
    pub subscription_id: Option<u32>,
}

/// A session that outlives its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub protocol: Protocol,
    /// Seconds the session outlives its connection (`u32::MAX`: never).
    pub expiry_interval_s: u32,
    /// When the session lost its connection (wall-clock ms); `None` when
    /// it was connected as the record was written (a restart is then its
    /// disconnection).
    pub offline_since_wall_ms: Option<u64>,
    /// The authenticated user name (for the ACL and the will's check).
    pub username: Option<Bytes>,
    /// The will still pending (with its Will Delay Interval).
    pub will: Option<Will>,
    pub subscriptions: Vec<StoredSubscription>,
}

/// Where an outbound QoS 1/2 message of a session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStage {
    /// Waiting for the inflight window or for the client.
    Queued,
    /// PUBLISH sent with this packet id; awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    PublishSent(u16),
    /// QoS 2: PUBREL sent with this packet id; awaiting PUBCOMP.
    PubRelSent(u16),
}

/// A queued or inflight outbound message of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub stage: MessageStage,
    /// The message as it goes to this subscriber (QoS downgraded, RETAIN
    /// as the subscriber sees it, its subscription identifiers). Empty
    /// (topic and payload) once PUBREL was sent: only the id matters then.
    pub publish: Publish,
    /// When the broker received it (wall-clock ms), for Message Expiry.
    pub received_at_wall_ms: u64,
    /// The `$share/...` filter it was delivered through.
    pub shared_filter: Option<Bytes>,
}

/// A retained message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedRecord {
    pub publish: Publish,
    pub received_at_wall_ms: u64,
}

fn version(r: &mut Reader) -> Result<(), RestoreError> {
    match r.u8("version") {
        Ok(FORMAT_VERSION) => Ok(()),
        Ok(v) => Err(RestoreError::UnknownVersion(v)),
        Err(_) => Err(RestoreError::Empty),
    }
}

fn protocol_level(p: Protocol) -> u8 {
    match p {
        Protocol::V3_1 => 3,
        Protocol::V3_1_1 => 4,
        Protocol::V5 => 5,
    }
}

fn options_byte(o: SubscriptionOptions) -> u8 {
    o.qos.as_u8()
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

fn options_from(b: u8) -> Result<SubscriptionOptions, RestoreError> {
    let bad = RestoreError::Invalid("subscription options");
    let retain_handling = match (b >> 4) & 3 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(bad),
    };
    if b & 0xC0 != 0 {
        return Err(bad);
    }
    Ok(SubscriptionOptions {
        qos: QoS::from_u8(b & 3).ok_or(bad)?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling,
    })
}

/// A will as the PUBLISH it becomes (its delay apart).
fn will_publish(w: &Will) -> Publish {
    let p = &w.properties;
    Publish {
        dup: false,
        qos: w.qos,
        retain: w.retain,
        topic: w.topic.clone(),
        packet_id: 0,
        payload: w.payload.clone(),
        properties: PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval_s: p.message_expiry_interval_s,
            topic_alias: None,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user: p.user.clone(),
            subscription_identifiers: Vec::new(),
            content_type: p.content_type.clone(),
        },
    }
}

fn will_from(p: Publish, qos: QoS, retain: bool, delay_s: Option<u32>) -> Will {
    let q = p.properties;
    Will {
        topic: p.topic,
        payload: p.payload,
        qos,
        retain,
        properties: WillProperties {
            will_delay_interval_s: delay_s,
            payload_format_indicator: q.payload_format_indicator,
            message_expiry_interval_s: q.message_expiry_interval_s,
            content_type: q.content_type,
            response_topic: q.response_topic,
            correlation_data: q.correlation_data,
            user: q.user,
        },
    }
}

impl SessionRecord {
    /// The value; `None` if the will does not encode.
    pub fn encode(&self) -> Option<Bytes> {
        let mut w = Writer::new(FORMAT_VERSION);
        w.u8(protocol_level(self.protocol));
        w.u32(self.expiry_interval_s);
        match self.offline_since_wall_ms {
            Some(t) => {
                w.u8(1);
                w.u64(t);
            }
            None => w.u8(0),
        }
        match &self.username {
            Some(u) => {
                w.u8(1);
                w.short_bytes(u);
            }
            None => w.u8(0),
        }
        match &self.will {
            Some(will) => {
                w.u8(1);
                w.u8(will.qos.as_u8());
                w.u8(u8::from(will.retain));
                match will.properties.will_delay_interval_s {
                    Some(d) => {
                        w.u8(1);
                        w.u32(d);
                    }
                    None => w.u8(0),
                }
                w.publish(&will_publish(will))?;
            }
            None => w.u8(0),
        }
        let n = self.subscriptions.len().min(usize::from(u16::MAX));
        w.u16(n as u16);
        for s in self.subscriptions.iter().take(n) {
            w.short_bytes(&s.filter);
            w.u8(options_byte(s.options));
            w.u32(s.subscription_id.unwrap_or(0));
        }
        Some(w.finish())
    }

    pub fn decode(value: &[u8]) -> Result<SessionRecord, RestoreError> {
        let mut r = Reader::new(Bytes::copy_from_slice(value));
        version(&mut r)?;
        let protocol = match r.u8("protocol")? {
            3 => Protocol::V3_1,
            4 => Protocol::V3_1_1,
            5 => Protocol::V5,
            _ => return Err(RestoreError::Invalid("protocol")),
        };
        let expiry_interval_s = r.u32("session expiry")?;
        let offline_since_wall_ms = r.option("offline since", |r| r.u64("offline since"))?;
        let username = r.option("username", |r| r.short_bytes("username"))?;
        let will = r.option("will", |r| {
            let qos = r.qos("will qos")?;
            let retain = r.bool("will retain")?;
            let delay = r.option("will delay", |r| r.u32("will delay"))?;
            let p = r.publish("will")?;
            Ok(will_from(p, qos, retain, delay))
        })?;
        let n = r.u16("subscription count")?;
        let mut subscriptions = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            let filter = r.short_bytes("subscription filter")?;
            let options = options_from(r.u8("subscription options")?)?;
            let id = r.u32("subscription identifier")?;
            subscriptions.push(StoredSubscription {
                filter,
                options,
                subscription_id: (id != 0).then_some(id),
            });
        }
        r.finish()?;
        Ok(SessionRecord {
            protocol,
            expiry_interval_s,
            offline_since_wall_ms,
            username,
            will,
            subscriptions,
        })
    }
}

impl MessageRecord {
    /// The value; `None` if the message does not encode.
    pub fn encode(&self) -> Option<Bytes> {
        let mut w = Writer::new(FORMAT_VERSION);
        let (stage, pid) = match self.stage {
            MessageStage::Queued => (0, 0),
            MessageStage::PublishSent(pid) => (1, pid),
            MessageStage::PubRelSent(pid) => (2, pid),
        };
        w.u8(stage);
        w.u16(pid);
        w.u8(self.publish.qos.as_u8());
        w.u8(u8::from(self.publish.retain));
        w.u64(self.received_at_wall_ms);
        match &self.shared_filter {
            Some(f) => {
                w.u8(1);
                w.short_bytes(f);
            }
            None => w.u8(0),
        }
        if matches!(self.stage, MessageStage::PubRelSent(_)) {
            w.u8(0);
        } else {
            w.u8(1);
            w.publish(&self.publish)?;
        }
        Some(w.finish())
    }

    pub fn decode(value: &[u8]) -> Result<MessageRecord, RestoreError> {
        let mut r = Reader::new(Bytes::copy_from_slice(value));
        version(&mut r)?;
        let stage = r.u8("stage")?;
        let pid = r.u16("packet id")?;
        let stage = match (stage, pid) {
            (0, 0) => MessageStage::Queued,
            (1, pid) if pid != 0 => MessageStage::PublishSent(pid),
            (2, pid) if pid != 0 => MessageStage::PubRelSent(pid),
            _ => return Err(RestoreError::Invalid("stage")),
        };
        let qos = r.qos("qos")?;
        if qos == QoS::AtMostOnce || (qos == QoS::AtLeastOnce && stage_is_pubrel(stage)) {
            return Err(RestoreError::Invalid("qos"));
        }
        let retain = r.bool("retain")?;
        let received_at_wall_ms = r.u64("received at")?;
        let shared_filter = r.option("shared filter", |r| r.short_bytes("shared filter"))?;
        let publish = r.option("publish", |r| r.publish("publish"))?;
        r.finish()?;
        let mut publish = match (publish, stage) {
            (Some(p), _) => p,
            (None, MessageStage::PubRelSent(_)) => Publish::default(),
            (None, _) => return Err(RestoreError::Invalid("publish")),
        };
        publish.qos = qos;
        publish.retain = retain;
        publish.packet_id = match stage {
            MessageStage::Queued => 0,
            MessageStage::PublishSent(pid) | MessageStage::PubRelSent(pid) => pid,
        };
        Ok(MessageRecord {
            stage,
            publish,
            received_at_wall_ms,
            shared_filter,
        })
    }
}

fn stage_is_pubrel(stage: MessageStage) -> bool {
    matches!(stage, MessageStage::PubRelSent(_))
}

impl RetainedRecord {
    /// The value; `None` if the message does not encode.
    pub fn encode(&self) -> Option<Bytes> {
        let mut w = Writer::new(FORMAT_VERSION);
        w.u8(self.publish.qos.as_u8());
        w.u64(self.received_at_wall_ms);
        w.publish(&self.publish)?;
        Some(w.finish())
    }

    /// The record stored under `topic` (the key).
    pub fn decode(topic: &[u8], value: &[u8]) -> Result<RetainedRecord, RestoreError> {
        let mut r = Reader::new(Bytes::copy_from_slice(value));
        version(&mut r)?;
        let qos = r.qos("qos")?;
        let received_at_wall_ms = r.u64("received at")?;
        let mut publish = r.publish("publish")?;
        r.finish()?;
        if publish.topic[..] != *topic {
            return Err(RestoreError::Invalid("topic (differs from the key)"));
        }
        if publish.payload.is_empty() {
            return Err(RestoreError::Invalid("payload (empty: a cleared topic)"));
        }
        publish.qos = qos;
        publish.retain = true;
        Ok(RetainedRecord {
            publish,
            received_at_wall_ms,
        })
    }
}

/// The value of an inbound QoS 2 record (only the key carries data).
pub fn inbound_qos2_value() -> Bytes {
    Bytes::from_static(&[FORMAT_VERSION])
}

/// Checks an inbound QoS 2 value.
pub fn check_inbound_qos2(value: &[u8]) -> Result<(), RestoreError> {
    match value {
        [] => Err(RestoreError::Empty),
        [FORMAT_VERSION] => Ok(()),
        [FORMAT_VERSION, ..] => Err(RestoreError::TrailingBytes),
        [v, ..] => Err(RestoreError::UnknownVersion(*v)),
    }
}
