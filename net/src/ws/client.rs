//! The client side of the WebSocket opening handshake (RFC 6455 section
//! 4.1): the upgrade request a client sends (subprotocol `mqtt`, as MQTT
//! 5.0 and 3.1.1 section 6 require) and the check of the server's answer
//! (`101`, `Upgrade`/`Connection`, `Sec-WebSocket-Accept` for our key, the
//! subprotocol). The session in the parent module frames and unframes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::handshake::accept_key;

/// The subprotocol a client offers (and requires back).
pub const SUBPROTOCOL: &str = "mqtt";

/// Where a client upgrades: the `Host` header and the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsClientSettings {
    /// `Host` header value (`name` or `name:port`).
    pub host: String,
    /// Request path, e.g. `/mqtt` (Mosquitto accepts any path).
    pub path: String,
    /// Largest frame payload loadgen sends, in bytes: a longer batch of
    /// MQTT bytes goes out as several frames (a packet split over frames).
    pub frame_max_bytes: usize,
    /// Largest response head accepted from the server, in bytes.
    pub response_max_bytes: usize,
}

impl Default for WsClientSettings {
    fn default() -> Self {
        WsClientSettings {
            host: "localhost".into(),
            path: "/mqtt".into(),
            frame_max_bytes: 64 * 1024,
            response_max_bytes: 8 * 1024,
        }
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key(random: [u8; 16]) -> String {
    STANDARD.encode(random)
}

/// The upgrade request for `settings` with `key`.
pub fn request(settings: &WsClientSettings, key: &str) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n",
        settings.path, settings.host
    )
    .into_bytes()
}

/// Checks one complete response head (up to and including the blank
/// line) against the request made with `key`: `Err` says what was wrong
/// (for a refusal, the status line).
pub fn check_response(head: &[u8], key: &str) -> Result<(), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, status) = (parts.next(), parts.next());
    if version != Some("HTTP/1.1") || status != Some("101") {
        return Err(format!("upgrade refused: {status_line:?}"));
    }
    let (mut upgrade, mut connection, mut accept, mut protocol) = (false, false, None, None);
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line {line:?}"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade |= value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-accept" => accept = Some(value.to_string()),
            "sec-websocket-protocol" => protocol = Some(value.to_string()),
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err("101 without Upgrade: websocket / Connection: Upgrade".into());
    }
    if accept.as_deref() != Some(accept_key(key).as_str()) {
        return Err("Sec-WebSocket-Accept does not match our key".into());
    }
    if protocol.as_deref() != Some(SUBPROTOCOL) {
        return Err(format!(
            "server chose subprotocol {protocol:?}, not {SUBPROTOCOL:?}"
        ));
    }
    Ok(())
}

/// Masking keys for a client's frames: xorshift64* seeded from the
/// system's random source once per session. RFC 6455 asks for
/// unpredictable keys so a browser's page cannot steer the bytes an
/// intermediary sees; a non-browser client sends its own bytes anyway,
/// and a system call per frame would cost more than the frame.
#[derive(Debug, Clone)]
pub(super) struct MaskKeys {
    state: u64,
}

impl MaskKeys {
    pub(super) fn new(seed: u64) -> MaskKeys {
        MaskKeys { state: seed | 1 }
    }

    pub(super) fn next(&mut self) -> [u8; 4] {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let b = v.to_be_bytes();
        [b[0], b[1], b[2], b[3]]
    }
}

