//! Sessions by client id: a hash table of session indices, hashed by the
//! client id each session already holds (`Session::client_id`), so an
//! entry is 4 bytes instead of a map key of its own (`Bytes`, 32 bytes)
//! and its index (8): at the usual load, about 7 bytes per session
//! instead of about 75 (docs/benchmarks.md, memory per idle connection).
//!
//! The hash is SipHash with per-process random keys (std's `RandomState`):
//! client ids come from the network, so colliding ids cannot be chosen.
//!
//! Invariant: every entry is the index of a live session whose
//! `client_id` hashed to it; an entry leaves before (or as) its session
//! leaves the slab, since growing the table rehashes entries from their
//! sessions.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::session::Session;
use super::slab::Slab;
use super::SessionId;

#[derive(Default)]
pub(super) struct ClientIds {
    table: HashTable<u32>,
    hasher: std::collections::hash_map::RandomState,
}

fn index(session: SessionId) -> u32 {
    // Session indices are slab keys, below the number of sessions a shard
    // can hold (connections_max and the session limits are far below 2^32).
    u32::try_from(session).unwrap_or(u32::MAX)
}

impl ClientIds {
    fn hash(&self, client_id: &[u8]) -> u64 {
        self.hasher.hash_one(client_id)
    }

    /// The session of `client_id`, if any.
    pub(super) fn get(&self, sessions: &Slab<Session>, client_id: &[u8]) -> Option<SessionId> {
        let hash = self.hash(client_id);
        self.table
            .find(hash, |&i| {
                sessions
                    .get(i as usize)
                    .is_some_and(|s| &s.client_id[..] == client_id)
            })
            .map(|&i| i as usize)
    }

    pub(super) fn contains(&self, sessions: &Slab<Session>, client_id: &[u8]) -> bool {
        self.get(sessions, client_id).is_some()
    }

    /// Adds `session` (already in `sessions`, with its client id) under
    /// that id. The caller has made sure no other session holds it.
    pub(super) fn insert(&mut self, sessions: &Slab<Session>, session: SessionId) {
        let Some(s) = sessions.get(session) else {
            return;
        };
        let hash = self.hash(&s.client_id);
        let hasher = &self.hasher;
        self.table.insert_unique(hash, index(session), |&i| {
            sessions
                .get(i as usize)
                .map_or(0, |s| hasher.hash_one(&s.client_id[..]))
        });
    }

    /// Takes `session` out from under `client_id` (its id), if it is the
    /// one there.
    pub(super) fn remove(&mut self, client_id: &[u8], session: SessionId) {
        let hash = self.hash(client_id);
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == index(session)) {
            entry.remove();
        }
    }

    /// Gives back the room a burst of sessions left.
    pub(super) fn shrink_to_fit(&mut self, sessions: &Slab<Session>) {
        let hasher = &self.hasher;
        self.table.shrink_to_fit(|&i| {
            sessions
                .get(i as usize)
                .map_or(0, |s| hasher.hash_one(&s.client_id[..]))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Protocol;

    fn session(id: &str) -> Session {
        Session::new(id.as_bytes(), Protocol::V5, 0, 1)
    }

    #[test]
    fn finds_every_session_across_growth_removal_and_shrinking() {
        let mut sessions = Slab::default();
        let mut ids = ClientIds::default();
        let keys: Vec<SessionId> = (0..5_000)
            .map(|i| {
                let key = sessions.insert(session(&format!("client-{i}")));
                ids.insert(&sessions, key);
                key
            })
            .collect();
        for (i, &key) in keys.iter().enumerate() {
            assert_eq!(
                ids.get(&sessions, format!("client-{i}").as_bytes()),
                Some(key)
            );
        }
        assert_eq!(ids.get(&sessions, b"client-5000"), None);
        // Every other one leaves, its entry first (as `end_session`).
        for (i, &key) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
            let id = format!("client-{i}");
            ids.remove(id.as_bytes(), key);
            assert!(sessions.remove(key).is_some());
            assert!(!ids.contains(&sessions, id.as_bytes()));
        }
        ids.shrink_to_fit(&sessions);
        for (i, &key) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            assert_eq!(
                ids.get(&sessions, format!("client-{i}").as_bytes()),
                Some(key)
            );
        }
        // A freed index reused by another client id answers to that id only.
        let reused = sessions.insert(session("newcomer"));
        ids.insert(&sessions, reused);
        assert_eq!(ids.get(&sessions, b"newcomer"), Some(reused));
        // Removing under a session that is not the one there changes nothing.
        ids.remove(b"newcomer", keys[0]);
        assert_eq!(ids.get(&sessions, b"newcomer"), Some(reused));
    }
}
