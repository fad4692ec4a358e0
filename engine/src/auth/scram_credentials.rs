//! SCRAM-SHA-256 credentials as the password file stores them (RFC 5802
//! section 3: salt, iteration count, StoredKey, ServerKey), their file
//! format, and the HMAC / `Hi()` primitives the exchange in `scram.rs`
//! shares. Below both `password.rs` (which parses the field) and
//! `scram.rs` (which runs the exchange), so neither imports the other.

use base64ct::{Base64, Encoding};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The MQTT Authentication Method name.
pub const METHOD: &str = "SCRAM-SHA-256";
/// Fewest iterations accepted in the file (RFC 7677 section 4: at least 4096).
pub const ITERATIONS_MIN: u32 = 4096;
/// Most iterations accepted in the file (the client pays for them).
pub const ITERATIONS_MAX: u32 = 10_000_000;
/// Iterations `ringmq passwd --scram` uses.
pub const ITERATIONS_DEFAULT: u32 = 4096;
/// Longest SCRAM message accepted from a client, in bytes.
pub const MESSAGE_MAX_BYTES: usize = 1024;
/// Salt length written by `ringmq passwd --scram`, in bytes.
pub const SALT_BYTES: usize = 16;
/// Most salt bytes accepted from the file.
pub const SALT_MAX_BYTES: usize = 64;
/// Fewest random bytes the server nonce is made of.
pub const NONCE_MIN_BYTES: usize = 18;

const FORMAT_PREFIX: &str = "scram-sha-256$";

/// One user's SCRAM-SHA-256 credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are password-equivalent for an attacker who also sees traffic:
        // never in logs.
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

pub(super) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `Hi(password, salt, i)` of RFC 5802 section 2.2 (PBKDF2-HMAC-SHA-256,
/// one block).
pub(super) fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &[&u]);
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

impl ScramCredentials {
    /// Derives the stored credentials from a password (slow: `iterations`
    /// HMACs; `ringmq passwd` and tests only).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramCredentials {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    /// The password file's third field.
    pub fn format(&self) -> String {
        format!(
            "{FORMAT_PREFIX}{}${}${}${}",
            self.iterations,
            Base64::encode_string(&self.salt),
            Base64::encode_string(&self.stored_key),
            Base64::encode_string(&self.server_key)
        )
    }

    /// Parses the password file's third field.
    pub fn parse(field: &str) -> Result<ScramCredentials, &'static str> {
        let rest = field
            .strip_prefix(FORMAT_PREFIX)
            .ok_or("expected `scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY`")?;
        let mut parts = rest.split('$');
        let (Some(i), Some(salt), Some(stored), Some(server), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err("expected `scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY`");
        };
        let iterations: u32 = i.parse().map_err(|_| "iterations is not a number")?;
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err("iterations out of range 4096..=10000000");
        }
        let salt = Base64::decode_vec(salt).map_err(|_| "salt is not base64")?;
        if salt.is_empty() || salt.len() > SALT_MAX_BYTES {
            return Err("salt must be 1..=64 bytes");
        }
        let key = |s: &str| -> Result<[u8; 32], &'static str> {
            let v = Base64::decode_vec(s).map_err(|_| "key is not base64")?;
            <[u8; 32]>::try_from(v.as_slice()).map_err(|_| "key is not 32 bytes")
        };
        Ok(ScramCredentials {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}
