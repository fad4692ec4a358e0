//! WebSocket (RFC 6455) as a byte transform between the socket (or TLS)
//! and the engine, for MQTT over WebSocket (MQTT 5.0 and 3.1.1 section 6).
//!
//! ```text
//!   socket/TLS ──HTTP upgrade, frames──▶ WsSession::read ──MQTT bytes──▶ Handler::on_bytes
//!   socket/TLS ◀──101, frames, pong, close── WsSession::{take_output, frame} ◀── take_outgoing
//! ```
//!
//! [`WsSession`] does no I/O and works on caller-owned buffers, like
//! [`crate::tls::TlsSession`]: the monoio driver (`conn`) uses it, and a
//! native io_uring loop could too; the engine keeps seeing MQTT bytes.
//!
//! Why not tungstenite (the design's choice): its `WebSocket` owns a
//! `Read + Write` stream and hands back whole messages, so a frame is
//! buffered entirely before the engine sees a byte, and its state is not
//! something a hand-off can carry as plain data with the partial input the
//! routing read took. The server side MQTT needs is small: the handshake
//! (module `handshake`) and a streaming frame decoder that unmasks payload
//! bytes in place as they arrive, so memory per connection stays the
//! driver's read buffer plus at most [`HEADER_MAX_BYTES`] of a partial
//! header and [`CONTROL_PAYLOAD_MAX_BYTES`] of a control frame.
//!
//! Rules enforced (each refusal closes the connection):
//! - the request head is at most `handshake_max_bytes` (else 400);
//! - client frames must be masked, RSV bits clear, control frames unfragmented
//!   and at most 125 bytes (else close 1002);
//! - text frames are refused (close 1003: MQTT travels in binary frames);
//! - a frame payload over `frame_max_bytes` is refused (close 1009).
//!
//! A session is `Send` and plain data: a connection handed to its owner
//! shard carries it (with the partial header it may hold).
//!
//! The same session speaks the client side ([`WsSession::client`], module
//! `client`: loadgen and the client crate): it sends the upgrade request,
//! holds the MQTT bytes framed before the `101` until it arrives, masks
//! what it sends (split into frames of at most `frame_max_bytes`) and
//! refuses masked frames from the server.

pub mod client;
pub mod handshake;

use bytes::BytesMut;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const HEADER_MAX_BYTES: usize = 14;
/// Largest control frame payload (RFC 6455 5.5).
pub const CONTROL_PAYLOAD_MAX_BYTES: usize = 125;

/// Close status codes the broker sends (RFC 6455 7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

const FIN: u8 = 0x80;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A WebSocket listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// The request path MQTT is served on (other paths get 404).
    pub path: String,
    /// Browser origins allowed to connect; empty allows any. A request
    /// without `Origin` (not from a browser) is allowed.
    pub allowed_origins: Vec<String>,
    /// Largest HTTP upgrade request head, in bytes.
    pub handshake_max_bytes: usize,
    /// Largest frame payload a client may send, in bytes (close 1009).
    pub frame_max_bytes: u64,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            path: "/mqtt".into(),
            allowed_origins: Vec::new(),
            handshake_max_bytes: 8 * 1024,
            frame_max_bytes: 2 * 1024 * 1024,
        }
    }
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// The upgrade request was refused (the HTTP response is queued).
    Handshake(handshake::Refusal),
    /// A frame broke a rule; a close frame with this code is queued.
    Frame { code: u16, detail: &'static str },
    /// Client side: the server's answer to the upgrade was not a valid `101`.
    Upgrade(String),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Handshake(r) => {
                write!(f, "WebSocket upgrade refused: {} {}", r.status, r.detail)
            }
            WsError::Frame { code, detail } => {
                write!(f, "WebSocket frame refused ({code}): {detail}")
            }
            WsError::Upgrade(e) => write!(f, "WebSocket upgrade failed: {e}"),
        }
    }
}

impl std::error::Error for WsError {}

/// What reading some input produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRead {
    /// Go on reading (MQTT bytes, if any, were appended).
    Open,
    /// The client sent a close frame (the reply is queued): end of stream.
    PeerClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the complete upgrade request.
    Handshake,
    Open,
    /// A close frame was sent or received, or the handshake failed:
    /// input is ignored, nothing more is framed.
    Closed,
}

