//! Topic names, topic filters, shared subscriptions and the subscription trie.
//! (STUB: being written.)

use crate::codec::ReasonCode;

/// Why a topic name or filter is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    TooLong,
    TooManyLevels,
    WildcardInName,
    InvalidWildcard,
    InvalidSharedSubscription,
}

impl TopicError {
    pub const fn reason_code_for_name(self) -> ReasonCode {
        ReasonCode::TOPIC_NAME_INVALID
    }
    pub const fn reason_code_for_filter(self) -> ReasonCode {
        ReasonCode::TOPIC_FILTER_INVALID
    }
}

/// A `$share/{group}/{filter}` subscription split in its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a [u8],
    pub filter: &'a [u8],
}

pub fn validate_topic_name(_name: &[u8], _levels_max: usize) -> Result<(), TopicError> {
    todo!()
}

pub fn validate_topic_filter(_filter: &[u8], _levels_max: usize) -> Result<(), TopicError> {
    todo!()
}

/// `Ok(None)`: not a shared subscription.
pub fn parse_shared(_filter: &[u8]) -> Result<Option<SharedFilter<'_>>, TopicError> {
    todo!()
}

/// Naive reference matcher.
pub fn filter_matches(_filter: &[u8], _topic: &[u8]) -> bool {
    todo!()
}

/// A trie of topic filters, each holding a `T`.
pub struct TopicTrie<T> {
    _p: core::marker::PhantomData<T>,
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        TopicTrie { _p: core::marker::PhantomData }
    }
}

impl<T: Default> TopicTrie<T> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get_or_insert(&mut self, _filter: &[u8]) -> &mut T {
        todo!()
    }
    pub fn get(&self, _filter: &[u8]) -> Option<&T> {
        todo!()
    }
    pub fn get_mut(&mut self, _filter: &[u8]) -> Option<&mut T> {
        todo!()
    }
    pub fn remove(&mut self, _filter: &[u8]) -> Option<T> {
        todo!()
    }
    pub fn for_each_match(&self, _topic: &[u8], _f: impl FnMut(&T)) {
        todo!()
    }
    pub fn for_each_match_mut(&mut self, _topic: &[u8], _f: impl FnMut(&mut T)) {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
