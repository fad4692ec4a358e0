//! The request parser on bytes: what is answered, what is refused with
//! which status, at the limits and one past them.

use super::request::*;

fn req(text: &str) -> Parsed {
    parse(text.as_bytes())
}

fn request(method: Method, path: &str, keep_alive: bool, head: &str) -> Parsed {
    Parsed::Request {
        request: Request {
            method,
            path: path.into(),
            keep_alive,
        },
        head_bytes: head.len(),
    }
}

#[test]
fn get_and_head_with_keep_alive_rules_of_each_version() {
    let h = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(req(h), request(Method::Get, "/metrics", true, h));
    let h = "HEAD /ready?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(req(h), request(Method::Head, "/ready", false, h));
    let h = "GET /health HTTP/1.0\r\n\r\n";
    assert_eq!(req(h), request(Method::Get, "/health", false, h));
    let h = "GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    assert_eq!(req(h), request(Method::Get, "/health", true, h));
    let h = "DELETE /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
    assert_eq!(req(h), request(Method::Other, "/metrics", true, h));
}

#[test]
fn a_pipelined_request_is_left_for_the_next_parse() {
    let first = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let both = format!("{first}GET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(req(&both), request(Method::Get, "/health", true, first));
}

#[test]
fn incomplete_until_the_blank_line_then_limited() {
    assert_eq!(req(""), Parsed::Incomplete);
    assert_eq!(
        req("GET /health HTTP/1.1\r\nHost: x\r\n"),
        Parsed::Incomplete
    );
    // A head of exactly the limit is read; one byte more is refused.
    let head = |len: usize| {
        let start = "GET / HTTP/1.1\r\nHost: x\r\nX: ";
        format!("{start}{}\r\n\r\n", "a".repeat(len - start.len() - 4))
    };
    assert!(matches!(
        req(&head(REQUEST_HEAD_MAX_BYTES)),
        Parsed::Request { .. }
    ));
    assert_eq!(
        req(&head(REQUEST_HEAD_MAX_BYTES + 1)),
        Parsed::Refused(Status::HeaderFieldsTooLarge)
    );
    let endless = "GET / HTTP/1.1\r\nX: ".to_string() + &"a".repeat(REQUEST_HEAD_MAX_BYTES);
    assert_eq!(req(&endless), Parsed::Refused(Status::HeaderFieldsTooLarge));
}

#[test]
fn header_count_is_limited() {
    let with = |n: usize| {
        let mut h = "GET / HTTP/1.1\r\nHost: x\r\n".to_string();
        for i in 1..n {
            h.push_str(&format!("X-{i}: v\r\n"));
        }
        h + "\r\n"
    };
    assert!(matches!(
        req(&with(REQUEST_HEADERS_MAX)),
        Parsed::Request { .. }
    ));
    assert_eq!(
        req(&with(REQUEST_HEADERS_MAX + 1)),
        Parsed::Refused(Status::HeaderFieldsTooLarge)
    );
}

#[test]
fn malformed_heads_are_refused_with_400_or_505() {
    let bad = Parsed::Refused(Status::BadRequest);
    for h in [
        "GARBAGE\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://x/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / FTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nBad : v\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(req(h), bad, "{h:?}");
    }
    assert_eq!(parse(b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n"), bad);
    assert_eq!(
        req("GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
        Parsed::Refused(Status::VersionNotSupported)
    );
    let h = "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    assert!(matches!(req(h), Parsed::Request { .. }));
}

#[test]
fn answers_carry_length_connection_and_allow() {
    let a = String::from_utf8(answer(Status::Ok, "text/plain", "ok\n", true, false))
        .unwrap_or_default();
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert!(a.contains("\r\nContent-Length: 3\r\n"));
    assert!(a.contains("\r\nConnection: keep-alive\r\n"));
    assert!(a.ends_with("\r\n\r\nok\n"));
    let h = String::from_utf8(answer(Status::Ok, "text/plain", "ok\n", false, true))
        .unwrap_or_default();
    assert!(
        h.contains("\r\nContent-Length: 3\r\n") && h.ends_with("\r\n\r\n"),
        "HEAD: {h}"
    );
    assert!(h.contains("\r\nConnection: close\r\n"));
    let m = String::from_utf8(answer(
        Status::MethodNotAllowed,
        "text/plain",
        "",
        false,
        false,
    ))
    .unwrap_or_default();
    assert!(
        m.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
            && m.contains("\r\nAllow: GET, HEAD\r\n")
    );
}
