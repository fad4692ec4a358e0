//! The operator's HTTP endpoints, on listeners with `protocol = "http"`:
//! `GET /metrics` (Prometheus text format 0.0.4), `GET /health` (200 while
//! the process runs), `GET /ready` (200 when every listener is bound and
//! every shard runs, else 503). Any other path: 404; any other method:
//! 405.
//!
//! They run on one thread of their own (`ringmq-http`, a small epoll
//! monoio runtime), never on a shard: a scrape costs a shard only the
//! snapshot it is asked for (`metrics`). Every connection is bounded:
//! [`CONNECTIONS_MAX`] at once (more are answered 503 and closed, at most
//! [`REFUSING_MAX`] of them at a time), a head
//! of at most `REQUEST_HEAD_MAX_BYTES` that must arrive within
//! [`REQUEST_TIMEOUT_MS`], [`IDLE_TIMEOUT_MS`] between keep-alive
//! requests, [`WRITE_TIMEOUT_MS`] per answer. A malformed request gets its
//! 4xx, then the connection is closed gracefully (write side first, then
//! what the client still sends is read and discarded for at most
//! [`CLOSE_LINGER_MS`]), so the client reads the answer.

pub mod request;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use crate::metrics::exposition::{self, Meta};
use crate::metrics::MetricsHub;
use request::{answer, parse, Method, Parsed, Request, Status};

/// HTTP connections open at once (all HTTP listeners together).
pub const CONNECTIONS_MAX: usize = 64;
/// A request head must be complete this long after its first byte, in ms.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// A keep-alive connection may wait this long for its next request, in ms.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Writing one answer may take this long, in ms.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;
/// After a refusal, what the client still sends is read and discarded
/// for at most this long before the socket is closed, in ms.
pub const CLOSE_LINGER_MS: u64 = 1_000;
/// Connections over [`CONNECTIONS_MAX`] being answered 503 at once; past
/// this a new connection is closed without an answer.
pub const REFUSING_MAX: usize = 64;
/// Writing a 503 to a connection over the limit may take this long, in
/// ms (then it is closed, without lingering).
pub const REFUSE_WRITE_TIMEOUT_MS: u64 = 100;
/// Bytes read at once.
const READ_CHUNK_BYTES: usize = 4096;

/// What every connection of the HTTP thread shares.
struct Ctx {
    hub: Arc<MetricsHub>,
    ring_capacity_slots: usize,
    open: Cell<usize>,
    refusing: Cell<usize>,
}

/// Starts the HTTP thread on the bound `listeners` (non-blocking std
/// sockets). It runs until the process exits.
pub fn start(
    listeners: Vec<std::net::TcpListener>,
    hub: Arc<MetricsHub>,
    ring_capacity_slots: usize,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ringmq-http".into())
        .spawn(move || {
            let built = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            let mut rt = match built {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the HTTP runtime; /metrics, /health and /ready are not served");
                    return;
                }
            };
            rt.block_on(run(listeners, hub, ring_capacity_slots));
        })
        .map(drop)
}

async fn run(
    listeners: Vec<std::net::TcpListener>,
    hub: Arc<MetricsHub>,
    ring_capacity_slots: usize,
) {
    let ctx = Rc::new(Ctx {
        hub,
        ring_capacity_slots,
        open: Cell::new(0),
        refusing: Cell::new(0),
    });
    let mut tasks = Vec::new();
    for l in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => tasks.push(monoio::spawn(accept_loop(l, ctx.clone()))),
            Err(e) => tracing::error!(error = %e, "cannot adopt an HTTP listener"),
        }
    }
    for t in tasks {
        t.await;
    }
}

