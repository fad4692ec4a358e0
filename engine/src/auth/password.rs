//! The password file: one `user:hash[:scram]` line per user, parsed into a
//! [`UserStore`], and argon2id verification against it.
//!
//! ```text
//!   # comment lines and blank lines are ignored
//!   alice:$argon2id$v=19$m=19456,t=2,p=1$<salt b64>$<hash b64>
//!   bob:$argon2id$v=19$...$...$...:scram-sha-256$4096$<salt>$<StoredKey>$<ServerKey>
//! ```
//!
//! The hash is an argon2id PHC string (RFC 9106; the `argon2` crate's
//! format, the same as `mosquitto_passwd`'s argon2id mode). The optional
//! third field holds SCRAM-SHA-256 credentials (see [`super::scram_credentials`]),
//! which cannot be derived from an argon2 hash. A user name may not contain
//! `:` (the field separator), control characters, or be empty.
//!
//! Verification is slow by design (tens of milliseconds): the runtime runs
//! it on helper threads, never on a shard.

use std::collections::HashMap;
use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::scram_credentials::ScramCredentials;

/// Largest password file accepted, in bytes.
pub const FILE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest line of the password file, in bytes (without the newline).
pub const LINE_MAX_BYTES: usize = 1024;
/// Longest user name in the file, in bytes. A CONNECT with a longer one
/// is refused as a bad user name without any hashing.
pub const USERNAME_MAX_BYTES: usize = 256;
/// Longest password verified, in bytes; a longer one is refused without
/// hashing (argon2 would hash it, slowly, for nothing).
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Highest argon2 memory cost accepted from the file, in KiB (256 MiB):
/// a hash asking for more would let the file make every login exhaust memory.
pub const ARGON2_MEMORY_MAX_KIB: u32 = 256 * 1024;
/// Highest argon2 time cost (passes) accepted from the file.
pub const ARGON2_PASSES_MAX: u32 = 64;
/// Highest argon2 parallelism accepted from the file (lanes).
pub const ARGON2_LANES_MAX: u32 = 64;

/// Why a password file was refused (with the 1-based line where known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordFileError {
    /// The file is larger than [`FILE_MAX_BYTES`].
    TooLarge { bytes: usize },
    /// Not UTF-8.
    NotUtf8 { line: usize },
    /// A line longer than [`LINE_MAX_BYTES`].
    LineTooLong { line: usize, bytes: usize },
    /// No `:` after the user name.
    MissingSeparator { line: usize },
    /// Empty, too long, or with a forbidden character.
    BadUsername { line: usize, reason: &'static str },
    /// The same user twice.
    DuplicateUser { line: usize, user: String },
    /// Not an argon2id PHC string, or parameters out of bounds.
    BadHash { line: usize, reason: String },
    /// The third field is not valid SCRAM credentials.
    BadScram { line: usize, reason: &'static str },
}

impl fmt::Display for PasswordFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordFileError::TooLarge { bytes } => write!(
                f,
                "file is {bytes} bytes, more than the limit of {FILE_MAX_BYTES} bytes"
            ),
            PasswordFileError::NotUtf8 { line } => write!(f, "line {line}: not valid UTF-8"),
            PasswordFileError::LineTooLong { line, bytes } => write!(
                f,
                "line {line}: {bytes} bytes, more than the limit of {LINE_MAX_BYTES} bytes"
            ),
            PasswordFileError::MissingSeparator { line } => {
                write!(f, "line {line}: expected `user:hash`, found no `:`")
            }
            PasswordFileError::BadUsername { line, reason } => {
                write!(f, "line {line}: bad user name: {reason}")
            }
            PasswordFileError::DuplicateUser { line, user } => {
                write!(f, "line {line}: user {user:?} appears twice")
            }
            PasswordFileError::BadHash { line, reason } => {
                write!(f, "line {line}: bad password hash: {reason}")
            }
            PasswordFileError::BadScram { line, reason } => {
                write!(f, "line {line}: bad SCRAM credentials: {reason}")
            }
        }
    }
}

impl std::error::Error for PasswordFileError {}

/// Why a user name cannot be stored, or `None` if it can.
pub fn username_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() > USERNAME_MAX_BYTES {
        return Some("longer than 256 bytes");
    }
    if name.contains(':') {
        return Some("contains `:` (the field separator)");
    }
    if name.chars().any(char::is_control) {
        return Some("contains a control character");
    }
    None
}

/// One user of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    /// The argon2id PHC string, checked at load time.
    pub phc: String,
    /// SCRAM-SHA-256 credentials, if the file has them for this user.
    pub scram: Option<ScramCredentials>,
}

/// All users of a password file, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserStore {
    users: HashMap<Box<[u8]>, UserEntry>,
}

/// A line of the file: a user's entry, or something to keep as it is
/// (comment, blank line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    User { name: &'a str, entry: UserEntry },
    Other(&'a str),
}

