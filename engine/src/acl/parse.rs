//! The ACL file parser: text to [`AclFile`] (rules with their line numbers),
//! or the first error with its line number. Grammar: see [`super`].

use core::fmt;

use super::{
    Access, ACL_FILE_SIZE_MAX_BYTES, ACL_FILTER_LEVELS_MAX, ACL_NAME_LEN_MAX_BYTES, ACL_RULES_MAX,
};
use crate::topic::{self, TopicError};

/// Whom a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A `topic` line before the first header: clients without a user name.
    Anonymous,
    /// A `topic` line in a `user NAME` section.
    User(String),
    /// A `topic` line in a `client ID` section.
    Client(String),
    /// A `pattern` line: every client, `%u` / `%c` substituted.
    Pattern,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Anonymous => f.write_str("anonymous clients"),
            Scope::User(name) => write!(f, "user {name}"),
            Scope::Client(id) => write!(f, "client {id}"),
            Scope::Pattern => f.write_str("every client"),
        }
    }
}

/// One `topic` or `pattern` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// 1-based line number in the file.
    pub line: u32,
    pub scope: Scope,
    pub access: Access,
    /// The filter as written (a pattern's still has its `%u` / `%c`).
    pub filter: String,
}

impl fmt::Display for Rule {
    /// The rule as a line of the file (`topic read a/#`, `pattern deny x/%u`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keyword = if self.scope == Scope::Pattern {
            "pattern"
        } else {
            "topic"
        };
        write!(f, "{keyword} {} {}", self.access.as_str(), self.filter)
    }
}

/// A `user NAME` or `client ID` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub line: u32,
    /// `Scope::User` or `Scope::Client`.
    pub scope: Scope,
}

/// A parsed ACL file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclFile {
    /// In file order; a rule's index is its [`super::RuleId`].
    pub rules: Vec<Rule>,
    /// Section headers, in file order.
    pub headers: Vec<Header>,
}

/// What is wrong with an ACL file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclErrorKind {
    /// Larger than [`ACL_FILE_SIZE_MAX_BYTES`].
    FileTooLarge { bytes: usize },
    /// Not UTF-8.
    NotUtf8,
    /// More than [`ACL_RULES_MAX`] rules.
    TooManyRules,
    /// The first word is not `user`, `client`, `topic` or `pattern`.
    UnknownKeyword(String),
    /// `user` or `client` with nothing after it.
    MissingName(&'static str),
    /// A name longer than [`ACL_NAME_LEN_MAX_BYTES`].
    NameTooLong,
    /// `topic` / `pattern` (and an access word) with no filter.
    MissingFilter,
    /// The filter is not a valid MQTT topic filter.
    InvalidFilter { filter: String, error: TopicError },
    /// A `$share/...` filter: rules name the inner filter.
    SharedFilter(String),
    /// A NUL character, which no MQTT string may contain ([MQTT-1.5.4-2]).
    NulCharacter,
}

/// An error with the line it was found on (0: the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclError {
    pub line: u32,
    pub kind: AclErrorKind,
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        match &self.kind {
            AclErrorKind::FileTooLarge { bytes } => write!(
                f,
                "ACL file is {bytes} bytes, more than the limit of {ACL_FILE_SIZE_MAX_BYTES}"
            ),
            AclErrorKind::NotUtf8 => f.write_str("not valid UTF-8"),
            AclErrorKind::TooManyRules => {
                write!(f, "more than {ACL_RULES_MAX} rules")
            }
            AclErrorKind::UnknownKeyword(word) => write!(
                f,
                "unknown keyword `{word}` (expected user, client, topic or pattern)"
            ),
            AclErrorKind::MissingName(keyword) => write!(f, "`{keyword}` needs a name"),
            AclErrorKind::NameTooLong => {
                write!(f, "name longer than {ACL_NAME_LEN_MAX_BYTES} bytes")
            }
            AclErrorKind::MissingFilter => f.write_str(
                "missing topic filter (expected [read|write|readwrite|subscribe|deny] FILTER)",
            ),
            AclErrorKind::InvalidFilter { filter, error } => {
                write!(f, "invalid topic filter `{filter}`: {error}")
            }
            AclErrorKind::SharedFilter(filter) => write!(
                f,
                "`{filter}` is a shared subscription; write the filter after $share/GROUP/"
            ),
            AclErrorKind::NulCharacter => f.write_str("NUL character"),
        }
    }
}

impl std::error::Error for AclError {}

fn error(line: u32, kind: AclErrorKind) -> AclError {
    AclError { line, kind }
}

/// Parses a file's bytes: checks [`ACL_FILE_SIZE_MAX_BYTES`] and UTF-8
/// (reporting the line of the first bad byte), then [`parse`].
pub fn parse_bytes(bytes: &[u8]) -> Result<AclFile, AclError> {
    if bytes.len() > ACL_FILE_SIZE_MAX_BYTES {
        return Err(error(0, AclErrorKind::FileTooLarge { bytes: bytes.len() }));
    }
    match core::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let before = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            Err(error(line_number(line), AclErrorKind::NotUtf8))
        }
    }
}

