//! How one record is laid out in the store, and how its integrity is
//! checked: the engine's value, prefixed by a CRC-32 (IEEE, `crc32fast`)
//! over the keyspace name, the key and the value. A record whose bytes were damaged, cut
//! short, or moved to another key or keyspace fails the check and is
//! reported with its location ([`Corrupt`]).
//!
//! ```text
//! stored value = crc32(keyspace name ‖ 0x00 ‖ key ‖ value) as u32 LE ‖ value
//! ```

use std::fmt;

use ringmq_engine::broker::{owner_shard, ShardId};

use ringmq_engine::persist::Keyspace;

/// Bytes of the checksum in front of every stored value.
pub const CHECKSUM_BYTES: usize = 4;

fn checksum(space: &str, key: &[u8], value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(space.as_bytes());
    h.update(&[0]);
    h.update(key);
    h.update(value);
    h.finalize()
}

/// The stored form of `value` under `space`/`key`.
pub fn seal(space: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKSUM_BYTES + value.len());
    out.extend_from_slice(&checksum(space, key, value).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// A record that failed its check: where it is and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt {
    pub keyspace: String,
    pub key: Vec<u8>,
    pub problem: String,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "damaged record in keyspace {} at key {}: {}",
            self.keyspace,
            show_key(&self.key),
            self.problem
        )
    }
}

/// The engine's value of a stored record, after checking it.
pub fn open<'a>(space: &str, key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], Corrupt> {
    let corrupt = |problem: String| Corrupt {
        keyspace: space.to_string(),
        key: key.to_vec(),
        problem,
    };
    let Some((sum, value)) = stored.split_first_chunk::<CHECKSUM_BYTES>() else {
        return Err(corrupt(format!(
            "{} bytes, shorter than its {CHECKSUM_BYTES}-byte checksum",
            stored.len()
        )));
    };
    let expected = u32::from_le_bytes(*sum);
    let actual = checksum(space, key, value);
    if expected != actual {
        return Err(corrupt(format!(
            "checksum mismatch (stored {expected:08x}, computed {actual:08x}, {} value bytes)",
            value.len()
        )));
    }
    Ok(value)
}

/// The client id at the front of a Sessions / Messages / InboundQos2 key
/// (`u16` big-endian length, then the id), `None` if the key is too short.
pub fn client_id_of(key: &[u8]) -> Option<&[u8]> {
    let (len, rest) = key.split_first_chunk::<2>()?;
    rest.get(..usize::from(u16::from_be_bytes(*len)))
}

/// Which shard loads a record under `shard_count` shards: the owner of its
/// client id; `None` for Retained (every shard) or a key too short to
/// name a client id.
pub fn route(space: Keyspace, key: &[u8], shard_count: u16) -> Route {
    match space {
        Keyspace::Retained => Route::Every,
        _ => match client_id_of(key) {
            Some(id) => Route::One(owner_shard(id, shard_count)),
            None => Route::BadKey,
        },
    }
}

/// Where a record goes at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    One(ShardId),
    Every,
    BadKey,
}

/// A key for logs: printable ASCII as is, other bytes as `\xNN`, cut after
/// 200 bytes.
pub fn show_key(key: &[u8]) -> String {
    const SHOWN_MAX_BYTES: usize = 200;
    let mut out = String::new();
    for &b in key.iter().take(SHOWN_MAX_BYTES) {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if key.len() > SHOWN_MAX_BYTES {
        out.push_str(&format!("... ({} bytes)", key.len()));
    }
    out
}

#[cfg(test)]
// A failed unwrap in a test is that test failing.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_record_opens_and_damage_is_located() {
        let sealed = seal("messages", b"\x00\x01a\x00", b"hello");
        assert_eq!(
            open("messages", b"\x00\x01a\x00", &sealed),
            Ok(&b"hello"[..])
        );
        // A flipped bit, a cut value, another key, another keyspace: all caught.
        let mut flipped = sealed.clone();
        flipped[5] ^= 0x10;
        let e = open("messages", b"\x00\x01a\x00", &flipped).unwrap_err();
        assert_eq!(e.keyspace, "messages");
        assert_eq!(e.key, b"\x00\x01a\x00");
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(e.to_string().contains("\\x00\\x01a\\x00"), "{e}");
        assert!(open("messages", b"\x00\x01a\x00", &sealed[..sealed.len() - 1]).is_err());
        assert!(open("messages", b"\x00\x01b\x00", &sealed).is_err());
        assert!(open("sessions", b"\x00\x01a\x00", &sealed).is_err());
        assert!(open("messages", b"k", &sealed[..3])
            .unwrap_err()
            .problem
            .contains("shorter"));
    }

    #[test]
    fn records_route_to_the_owner_of_their_client_id() {
        let mut key = vec![0, 3];
        key.extend_from_slice(b"abc");
        key.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(client_id_of(&key), Some(&b"abc"[..]));
        for n in [1, 2, 5] {
            assert_eq!(
                route(Keyspace::Messages, &key, n),
                Route::One(owner_shard(b"abc", n))
            );
        }
        assert_eq!(route(Keyspace::Retained, b"a/b", 4), Route::Every);
        assert_eq!(route(Keyspace::Sessions, &[0, 9, b'x'], 4), Route::BadKey);
        assert_eq!(route(Keyspace::Sessions, &[0], 4), Route::BadKey);
    }
}
