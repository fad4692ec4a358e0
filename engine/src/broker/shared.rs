//! Shared subscription groups (MQTT 5.0 section 4.8.2): a group's members
//! on this shard ([`LocalSub`], the same entry a plain subscription has on
//! a trie node) and on other shards, its home shard, and the chooser of
//! each `SharedPolicy` ([`SharedGroup::pick`]).

use bytes::Bytes;

use super::config::SharedPolicy;
use super::message::fnv;
use super::session::Window;
use super::{SessionId, ShardId, SHARDS_MAX};
use crate::codec::SubscriptionOptions;

/// A local subscriber on a trie node.
#[derive(Clone, Copy)]
pub(super) struct LocalSub {
    pub(super) session: SessionId,
    pub(super) options: SubscriptionOptions,
    pub(super) subscription_id: Option<u32>,
}

/// A shared subscription group on a trie node.
pub(super) struct SharedGroup {
    /// The full `$share/{group}/{filter}` string.
    pub(super) full_filter: Bytes,
    pub(super) name: Bytes,
    pub(super) members: Vec<LocalSub>,
    /// Members on other shards, per shard.
    pub(super) remote_members: Vec<(ShardId, u32)>,
    /// How this group chooses (config: the group's override or the default).
    pub(super) policy: SharedPolicy,
    /// The shard that chooses broker-wide for `round_robin` and `sticky`.
    pub(super) home: ShardId,
    /// This shard (the hash policies order members by shard).
    shard: ShardId,
    cursor: usize,
    /// `random`: xorshift state (never 0).
    rng: u64,
    /// `sticky`: the member (or the shard of the member) chosen last.
    sticky: Option<Pick>,
}

/// Who gets a shared-group message.
#[derive(Clone, Copy)]
pub(super) enum Pick {
    Local(LocalSub),
    Remote(ShardId),
}

