//! Packet identifier bookkeeping (MQTT 5.0 section 2.2.1): which ids are in
//! use by outbound QoS 1/2 publishes (and at which step), by SUBSCRIBE /
//! UNSUBSCRIBE, and by inbound QoS 2 messages awaiting PUBREL.
//!
//! Tables are bitmaps over the whole id space, allocated on first use (a
//! QoS 0-only or idle client holds none): 16 KiB for outbound publishes
//! (2 bits per id), 8 KiB for inbound QoS 2 (1 bit per id). After that,
//! nothing on the publish path allocates.

use super::options::CONTROL_INFLIGHT_MAX;

/// Ids span 1..=65_535; 0 is never used ([MQTT-2.2.1-3]).
const ID_SPACE: usize = 65_536;
const OUT_WORDS: usize = ID_SPACE * 2 / 64;
const IN_WORDS: usize = ID_SPACE / 64;

/// Where an outbound publish stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutState {
    Free = 0,
    /// QoS 1 sent, awaiting PUBACK.
    AwaitPubAck = 1,
    /// QoS 2 sent, awaiting PUBREC.
    AwaitPubRec = 2,
    /// PUBREL sent, awaiting PUBCOMP.
    AwaitPubComp = 3,
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ControlKind {
    Subscribe,
    Unsubscribe,
}

/// Outbound ids: publish states, control packets and the allocator.
#[derive(Debug, Default)]
pub(crate) struct PacketIds {
    /// 2 bits per id ([`OutState`]); empty until the first QoS 1/2 publish.
    out_states: Vec<u64>,
    /// Publishes not `Free` (counts against the Receive Maximum window).
    out_inflight: u16,
    /// Bounded by `CONTROL_INFLIGHT_MAX`; a short list scanned linearly.
    control: Vec<(u16, ControlKind)>,
    /// Next id to try.
    pub(crate) next: u16,
}

impl PacketIds {
    pub(crate) fn new() -> Self {
        PacketIds {
            next: 1,
            ..PacketIds::default()
        }
    }

    pub(crate) fn out_inflight(&self) -> u16 {
        self.out_inflight
    }

    pub(crate) fn control_len(&self) -> usize {
        self.control.len()
    }

    pub(crate) fn out_state(&self, id: u16) -> OutState {
        let bit = usize::from(id) * 2;
        let word = match self.out_states.get(bit / 64) {
            Some(w) => *w,
            None => return OutState::Free,
        };
        match (word >> (bit % 64)) & 0b11 {
            1 => OutState::AwaitPubAck,
            2 => OutState::AwaitPubRec,
            3 => OutState::AwaitPubComp,
            _ => OutState::Free,
        }
    }

    pub(crate) fn set_out_state(&mut self, id: u16, state: OutState) {
        debug_assert!(id != 0);
        if self.out_states.is_empty() {
            // Control-plane allocation, once per client.
            self.out_states = vec![0; OUT_WORDS];
        }
        let was_free = self.out_state(id) == OutState::Free;
        let is_free = state == OutState::Free;
        let bit = usize::from(id) * 2;
        if let Some(word) = self.out_states.get_mut(bit / 64) {
            *word = (*word & !(0b11 << (bit % 64))) | ((state as u64) << (bit % 64));
        }
        match (was_free, is_free) {
            (true, false) => self.out_inflight += 1,
            (false, true) => self.out_inflight -= 1,
            _ => {}
        }
    }

    fn control_position(&self, id: u16) -> Option<usize> {
        self.control.iter().position(|(i, _)| *i == id)
    }

    /// Whether a SUBSCRIBE / UNSUBSCRIBE awaits its ack under `id`.
    pub(crate) fn is_control(&self, id: u16) -> bool {
        self.control_position(id).is_some()
    }

    /// Registers a SUBSCRIBE / UNSUBSCRIBE id; false when the table is full.
    pub(crate) fn insert_control(&mut self, id: u16, kind: ControlKind) -> bool {
        if self.control.len() >= CONTROL_INFLIGHT_MAX {
            return false;
        }
        self.control.push((id, kind));
        true
    }

    /// Releases a control id if it awaits an ack of `kind`.
    pub(crate) fn remove_control(&mut self, id: u16, kind: ControlKind) -> bool {
        match self.control_position(id) {
            Some(pos) if self.control.get(pos).map(|c| c.1) == Some(kind) => {
                self.control.swap_remove(pos);
                true
            }
            _ => false,
        }
    }

