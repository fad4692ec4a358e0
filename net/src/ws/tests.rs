//! The WebSocket transform on buffers: upgrade, frames split and joined,
//! control frames, limits.

use std::sync::Arc;

use bytes::BytesMut;

use super::handshake::accept_key;
use super::*;

fn settings() -> Arc<WsSettings> {
    Arc::new(WsSettings {
        path: "/mqtt".into(),
        allowed_origins: vec!["https://ok.example".into()],
        handshake_max_bytes: 1024,
        frame_max_bytes: 1000,
    })
}

fn request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn feed(s: &mut WsSession, input: &[u8]) -> (Result<WsRead, WsError>, Vec<u8>) {
    let mut buf = BytesMut::from(input);
    let r = s.read(&mut buf, 0);
    (r, buf.to_vec())
}

fn output(s: &mut WsSession) -> String {
    let mut out = Vec::new();
    s.take_output(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn open() -> WsSession {
    let mut s = WsSession::new(settings());
    let (r, plain) = feed(
        &mut s,
        request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n").as_bytes(),
    );
    assert_eq!(r, Ok(WsRead::Open));
    assert!(plain.is_empty());
    let out = output(&mut s);
    assert!(out.starts_with("HTTP/1.1 101 "), "{out}");
    s
}

#[test]
fn accept_key_matches_rfc_example() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn upgrade_negotiates_mqtt_and_answers_101() {
    let mut s = WsSession::new(settings());
    let (r, _) = feed(
        &mut s,
        request(
            "/mqtt?x=1",
            "Sec-WebSocket-Protocol: foo, mqtt\r\nOrigin: https://ok.example\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(r, Ok(WsRead::Open));
    let out = output(&mut s);
    assert!(
        out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{out}"
    );
    assert!(out.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{out}");
    assert!(s.is_open());
}

#[test]
fn upgrade_accepts_mqttv31_and_no_subprotocol() {
    let mut s = WsSession::new(settings());
    let (r, _) = feed(
        &mut s,
        request("/mqtt", "Sec-WebSocket-Protocol: mqttv3.1\r\n").as_bytes(),
    );
    assert_eq!(r, Ok(WsRead::Open));
    assert!(output(&mut s).contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
    let mut s = WsSession::new(settings());
    assert_eq!(
        feed(&mut s, request("/mqtt", "").as_bytes()).0,
        Ok(WsRead::Open)
    );
    let out = output(&mut s);
    assert!(
        out.starts_with("HTTP/1.1 101 ") && !out.contains("Sec-WebSocket-Protocol"),
        "{out}"
    );
}

#[test]
fn upgrade_in_pieces_then_frame_in_same_read() {
    let mut s = WsSession::new(settings());
    let req = request("/mqtt", "");
    let (head, tail) = req.as_bytes().split_at(20);
    assert_eq!(feed(&mut s, head).0, Ok(WsRead::Open));
    assert!(!s.wants_write());
    let mut input = tail.to_vec();
    input.extend(client_frame(true, 2, b"\x10\x00"));
    let (r, plain) = feed(&mut s, &input);
    assert_eq!(r, Ok(WsRead::Open));
    assert_eq!(plain, b"\x10\x00");
    assert!(output(&mut s).starts_with("HTTP/1.1 101 "));
}

fn refused(req: &str, status: &str) {
    let mut s = WsSession::new(settings());
    let (r, plain) = feed(&mut s, req.as_bytes());
    assert!(matches!(r, Err(WsError::Handshake(_))), "{r:?}");
    assert!(plain.is_empty());
    let out = output(&mut s);
    assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
    assert!(!s.is_open());
}

#[test]
fn wrong_path_is_404() {
    refused(&request("/other", ""), "404");
}

#[test]
fn origin_not_allowed_is_403() {
    refused(&request("/mqtt", "Origin: https://evil.example\r\n"), "403");
}

#[test]
fn bad_upgrades_are_refused() {
    refused("POST /mqtt HTTP/1.1\r\n\r\n", "405");
    refused("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", "400");
    refused(
        &request("/mqtt", "").replace("Version: 13", "Version: 8"),
        "426",
    );
    refused(&request("/mqtt", "Sec-WebSocket-Protocol: chat\r\n"), "400");
    refused("garbage\r\n\r\n", "400");
}

#[test]
fn oversized_request_is_refused_without_blank_line() {
    let big = format!("GET /mqtt HTTP/1.1\r\nX: {}\r\n", "a".repeat(2000));
    refused(&big, "400");
}

#[test]
fn packet_split_over_frames_and_reads() {
    let mut s = open();
    let packet = b"\x30\x0a\x00\x03a/bhello";
    let mut input = client_frame(false, 2, &packet[..4]);
    input.extend(client_frame(true, 0, &packet[4..]));
    // Every split point of the input, including inside headers.
    for cut in 0..input.len() {
        let mut s = open();
        let (r1, p1) = feed(&mut s, &input[..cut]);
        let (r2, p2) = feed(&mut s, &input[cut..]);
        assert_eq!((r1, r2), (Ok(WsRead::Open), Ok(WsRead::Open)));
        assert_eq!([p1, p2].concat(), packet, "cut at {cut}");
    }
    assert_eq!(feed(&mut s, &input).1, packet);
}

#[test]
fn several_packets_in_one_frame_and_decoded_prefix_kept() {
    let mut s = open();
    let two = b"\xc0\x00\xc0\x00";
    let mut buf = BytesMut::from(&b"\x30"[..]); // a partial packet already decoded
    buf.extend_from_slice(&client_frame(true, 2, two));
    assert_eq!(s.read(&mut buf, 1), Ok(WsRead::Open));
    assert_eq!(&buf[..], b"\x30\xc0\x00\xc0\x00");
}

#[test]
fn ping_gets_pong_between_data() {
    let mut s = open();
    let mut input = client_frame(false, 2, b"\xc0");
    input.extend(client_frame(true, 9, b"hi"));
    input.extend(client_frame(true, 0, b"\x00"));
    let (r, plain) = feed(&mut s, &input);
    assert_eq!(r, Ok(WsRead::Open));
    assert_eq!(plain, b"\xc0\x00");
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(out, b"\x8a\x02hi");
    // A pong from the client is ignored.
    assert_eq!(
        feed(&mut s, &client_frame(true, 10, b"")).0,
        Ok(WsRead::Open)
    );
    assert!(!s.wants_write());
}

#[test]
fn client_close_is_echoed_and_ends_stream() {
    let mut s = open();
    let (r, _) = feed(&mut s, &client_frame(true, 8, &1001u16.to_be_bytes()));
    assert_eq!(r, Ok(WsRead::PeerClosed));
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(out, b"\x88\x02\x03\xe9");
    let mut framed = Vec::new();
    s.frame(b"\xd0\x00", &mut framed);
    assert!(framed.is_empty(), "nothing is sent after a close");
}

#[test]
fn broker_close_sends_status_code_once() {
    let mut s = open();
    let mut out = Vec::new();
    s.frame(b"\xe0\x00", &mut out);
    assert_eq!(out, b"\x82\x02\xe0\x00");
    s.queue_close(close_code::NORMAL);
    s.queue_close(close_code::NORMAL);
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(out, b"\x88\x02\x03\xe8");
}

#[test]
fn oversize_frame_closes_1009() {
    let mut s = open();
    let (r, _) = feed(&mut s, &client_frame(true, 2, &[0u8; 1001]));
    assert!(matches!(r, Err(WsError::Frame { code: 1009, .. })), "{r:?}");
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(out, b"\x88\x02\x03\xf1");
}

#[test]
fn unmasked_client_frame_closes_1002() {
    let mut s = open();
    let (r, plain) = feed(&mut s, b"\x82\x02\xc0\x00");
    assert!(matches!(r, Err(WsError::Frame { code: 1002, .. })), "{r:?}");
    assert!(plain.is_empty());
    let mut out = Vec::new();
    s.take_output(&mut out);
    assert_eq!(out, b"\x88\x02\x03\xea");
}

#[test]
fn text_frame_closes_1003() {
    let mut s = open();
    let (r, _) = feed(&mut s, &client_frame(true, 1, b"hi"));
    assert!(matches!(r, Err(WsError::Frame { code: 1003, .. })), "{r:?}");
}

#[test]
fn large_server_frames_use_extended_length() {
    let mut s = open();
    let mut out = Vec::new();
    s.frame(&[7u8; 300], &mut out);
    assert_eq!(&out[..4], &[0x82, 126, 1, 44]);
    assert_eq!(out.len(), 304);
}
