//! The reader task: bounded, adaptive reads handed to
//! [`Handler::on_bytes`] (decrypted first on TLS), backpressure, the
//! started-packet timeout, and the reader's part of a graceful close
//! (`conn` module docs); its report of the close waits for a turn of the
//! shard's close budget (`pace`).

use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::SliceMut;
use monoio::io::{AsyncReadRent, OwnedReadHalf};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::handle::{CloseReason, DriverConfig, DriverHandle, Handler, Shared};
use super::pace;
use super::tls_io::{decrypt, DriverTls};
use crate::tls::TlsRead;

/// Smallest read (bytes): what an idle connection's pending read holds.
const READ_CHUNK_MIN_BYTES: usize = 512;

/// Largest read (bytes) while a closing connection discards the peer's input
/// (`linger`: from [`READ_CHUNK_MIN_BYTES`] up).
const LINGER_READ_BYTES: usize = 4096;

/// Reads once into `buf`, appending at most `chunk_bytes`.
pub(super) async fn read_bounded<R: AsyncReadRent>(
    reader: &mut R,
    mut buf: BytesMut,
    chunk_bytes: usize,
) -> (io::Result<usize>, BytesMut) {
    let chunk_bytes = chunk_bytes.max(1);
    buf.reserve(chunk_bytes);
    let start = buf.len();
    // `reserve` guarantees capacity >= start + chunk_bytes, which is what
    // SliceMut::new asserts.
    let slice = SliceMut::new(buf, start, start + chunk_bytes);
    let (result, slice) = reader.read(slice).await;
    (result, slice.into_inner())
}

/// The reader task: reads until the connection ends, then reports why.
/// Counted as a driven connection while it lives (`opslab`: how far
/// monoio's operation slab grew; the guard has no bytes).
///
/// Its future is an idle connection's largest allocation: the loop takes
/// the arguments it only reads by reference (the configuration was kept
/// twice, 40 bytes each), and the task is spawned as it is, not inside
/// another future that holds its arguments too (the guard's wrapper did,
/// ~110 bytes). Both moved the task from mimalloc's 896-byte size class
/// to its 768-byte one in a release build (docs/benchmarks.md, "Memory
/// given back after closes: the first `$SYS` publish at start-up").
pub(super) async fn reader_task<H: Handler>(
    mut read_half: OwnedReadHalf<TcpStream>,
    initial: BytesMut,
    handler: Rc<H>,
    handle: DriverHandle,
    config: DriverConfig,
    tls: Option<Rc<DriverTls>>,
) {
    let _driven = crate::opslab::DrivenConnection::new();
    let reason = read_loop(
        &mut read_half,
        initial,
        &*handler,
        &handle,
        &config,
        tls.as_deref(),
    )
    .await;
    // Reporting the close (the engine ends the session, then the socket
    // and the sessions are dropped) is a close step (`pace`).
    pace::pacer().admit().await;
    handle.shared.ended.set(true);
    handle.shared.wake_writer();
    drop(read_half);
    handler.on_closed(reason);
}

