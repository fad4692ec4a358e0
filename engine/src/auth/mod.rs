//! Client authentication against a user store: the password file
//! ([`password`]), SCRAM-SHA-256 ([`scram`]), the per-address slow-down of
//! failed logins ([`throttle`]), and [`decide`], the one verification step
//! the runtime runs off the shard.
//!
//! The broker never verifies a password itself (argon2 is slow on purpose):
//! it emits `Event::Authenticate { conn, token, request }`, the runtime
//! runs [`decide`] on a helper thread and hands the [`AuthVerdict`] back
//! with `Broker::handle_auth_result(conn, token, verdict, now)`. The token
//! makes a verdict for a connection that has since closed (and whose id was
//! reused) harmless.

pub mod password;
pub mod scram;
pub mod scram_credentials;
pub mod throttle;

use std::fmt;

use bytes::Bytes;

use crate::codec::ReasonCode;
pub use password::UserStore;
pub use scram::ScramState;

/// What the broker asks the runtime to check. Its `Debug` never shows a
/// password or SCRAM data (events may be logged).
#[derive(Clone)]
pub enum AuthRequest {
    /// A CONNECT with a user name (and maybe a password).
    Password {
        username: Bytes,
        password: Option<Bytes>,
    },
    /// SCRAM-SHA-256 client-first message (CONNECT, or AUTH 0x19).
    ScramStart { data: Bytes },
    /// SCRAM-SHA-256 client-final message, with the state kept since
    /// server-first.
    ScramFinish { data: Bytes, state: Box<ScramState> },
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthRequest::Password { username, password } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .finish(),
            AuthRequest::ScramStart { .. } => f.write_str("ScramStart"),
            AuthRequest::ScramFinish { .. } => f.write_str("ScramFinish"),
        }
    }
}

impl AuthRequest {
    /// The user name the request is for, for logs (lossy UTF-8).
    pub fn username(&self) -> Option<String> {
        match self {
            AuthRequest::Password { username, .. } => {
                Some(String::from_utf8_lossy(username).into_owned())
            }
            AuthRequest::ScramFinish { state, .. } => {
                Some(String::from_utf8_lossy(&state.username).into_owned())
            }
            AuthRequest::ScramStart { .. } => None,
        }
    }
}

/// The answer to an [`AuthRequest`].
#[derive(Clone, Debug)]
pub enum AuthVerdict {
    /// Authenticated as `username`; `data` is the v5 Authentication Data to
    /// send with the CONNACK or AUTH 0x00 (SCRAM server-final).
    Accept {
        username: Bytes,
        data: Option<Bytes>,
    },
    /// Enhanced authentication goes on: send AUTH 0x18 with `data`, keep
    /// `state` for the client's next AUTH.
    Continue { data: Bytes, state: Box<ScramState> },
    /// Refused with this CONNACK reason (v5 code; v3.1.1 maps it:
    /// 0x86 -> 4, 0x87 -> 5, 0x89 -> 3).
    Refuse(ReasonCode),
}

impl AuthVerdict {
    /// Whether this verdict is a failed login (counted by the throttle).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            AuthVerdict::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD | ReasonCode::NOT_AUTHORIZED)
        )
    }
}

/// Runs one verification step against `store` (slow for passwords: call
/// it on a helper thread). `nonce`: at least [`scram::NONCE_MIN_BYTES`]
/// fresh random bytes, used by SCRAM's first step only.
pub fn decide(store: &UserStore, request: AuthRequest, nonce: &[u8]) -> AuthVerdict {
    match request {
        AuthRequest::Password { username, password } => {
            // No password, a wrong one, or an unknown user: all "bad user
            // name or password" (v3.1.1 return code 4, v5 0x86), so the
            // answer does not tell which names exist.
            let ok = match &password {
                Some(p) => store.verify(&username, p),
                None => false,
            };
            if ok {
                AuthVerdict::Accept {
                    username,
                    data: None,
                }
            } else {
                AuthVerdict::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            }
        }
        AuthRequest::ScramStart { data } => match scram::server_first(store, &data, nonce) {
            Ok((reply, state)) => AuthVerdict::Continue {
                data: Bytes::from(reply),
                state: Box::new(state),
            },
            Err(scram::ScramError::Malformed(_)) => AuthVerdict::Refuse(ReasonCode::NOT_AUTHORIZED),
            Err(scram::ScramError::BadProof) => {
                AuthVerdict::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            }
        },
        AuthRequest::ScramFinish { data, state } => match scram::server_final(&state, &data) {
            Ok(reply) => AuthVerdict::Accept {
                username: Bytes::from(state.username.clone()),
                data: Some(Bytes::from(reply)),
            },
            Err(scram::ScramError::Malformed(_)) => AuthVerdict::Refuse(ReasonCode::NOT_AUTHORIZED),
            Err(scram::ScramError::BadProof) => {
                AuthVerdict::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            }
        },
    }
}
