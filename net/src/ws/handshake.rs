//! The server side of the WebSocket opening handshake (RFC 6455 section 4):
//! parse one HTTP/1.1 upgrade request from a bounded buffer and answer it
//! with `101 Switching Protocols` or a refusal (400, 403, 404, 426).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::WsSettings;

/// RFC 6455's fixed GUID appended to the client's key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Subprotocols a client may offer, in the order the broker prefers them
/// (MQTT 5.0 and 3.1.1 section 6 say `mqtt`; old 3.1 clients send
/// `mqttv3.1`).
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Why a handshake was refused, with the HTTP status sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub detail: String,
}

impl Refusal {
    fn new(status: u16, reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason,
            detail: detail.into(),
        }
    }

    /// The HTTP response carrying this refusal (the connection is then
    /// closed).
    pub fn response(&self) -> Vec<u8> {
        let extra = if self.status == 426 {
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {}\r\n{extra}Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
            self.status,
            self.reason,
            self.detail.len(),
            self.detail
        )
        .into_bytes()
    }
}

/// A request the broker accepted: the `101` response to send and the
/// subprotocol chosen (`None` when the client offered none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub response: Vec<u8>,
    pub subprotocol: Option<&'static str>,
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + ACCEPT_GUID.len());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(ACCEPT_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    STANDARD.encode(digest.as_ref())
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Judges one complete request head (up to and including the blank line).
pub fn judge(head: &[u8], settings: &WsSettings) -> Result<Accepted, Refusal> {
    let bad = |detail: &str| Refusal::new(400, "Bad Request", detail);
    let text = std::str::from_utf8(head).map_err(|_| bad("request is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(bad("malformed request line")),
    };
    if version != "HTTP/1.1" {
        return Err(bad("HTTP/1.1 required"));
    }
    if method != "GET" {
        return Err(Refusal::new(405, "Method Not Allowed", "GET required"));
    }
    let path = target.split('?').next().unwrap_or_default();
    let (mut upgrade, mut connection, mut version13, mut key) = (false, false, None, None);
    let (mut origin, mut protocols) = (None, Vec::new());
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("malformed header line"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade |= has_token(value, "websocket"),
            "connection" => connection |= has_token(value, "upgrade"),
            "sec-websocket-version" => version13 = Some(value == "13"),
            "sec-websocket-key" => key = Some(value.to_string()),
            "origin" => origin = Some(value.to_string()),
            "sec-websocket-protocol" => {
                protocols.extend(value.split(',').map(|p| p.trim().to_string()))
            }
            _ => {}
        }
    }
    if path != settings.path {
        return Err(Refusal::new(
            404,
            "Not Found",
            format!("the MQTT WebSocket endpoint is {}", settings.path),
        ));
    }
    if !upgrade || !connection {
        return Err(bad("not a WebSocket upgrade request"));
    }
    match version13 {
        Some(true) => {}
        _ => {
            return Err(Refusal::new(
                426,
                "Upgrade Required",
                "WebSocket version 13 required",
            ))
        }
    }
    let key = match key {
        Some(k) if !k.is_empty() => k,
        _ => return Err(bad("Sec-WebSocket-Key missing")),
    };
    if !settings.allowed_origins.is_empty() {
        // A request without Origin is not from a browser (browsers always
        // send it); the allow-list protects browsers' users, so it passes.
        if let Some(o) = &origin {
            if !settings.allowed_origins.iter().any(|a| a == o) {
                return Err(Refusal::new(403, "Forbidden", "origin not allowed"));
            }
        }
    }
    let subprotocol = if protocols.is_empty() {
        None
    } else {
        match SUBPROTOCOLS
            .iter()
            .find(|s| protocols.iter().any(|p| p == *s))
        {
            Some(s) => Some(*s),
            None => {
                return Err(bad(
                    "no supported subprotocol offered (mqtt or mqttv3.1 expected)",
                ))
            }
        }
    };
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(&key)
    );
    if let Some(p) = subprotocol {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(p);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    Ok(Accepted {
        response: response.into_bytes(),
        subprotocol,
    })
}