/// Parses ACL text. The first error stops the parse.
pub fn parse(text: &str) -> Result<AclFile, AclError> {
    if text.len() > ACL_FILE_SIZE_MAX_BYTES {
        return Err(error(0, AclErrorKind::FileTooLarge { bytes: text.len() }));
    }
    let mut file = AclFile::default();
    let mut section = Scope::Anonymous;
    for (index, raw) in text.lines().enumerate() {
        let line = line_number(index + 1);
        let trimmed = trim(raw);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.contains('\0') {
            return Err(error(line, AclErrorKind::NulCharacter));
        }
        let (keyword, rest) = split_word(trimmed);
        match keyword {
            "user" | "client" => {
                let name = rest;
                if name.is_empty() {
                    let keyword = if keyword == "user" { "user" } else { "client" };
                    return Err(error(line, AclErrorKind::MissingName(keyword)));
                }
                if name.len() > ACL_NAME_LEN_MAX_BYTES {
                    return Err(error(line, AclErrorKind::NameTooLong));
                }
                section = if keyword == "user" {
                    Scope::User(name.to_string())
                } else {
                    Scope::Client(name.to_string())
                };
                file.headers.push(Header {
                    line,
                    scope: section.clone(),
                });
            }
            "topic" | "pattern" => {
                let (access, filter) = parse_rule_body(rest).map_err(|kind| error(line, kind))?;
                if file.rules.len() >= ACL_RULES_MAX {
                    return Err(error(line, AclErrorKind::TooManyRules));
                }
                let scope = if keyword == "pattern" {
                    Scope::Pattern
                } else {
                    section.clone()
                };
                file.rules.push(Rule {
                    line,
                    scope,
                    access,
                    filter: filter.to_string(),
                });
            }
            other => return Err(error(line, AclErrorKind::UnknownKeyword(other.to_string()))),
        }
    }
    Ok(file)
}

/// `[ACCESS] FILTER` after `topic` / `pattern`. As in Mosquitto, an access
/// word must be followed by a filter (`topic read` alone is an error, not
/// a rule on the topic "read").
pub fn parse_rule_body(rest: &str) -> Result<(Access, &str), AclErrorKind> {
    let (word, after) = split_word(rest);
    let (access, filter) = match Access::from_word(word) {
        Some(access) => (access, after),
        None => (Access::ReadWrite, rest),
    };
    if filter.is_empty() {
        return Err(AclErrorKind::MissingFilter);
    }
    check_filter(filter)?;
    Ok((access, filter))
}

/// A rule filter: a valid plain MQTT topic filter of at most
/// [`ACL_FILTER_LEVELS_MAX`] levels.
fn check_filter(filter: &str) -> Result<(), AclErrorKind> {
    if filter.contains('\0') {
        return Err(AclErrorKind::NulCharacter);
    }
    let bytes = filter.as_bytes();
    if matches!(topic::parse_shared(bytes), Ok(Some(_))) {
        return Err(AclErrorKind::SharedFilter(filter.to_string()));
    }
    topic::validate_topic_filter(bytes, ACL_FILTER_LEVELS_MAX).map_err(|error| {
        AclErrorKind::InvalidFilter {
            filter: filter.to_string(),
            error,
        }
    })
}

/// Spaces and tabs (not other Unicode white space: a name may contain it).
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

fn trim(s: &str) -> &str {
    s.trim_matches(is_blank)
}

/// The first word and the trimmed rest.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(is_blank) {
        Some(i) => {
            let (word, rest) = s.split_at(i);
            (word, trim(rest))
        }
        None => (s, ""),
    }
}

