//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, for MQTT 5.0 enhanced
//! authentication (section 4.12) with Authentication Method
//! `SCRAM-SHA-256`.
//!
//! ```text
//!   client                                      server
//!   CONNECT  method, data = "n,,n=user,r=CNONCE"  ──▶  look up salt, iterations
//!            ◀── AUTH 0x18, data = "r=CNONCE SNONCE,s=SALT,i=4096"
//!   AUTH 0x18, data = "c=biws,r=CNONCE SNONCE,p=PROOF" ──▶ check the proof
//!            ◀── CONNACK 0x00, data = "v=SERVER-SIGNATURE"   (or 0x86)
//! ```
//!
//! Re-authentication on a live connection (section 4.12.1) is the same
//! exchange started by AUTH 0x19 and ended by AUTH 0x00.
//!
//! The server keeps, per user, `StoredKey = H(HMAC(SaltedPassword, "Client
//! Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")` with the
//! salt and iteration count: it never needs the password, and checking a
//! proof costs two HMACs and a hash (no slow KDF on the server). These
//! cannot be derived from an argon2 hash, so the password file carries them
//! as an optional third field, written by `ringmq passwd --scram`:
//!
//! ```text
//!   scram-sha-256$<iterations>$<salt b64>$<StoredKey b64>$<ServerKey b64>
//! ```
//!
//! Not supported: channel binding (`p=` in the GS2 header is refused), an
//! authorization identity other than empty, and SASLprep normalisation
//! (the password's bytes are used as they are; ASCII passwords are not
//! affected).

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::password::UserStore;
use super::scram_credentials::{hmac, salted_password};
pub use super::scram_credentials::{
    ScramCredentials, ITERATIONS_DEFAULT, ITERATIONS_MAX, ITERATIONS_MIN, MESSAGE_MAX_BYTES,
    METHOD, NONCE_MIN_BYTES, SALT_BYTES, SALT_MAX_BYTES,
};

/// What the server remembers between its first and its final message.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramState {
    /// The user name from client-first, as sent (after `=2C`/`=3D` decoding).
    pub username: Vec<u8>,
    client_first_bare: Vec<u8>,
    server_first: Vec<u8>,
    gs2_header: Vec<u8>,
    /// `None` for an unknown user (the exchange goes on with made-up salt
    /// and fails at the proof, so it does not reveal which names exist).
    credentials: Option<ScramCredentials>,
}

impl std::fmt::Debug for ScramState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramState").finish_non_exhaustive()
    }
}

/// Why an exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramError {
    /// The client's message is not valid SCRAM (or uses a feature not
    /// supported: channel binding, authzid, extensions it marked mandatory).
    Malformed(&'static str),
    /// Wrong password, or no such user.
    BadProof,
}

