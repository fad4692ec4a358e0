//! Authorisation: the ACL file, parsed ([`parse`]) and compiled into
//! per-user tries ([`Acl`]), then specialised per session at CONNECT
//! ([`SessionAcl`]) so that the check on the publish and delivery paths is
//! one allocation-free trie walk per rule set, never a scan of the rules.
//!
//! # File format
//!
//! In the spirit of Mosquitto's `acl_file`; a Mosquitto file that uses
//! only `user`, `topic` and `pattern` lines means the same here. UTF-8
//! text, one statement per line, at most [`ACL_FILE_SIZE_MAX_BYTES`]:
//!
//! ```text
//! line      = blank | comment | header | rule
//! comment   = "#" anything            (first non-blank character)
//! header    = "user" NAME             starts a section for that user name
//!           | "client" ID             starts a section for that client id
//! rule      = "topic"   [ACCESS] FILTER
//!           | "pattern" [ACCESS] FILTER
//! ACCESS    = "read" | "write" | "readwrite" | "subscribe" | "deny"
//!                                     (omitted: readwrite)
//! NAME, ID  = the rest of the line, trimmed (may contain spaces)
//! FILTER    = the rest of the line, trimmed: an MQTT topic filter,
//!             `+` and `#` wildcards allowed, not `$share/...`
//! ```
//!
//! Words are separated by spaces or tabs; keywords are lower case.
//!
//! - `topic` lines before the first header apply to anonymous clients
//!   (no user name in CONNECT), as in Mosquitto; after a header, to that
//!   user or client id. Repeated headers for one name add to its section.
//! - `pattern` lines apply to every client wherever they stand. In their
//!   filter `%u` is replaced by the client's user name and `%c` by its
//!   client id (at CONNECT). A pattern with `%u` does not apply to an
//!   anonymous client. A user name or client id containing `+`, `#` or
//!   `/`, or one that would start the filter with `$`, is never
//!   substituted into a filter (that would let a client widen its own
//!   grant): an allowing pattern then does not apply, and a `deny`
//!   pattern is widened to deny everything from the substituted level on
//!   (`deny a/%u/b` becomes `deny a/#`).
//!
//! # Actions and precedence
//!
//! Three actions are checked ([`Action`]): `Write` (the client publishes,
//! will messages included), `Subscribe` (a SUBSCRIBE filter) and `Read`
//! (a message is delivered to the client, retained ones included).
//!
//! | access      | read | write | subscribe |
//! |-------------|------|-------|-----------|
//! | `read`      | yes  |       | yes       |
//! | `write`     |      | yes   |           |
//! | `readwrite` | yes  | yes   | yes       |
//! | `subscribe` |      |       | yes       |
//! | `deny`      | no   | no    | no        |
//!
//! The rules that apply to a client are its user section (or the
//! anonymous rules when it has no user name), its client-id section, and
//! every pattern. Among those:
//!
//! 1. a `deny` rule that matches wins over any allowing rule;
//! 2. otherwise a rule that grants the action allows it;
//! 3. otherwise it is denied (with an ACL file configured, the default is
//!    deny, as in Mosquitto).
//!
//! "Matches" for read and write is MQTT topic matching (the rule's filter
//! matches the topic name; a rule starting with a wildcard does not match
//! a topic starting with `$`, [MQTT-4.7.2-1]). For subscribe it is
//! coverage: rule filter R covers SUBSCRIBE filter F when every topic F
//! matches is matched by R (`read a/#` covers `a/+/b`, not `#`). A shared
//! subscription `$share/{group}/{F}` is checked as F. A subscriber whose
//! filter is allowed still gets only the messages it may read: a `#`
//! subscriber never receives a topic a rule denies it.
//!
//! The rule reported as deciding ([`Decision::rule`]) is the first (by
//! line) matching `deny` rule, else the first matching allowing rule.

mod compile;
mod parse;
mod trie;

pub use compile::{Acl, SessionAcl};
pub use parse::{parse, parse_bytes, AclError, AclErrorKind, AclFile, Header, Rule, Scope};

/// Largest ACL file accepted, in bytes.
pub const ACL_FILE_SIZE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Most rules (`topic` and `pattern` lines) in one ACL file.
pub const ACL_RULES_MAX: usize = 100_000;
/// Most topic levels in one rule filter.
pub const ACL_FILTER_LEVELS_MAX: usize = 128;
/// Longest user name or client id in a header, in bytes (an MQTT string).
pub const ACL_NAME_LEN_MAX_BYTES: usize = 65_535;

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Receive a message on this topic name.
    Read,
    /// Publish to this topic name (will messages included).
    Write,
    /// Subscribe with this topic filter.
    Subscribe,
}

impl Action {
    /// The word used on the command line and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Subscribe => "subscribe",
        }
    }

    /// Parses `read`, `write` or `subscribe`.
    pub fn from_word(word: &str) -> Option<Action> {
        match word {
            "read" => Some(Action::Read),
            "write" => Some(Action::Write),
            "subscribe" => Some(Action::Subscribe),
            _ => None,
        }
    }
}

/// What a rule grants (or, for `Deny`, refuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Subscribe,
    Deny,
}

impl Access {
    /// The keyword in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "readwrite",
            Access::Subscribe => "subscribe",
            Access::Deny => "deny",
        }
    }

    /// Parses an access keyword.
    pub fn from_word(word: &str) -> Option<Access> {
        match word {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "readwrite" => Some(Access::ReadWrite),
            "subscribe" => Some(Access::Subscribe),
            "deny" => Some(Access::Deny),
            _ => None,
        }
    }

    /// Does this rule allow `action` (see the table in the module docs)?
    /// Always false for `Deny`.
    pub const fn grants(self, action: Action) -> bool {
        matches!(
            (self, action),
            (Access::Read, Action::Read | Action::Subscribe)
                | (Access::Write, Action::Write)
                | (Access::ReadWrite, _)
                | (Access::Subscribe, Action::Subscribe)
        )
    }
}

/// Index of a rule in [`AclFile::rules`] / [`Acl::rules`].
pub type RuleId = u32;

/// The outcome of a check, with the rule that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The deciding rule; `None` when no rule matched (denied by default).
    pub rule: Option<RuleId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_table() {
        use Action::*;
        let rows = [
            (Access::Read, [true, false, true]),
            (Access::Write, [false, true, false]),
            (Access::ReadWrite, [true, true, true]),
            (Access::Subscribe, [false, false, true]),
            (Access::Deny, [false, false, false]),
        ];
        for (access, expect) in rows {
            assert_eq!(
                [Read, Write, Subscribe].map(|a| access.grants(a)),
                expect,
                "{access:?}"
            );
            assert_eq!(Access::from_word(access.as_str()), Some(access));
        }
        assert_eq!(Access::from_word("READ"), None);
        for a in [Read, Write, Subscribe] {
            assert_eq!(Action::from_word(a.as_str()), Some(a));
        }
        assert_eq!(Action::from_word("readwrite"), None);
    }
}