fn line_number(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<(u32, Scope, Access, String)> {
        match parse(text) {
            Ok(f) => f
                .rules
                .into_iter()
                .map(|r| (r.line, r.scope, r.access, r.filter))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    fn err(text: &str) -> AclError {
        match parse(text) {
            Ok(f) => panic!("parsed: {f:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn sections_scopes_and_default_access() {
        let text = "# comment\n\
                    topic read public/#\n\
                    \n\
                    user alice\n\
                    topic write alice/out\n\
                    \t topic   deny   alice/secret/# \n\
                    pattern read devices/%c/#\n\
                    client sensor 7\n\
                    topic a/b c\n\
                    user alice\n\
                    topic subscribe x/+\n";
        let alice = || Scope::User("alice".into());
        assert_eq!(
            rules(text),
            vec![
                (2, Scope::Anonymous, Access::Read, "public/#".into()),
                (5, alice(), Access::Write, "alice/out".into()),
                (6, alice(), Access::Deny, "alice/secret/#".into()),
                (7, Scope::Pattern, Access::Read, "devices/%c/#".into()),
                // No access word: readwrite; the filter may contain a space.
                (
                    9,
                    Scope::Client("sensor 7".into()),
                    Access::ReadWrite,
                    "a/b c".into()
                ),
                (11, alice(), Access::Subscribe, "x/+".into()),
            ]
        );
        let file = parse(text).unwrap_or_default();
        assert_eq!(
            file.headers.iter().map(|h| h.line).collect::<Vec<_>>(),
            [4, 8, 10]
        );
    }

    #[test]
    fn rule_display_is_a_line_of_the_file() {
        let file = parse("user u\ntopic a/#\npattern deny x/%u\n").unwrap_or_default();
        let lines: Vec<String> = file.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(lines, ["topic readwrite a/#", "pattern deny x/%u"]);
        // And parsing the displayed line gives the same rule back.
        let again = parse(&format!("user u\n{}\n{}\n", lines[0], lines[1])).unwrap_or_default();
        assert_eq!(again.rules.len(), 2);
        assert_eq!(again.rules[0].access, Access::ReadWrite);
    }

    #[test]
    fn errors_name_their_line() {
        let e = err("topic a\nusr bob\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, AclErrorKind::UnknownKeyword("usr".into()));
        assert_eq!(
            e.to_string(),
            "line 2: unknown keyword `usr` (expected user, client, topic or pattern)"
        );
        assert_eq!(err("\n\nuser\n").kind, AclErrorKind::MissingName("user"));
        assert_eq!(
            err("client  \t\n").kind,
            AclErrorKind::MissingName("client")
        );
        assert_eq!(err("topic\n").kind, AclErrorKind::MissingFilter);
        // An access word alone is not a filter named "read" (Mosquitto agrees).
        assert_eq!(err("topic read\n").kind, AclErrorKind::MissingFilter);
        assert_eq!(err("pattern deny  \n").kind, AclErrorKind::MissingFilter);
        let e = err("topic read a/#/b\n");
        assert_eq!(e.line, 1);
        assert!(matches!(
            e.kind,
            AclErrorKind::InvalidFilter {
                error: TopicError::InvalidWildcard,
                ..
            }
        ));
        assert!(matches!(
            err("topic a+\n").kind,
            AclErrorKind::InvalidFilter { .. }
        ));
        assert_eq!(
            err("topic read $share/g/a\n").kind,
            AclErrorKind::SharedFilter("$share/g/a".into())
        );
        assert_eq!(err("topic a\0b\n").kind, AclErrorKind::NulCharacter);
    }

    #[test]
    fn filter_levels_limit_n_and_n_plus_one() {
        let filter = |n: usize| vec!["a"; n].join("/");
        assert!(parse(&format!("topic {}\n", filter(ACL_FILTER_LEVELS_MAX))).is_ok());
        assert!(matches!(
            err(&format!("topic {}\n", filter(ACL_FILTER_LEVELS_MAX + 1))).kind,
            AclErrorKind::InvalidFilter {
                error: TopicError::TooManyLevels,
                ..
            }
        ));
    }

    #[test]
    fn name_length_limit_n_and_n_plus_one() {
        let name = |n: usize| "u".repeat(n);
        assert!(parse(&format!("user {}\n", name(ACL_NAME_LEN_MAX_BYTES))).is_ok());
        assert_eq!(
            err(&format!("user {}\n", name(ACL_NAME_LEN_MAX_BYTES + 1))).kind,
            AclErrorKind::NameTooLong
        );
    }

    #[test]
    fn rules_limit_n_and_n_plus_one() {
        let text = "topic a\n".repeat(ACL_RULES_MAX);
        assert_eq!(parse(&text).map(|f| f.rules.len()), Ok(ACL_RULES_MAX));
        let e = err(&format!("{text}topic a\n"));
        assert_eq!(e.kind, AclErrorKind::TooManyRules);
        assert_eq!(e.line as usize, ACL_RULES_MAX + 1);
    }

    #[test]
    fn file_size_limit_n_and_n_plus_one() {
        let mut bytes = vec![b'\n'; ACL_FILE_SIZE_MAX_BYTES];
        assert!(parse_bytes(&bytes).is_ok());
        bytes.push(b'\n');
        let e = parse_bytes(&bytes).err();
        assert_eq!(
            e.map(|e| e.kind),
            Some(AclErrorKind::FileTooLarge {
                bytes: ACL_FILE_SIZE_MAX_BYTES + 1
            })
        );
    }

    #[test]
    fn invalid_utf8_reports_its_line() {
        let e = parse_bytes(b"topic a\ntopic b\xff\n").err();
        assert_eq!(
            e,
            Some(AclError {
                line: 2,
                kind: AclErrorKind::NotUtf8
            })
        );
    }

    #[test]
    fn crlf_and_comments() {
        let r = rules("# top\r\n  # indented comment\r\ntopic read a/#\r\n");
        assert_eq!(r, vec![(3, Scope::Anonymous, Access::Read, "a/#".into())]);
    }
}
