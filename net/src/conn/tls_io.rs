//! TLS inside the driver (the `crate::tls` session as a byte transform):
//! the session of an accepted, routed or handed-off connection
//! ([`ConnTls`]), the state both driver tasks share ([`DriverTls`]),
//! decryption, and the writer's next encrypted batch.
//!
//! A server session reaches the driver with its handshake done
//! ([`crate::conn::Connection::handshake`] runs it on the helper threads);
//! the driver still finishes a handshake inline (a client session, or a
//! server session handed to the driver directly) and records such a
//! server step in the pool's [`HandshakeStats`].

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::handle::Handler;
use crate::tls::offload::{HandshakePool, HandshakeStats};
use crate::tls::{TlsError, TlsRead, TlsSession};

/// The TLS side of a connection: its session, and for a server session the
/// helper threads that run its handshake.
pub struct ConnTls {
    pub session: Box<TlsSession>,
    pub pool: Option<Arc<HandshakePool>>,
}

/// The TLS state both driver tasks share (or the native loop's entry).
pub(crate) struct DriverTls {
    pub(crate) session: RefCell<Box<TlsSession>>,
    pub(crate) stats: Option<Arc<HandshakeStats>>,
    pub(crate) close_notify_queued: Cell<bool>,
}

impl DriverTls {
    /// The driver's state for a connection's session (native loop).
    #[cfg(target_os = "linux")]
    pub(crate) fn new(tls: ConnTls) -> DriverTls {
        DriverTls {
            session: RefCell::new(tls.session),
            stats: tls.pool.map(|p| p.stats().clone()),
            close_notify_queued: Cell::new(false),
        }
    }

    /// The session, for a hand-off.
    #[cfg(target_os = "linux")]
    pub(crate) fn into_session(self) -> Box<TlsSession> {
        self.session.into_inner()
    }
}

/// Feeds one read's ciphertext to the session on this thread. Returns the
/// outcome and whether the handshake finished with this read; a server
/// handshake step is recorded in `stats`.
pub(crate) fn decrypt(
    session: &mut TlsSession,
    stats: Option<&HandshakeStats>,
    cipher: &[u8],
    plain: &mut BytesMut,
) -> (Result<TlsRead, TlsError>, bool) {
    if !session.is_handshaking() {
        return (session.read(cipher, plain), false);
    }
    let started_us = crate::os::thread_cpu_us();
    let result = session.read(cipher, plain);
    if let (Some(stats), true) = (stats, session.is_server()) {
        stats.record_inline(crate::os::thread_cpu_us().saturating_sub(started_us));
    }
    let established = result.is_ok() && !session.is_handshaking();
    (result, established)
}

/// The next TLS batch: the handler's plaintext encrypted, plus whatever the
/// session queued itself; on close, a close_notify alert once.
pub(crate) fn tls_output<H: Handler + ?Sized>(
    tls: &DriverTls,
    handler: &H,
    closing: bool,
) -> Result<Option<Bytes>, TlsError> {
    let plain = handler.take_outgoing();
    let mut session = tls.session.borrow_mut();
    if let Some(plain) = plain {
        session.encrypt(&plain)?;
    }
    if closing && !tls.close_notify_queued.replace(true) {
        session.send_close_notify();
    }
    if !session.wants_write() {
        return Ok(None);
    }
    let mut out = Vec::new();
    session.take_output(&mut out);
    Ok(Some(Bytes::from(out)))
}