/// Parses a whole password file into its lines, checking every entry.
pub fn parse_lines(text: &[u8]) -> Result<Vec<Line<'_>>, PasswordFileError> {
    if text.len() > FILE_MAX_BYTES {
        return Err(PasswordFileError::TooLarge { bytes: text.len() });
    }
    let mut lines = Vec::new();
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > LINE_MAX_BYTES {
            return Err(PasswordFileError::LineTooLong {
                line: line_no,
                bytes: raw.len(),
            });
        }
        let line =
            std::str::from_utf8(raw).map_err(|_| PasswordFileError::NotUtf8 { line: line_no })?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            lines.push(Line::Other(line));
            continue;
        }
        let (name, entry) = parse_entry(trimmed, line_no)?;
        if seen.insert(name, ()).is_some() {
            return Err(PasswordFileError::DuplicateUser {
                line: line_no,
                user: name.to_string(),
            });
        }
        lines.push(Line::User { name, entry });
    }
    // A trailing newline gives one empty last "line": not part of the file.
    if matches!(lines.last(), Some(Line::Other(""))) {
        lines.pop();
    }
    Ok(lines)
}

fn parse_entry(line: &str, line_no: usize) -> Result<(&str, UserEntry), PasswordFileError> {
    let (name, rest) = line
        .split_once(':')
        .ok_or(PasswordFileError::MissingSeparator { line: line_no })?;
    if let Some(reason) = username_problem(name) {
        return Err(PasswordFileError::BadUsername {
            line: line_no,
            reason,
        });
    }
    let (phc, scram) = match rest.split_once(':') {
        Some((phc, scram)) => (phc, Some(scram)),
        None => (rest, None),
    };
    check_phc(phc).map_err(|reason| PasswordFileError::BadHash {
        line: line_no,
        reason,
    })?;
    let scram = match scram {
        Some(s) => {
            Some(
                ScramCredentials::parse(s).map_err(|reason| PasswordFileError::BadScram {
                    line: line_no,
                    reason,
                })?,
            )
        }
        None => None,
    };
    Ok((
        name,
        UserEntry {
            phc: phc.to_string(),
            scram,
        },
    ))
}

/// Checks that `phc` is an argon2id hash with parameters within bounds.
fn check_phc(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC string ({e})"))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!(
            "algorithm `{}`, expected `argon2id`",
            hash.algorithm
        ));
    }
    let params = Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters ({e})"))?;
    if params.m_cost() > ARGON2_MEMORY_MAX_KIB {
        return Err(format!(
            "memory cost m={} KiB is above the limit of {ARGON2_MEMORY_MAX_KIB} KiB",
            params.m_cost()
        ));
    }
    if params.t_cost() > ARGON2_PASSES_MAX {
        return Err(format!(
            "time cost t={} is above the limit of {ARGON2_PASSES_MAX}",
            params.t_cost()
        ));
    }
    if params.p_cost() > ARGON2_LANES_MAX {
        return Err(format!(
            "parallelism p={} is above the limit of {ARGON2_LANES_MAX}",
            params.p_cost()
        ));
    }
    if hash.hash.is_none() {
        return Err("no hash output".into());
    }
    Ok(())
}

/// A fixed argon2id hash (of a random password nobody knows, default
/// parameters) verified for unknown users, so that "no such user" takes as
/// long as "wrong password" and the timing does not tell which names exist.
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$cmluZ21xLWR1bW15LXNhbHQ$vRsrlqHrnkBm0sUgZqiSPx52IsOs6kDX30wgcEeYYDM";