async fn read_loop<H: Handler>(
    read_half: &mut OwnedReadHalf<TcpStream>,
    mut buf: BytesMut,
    handler: &H,
    handle: &DriverHandle,
    config: &DriverConfig,
    tls: Option<&DriverTls>,
) -> CloseReason {
    let shared = &handle.shared;
    if let Some(tls) = tls {
        // Handshake finished while routing (or on the shard that handed
        // the connection over).
        let session = tls.session.borrow();
        if !session.is_handshaking() {
            handler.on_tls_established(&session);
        }
    }
    // TLS: ciphertext is read into `cipher`, plaintext goes to `buf`.
    let mut cipher = BytesMut::new();
    let packet_timeout = Duration::from_millis(config.packet_complete_timeout_ms);
    // When the packet left incomplete in `buf` started (module docs).
    let mut packet_started: Option<Instant> = None;
    if !buf.is_empty() && !shared.closing.get() {
        deliver(handler, &mut buf, &mut packet_started);
    }
    // Adaptive read size: an idle connection keeps only a small buffer in
    // its pending read (io_uring holds it until data arrives); a busy one
    // doubles up to `read_chunk_bytes`.
    let chunk_max = config.read_chunk_bytes.max(1);
    let mut chunk = READ_CHUNK_MIN_BYTES.min(chunk_max);
    loop {
        if shared.closing.get() {
            drop(buf);
            // Boxed: once per connection, not part of every task's size.
            return Box::pin(linger(read_half, shared)).await;
        }
        if handler.reads_paused() {
            shared
                .reader()
                .wait_until(|| shared.closing.get() || !handler.reads_paused())
                .await;
            // The peer cannot complete a packet we do not read: its time
            // starts again.
            if packet_started.is_some() {
                packet_started = Some(Instant::now());
            }
            // The handler may have left complete frames unread while paused
            // (the engine waiting for an authentication verdict): offer them
            // again before waiting for more bytes, which may never come.
            if !buf.is_empty() && !shared.closing.get() {
                deliver(handler, &mut buf, &mut packet_started);
            }
            continue;
        }
        if buf.len() >= config.read_buffer_max_bytes {
            return CloseReason::ReadBufferFull;
        }
        if buf.is_empty() && buf.capacity() > 2 * chunk {
            // Drop a large buffer a burst left behind (it may still be shared
            // with frames the engine holds; a new one is allocated on demand).
            buf = BytesMut::new();
        }
        // Plain TCP reads into `buf`; TLS reads ciphertext into `cipher`
        // (`buf` keeps the plaintext partial frame meanwhile).
        let target = match tls {
            None => std::mem::take(&mut buf),
            Some(_) => {
                if cipher.capacity() > 2 * chunk {
                    cipher = BytesMut::new();
                }
                std::mem::take(&mut cipher)
            }
        };
        let read = read_bounded(read_half, target, chunk);
        let completed = match packet_started {
            None => Some(read.await),
            Some(started) => monoio::select! {
                r = read => Some(r),
                // Boxed (as every timer of the driver): a monoio `Sleep` is
                // cache-line padded, and inline it would make every
                // connection's task several times larger for this rare
                // wait (docs/benchmarks.md, memory per idle connection).
                _ = Box::pin(monoio::time::sleep_until(started + packet_timeout)) => None,
            },
        };
        let Some((result, returned)) = completed else {
            // The read (and its buffer) was abandoned.
            if shared.closing.get() {
                continue;
            }
            return CloseReason::PacketTimeout;
        };
        match tls {
            None => buf = returned,
            Some(_) => cipher = returned,
        }
        if shared.closing.get() {
            // Bytes after a close are not handed to the engine.
            continue;
        }
        let n = match result {
            Ok(0) => return CloseReason::PeerClosed,
            Ok(n) => n,
            Err(e) => return CloseReason::ReadError(e.kind()),
        };
        chunk = if n >= chunk {
            (chunk * 2).min(chunk_max)
        } else {
            (chunk / 2).max(READ_CHUNK_MIN_BYTES.min(chunk_max))
        };
        let Some(tls) = tls else {
            deliver(handler, &mut buf, &mut packet_started);
            continue;
        };
        let (result, established) = decrypt(
            &mut tls.session.borrow_mut(),
            tls.stats.as_deref(),
            &cipher,
            &mut buf,
        );
        cipher.clear();
        if tls.session.borrow().wants_write() {
            // Handshake flight, alert or ticket: the writer sends it.
            shared.transmit.set(true);
            shared.wake_writer();
        }
        let peer_closed = match result {
            Ok(state) => state == TlsRead::PeerClosed,
            Err(e) => {
                tracing::debug!(error = %e, "TLS session failed; closing the connection");
                handler.on_tls_failed(&e);
                shared.tls_failed.set(true);
                handle.close();
                continue;
            }
        };
        if established {
            handler.on_tls_established(&tls.session.borrow());
        }
        if shared.closing.get() {
            continue;
        }
        if !buf.is_empty() {
            deliver(handler, &mut buf, &mut packet_started);
        }
        if peer_closed {
            return CloseReason::PeerClosed;
        }
    }
}

/// Hands `buf` to the handler and notes when the packet it leaves
/// incomplete started: unchanged if it consumed nothing (the same packet is
/// still arriving), now if it consumed frames (what is left began in this
/// read).
fn deliver<H: Handler>(handler: &H, buf: &mut BytesMut, packet_started: &mut Option<Instant>) {
    let before = buf.len();
    handler.on_bytes(buf);
    *packet_started = match (*packet_started, buf.len()) {
        (_, 0) => None,
        (Some(started), left) if left >= before => Some(started),
        _ => Some(Instant::now()),
    };
}

/// The reader's part of a graceful close (module docs): read and discard
/// until the peer closes or the writer's linger shuts the read side, then
/// wait for the writer and report.
///
/// The discarding reads start small, as an idle connection's do, and grow
/// to [`LINGER_READ_BYTES`] while the peer fills them: most peers send
/// nothing more, and a burst of closes has every closing connection's
/// pending read (and its buffer) waiting here at once.
async fn linger(read_half: &mut OwnedReadHalf<TcpStream>, shared: &Shared) -> CloseReason {
    let mut buf = BytesMut::new();
    let mut chunk = READ_CHUNK_MIN_BYTES;
    loop {
        buf.clear();
        let (result, returned) = read_bounded(read_half, buf, chunk).await;
        buf = returned;
        match result {
            Ok(0) | Err(_) => break,
            Ok(n) if n >= chunk => chunk = (chunk * 2).min(LINGER_READ_BYTES),
            Ok(_) => {}
        }
    }
    // Not held while the writer's FIN waits for its turn of the close
    // budget: after a burst of closes, thousands of lingering connections
    // each kept 4 KiB here (on epoll, before its turns were marked by the
    // driver, 18,500 of them doubled the RSS while their closes ran).
    drop(buf);
    shared
        .reader()
        .wait_until(|| shared.writer_done.get())
        .await;
    if shared.tls_failed.get() {
        return CloseReason::TlsError;
    }
    shared
        .write_failed
        .get()
        .map_or(CloseReason::Local, CloseReason::WriteError)
}
