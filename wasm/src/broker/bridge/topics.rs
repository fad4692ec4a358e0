//! A bridge's topic mappings, as Mosquitto's `topic pattern direction qos
//! local-prefix remote-prefix`: messages matching `localPrefix + pattern`
//! in the in-tab broker go out (`out`, `both`) as `remotePrefix + rest`,
//! where `rest` is the topic without `localPrefix`; messages matching
//! `remotePrefix + pattern` on the external broker come in (`in`, `both`)
//! as `localPrefix + rest`. Pure (tested natively).

use bytes::{Bytes, BytesMut};
use ringmq_engine::codec::QoS;
use ringmq_engine::topic::{filter_matches, parse_shared, validate_topic_filter};

/// Most mappings one bridge takes.
pub const TOPICS_MAX: usize = 256;

/// Most topic levels in a mapped filter (the engine's default limit).
const FILTER_LEVELS_MAX: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Both,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            "both" => Some(Direction::Both),
            _ => None,
        }
    }

    pub fn inbound(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    pub fn outbound(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }
}

/// One mapping; built by [`Mapping::new`], which checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub direction: Direction,
    /// Largest QoS forwarded (the QoS of the bridge's subscriptions).
    pub qos: QoS,
    local_prefix: Bytes,
    remote_prefix: Bytes,
    local_filter: Bytes,
    remote_filter: Bytes,
}

fn join(prefix: &[u8], rest: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(prefix.len() + rest.len());
    b.extend_from_slice(prefix);
    b.extend_from_slice(rest);
    b.freeze()
}

impl Mapping {
    /// Checks `pattern` (a topic filter, not a shared subscription) and the
    /// prefixes (no wildcards), and that both mapped filters are valid.
    pub fn new(
        pattern: &str,
        direction: Direction,
        qos: QoS,
        local_prefix: &str,
        remote_prefix: &str,
    ) -> Result<Mapping, String> {
        if pattern.is_empty() {
            return Err("pattern is empty".into());
        }
        if matches!(parse_shared(pattern.as_bytes()), Ok(Some(_)) | Err(_)) {
            return Err(format!(
                "pattern `{pattern}`: shared subscriptions cannot be bridged"
            ));
        }
        for (name, p) in [
            ("localPrefix", local_prefix),
            ("remotePrefix", remote_prefix),
        ] {
            if p.contains(['+', '#', '\0']) {
                return Err(format!("{name} `{p}` must not contain +, # or U+0000"));
            }
        }
        let local_filter = join(local_prefix.as_bytes(), pattern.as_bytes());
        let remote_filter = join(remote_prefix.as_bytes(), pattern.as_bytes());
        for f in [&local_filter, &remote_filter] {
            validate_topic_filter(f, FILTER_LEVELS_MAX).map_err(|e| {
                format!(
                    "pattern `{pattern}`: `{}` is not a valid topic filter ({e:?})",
                    String::from_utf8_lossy(f)
                )
            })?;
        }
        Ok(Mapping {
            direction,
            qos,
            local_prefix: Bytes::copy_from_slice(local_prefix.as_bytes()),
            remote_prefix: Bytes::copy_from_slice(remote_prefix.as_bytes()),
            local_filter,
            remote_filter,
        })
    }

    /// What the bridge subscribes to in the in-tab broker (out, both).
    pub fn local_filter(&self) -> &Bytes {
        &self.local_filter
    }

    /// What the bridge subscribes to on the external broker (in, both).
    pub fn remote_filter(&self) -> &Bytes {
        &self.remote_filter
    }
}

/// `topic` with `from` replaced by `to`, if `filter` matches it and what
/// is left is a topic name.
fn translate(filter: &[u8], from: &[u8], to: &[u8], topic: &[u8]) -> Option<Bytes> {
    if !filter_matches(filter, topic) {
        return None;
    }
    let rest = topic.strip_prefix(from)?;
    let mapped = join(to, rest);
    (!mapped.is_empty()).then_some(mapped)
}

/// The external topic of in-tab message `topic`: the first outbound
/// mapping that matches it.
pub fn to_remote(mappings: &[Mapping], topic: &[u8]) -> Option<(Bytes, QoS)> {
    mappings
        .iter()
        .filter(|m| m.direction.outbound())
        .find_map(|m| {
            translate(&m.local_filter, &m.local_prefix, &m.remote_prefix, topic).map(|t| (t, m.qos))
        })
}

/// The in-tab topic of external message `topic`: the first inbound
/// mapping that matches it.
pub fn to_local(mappings: &[Mapping], topic: &[u8]) -> Option<Bytes> {
    mappings
        .iter()
        .filter(|m| m.direction.inbound())
        .find_map(|m| translate(&m.remote_filter, &m.remote_prefix, &m.local_prefix, topic))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn m(pattern: &str, d: Direction, local: &str, remote: &str) -> Mapping {
        Mapping::new(pattern, d, QoS::AtLeastOnce, local, remote).unwrap()
    }

    #[test]
    fn prefixes_are_swapped_in_each_direction() {
        let maps = [
            m("tele/#", Direction::Out, "", "tab1/"),
            m("cmd/#", Direction::In, "remote/", "tab1/"),
        ];
        assert_eq!(maps[0].local_filter().as_ref(), b"tele/#");
        assert_eq!(maps[0].remote_filter().as_ref(), b"tab1/tele/#");
        assert_eq!(
            to_remote(&maps, b"tele/temp"),
            Some((Bytes::from_static(b"tab1/tele/temp"), QoS::AtLeastOnce))
        );
        assert_eq!(
            to_local(&maps, b"tab1/cmd/light"),
            Some(Bytes::from_static(b"remote/cmd/light"))
        );
        // Each direction only through its own mappings.
        assert_eq!(to_remote(&maps, b"remote/cmd/light"), None);
        assert_eq!(to_local(&maps, b"tab1/tele/temp"), None);
    }

    #[test]
    fn both_maps_each_way_and_the_first_match_wins() {
        let maps = [
            m("chat/#", Direction::Both, "", ""),
            m("chat/x", Direction::Out, "", "other/"),
        ];
        assert_eq!(
            to_remote(&maps, b"chat/x").map(|t| t.0),
            Some(Bytes::from_static(b"chat/x"))
        );
        assert_eq!(
            to_local(&maps, b"chat/y"),
            Some(Bytes::from_static(b"chat/y"))
        );
    }

    #[test]
    fn a_parent_matched_by_hash_without_the_prefix_is_not_forwarded() {
        // `a/#` matches `a`, which does not start with the prefix `a/`.
        let maps = [m("#", Direction::In, "", "a/")];
        assert_eq!(to_local(&maps, b"a"), None);
        assert_eq!(to_local(&maps, b"a/b"), Some(Bytes::from_static(b"b")));
    }

    #[test]
    fn bad_mappings_are_refused_with_the_reason() {
        let bad = |p: &str, l: &str, r: &str| {
            Mapping::new(p, Direction::Both, QoS::AtMostOnce, l, r).unwrap_err()
        };
        assert!(bad("", "", "").contains("empty"));
        assert!(bad("a/#/b", "", "").contains("not a valid topic filter"));
        assert!(bad("$share/g/a", "", "").contains("shared"));
        assert!(bad("a", "x/+/", "").contains("localPrefix"));
        assert!(bad("a", "", "#").contains("remotePrefix"));
    }
}