    /// The next id that is neither a pending publish nor a pending control
    /// packet, starting after the last one handed out and wrapping 65_535 -> 1.
    /// At most 65_535 probes; in steady state (acks in order) the first probe
    /// succeeds.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        let mut id = self.next;
        for _ in 0..u16::MAX {
            if id == 0 {
                id = 1;
            }
            if self.out_state(id) == OutState::Free && self.control_position(id).is_none() {
                self.next = id.wrapping_add(1);
                return Some(id);
            }
            id = id.wrapping_add(1);
        }
        None
    }
}

/// A set of packet ids (inbound QoS 2 awaiting PUBREL).
#[derive(Debug, Default)]
pub(crate) struct IdSet {
    words: Vec<u64>,
    len: u16,
}

impl IdSet {
    pub(crate) fn len(&self) -> u16 {
        self.len
    }

    pub(crate) fn contains(&self, id: u16) -> bool {
        let bit = usize::from(id);
        self.words
            .get(bit / 64)
            .is_some_and(|w| (w >> (bit % 64)) & 1 == 1)
    }

    /// Inserts `id`; false if it was already present.
    pub(crate) fn insert(&mut self, id: u16) -> bool {
        if self.contains(id) {
            return false;
        }
        if self.words.is_empty() {
            self.words = vec![0; IN_WORDS];
        }
        let bit = usize::from(id);
        if let Some(w) = self.words.get_mut(bit / 64) {
            *w |= 1 << (bit % 64);
            self.len += 1;
            return true;
        }
        false
    }

    /// The ids present, lowest first.
    pub(crate) fn ids(&self) -> Vec<u16> {
        let mut out = Vec::with_capacity(usize::from(self.len));
        for (i, w) in self.words.iter().enumerate() {
            let mut w = *w;
            while w != 0 {
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                if let Ok(id) = u16::try_from(i * 64 + bit) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Removes `id`; false if it was absent.
    pub(crate) fn remove(&mut self, id: u16) -> bool {
        if !self.contains(id) {
            return false;
        }
        let bit = usize::from(id);
        if let Some(w) = self.words.get_mut(bit / 64) {
            *w &= !(1 << (bit % 64));
            self.len -= 1;
            return true;
        }
        false
    }

    pub(crate) fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_skips_ids_in_use_and_wraps() {
        let mut ids = PacketIds::new();
        ids.next = 65_534;
        ids.set_out_state(65_535, OutState::AwaitPubAck);
        ids.set_out_state(1, OutState::AwaitPubRec);
        assert!(ids.insert_control(2, ControlKind::Subscribe));
        assert_eq!(ids.allocate(), Some(65_534));
        ids.set_out_state(65_534, OutState::AwaitPubAck);
        // 65_535 in use, 0 never, 1 publish, 2 subscribe.
        assert_eq!(ids.allocate(), Some(3));
        assert_eq!(ids.out_inflight(), 3);
        ids.set_out_state(65_535, OutState::Free);
        assert_eq!(ids.out_inflight(), 2);
        assert!(ids.remove_control(2, ControlKind::Subscribe));
        assert!(!ids.remove_control(2, ControlKind::Subscribe));
    }

    #[test]
    fn allocate_reports_exhaustion() {
        let mut ids = PacketIds::new();
        for id in 1..=u16::MAX {
            ids.set_out_state(id, OutState::AwaitPubAck);
        }
        assert_eq!(ids.out_inflight(), u16::MAX);
        assert_eq!(ids.allocate(), None);
        ids.set_out_state(40_000, OutState::Free);
        assert_eq!(ids.allocate(), Some(40_000));
    }

    #[test]
    fn control_table_is_bounded() {
        let mut ids = PacketIds::new();
        for id in 0..CONTROL_INFLIGHT_MAX {
            assert!(ids.insert_control(id as u16 + 1, ControlKind::Unsubscribe));
        }
        assert!(!ids.insert_control(9999, ControlKind::Unsubscribe));
        assert!(!ids.remove_control(1, ControlKind::Subscribe));
        assert!(ids.remove_control(1, ControlKind::Unsubscribe));
    }

    #[test]
    fn id_set_insert_remove() {
        let mut set = IdSet::default();
        assert!(!set.contains(7));
        assert!(set.insert(7));
        assert!(!set.insert(7));
        assert!(set.insert(65_535));
        assert_eq!(set.len(), 2);
        assert!(set.insert(64));
        assert_eq!(set.ids(), vec![7, 64, 65_535]);
        assert!(set.remove(64));
        assert!(set.remove(7));
        assert!(!set.remove(7));
        set.clear();
        assert_eq!(set.len(), 0);
        assert!(!set.contains(65_535));
    }
}