/// Decodes a `saslname` (RFC 5802 section 5.1: `=2C` is `,`, `=3D` is `=`).
fn decode_saslname(s: &[u8]) -> Result<Vec<u8>, ScramError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'=' {
            match s.get(i + 1..i + 3) {
                Some(b"2C") => out.push(b','),
                Some(b"3D") => out.push(b'='),
                _ => return Err(ScramError::Malformed("bad escape in user name")),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// The value of attribute `key` (`k=value`) of a comma-separated list item.
fn attr(item: &[u8], key: u8) -> Option<&[u8]> {
    match item {
        [k, b'=', rest @ ..] if *k == key => Some(rest),
        _ => None,
    }
}

/// Handles client-first; returns server-first and the state to keep.
/// `nonce` is at least [`NONCE_MIN_BYTES`] random bytes from the caller.
pub fn server_first(
    store: &UserStore,
    client_first: &[u8],
    nonce: &[u8],
) -> Result<(Vec<u8>, ScramState), ScramError> {
    if client_first.len() > MESSAGE_MAX_BYTES {
        return Err(ScramError::Malformed("message too long"));
    }
    if nonce.len() < NONCE_MIN_BYTES {
        return Err(ScramError::Malformed("server nonce too short"));
    }
    // gs2-header = gs2-cbind-flag "," [authzid] ","
    let mut fields = client_first.splitn(3, |&b| b == b',');
    let (Some(cbind), Some(authzid), Some(bare)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(ScramError::Malformed("no GS2 header"));
    };
    match cbind {
        b"n" | b"y" => {}
        _ if cbind.starts_with(b"p=") => {
            return Err(ScramError::Malformed("channel binding is not supported"))
        }
        _ => return Err(ScramError::Malformed("bad GS2 channel-binding flag")),
    }
    if !authzid.is_empty() {
        return Err(ScramError::Malformed(
            "an authorization identity is not supported",
        ));
    }
    let gs2_len = cbind.len() + authzid.len() + 2;
    let gs2_header = client_first.get(..gs2_len).unwrap_or_default().to_vec();
    let mut items = bare.split(|&b| b == b',');
    let first = items.next().unwrap_or_default();
    if first.starts_with(b"m=") {
        return Err(ScramError::Malformed("mandatory extension not supported"));
    }
    let name = attr(first, b'n').ok_or(ScramError::Malformed("expected n=USER"))?;
    let username = decode_saslname(name)?;
    let client_nonce = items
        .next()
        .and_then(|i| attr(i, b'r'))
        .ok_or(ScramError::Malformed("expected r=NONCE"))?;
    if client_nonce.is_empty()
        || client_nonce
            .iter()
            .any(|&b| !(0x21..=0x7e).contains(&b) || b == b',')
    {
        return Err(ScramError::Malformed("bad client nonce"));
    }
    let credentials = store.get(&username).and_then(|u| u.scram.clone());
    // Unknown user (or no SCRAM credentials): a salt derived from the name,
    // so that repeated tries see the same made-up salt.
    let (salt, iterations) = match &credentials {
        Some(c) => (c.salt.clone(), c.iterations),
        None => (
            hmac(b"ringmq-scram-unknown-user", &[&username])[..SALT_BYTES].to_vec(),
            ITERATIONS_DEFAULT,
        ),
    };
    let mut server_first = Vec::with_capacity(128);
    server_first.extend_from_slice(b"r=");
    server_first.extend_from_slice(client_nonce);
    server_first.extend_from_slice(Base64::encode_string(nonce).as_bytes());
    server_first.extend_from_slice(b",s=");
    server_first.extend_from_slice(Base64::encode_string(&salt).as_bytes());
    server_first.extend_from_slice(format!(",i={iterations}").as_bytes());
    let state = ScramState {
        username,
        client_first_bare: bare.to_vec(),
        server_first: server_first.clone(),
        gs2_header,
        credentials,
    };
    Ok((server_first, state))
}

/// Handles client-final; returns server-final (`v=...`) if the proof is right.
pub fn server_final(state: &ScramState, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
    if client_final.len() > MESSAGE_MAX_BYTES {
        return Err(ScramError::Malformed("message too long"));
    }
    // client-final = "c=" b64(gs2-header) ",r=" nonce *("," ext) ",p=" proof
    let proof_at =
        find_last(client_final, b",p=").ok_or(ScramError::Malformed("expected p=PROOF"))?;
    let without_proof = client_final.get(..proof_at).unwrap_or_default();
    let proof_b64 = client_final.get(proof_at + 3..).unwrap_or_default();
    let mut items = without_proof.split(|&b| b == b',');
    let cbind = items
        .next()
        .and_then(|i| attr(i, b'c'))
        .ok_or(ScramError::Malformed("expected c=BINDING"))?;
    if cbind != Base64::encode_string(&state.gs2_header).as_bytes() {
        return Err(ScramError::Malformed("channel binding does not match"));
    }
    let nonce = items
        .next()
        .and_then(|i| attr(i, b'r'))
        .ok_or(ScramError::Malformed("expected r=NONCE"))?;
    let expected_nonce = attr(
        state
            .server_first
            .split(|&b| b == b',')
            .next()
            .unwrap_or_default(),
        b'r',
    )
    .unwrap_or_default();
    if nonce != expected_nonce {
        return Err(ScramError::Malformed("nonce does not match"));
    }
    let proof = std::str::from_utf8(proof_b64)
        .ok()
        .and_then(|s| Base64::decode_vec(s).ok())
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
        .ok_or(ScramError::Malformed("proof is not 32 bytes of base64"))?;
    let Some(credentials) = &state.credentials else {
        return Err(ScramError::BadProof);
    };
    let auth_message: [&[u8]; 5] = [
        &state.client_first_bare,
        b",",
        &state.server_first,
        b",",
        without_proof,
    ];
    let client_signature = hmac(&credentials.stored_key, &auth_message);
    let mut client_key = proof;
    for (k, s) in client_key.iter_mut().zip(client_signature.iter()) {
        *k ^= s;
    }
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    if !bool::from(stored_key.ct_eq(&credentials.stored_key)) {
        return Err(ScramError::BadProof);
    }
    let server_signature = hmac(&credentials.server_key, &auth_message);
    let mut out = b"v=".to_vec();
    out.extend_from_slice(Base64::encode_string(&server_signature).as_bytes());
    Ok(out)
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The client side of an exchange, for tests and tools: client-final for a
/// given server-first, and the server signature the client must expect.
pub fn client_final(
    password: &[u8],
    client_first_bare: &[u8],
    server_first: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut nonce = None;
    let mut salt = None;
    let mut iterations = None;
    for item in server_first.split(|&b| b == b',') {
        if let Some(v) = attr(item, b'r') {
            nonce = Some(v);
        } else if let Some(v) = attr(item, b's') {
            salt = Base64::decode_vec(std::str::from_utf8(v).ok()?).ok();
        } else if let Some(v) = attr(item, b'i') {
            iterations = std::str::from_utf8(v).ok()?.parse::<u32>().ok();
        }
    }
    let (nonce, salt, iterations) = (nonce?, salt?, iterations?);
    let salted = salted_password(password, &salt, iterations);
    let client_key = hmac(&salted, &[b"Client Key"]);
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let mut without_proof = b"c=biws,r=".to_vec();
    without_proof.extend_from_slice(nonce);
    let auth_message: [&[u8]; 5] = [client_first_bare, b",", server_first, b",", &without_proof];
    let signature = hmac(&stored_key, &auth_message);
    let mut proof = client_key;
    for (p, s) in proof.iter_mut().zip(signature.iter()) {
        *p ^= s;
    }
    let server_key = hmac(&salted, &[b"Server Key"]);
    let mut expect = b"v=".to_vec();
    expect.extend_from_slice(Base64::encode_string(&hmac(&server_key, &auth_message)).as_bytes());
    let mut out = without_proof;
    out.extend_from_slice(b",p=");
    out.extend_from_slice(Base64::encode_string(&proof).as_bytes());
    Some((out, expect))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::{format_line, hash_password, UserEntry};

    /// RFC 7677 section 3 test vector: user "user", password "pencil".
    #[test]
    fn rfc7677_test_vector() {
        let salt = Base64::decode_vec("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap_or_default();
        let creds = ScramCredentials::derive(b"pencil", &salt, 4096);
        let client_first_bare = b"n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let Some((client_final, expect)) = client_final(b"pencil", client_first_bare, server_first)
        else {
            panic!("client_final")
        };
        assert_eq!(
            client_final,
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".to_vec()
        );
        assert_eq!(
            expect,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
        let state = ScramState {
            username: b"user".to_vec(),
            client_first_bare: client_first_bare.to_vec(),
            server_first: server_first.to_vec(),
            gs2_header: b"n,,".to_vec(),
            credentials: Some(creds),
        };
        assert_eq!(server_final(&state, &client_final), Ok(expect));
    }

    fn store_with(user: &str, password: &str) -> UserStore {
        let entry = UserEntry {
            phc: hash_password(password.as_bytes(), &[1; 16]).unwrap_or_default(),
            scram: Some(ScramCredentials::derive(
                password.as_bytes(),
                &[9; 16],
                4096,
            )),
        };
        let line = format_line(user, &entry);
        UserStore::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn exchange(store: &UserStore, user: &str, password: &str) -> Result<(), ScramError> {
        let bare = format!("n={user},r=abcdefghijkl");
        let first = format!("n,,{bare}");
        let (server_first_msg, state) = server_first(store, first.as_bytes(), &[42; 18])?;
        let (client_final_msg, expect) =
            client_final(password.as_bytes(), bare.as_bytes(), &server_first_msg)
                .ok_or(ScramError::Malformed("client"))?;
        let got = server_final(&state, &client_final_msg)?;
        assert_eq!(got, expect);
        Ok(())
    }

    #[test]
    fn full_exchange_right_and_wrong_password_unknown_user() {
        let store = store_with("alice", "secret");
        assert_eq!(exchange(&store, "alice", "secret"), Ok(()));
        assert_eq!(
            exchange(&store, "alice", "wrong"),
            Err(ScramError::BadProof)
        );
        assert_eq!(
            exchange(&store, "mallory", "secret"),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn unsupported_and_malformed_client_first() {
        let store = store_with("alice", "secret");
        let n = [1u8; 18];
        for (msg, why) in [
            (
                &b"p=tls-unique,,n=alice,r=x"[..],
                "channel binding is not supported",
            ),
            (
                b"n,a=bob,n=alice,r=x",
                "an authorization identity is not supported",
            ),
            (b"n,,r=x", "expected n=USER"),
            (b"n,,n=alice", "expected r=NONCE"),
            (b"q,,n=alice,r=x", "bad GS2 channel-binding flag"),
            (b"n,,n=al=4Bice,r=x", "bad escape in user name"),
        ] {
            assert_eq!(
                server_first(&store, msg, &n).map(|_| ()),
                Err(ScramError::Malformed(why)),
                "{}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn credentials_round_trip_through_the_file_format() {
        let c = ScramCredentials::derive(b"pw", &[3; 16], 4096);
        assert_eq!(ScramCredentials::parse(&c.format()), Ok(c));
        assert!(ScramCredentials::parse("scram-sha-256$4095$AAAA$AAAA$AAAA").is_err());
        assert!(ScramCredentials::parse("sha1$4096$AAAA$AAAA$AAAA").is_err());
    }
}
