//! Configuration errors: what went wrong, with the full key, the file and
//! the line, and the translation of toml/serde messages into them.

use std::fmt;

/// Why the configuration could not be loaded.
#[derive(Debug, PartialEq)]
pub enum ConfigError {
    /// The file could not be read.
    Read { origin: String, error: String },
    /// Not TOML.
    Syntax {
        origin: String,
        line: Option<usize>,
        message: String,
    },
    /// A key the schema does not have.
    UnknownKey {
        origin: String,
        line: Option<usize>,
        key: String,
        expected: String,
    },
    /// A value of the wrong type or out of the type's range.
    WrongType {
        origin: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
    /// A well-typed value outside its allowed range.
    Invalid {
        key: &'static str,
        value: String,
        expected: String,
    },
    /// Like `Invalid`, for a key whose path is computed
    /// (`listener[1].bind`).
    InvalidAt {
        key: String,
        value: String,
        expected: String,
    },
    /// The built-in defaults lack a key (a build error, caught by tests).
    MissingDefault { key: &'static str },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |line: &Option<usize>| line.map(|l| format!(" (line {l})")).unwrap_or_default();
        match self {
            ConfigError::Read { origin, error } => {
                write!(f, "cannot read config {origin}: {error}")
            }
            ConfigError::Syntax {
                origin,
                line,
                message,
            } => {
                write!(
                    f,
                    "config {origin} is not valid TOML{}: {message}",
                    at(line)
                )
            }
            ConfigError::UnknownKey {
                origin,
                line,
                key,
                expected,
            } => {
                write!(
                    f,
                    "unknown key `{key}` in config {origin}{}, expected one of {expected}",
                    at(line)
                )
            }
            ConfigError::WrongType {
                origin,
                line,
                key,
                message,
            } => {
                write!(
                    f,
                    "wrong type for key `{key}` in config {origin}{}: {message}",
                    at(line)
                )
            }
            ConfigError::Invalid {
                key,
                value,
                expected,
            } => {
                write!(
                    f,
                    "invalid value for `{key}`: {value} (expected {expected})"
                )
            }
            ConfigError::InvalidAt {
                key,
                value,
                expected,
            } => {
                write!(
                    f,
                    "invalid value for `{key}`: {value} (expected {expected})"
                )
            }
            ConfigError::MissingDefault { key } => {
                write!(
                    f,
                    "built-in defaults lack `{key}` (a bug in config/ringmq.toml)"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

pub(super) fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> Option<usize> {
    let start = span?.start.min(text.len());
    Some(
        text.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
    )
}

/// Turns a toml/serde message into one of our errors, naming the full key.
pub(super) fn classify(
    origin: &str,
    line: Option<usize>,
    path: &str,
    message: &str,
) -> ConfigError {
    let origin = origin.to_string();
    let path = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let key = if path.is_empty() || path.ends_with(field) {
            if path.is_empty() {
                field.to_string()
            } else {
                path.to_string()
            }
        } else {
            format!("{path}.{field}")
        };
        let expected = tail
            .trim_start_matches(',')
            .trim()
            .trim_start_matches("expected one of ")
            .trim_start_matches("expected ")
            .to_string();
        return ConfigError::UnknownKey {
            origin,
            line,
            key,
            expected,
        };
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return ConfigError::WrongType {
                origin,
                line,
                key: path.to_string(),
                message: format!("found {rest}"),
            };
        }
    }
    if message.starts_with("unknown variant") {
        return ConfigError::WrongType {
            origin,
            line,
            key: path.to_string(),
            message: message.to_string(),
        };
    }
    if !path.is_empty() && !message.contains('\n') {
        return ConfigError::WrongType {
            origin,
            line,
            key: path.to_string(),
            message: message.to_string(),
        };
    }
    ConfigError::Syntax {
        origin,
        line,
        message: message.replace('\n', "; "),
    }
}
