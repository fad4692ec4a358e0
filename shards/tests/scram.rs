//! Black-box SCRAM-SHA-256 (MQTT 5 enhanced authentication, RFC 5802 /
//! RFC 7677) against the real binary: a password file written by `ringmq
//! passwd --scram`, and a client that computes the exchange itself with
//! `ring` (PBKDF2, HMAC, SHA-256), independently of the broker's SCRAM code
//! (the engine's RustCrypto `hmac`/`sha2`). Right password: CONNACK 0x00
//! with a server signature the client verifies, then the session works;
//! wrong password and unknown user: CONNACK 0x86 and the connection closed.

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};
use ringmq_tests::{binary, packet, run_to_exit, Broker, RawClient};

const METHOD: &str = "SCRAM-SHA-256";

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringmq-scram-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    d
}

/// A broker whose password file has alice/wonderland with SCRAM
/// credentials (`ringmq passwd --scram`).
fn broker() -> Broker {
    let d = dir();
    let file = d.join("scram.passwd");
    if file.exists() {
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{e}"));
    }
    let file_s = file.display().to_string();
    let (status, _out, err) = run_to_exit(
        &bin(),
        &[
            "passwd",
            "-c",
            "-b",
            "--scram",
            &file_s,
            "alice",
            "wonderland",
        ],
        Duration::from_secs(30),
    );
    assert!(status.success(), "ringmq passwd --scram: {err}");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("scram-sha-256$"), "no SCRAM field: {text}");
    let cfg = d.join("scram.toml");
    std::fs::write(
        &cfg,
        format!("[auth]\nallow_anonymous = false\npassword_file = \"{file_s}\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Broker::start(&bin(), &["--config", &cfg.display().to_string()])
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(s.len())
        .unwrap_or_else(|e| panic!("{e}"))
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(s);
    out
}

/// Authentication Method (0x15) and Authentication Data (0x16) properties,
/// with their length varint in front.
fn auth_properties(data: &[u8]) -> Vec<u8> {
    let mut props = vec![0x15];
    props.extend(string(METHOD.as_bytes()));
    props.push(0x16);
    props.extend(string(data));
    let mut out = packet::varint(props.len());
    out.extend(props);
    out
}

/// CONNECT v5, clean start, no user name: the user is in `data`.
fn connect_scram(client_id: &str, data: &[u8]) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(5);
    body.push(0x02);
    body.extend_from_slice(&60u16.to_be_bytes());
    body.extend(auth_properties(data));
    body.extend(string(client_id.as_bytes()));
    packet::frame(0x10, &body)
}

/// AUTH with reason code 0x18 (continue authentication).
fn auth_continue(data: &[u8]) -> Vec<u8> {
    let mut body = vec![0x18];
    body.extend(auth_properties(data));
    packet::frame(0xf0, &body)
}

/// A CONNACK or AUTH read from the wire: reason code, method, data.
struct Reply {
    kind: u8,
    reason: u8,
    method: Option<String>,
    data: Option<Vec<u8>>,
}

fn read_varint(b: &[u8], at: &mut usize) -> usize {
    let mut n = 0usize;
    for shift in 0..4 {
        let byte = b[*at];
        *at += 1;
        n |= usize::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            break;
        }
    }
    n
}

fn read_two(b: &[u8], at: &mut usize) -> usize {
    let n = usize::from(u16::from_be_bytes([b[*at], b[*at + 1]]));
    *at += 2;
    n
}

/// Parses a CONNACK (0x20) or AUTH (0xf0) packet, properties included.
fn parse(p: &[u8]) -> Reply {
    let kind = p[0] & 0xf0;
    let mut at = 1;
    let remaining = read_varint(p, &mut at);
    assert_eq!(p.len(), at + remaining, "one whole packet: {p:02x?}");
    if kind == 0x20 {
        at += 1; // acknowledge flags
    }
    let reason = p[at];
    at += 1;
    let props_len = read_varint(p, &mut at);
    let end = at + props_len;
    let (mut method, mut data) = (None, None);
    while at < end {
        let id = p[at];
        at += 1;
        match id {
            // UTF-8 strings and binary data: 2-byte length.
            0x15 | 0x16 | 0x12 | 0x1a | 0x1c | 0x1f => {
                let n = read_two(p, &mut at);
                let v = p[at..at + n].to_vec();
                at += n;
                match id {
                    0x15 => method = Some(String::from_utf8(v).unwrap_or_default()),
                    0x16 => data = Some(v),
                    _ => {}
                }
            }
            0x26 => {
                for _ in 0..2 {
                    let n = read_two(p, &mut at);
                    at += n;
                }
            }
            0x11 | 0x27 => at += 4,
            0x13 | 0x21 | 0x22 => at += 2,
            0x24 | 0x25 | 0x28 | 0x29 | 0x2a => at += 1,
            other => panic!("unexpected property {other:#x} in {p:02x?}"),
        }
    }
    Reply {
        kind,
        reason,
        method,
        data,
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, msg).as_ref().to_vec()
}

