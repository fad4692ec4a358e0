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
    /// Values that are each valid but do not make sense together.
    Conflict { message: String },
    /// The built-in defaults lack a key (a build error, caught by tests).
    MissingDefault { key: &'static str },
    /// The file did not load and looks like a Mosquitto `.conf`: the
    /// error, and the first line that gave it away.
    Mosquitto {
        inner: Box<ConfigError>,
        line: usize,
        text: String,
    },
}

/// Mosquitto directives whose presence as `NAME VALUE` (no `=`) marks a
/// Mosquitto configuration file.
const MOSQUITTO_DIRECTIVES: &[&str] = &[
    "listener",
    "port",
    "bind_address",
    "allow_anonymous",
    "password_file",
    "acl_file",
    "persistence",
    "persistence_location",
    "persistence_file",
    "log_dest",
    "log_type",
    "log_timestamp",
    "connection_messages",
    "cafile",
    "capath",
    "certfile",
    "keyfile",
    "require_certificate",
    "use_identity_as_username",
    "tls_version",
    "protocol",
    "per_listener_settings",
    "max_connections",
    "max_inflight_messages",
    "max_queued_messages",
    "message_size_limit",
    "include_dir",
    "pid_file",
    "user",
    "sys_interval",
    "autosave_interval",
    "retain_available",
    "set_tcp_nodelay",
];

/// The first line of `text` that is a Mosquitto directive (`listener 1883`,
/// `allow_anonymous true`), as `(line number, line)`.
pub(super) fn mosquitto_line(text: &str) -> Option<(usize, String)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let line = line.trim();
        if line.starts_with('#') || line.contains('=') {
            return None;
        }
        let (name, value) = line.split_once(char::is_whitespace)?;
        (MOSQUITTO_DIRECTIVES.contains(&name) && !value.trim().is_empty())
            .then(|| (i + 1, line.to_string()))
    })
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
            ConfigError::Conflict { message } => f.write_str(message),
            ConfigError::MissingDefault { key } => {
                write!(
                    f,
                    "built-in defaults lack `{key}` (a bug in config/ringmq.toml)"
                )
            }
            ConfigError::Mosquitto { inner, line, text } => {
                write!(
                    f,
                    "{inner}\nhint: this looks like a Mosquitto configuration file \
                     (line {line}: `{text}`); ringmq reads TOML. The table \
                     \"Mapping Mosquitto options\" in docs/security.md gives the \
                     ringmq key for each Mosquitto option, and `ringmq default-config` \
                     prints a complete ringmq file to start from"
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

pub(super) fn invalid(
    key: &'static str,
    value: impl fmt::Display,
    expected: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        expected: expected.into(),
    }
}

pub(super) fn in_range<T: PartialOrd + fmt::Display + Copy>(
    key: &'static str,
    v: T,
    (lo, hi): (T, T),
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(key, v, format!("{lo}..={hi}")));
    }
    Ok(())
}
