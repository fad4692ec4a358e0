//! The writer task: one write per wake-up of everything that accumulated
//! (encrypted first on TLS), the bounded close flush, and the graceful
//! close (FIN, linger, end of the reader's receive; `conn` module docs).
//! The closing flush and the FIN each wait for a turn of the shard's close
//! budget (`pace`).

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::{AsyncWriteRentExt, OwnedWriteHalf};
use monoio::net::TcpStream;

use super::handle::{DriverConfig, DriverHandle, Handler, Shared};
use super::pace;
use super::tls_io::{tls_output, DriverTls};
use crate::os::{self, Shutdown};

/// The writer task: writes each batch, then closes (gracefully, or
/// abruptly when a write fails or the flush times out).
pub(super) async fn writer_task<H: Handler>(
    mut write_half: OwnedWriteHalf<TcpStream>,
    fd: RawFd,
    handler: Rc<H>,
    handle: DriverHandle,
    config: DriverConfig,
    tls: Option<Rc<DriverTls>>,
) {
    let shared = &handle.shared;
    // The closing flush waited for its turn (`pace`).
    let mut close_admitted = false;
    loop {
        shared
            .writer()
            .wait_until(|| shared.transmit.get() || shared.closing.get() || shared.ended.get())
            .await;
        if shared.closing.get() && !close_admitted && !shared.ended.get() {
            // The closing flush (the last bytes, close_notify) is a close
            // step: at most `CLOSE_STEPS_PER_TURN` per turn of the shard.
            pace::pacer().admit().await;
            close_admitted = true;
        }
        if shared.ended.get() {
            // The reader called on_closed: the id may be reused; hands off.
            return;
        }
        shared.transmit.set(false);
        let batch = match &tls {
            None => handler.take_outgoing(),
            Some(tls) => match tls_output(tls, &*handler, shared.closing.get()) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS encryption failed; closing the connection");
                    shared.write_failed.set(Some(io::ErrorKind::InvalidData));
                    shared.closing.set(true);
                    shut_down(fd, Shutdown::Both);
                    writer_done(shared);
                    return;
                }
            },
        };
        if let Some(batch) = batch {
            let result = monoio::select! {
                (r, _) = write_half.write_all(batch) => r.map(|_| ()).map_err(|e| e.kind()),
                kind = abort_write(&handle, config.close_flush_timeout_ms) => Err(kind),
            };
            if let Err(kind) = result {
                shared.write_failed.set(Some(kind));
                shared.closing.set(true);
                // Abrupt: the peer is gone or does not read.
                shut_down(fd, Shutdown::Both);
                writer_done(shared);
                return;
            }
            continue;
        }
        if shared.closing.get() {
            // The FIN is the next close step.
            pace::pacer().admit().await;
            if shared.ended.get() {
                return;
            }
            // Boxed: once per connection, not part of every task's size.
            Box::pin(close_gracefully(shared, fd, config.close_linger_ms)).await;
            return;
        }
    }
}

/// Resolves when an in-flight write must be abandoned: the reader ended, or
/// the connection is closing and the flush took `close_flush_timeout_ms`.
async fn abort_write(handle: &DriverHandle, close_flush_timeout_ms: u64) -> io::ErrorKind {
    let shared = &handle.shared;
    shared
        .reader_or_writer_wait(|| shared.closing.get() || shared.ended.get())
        .await;
    if shared.ended.get() {
        return io::ErrorKind::ConnectionAborted;
    }
    monoio::select! {
        // Boxed: inline, a `Sleep` makes every connection's task larger
        // (`reader` module, packet timeout).
        _ = Box::pin(monoio::time::sleep(Duration::from_millis(close_flush_timeout_ms))) => io::ErrorKind::TimedOut,
        _ = shared.reader_or_writer_wait(|| shared.ended.get()) => io::ErrorKind::ConnectionAborted,
    }
}

/// Everything is flushed: send FIN, let the reader discard the peer's input
/// until it closes or `close_linger_ms` pass, then end the reader's pending
/// receive (module docs: graceful close).
async fn close_gracefully(shared: &Shared, fd: RawFd, close_linger_ms: u64) {
    shut_down(fd, Shutdown::Write);
    writer_done(shared);
    monoio::select! {
        _ = Box::pin(monoio::time::sleep(Duration::from_millis(close_linger_ms))) => {
            // The reader still holds its half, so `fd` is open.
            shut_down(fd, Shutdown::Read);
        }
        _ = shared.writer().wait_until(|| shared.ended.get()) => {}
    }
}

/// Tells the reader the writer is done (it may report the close).
fn writer_done(shared: &Shared) {
    shared.writer_done.set(true);
    shared.wake_reader();
}

fn shut_down(fd: RawFd, how: Shutdown) {
    // The writer task calls this while it still owns its half of the
    // stream, so `fd` is open. ENOTCONN (peer already gone) is expected.
    if let Err(e) = os::shutdown(fd, how) {
        tracing::trace!(fd, ?how, error = %e, "shutdown");
    }
}
