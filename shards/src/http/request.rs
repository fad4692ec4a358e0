//! HTTP/1.1 requests and answers over buffers, for the operator endpoints
//! (`/metrics`, `/health`, `/ready`): no I/O here, so every malformed
//! input is tested on bytes (`http/tests.rs`). Only what those endpoints
//! need is accepted: `GET` or `HEAD` of an origin-form target, no body.
//! Everything else gets its status code and, where the rest of the input
//! cannot be trusted, `Connection: close`.

/// Most bytes of a request head (request line and headers), in bytes;
/// a longer one is answered 431 and the connection closed.
pub const REQUEST_HEAD_MAX_BYTES: usize = 8 * 1024;
/// Most header fields in one request; more: 431.
pub const REQUEST_HEADERS_MAX: usize = 64;

/// The methods told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other token: answered 405.
    Other,
}

/// A request head the endpoints can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The target's path, without the query.
    pub path: String,
    /// Whether the connection stays open after the answer (HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `keep-alive`).
    pub keep_alive: bool,
}

/// An answer's status (the ones this server sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeaderFieldsTooLarge,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::HeaderFieldsTooLarge => 431,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// What the bytes read so far hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// No complete head yet (and under the limit): read more.
    Incomplete,
    /// A head of `head_bytes` bytes; the next request starts after it.
    Request { request: Request, head_bytes: usize },
    /// Not a request this server answers: answer with the status, close.
    Refused(Status),
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(end) = find_head_end(buf) else {
        if buf.len() >= REQUEST_HEAD_MAX_BYTES {
            return Parsed::Refused(Status::HeaderFieldsTooLarge);
        }
        return Parsed::Incomplete;
    };
    if end > REQUEST_HEAD_MAX_BYTES {
        return Parsed::Refused(Status::HeaderFieldsTooLarge);
    }
    match parse_head(&buf[..end - 4]) {
        Ok(request) => Parsed::Request {
            request,
            head_bytes: end,
        },
        Err(status) => Parsed::Refused(status),
    }
}

/// The index just past the `\r\n\r\n` that ends the head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_head(head: &[u8]) -> Result<Request, Status> {
    let text = std::str::from_utf8(head).map_err(|_| Status::BadRequest)?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(Status::BadRequest)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if !is_token(method)
        || !target.starts_with('/')
        || target.bytes().any(|b| b <= b' ' || b == 0x7f)
    {
        return Err(Status::BadRequest);
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(Status::VersionNotSupported),
        _ => return Err(Status::BadRequest),
    };
    let mut keep_alive = http11;
    let mut host = false;
    let mut count = 0;
    for line in lines {
        count += 1;
        if count > REQUEST_HEADERS_MAX {
            return Err(Status::HeaderFieldsTooLarge);
        }
        // No obsolete line folding, no space before the colon (RFC 9112 5.1, 5.2).
        let (name, value) = line.split_once(':').ok_or(Status::BadRequest)?;
        if !is_token(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(Status::BadRequest);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("host") {
            if host {
                return Err(Status::BadRequest);
            }
            host = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            // No endpoint takes a body; its framing is not followed.
            return Err(Status::BadRequest);
        }
    }
    // RFC 9112 3.2: an HTTP/1.1 request without Host is answered 400.
    if http11 && !host {
        return Err(Status::BadRequest);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Request {
        method,
        path,
        keep_alive,
    })
}

/// An answer: status line, headers, and the body unless `head_only`.
pub fn answer(
    status: Status,
    content_type: &str,
    body: &str,
    keep_alive: bool,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        status.code(),
        status.reason(),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    if status == Status::MethodNotAllowed {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("Cache-Control: no-store\r\n\r\n");
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}
