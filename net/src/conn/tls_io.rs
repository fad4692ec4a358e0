//! TLS inside the driver (the `crate::tls` session as a byte transform):
//! the session of a routed or handed-off connection ([`ConnTls`]), the
//! state both driver tasks share ([`DriverTls`]), decryption charged to the
//! shard's handshake budget, and the writer's next encrypted batch.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::handle::Handler;
use crate::tls::{HandshakeBudget, TlsError, TlsRead, TlsSession};

/// The TLS side of a connection: its session and its shard's budget.
pub struct ConnTls {
    pub session: Box<TlsSession>,
    pub budget: Rc<HandshakeBudget>,
}

/// The TLS state both driver tasks share.
pub(super) struct DriverTls {
    pub(super) session: RefCell<Box<TlsSession>>,
    pub(super) budget: Rc<HandshakeBudget>,
    pub(super) close_notify_queued: Cell<bool>,
}

/// Feeds one read's ciphertext to the session, charging the handshake
/// budget while the handshake runs (the caller waited for
/// [`HandshakeBudget::wait_turn`] first). Returns the outcome and whether
/// the handshake finished with this read.
pub(super) fn decrypt(
    session: &mut TlsSession,
    budget: &HandshakeBudget,
    cipher: &[u8],
    plain: &mut BytesMut,
) -> (Result<TlsRead, TlsError>, bool) {
    if !session.is_handshaking() {
        return (session.read(cipher, plain), false);
    }
    let result = budget.charge(|| session.read(cipher, plain));
    let established = result.is_ok() && !session.is_handshaking();
    (result, established)
}

/// The next TLS batch: the handler's plaintext encrypted, plus whatever the
/// session queued itself; on close, a close_notify alert once.
pub(super) fn tls_output<H: Handler>(
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