/// The attributes of a SCRAM message (`a=value,b=value`).
fn attr(message: &str, name: char) -> &str {
    message
        .split(',')
        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {message}"))
}

/// Runs the exchange as `user` with `password`. Returns the CONNACK's
/// reason code and the client (open after a success).
fn scram_login(broker: &Broker, client_id: &str, user: &str, password: &str) -> (u8, RawClient) {
    let mut c = RawClient::connect(broker.addr());
    let mut nonce = [0u8; 18];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let client_nonce = B64.encode(nonce);
    let client_first_bare = format!("n={user},r={client_nonce}");
    c.send(&connect_scram(
        client_id,
        format!("n,,{client_first_bare}").as_bytes(),
    ));

    let first = parse(&c.read_packet());
    assert_eq!(first.kind, 0xf0, "AUTH expected");
    assert_eq!(first.reason, 0x18, "continue authentication");
    assert_eq!(first.method.as_deref(), Some(METHOD));
    let server_first =
        String::from_utf8(first.data.unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let combined_nonce = attr(&server_first, 'r');
    assert!(
        combined_nonce.starts_with(&client_nonce) && combined_nonce.len() > client_nonce.len(),
        "server nonce must extend ours: {server_first}"
    );
    let salt = B64
        .decode(attr(&server_first, 's'))
        .unwrap_or_else(|e| panic!("{e}"));
    let iterations: u32 = attr(&server_first, 'i')
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(iterations >= 4096, "RFC 7677 minimum: {iterations}");

    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap_or_else(|| panic!("zero iterations")),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, &client_key);
    let without_proof = format!("c=biws,r={combined_nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let client_signature = hmac_sha256(stored_key.as_ref(), auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&client_signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let client_final = format!("{without_proof},p={}", B64.encode(proof));
    c.send(&auth_continue(client_final.as_bytes()));

    let ack = parse(&c.read_packet());
    assert_eq!(ack.kind, 0x20, "CONNACK expected");
    if ack.reason == 0 {
        assert_eq!(ack.method.as_deref(), Some(METHOD));
        let server_final =
            String::from_utf8(ack.data.unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        let server_key = hmac_sha256(&salted, b"Server Key");
        let expected = hmac_sha256(&server_key, auth_message.as_bytes());
        assert_eq!(
            attr(&server_final, 'v'),
            B64.encode(expected),
            "the server proves it knows the credentials"
        );
    }
    (ack.reason, c)
}

#[test]
fn scram_sha256_right_password_logs_in_wrong_password_and_unknown_user_get_0x86() {
    let broker = broker();

    let (code, mut c) = scram_login(&broker, "scram-ok", "alice", "wonderland");
    assert_eq!(code, 0x00, "right password accepted");
    // The session works: subscribe and receive our own message.
    let mut sub = vec![0x00, 0x01, 0x00];
    sub.extend(string(b"scram/t"));
    sub.push(0x00);
    c.send(&packet::frame(0x82, &sub));
    let suback = c.read_packet();
    assert_eq!(suback.first(), Some(&0x90), "SUBACK: {suback:02x?}");
    let mut publish = string(b"scram/t");
    publish.push(0x00); // no properties
    publish.extend_from_slice(b"hi");
    let publish = packet::frame(0x30, &publish);
    c.send(&publish);
    c.expect(&publish);

    let (code, mut c) = scram_login(&broker, "scram-bad", "alice", "looking-glass");
    assert_eq!(code, 0x86, "wrong password: bad user name or password");
    assert!(c.expect_closed().is_empty(), "closed after the refusal");

    let (code, mut c) = scram_login(&broker, "scram-who", "mallory", "wonderland");
    assert_eq!(code, 0x86, "unknown user: same answer, same exchange");
    assert!(c.expect_closed().is_empty(), "closed after the refusal");
}