/// A second, independent spread of `key` (splitmix64's finaliser): the
/// shard receiving a hashed message chooses among its own members with it.
fn remix(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SharedGroup {
    /// A group named `name` (a slice of `full_filter`) with no member yet,
    /// choosing by `policy`; its home is `fnv(full_filter) % shard_count`.
    pub(super) fn new(
        full_filter: Bytes,
        name: Bytes,
        policy: SharedPolicy,
        shard: ShardId,
        shard_count: u16,
    ) -> SharedGroup {
        let h = fnv(&full_filter);
        SharedGroup {
            home: (h % u64::from(shard_count.max(1))) as ShardId,
            full_filter,
            name,
            members: Vec::new(),
            remote_members: Vec::new(),
            policy,
            shard,
            cursor: 0,
            rng: remix(h ^ u64::from(shard)) | 1,
            sticky: None,
        }
    }

    /// Whether this shard must hand the choice to the group's home shard:
    /// `round_robin` and `sticky` keep one broker-wide state there. A group
    /// with members on this shard only decides here (the same rotation).
    pub(super) fn chosen_at_home(&self, shard: ShardId) -> bool {
        matches!(self.policy, SharedPolicy::RoundRobin | SharedPolicy::Sticky)
            && self.home != shard
            && !self.remote_members.is_empty()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The member for one message, by the group's policy, over the local
    /// members and, with `with_remote`, the members counted on other
    /// shards (which choose among their own members and check their own
    /// windows). `key`: the hash the `hash_*` policies use. Local members
    /// whose window is not open, and `exclude`, are passed over; when no
    /// window is open the message is queued: at the first member passed
    /// over with a full window, else (all offline) at the next local member
    /// in turn, unless `exclude` is set (re-dispatch: then it stays where
    /// it was).
    pub(super) fn pick(
        &mut self,
        with_remote: bool,
        exclude: Option<SessionId>,
        key: u64,
        window: impl Fn(SessionId) -> Window,
        load: impl Fn(SessionId) -> usize,
    ) -> Option<Pick> {
        let remote_total: usize = if with_remote {
            self.remote_members.iter().map(|(_, n)| *n as usize).sum()
        } else {
            0
        };
        let total = self.members.len() + remote_total;
        if total == 0 {
            return None;
        }
        match self.policy {
            SharedPolicy::RoundRobin => {
                let (pick, next) = self.scan(self.cursor, total, exclude, &window);
                self.cursor = next;
                pick
            }
            SharedPolicy::Random => {
                let start = (self.next_random() % total as u64) as usize;
                self.scan(start, total, exclude, &window).0
            }
            SharedPolicy::HashClientId | SharedPolicy::HashTopic => {
                // Every shard sees the same slots, ordered by shard (this
                // shard's members at its place): the key gives a shard,
                // and that shard's members are chosen from by a second
                // spread of the key, so a key lands on one member wherever
                // it is published.
                let local = self.members.len();
                let mut slot = (remix(key) % total as u64) as usize;
                let mut chosen = None;
                // (No allocation: at most SHARDS_MAX small counts.)
                let count_of = |s: ShardId| -> usize {
                    if s == self.shard {
                        local
                    } else if with_remote {
                        self.remote_members
                            .iter()
                            .filter(|(r, _)| *r == s)
                            .map(|(_, n)| *n as usize)
                            .sum()
                    } else {
                        0
                    }
                };
                for s in 0..SHARDS_MAX {
                    let n = count_of(s);
                    if slot < n {
                        chosen = Some(s);
                        break;
                    }
                    slot -= n;
                }
                match chosen {
                    Some(s) if s != self.shard => Some(Pick::Remote(s)),
                    _ => {
                        let start = (remix(key ^ 0x5bd1_e995) % local.max(1) as u64) as usize;
                        self.scan(start, local, exclude, &window).0
                    }
                }
            }
            SharedPolicy::Sticky => {
                let still = match self.sticky {
                    Some(Pick::Local(m)) => self
                        .members
                        .iter()
                        .find(|x| x.session == m.session && Some(m.session) != exclude)
                        .filter(|x| matches!(window(x.session), Window::Open | Window::Full))
                        .map(|x| Pick::Local(*x)),
                    Some(Pick::Remote(shard)) if with_remote => self
                        .remote_members
                        .iter()
                        .any(|(s, n)| *s == shard && *n > 0)
                        .then_some(Pick::Remote(shard)),
                    _ => None,
                };
                if still.is_some() {
                    return still;
                }
                let (pick, next) = self.scan(self.cursor, total, exclude, &window);
                self.cursor = next;
                self.sticky = pick;
                pick
            }
            SharedPolicy::LeastInflight => {
                // The least loaded open local member; ties go in turn.
                let n = self.members.len();
                let start = self.cursor;
                let best = (0..n)
                    .filter_map(|k| self.members.get((start + k) % n))
                    .filter(|m| Some(m.session) != exclude && window(m.session) == Window::Open)
                    .min_by_key(|m| load(m.session))
                    .copied();
                self.cursor = self.cursor.wrapping_add(1);
                match best {
                    Some(m) => Some(Pick::Local(m)),
                    // None open here: the other shards in turn, else queued.
                    None => self.scan(start, total, exclude, &window).0,
                }
            }
        }
    }

    /// Walk the `total` slots (local members first, then each other
    /// shard's count) from `start`: the first open local member or remote
    /// slot, else the fallback described at [`SharedGroup::pick`]. Returns
    /// it and the slot after it (the next rotation's start).
    fn scan(
        &self,
        start: usize,
        total: usize,
        exclude: Option<SessionId>,
        window: &impl Fn(SessionId) -> Window,
    ) -> (Option<Pick>, usize) {
        let mut full = None;
        for k in 0..total {
            let idx = (start % total + k) % total;
            match self.members.get(idx) {
                Some(m) if Some(m.session) == exclude => {}
                Some(m) => match window(m.session) {
                    Window::Open => return (Some(Pick::Local(*m)), idx + 1),
                    Window::Full => full = full.or(Some(*m)),
                    Window::Offline | Window::Refused => {}
                },
                None => {
                    let mut r = idx - self.members.len();
                    for (shard, n) in &self.remote_members {
                        let n = *n as usize;
                        if r < n {
                            return (Some(Pick::Remote(*shard)), idx + 1);
                        }
                        r -= n;
                    }
                }
            }
        }
        if full.is_none() && exclude.is_none() {
            // All offline: the next member in turn that may read it.
            let n = self.members.len();
            full = (0..n)
                .filter_map(|k| self.members.get((start + k) % n))
                .find(|m| window(m.session) != Window::Refused)
                .copied();
        }
        (full.map(Pick::Local), start.wrapping_add(1))
    }
}