/// 24 random bytes from the system: the key's 16 and the mask seed's 8.
pub(super) fn system_random() -> Result<[u8; 24], String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no system random source".to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;

    use super::super::{close_code, WsError, WsRead, WsSession, WsSettings};
    use super::*;

    #[test]
    fn request_offers_mqtt_and_a_valid_response_passes() {
        let settings = WsClientSettings {
            host: "127.0.0.1:9001".into(),
            ..WsClientSettings::default()
        };
        let key = new_key([7; 16]);
        let req = String::from_utf8(request(&settings, &key)).unwrap_or_default();
        assert!(req.starts_with("GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"));
        assert!(req.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
            accept_key(&key)
        );
        assert_eq!(check_response(ok.as_bytes(), &key), Ok(()));
    }

    #[test]
    fn refusals_and_wrong_answers_are_errors() {
        let key = new_key([1; 16]);
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let e = check_response(refused, &key).err().unwrap_or_default();
        assert!(e.contains("404 Not Found"), "{e}");
        let wrong_accept =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: AAAA\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
        let e = check_response(wrong_accept.as_bytes(), &key).err();
        assert!(e.unwrap_or_default().contains("Accept"));
        let no_protocol = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&key)
        );
        let e = check_response(no_protocol.as_bytes(), &key).err();
        assert!(e.unwrap_or_default().contains("subprotocol"));
    }

    fn read_all(s: &mut WsSession, input: &[u8]) -> (Result<WsRead, WsError>, Vec<u8>) {
        let mut buf = BytesMut::from(input);
        let r = s.read(&mut buf, 0);
        (r, buf.to_vec())
    }

    fn output(s: &mut WsSession) -> Vec<u8> {
        let mut out = Vec::new();
        s.take_output(&mut out);
        out
    }

    fn server() -> WsSession {
        WsSession::new(Arc::new(WsSettings::default()))
    }

    /// A client and a server session talking through buffers: the upgrade,
    /// MQTT bytes held until the 101, split over masked frames, unmasked
    /// server frames, ping/pong and close.
    #[test]
    fn client_session_talks_to_the_server_session() {
        let settings = WsClientSettings {
            frame_max_bytes: 7,
            ..WsClientSettings::default()
        };
        let mut client = match WsSession::client(settings) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let connect: Vec<u8> = (0u8..20).collect();
        let mut out = Vec::new();
        client.frame(&connect, &mut out);
        assert!(out.is_empty(), "MQTT bytes wait for the 101");
        let request = output(&mut client);
        let mut server = server();
        assert_eq!(read_all(&mut server, &request), (Ok(WsRead::Open), vec![]));
        let response = output(&mut server);
        assert!(response.starts_with(b"HTTP/1.1 101"));
        // The 101 and a server frame in one read: the frame's bytes come out.
        let mut input = response.clone();
        input.extend_from_slice(b"\x82\x02\x20\x02");
        assert_eq!(
            read_all(&mut client, &input),
            (Ok(WsRead::Open), b"\x20\x02".to_vec())
        );
        assert!(client.is_open());
        // The held CONNECT goes out as 3 masked frames (7 + 7 + 6 bytes).
        let frames = output(&mut client);
        assert_eq!(frames.len(), 3 * 6 + 20);
        assert_eq!(&frames[..2], &[0x02, 0x80 | 7], "first: binary, no FIN");
        assert_eq!(frames[13], 0x00, "then a continuation");
        assert_eq!(frames[26], 0x80, "the last continuation has FIN");
        assert_eq!(read_all(&mut server, &frames), (Ok(WsRead::Open), connect));
        // Split anywhere, server frames still decode.
        let mut head = BytesMut::from(&b"\x82"[..]);
        assert_eq!(client.read(&mut head, 0), Ok(WsRead::Open));
        assert!(head.is_empty());
        let mut rest = BytesMut::from(&b"\x03\xd0\x01\x00"[..]);
        assert_eq!(client.read(&mut rest, 0), Ok(WsRead::Open));
        assert_eq!(&rest[..], b"\xd0\x01\x00");
        // A ping from the server gets a masked pong the server accepts.
        assert_eq!(read_all(&mut client, b"\x89\x01p").0, Ok(WsRead::Open));
        let pong = output(&mut client);
        assert_eq!(&pong[..2], &[0x8A, 0x81]);
        assert_eq!(read_all(&mut server, &pong), (Ok(WsRead::Open), vec![]));
        // The client closes: a masked close frame the server echoes.
        client.queue_close(close_code::NORMAL);
        let close = output(&mut client);
        assert_eq!(read_all(&mut server, &close).0, Ok(WsRead::PeerClosed));
        assert_eq!(
            read_all(&mut client, &output(&mut server)).0,
            Ok(WsRead::PeerClosed)
        );
    }

    #[test]
    fn masked_server_frames_and_bad_upgrades_are_refused() {
        let mut client = match WsSession::client(WsClientSettings::default()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let request = output(&mut client);
        let mut server = server();
        assert_eq!(read_all(&mut server, &request).0, Ok(WsRead::Open));
        assert_eq!(
            read_all(&mut client, &output(&mut server)).0,
            Ok(WsRead::Open)
        );
        let (r, _) = read_all(&mut client, b"\x82\x81\x01\x02\x03\x04\x05");
        assert!(matches!(r, Err(WsError::Frame { code: 1002, .. })), "{r:?}");

        let mut client = match WsSession::client(WsClientSettings::default()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let (r, _) = read_all(&mut client, b"HTTP/1.1 404 Not Found\r\n\r\n");
        assert!(matches!(r, Err(WsError::Upgrade(_))), "{r:?}");
        assert!(!client.is_open());
    }

    #[test]
    fn mask_keys_vary() {
        let mut keys = MaskKeys::new(42);
        let a = keys.next();
        let b = keys.next();
        assert_ne!(a, b);
    }
}