impl UserStore {
    /// Parses a password file (see the module docs).
    pub fn parse(text: &[u8]) -> Result<UserStore, PasswordFileError> {
        let mut users = HashMap::new();
        for line in parse_lines(text)? {
            if let Line::User { name, entry } = line {
                users.insert(Box::from(name.as_bytes()), entry);
            }
        }
        Ok(UserStore { users })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the store has no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// A user's entry.
    pub fn get(&self, username: &[u8]) -> Option<&UserEntry> {
        self.users.get(username)
    }

    /// Whether `password` is `username`'s password. Slow (argon2): call it
    /// off the shard. Unknown users cost the same as known ones; nothing is
    /// cached, so a wrong password can never pass.
    pub fn verify(&self, username: &[u8], password: &[u8]) -> bool {
        if password.len() > PASSWORD_MAX_BYTES || username.len() > USERNAME_MAX_BYTES {
            return false;
        }
        match self.users.get(username) {
            Some(entry) => verify_phc(&entry.phc, password),
            None => {
                // Same work, result ignored: the user does not exist.
                let _same_cost: bool = verify_phc(DUMMY_PHC, password);
                false
            }
        }
    }
}

/// Verifies `password` against an argon2id PHC string (constant-time compare
/// inside the `argon2` crate). A malformed string never verifies.
pub fn verify_phc(phc: &str, password: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default().verify_password(password, &hash).is_ok()
}

/// Hashes `password` with argon2id and the default parameters (m=19456 KiB,
/// t=2, p=1, the OWASP recommendation) and the caller's random `salt` (the
/// engine has no random source; the `ringmq passwd` command supplies 16
/// bytes from the OS).
pub fn hash_password(password: &[u8], salt: &[u8; 16]) -> Result<String, String> {
    let salt = SaltString::encode_b64(salt).map_err(|e| e.to_string())?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default());
    argon2
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The text of one line for `name` (no newline).
pub fn format_line(name: &str, entry: &UserEntry) -> String {
    match &entry.scram {
        Some(scram) => format!("{name}:{}:{}", entry.phc, scram.format()),
        None => format!("{name}:{}", entry.phc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pw: &str) -> String {
        hash_password(pw.as_bytes(), &[7; 16]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn dummy_hash_is_valid_argon2id() {
        assert_eq!(check_phc(DUMMY_PHC), Ok(()));
        assert!(!verify_phc(DUMMY_PHC, b""));
    }

    #[test]
    fn right_password_verifies_wrong_one_does_not() {
        let file = format!("# users\n\nalice:{}\n", hash("secret"));
        let store = UserStore::parse(file.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.len(), 1);
        assert!(store.verify(b"alice", b"secret"));
        assert!(!store.verify(b"alice", b"Secret"));
        assert!(!store.verify(b"alice", b""));
        assert!(!store.verify(b"bob", b"secret"));
    }

    #[test]
    fn password_length_limit_is_n_ok_n_plus_1_refused() {
        let pw = "x".repeat(PASSWORD_MAX_BYTES);
        let file = format!("u:{}\n", hash(&pw));
        let store = UserStore::parse(file.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(store.verify(b"u", pw.as_bytes()));
        let longer = format!("{pw}x");
        let file = format!("u:{}\n", hash(&longer));
        let store = UserStore::parse(file.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!store.verify(b"u", longer.as_bytes()));
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let h = hash("pw");
        let cases: Vec<(String, PasswordFileError)> = vec![
            (
                "alice\n".into(),
                PasswordFileError::MissingSeparator { line: 1 },
            ),
            (
                format!("#c\n:{h}\n"),
                PasswordFileError::BadUsername {
                    line: 2,
                    reason: "empty",
                },
            ),
            (
                format!("a:{h}\na:{h}\n"),
                PasswordFileError::DuplicateUser {
                    line: 2,
                    user: "a".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(UserStore::parse(text.as_bytes()), Err(want));
        }
        let e = UserStore::parse(b"a:plaintext\n").err();
        assert!(
            matches!(&e, Some(PasswordFileError::BadHash { line: 1, .. })),
            "{e:?}"
        );
        let md5 = "a:$1$abc$def\n";
        assert!(UserStore::parse(md5.as_bytes()).is_err());
        let argon2i = h.replace("$argon2id$", "$argon2i$");
        let e = UserStore::parse(format!("a:{argon2i}").as_bytes())
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("expected `argon2id`")),
            "{e:?}"
        );
        let greedy = h.replace("m=19456", "m=1048576");
        let e = UserStore::parse(format!("a:{greedy}").as_bytes())
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("memory cost")),
            "{e:?}"
        );
    }

    #[test]
    fn line_and_name_limits_are_n_ok_n_plus_1_refused() {
        let h = hash("pw");
        let name = "n".repeat(USERNAME_MAX_BYTES);
        assert!(UserStore::parse(format!("{name}:{h}").as_bytes()).is_ok());
        let e = UserStore::parse(format!("{name}n:{h}").as_bytes()).err();
        assert!(matches!(e, Some(PasswordFileError::BadUsername { .. })));

        let comment_ok = format!("#{}", "c".repeat(LINE_MAX_BYTES - 1));
        assert!(UserStore::parse(comment_ok.as_bytes()).is_ok());
        let comment_long = format!("#{}", "c".repeat(LINE_MAX_BYTES));
        assert_eq!(
            UserStore::parse(comment_long.as_bytes()),
            Err(PasswordFileError::LineTooLong {
                line: 1,
                bytes: LINE_MAX_BYTES + 1
            })
        );
        let big = vec![b'#'; FILE_MAX_BYTES + 1];
        assert_eq!(
            UserStore::parse(&big),
            Err(PasswordFileError::TooLarge {
                bytes: FILE_MAX_BYTES + 1
            })
        );
    }

    #[test]
    fn comments_and_order_survive_parse_lines() {
        let h = hash("pw");
        let text = format!("# head\nb:{h}\n\na:{h}\n");
        let lines = parse_lines(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], Line::Other("# head"));
        assert!(matches!(lines[1], Line::User { name: "b", .. }));
        assert_eq!(lines[2], Line::Other(""));
        assert!(matches!(lines[3], Line::User { name: "a", .. }));
    }
}