/// One server-side WebSocket session over caller-owned buffers.
#[derive(Debug)]
pub struct WsSession {
    settings: std::sync::Arc<WsSettings>,
    phase: Phase,
    /// The request head so far (handshake phase only).
    request: Vec<u8>,
    /// A frame header not yet complete.
    header: [u8; HEADER_MAX_BYTES],
    header_len: usize,
    /// The current frame: payload bytes still to come, mask, opcode.
    remaining: u64,
    mask: [u8; 4],
    mask_pos: usize,
    opcode: u8,
    /// Inside a fragmented binary message (continuations expected).
    fragmented: bool,
    /// The control frame payload being collected.
    control: Vec<u8>,
    /// Bytes the session queued itself: the handshake response, pongs,
    /// close frames.
    output: Vec<u8>,
    close_sent: bool,
    /// The current frame is masked (client frames; the server's are not).
    masked: bool,
    /// Set on a client session.
    client: Option<Box<ClientSide>>,
}

/// What only a client session has.
#[derive(Debug)]
struct ClientSide {
    settings: client::WsClientSettings,
    key: String,
    masks: client::MaskKeys,
    /// Frames made before the `101` arrived (sent once it has).
    held: Vec<u8>,
}

impl WsSession {
    /// A session for a newly accepted connection (expects the upgrade
    /// request first).
    pub fn new(settings: std::sync::Arc<WsSettings>) -> WsSession {
        WsSession {
            settings,
            phase: Phase::Handshake,
            request: Vec::new(),
            header: [0; HEADER_MAX_BYTES],
            header_len: 0,
            remaining: 0,
            mask: [0; 4],
            mask_pos: 0,
            opcode: 0,
            fragmented: false,
            control: Vec::new(),
            output: Vec::new(),
            close_sent: false,
            masked: false,
            client: None,
        }
    }

    /// A client session: the upgrade request is queued at once
    /// ([`WsSession::take_output`]); MQTT bytes framed before the server's
    /// `101` are held and sent after it. Fails only without a system
    /// random source (for the key and the masks).
    pub fn client(settings: client::WsClientSettings) -> Result<WsSession, WsError> {
        let random = client::system_random().map_err(WsError::Upgrade)?;
        let mut key_bytes = [0u8; 16];
        key_bytes.copy_from_slice(&random[..16]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&random[16..]);
        let key = client::new_key(key_bytes);
        let mut session = WsSession::new(std::sync::Arc::new(WsSettings {
            handshake_max_bytes: settings.response_max_bytes,
            // The decoder streams a frame's payload into the driver's read
            // buffer (bounded there), so a server's large frame costs no
            // more memory than several small ones.
            frame_max_bytes: u64::MAX,
            ..WsSettings::default()
        }));
        session.output = client::request(&settings, &key);
        session.client = Some(Box::new(ClientSide {
            settings,
            key,
            masks: client::MaskKeys::new(u64::from_be_bytes(seed)),
            held: Vec::new(),
        }));
        Ok(session)
    }

    /// Whether the upgrade is still being read.
    pub fn is_handshaking(&self) -> bool {
        self.phase == Phase::Handshake
    }