async fn accept_loop(listener: TcpListener, ctx: Rc<Ctx>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if ctx.open.get() >= CONNECTIONS_MAX {
                    // Dropped unanswered past REFUSING_MAX: a flood of
                    // connections holds at most that many more sockets,
                    // each for at most REFUSE_WRITE_TIMEOUT_MS.
                    if ctx.refusing.get() < REFUSING_MAX {
                        ctx.refusing.set(ctx.refusing.get() + 1);
                        let ctx = ctx.clone();
                        monoio::spawn(async move {
                            refuse_busy(stream).await;
                            ctx.refusing.set(ctx.refusing.get() - 1);
                        });
                    }
                    continue;
                }
                ctx.open.set(ctx.open.get() + 1);
                let ctx = ctx.clone();
                monoio::spawn(async move {
                    serve(stream, &ctx).await;
                    ctx.open.set(ctx.open.get() - 1);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                monoio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers 503 to a connection over [`CONNECTIONS_MAX`] (best effort,
/// within [`REFUSE_WRITE_TIMEOUT_MS`]) and closes it.
async fn refuse_busy(mut stream: TcpStream) {
    let body = "too many HTTP connections\n";
    let bytes = answer(Status::ServiceUnavailable, "text/plain", body, false, false);
    let limit = Duration::from_millis(REFUSE_WRITE_TIMEOUT_MS);
    if let Ok((Err(e), _)) = monoio::time::timeout(limit, stream.write_all(bytes)).await {
        tracing::debug!(error = %e, "HTTP 503 not written");
    }
}

/// Serves one connection's requests, in order, until it closes.
async fn serve(mut stream: TcpStream, ctx: &Ctx) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buf).await {
            ReadOutcome::Request(r) => r,
            ReadOutcome::Refused(status) => {
                let bytes = answer(
                    status,
                    "text/plain",
                    &format!("{}\n", status.code()),
                    false,
                    false,
                );
                return close_after(&mut stream, bytes).await;
            }
            ReadOutcome::Closed => return,
        };
        let (bytes, keep_alive) = respond(&request, ctx).await;
        if !keep_alive {
            return close_after(&mut stream, bytes).await;
        }
        if !write(&mut stream, bytes).await {
            return;
        }
    }
}

enum ReadOutcome {
    Request(Request),
    Refused(Status),
    /// EOF, an error or a timeout: nothing to answer.
    Closed,
}

/// Reads until `buf` starts with a whole request head (bounded in size
/// and time), and takes that head out of `buf`.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> ReadOutcome {
    let mut first_byte_at = (!buf.is_empty()).then(Instant::now);
    loop {
        match parse(buf) {
            Parsed::Request {
                request,
                head_bytes,
            } => {
                buf.drain(..head_bytes);
                return ReadOutcome::Request(request);
            }
            Parsed::Refused(status) => return ReadOutcome::Refused(status),
            Parsed::Incomplete => {}
        }
        let wait = match first_byte_at {
            None => Duration::from_millis(IDLE_TIMEOUT_MS),
            Some(at) => Duration::from_millis(REQUEST_TIMEOUT_MS).saturating_sub(at.elapsed()),
        };
        let chunk = Vec::with_capacity(READ_CHUNK_BYTES);
        let Ok((result, chunk)) = monoio::time::timeout(wait, stream.read(chunk)).await else {
            return ReadOutcome::Closed;
        };
        match result {
            Ok(0) | Err(_) => return ReadOutcome::Closed,
            Ok(_) => {
                first_byte_at.get_or_insert_with(Instant::now);
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

/// The answer to one request, and whether the connection stays open.
async fn respond(request: &Request, ctx: &Ctx) -> (Vec<u8>, bool) {
    let text = "text/plain; charset=utf-8";
    let head_only = request.method == Method::Head;
    if request.method == Method::Other {
        // A body may follow that this server does not read: close.
        let bytes = answer(
            Status::MethodNotAllowed,
            text,
            "method not allowed\n",
            false,
            false,
        );
        return (bytes, false);
    }
    let keep_alive = request.keep_alive;
    let (status, content_type, body) = match request.path.as_str() {
        "/health" => (Status::Ok, text, "ok\n".to_string()),
        "/ready" => match ctx.hub.not_ready() {
            None => (Status::Ok, text, "ready\n".to_string()),
            Some(why) => (
                Status::ServiceUnavailable,
                text,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            let snapshots = ctx.hub.gather().await;
            let meta = Meta {
                uptime_s: ctx.hub.uptime_s(),
                ring_capacity_slots: ctx.ring_capacity_slots,
            };
            (
                Status::Ok,
                exposition::CONTENT_TYPE,
                exposition::render(&snapshots, &meta),
            )
        }
        _ => (Status::NotFound, text, "not found\n".to_string()),
    };
    (
        answer(status, content_type, &body, keep_alive, head_only),
        keep_alive,
    )
}

/// Writes `bytes`, within [`WRITE_TIMEOUT_MS`]; false if that failed.
async fn write(stream: &mut TcpStream, bytes: Vec<u8>) -> bool {
    let limit = Duration::from_millis(WRITE_TIMEOUT_MS);
    matches!(
        monoio::time::timeout(limit, stream.write_all(bytes)).await,
        Ok((Ok(_), _))
    )
}

/// Writes the last answer, shuts the write side, and reads what the
/// client still sends until it closes or [`CLOSE_LINGER_MS`] passed, so
/// that unread input does not turn the close into a reset.
async fn close_after(stream: &mut TcpStream, bytes: Vec<u8>) {
    if !write(stream, bytes).await {
        return;
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(CLOSE_LINGER_MS);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let chunk = Vec::with_capacity(READ_CHUNK_BYTES);
        match monoio::time::timeout(left, stream.read(chunk)).await {
            Ok((Ok(n), _)) if n > 0 => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests;
