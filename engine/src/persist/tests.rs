use super::*;
use crate::codec::{Publish, QoS};

#[test]
fn keys_split_back_into_client_id_and_tail() {
    let k = message_key(b"client", 7);
    assert_eq!(
        split_client_key(Keyspace::Messages, &k),
        Ok((&b"client"[..], &7u64.to_be_bytes()[..]))
    );
    let k = inbound_qos2_key(b"c", 9);
    assert_eq!(
        split_client_key(Keyspace::InboundQos2, &k),
        Ok((&b"c"[..], &9u16.to_be_bytes()[..]))
    );
    let k = session_key(b"");
    assert_eq!(
        split_client_key(Keyspace::Sessions, &k),
        Ok((&b""[..], &[][..]))
    );
    // A key of one keyspace is not one of another.
    assert_eq!(
        split_client_key(Keyspace::Sessions, &message_key(b"c", 1)),
        Err(RestoreError::BadKey(Keyspace::Sessions))
    );
    assert_eq!(
        split_client_key(Keyspace::Messages, &[0, 5, b'a']),
        Err(RestoreError::BadKey(Keyspace::Messages))
    );
}

#[test]
fn keyspace_names_round_trip() {
    for k in Keyspace::ALL {
        assert_eq!(Keyspace::from_name(k.name()), Some(k));
    }
    assert_eq!(Keyspace::from_name("nope"), None);
}

#[test]
fn a_torn_retained_value_names_the_field() {
    let record = RetainedRecord {
        publish: Publish {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: bytes::Bytes::from_static(b"t"),
            payload: bytes::Bytes::from_static(b"payload"),
            ..Publish::default()
        },
        received_at_wall_ms: 5,
    };
    let Some(value) = record.encode() else {
        panic!("encodes")
    };
    assert_eq!(RetainedRecord::decode(b"t", &value), Ok(record));
    let torn = value.get(..value.len() - 1).unwrap_or_default();
    assert_eq!(
        RetainedRecord::decode(b"t", torn),
        Err(RestoreError::Truncated("publish"))
    );
    assert_eq!(
        RetainedRecord::decode(b"t", value.get(..3).unwrap_or_default()),
        Err(RestoreError::Truncated("received at"))
    );
    assert_eq!(RetainedRecord::decode(b"t", &[]), Err(RestoreError::Empty));
    assert_eq!(
        RetainedRecord::decode(b"t", &[9, 0]),
        Err(RestoreError::UnknownVersion(9))
    );
    assert_eq!(
        RetainedRecord::decode(b"other", &value),
        Err(RestoreError::Invalid("topic (differs from the key)"))
    );
}