    /// Whether the session can still carry MQTT bytes out (upgrade done,
    /// no close frame sent or received).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Decodes the input at `buf[from..]` in place: the payload of binary
    /// frames replaces it, unmasked, so `buf` ends as `buf[..from]` plus the
    /// MQTT bytes this input carried. Handshake bytes, frame headers and
    /// control frames are consumed (a partial header is kept in the
    /// session). Replies (101, pong, close) are queued: check
    /// [`WsSession::wants_write`]. Work and memory are bounded by the input.
    pub fn read(&mut self, buf: &mut BytesMut, from: usize) -> Result<WsRead, WsError> {
        let mut r = from;
        if self.phase == Phase::Handshake {
            r = match self.read_request(buf, from) {
                Ok(r) => r,
                Err(e) => {
                    buf.truncate(from);
                    return Err(e);
                }
            };
            if self.phase == Phase::Handshake {
                buf.truncate(from);
                return Ok(WsRead::Open);
            }
        }
        if self.phase == Phase::Closed {
            buf.truncate(from);
            return Ok(WsRead::PeerClosed);
        }
        let mut w = from;
        let end = buf.len();
        let mut outcome = Ok(WsRead::Open);
        while r < end {
            if self.remaining == 0 {
                // Collect a header byte by byte (at most 14).
                self.header[self.header_len] = buf[r];
                self.header_len += 1;
                r += 1;
                match self.parse_header() {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
                if self.remaining == 0 {
                    match self.frame_done() {
                        Ok(WsRead::Open) => continue,
                        other => {
                            outcome = other;
                            break;
                        }
                    }
                }
                continue;
            }
            let n = usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(end - r);
            if self.opcode == OP_BINARY || self.opcode == OP_CONTINUATION {
                buf.copy_within(r..r + n, w);
                if self.masked {
                    for b in &mut buf[w..w + n] {
                        *b ^= self.mask[self.mask_pos];
                        self.mask_pos = (self.mask_pos + 1) & 3;
                    }
                }
                w += n;
            } else {
                for &b in &buf[r..r + n] {
                    self.control.push(b ^ self.mask[self.mask_pos]);
                    self.mask_pos = (self.mask_pos + 1) & 3;
                }
            }
            r += n;
            self.remaining -= n as u64;
            if self.remaining == 0 {
                match self.frame_done() {
                    Ok(WsRead::Open) => {}
                    other => {
                        outcome = other;
                        break;
                    }
                }
            }
        }
        buf.truncate(w);
        if let Err(WsError::Frame { code, .. }) = &outcome {
            self.queue_close(*code);
        }
        outcome
    }

    fn read_request(&mut self, buf: &mut BytesMut, from: usize) -> Result<usize, WsError> {
        let input = &buf[from..];
        let limit = self.settings.handshake_max_bytes;
        let before = self.request.len();
        // Look for the blank line across the previous and the new bytes.
        let scan_from = before.saturating_sub(3);
        let room = (limit + 1).saturating_sub(before);
        self.request
            .extend_from_slice(&input[..input.len().min(room)]);
        let found = self.request[scan_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| scan_from + p + 4);
        let Some(head_len) = found else {
            if self.request.len() > limit {
                return Err(self.head_too_long(limit));
            }
            return Ok(buf.len());
        };
        if head_len > limit {
            return Err(self.head_too_long(limit));
        }
        let head = std::mem::take(&mut self.request);
        if let Some(side) = self.client.as_mut() {
            if let Err(e) = client::check_response(&head[..head_len], &side.key) {
                self.phase = Phase::Closed;
                return Err(WsError::Upgrade(e));
            }
            self.output.append(&mut side.held);
            self.phase = Phase::Open;
            return Ok(from + (head_len - before));
        }
        match handshake::judge(&head[..head_len], &self.settings) {
            Ok(accepted) => {
                self.output.extend_from_slice(&accepted.response);
                self.phase = Phase::Open;
                // Bytes after the head (frames sent early) start here.
                Ok(from + (head_len - before))
            }
            Err(refusal) => Err(self.refuse(refusal)),
        }
    }

    /// The request (server) or response (client) head is over `limit`.
    fn head_too_long(&mut self, limit: usize) -> WsError {
        if self.client.is_some() {
            self.phase = Phase::Closed;
            return WsError::Upgrade(format!("response head over {limit} bytes"));
        }
        self.refuse(handshake::Refusal {
            status: 400,
            reason: "Bad Request",
            detail: format!("upgrade request over {limit} bytes"),
        })
    }

    fn refuse(&mut self, refusal: handshake::Refusal) -> WsError {
        self.output.extend_from_slice(&refusal.response());
        self.phase = Phase::Closed;
        self.request = Vec::new();
        WsError::Handshake(refusal)
    }

    /// Parses the header collected so far: `Ok(true)` once complete.
    fn parse_header(&mut self) -> Result<bool, WsError> {
        let h = &self.header[..self.header_len];
        if h.len() < 2 {
            return Ok(false);
        }
        let ext = match h[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = h[1] & 0x80 != 0;
        let need = 2 + ext + if masked { 4 } else { 0 };
        if h.len() < need {
            return Ok(false);
        }
        let proto = |detail| WsError::Frame {
            code: close_code::PROTOCOL_ERROR,
            detail,
        };
        if self.client.is_none() && !masked {
            return Err(proto("client frames must be masked"));
        }
        if self.client.is_some() && masked {
            return Err(proto("server frames must not be masked"));
        }
        if h[0] & 0x70 != 0 {
            return Err(proto("reserved bits set"));
        }
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0f;
        let len = match ext {
            0 => u64::from(h[1] & 0x7f),
            2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            _ => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                u64::from_be_bytes(b)
            }
        };
        let mut mask = [0u8; 4];
        if masked {
            mask.copy_from_slice(&h[2 + ext..need]);
        }
        match opcode {
            OP_BINARY if self.fragmented => {
                return Err(proto("new message inside a fragmented one"))
            }
            OP_BINARY => self.fragmented = !fin,
            OP_CONTINUATION if !self.fragmented => {
                return Err(proto("continuation without a message"))
            }
            OP_CONTINUATION => self.fragmented = !fin,
            OP_TEXT => {
                return Err(WsError::Frame {
                    code: close_code::UNSUPPORTED_DATA,
                    detail: "text frame (MQTT needs binary frames)",
                })
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > CONTROL_PAYLOAD_MAX_BYTES as u64 {
                    return Err(proto("fragmented or oversized control frame"));
                }
            }
            _ => return Err(proto("unknown opcode")),
        }
        if len > self.settings.frame_max_bytes {
            return Err(WsError::Frame {
                code: close_code::MESSAGE_TOO_BIG,
                detail: "frame payload over frame_max_bytes",
            });
        }
        self.opcode = opcode;
        self.masked = masked;
        self.mask = mask;
        self.mask_pos = 0;
        self.remaining = len;
        self.header_len = 0;
        self.control.clear();
        Ok(true)
    }

    /// The current frame's payload is complete.
    fn frame_done(&mut self) -> Result<WsRead, WsError> {
        match self.opcode {
            OP_PING => {
                let payload = std::mem::take(&mut self.control);
                let mask = self.client.as_mut().map(|c| c.masks.next());
                frame_into(&mut self.output, FIN | OP_PONG, &payload, mask);
            }
            OP_CLOSE => {
                // Echo the client's status code (RFC 6455 5.5.1).
                let code = if self.control.len() >= 2 {
                    u16::from_be_bytes([self.control[0], self.control[1]])
                } else {
                    close_code::NORMAL
                };
                self.queue_close(code);
                return Ok(WsRead::PeerClosed);
            }
            _ => {}
        }
        Ok(WsRead::Open)
    }

    /// Frames `payload` (MQTT bytes) as one binary frame into `out`
    /// (a client: masked frames of at most `frame_max_bytes` each, held
    /// until the upgrade is done). Nothing is framed once the session is
    /// closed, nor by a server still handshaking.
    pub fn frame(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if payload.is_empty() || self.phase == Phase::Closed {
            return;
        }
        let open = self.phase == Phase::Open;
        let Some(side) = self.client.as_mut() else {
            if open {
                frame_into(out, FIN | OP_BINARY, payload, None);
            }
            return;
        };
        let dest = if open { out } else { &mut side.held };
        let chunk = side.settings.frame_max_bytes.max(1);
        let mut pieces = payload.chunks(chunk).peekable();
        let mut opcode = OP_BINARY;
        while let Some(piece) = pieces.next() {
            let fin = if pieces.peek().is_none() { FIN } else { 0 };
            frame_into(dest, fin | opcode, piece, Some(side.masks.next()));
            opcode = OP_CONTINUATION;
        }
    }

    /// Queues a close frame with `code`, once; the session is closed.
    pub fn queue_close(&mut self, code: u16) {
        if self.phase == Phase::Open && !self.close_sent {
            let mask = self.client.as_mut().map(|c| c.masks.next());
            frame_into(&mut self.output, FIN | OP_CLOSE, &code.to_be_bytes(), mask);
            self.close_sent = true;
        }
        self.phase = Phase::Closed;
    }

    /// Whether the session queued bytes of its own.
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty()
    }

    /// Appends the bytes the session queued to `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }
}

/// One frame with first byte `head` (FIN and opcode): unmasked (server),
/// or masked with `mask` (client).
fn frame_into(out: &mut Vec<u8>, head: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(head);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().zip(m.iter().cycle()).map(|(b, k)| b ^ k));
        }
    }
}

#[cfg(test)]
mod tests;
