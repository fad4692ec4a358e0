//! WebSocket inside the driver (the `crate::ws` session as a byte
//! transform): [`WsHandler`] wraps the runtime's handler, decodes what the
//! reader delivers (after TLS) into MQTT bytes for it, and frames what it
//! returns for the writer (which encrypts it on wss). The MQTT bytes the
//! inner handler leaves in the buffer stay at its front, already decoded:
//! the driver's buffer limit and started-packet timeout apply to them as
//! on TCP.
//!
//! Both backends use it: the monoio driver's tasks
//! ([`crate::conn::Connection::spawn_driver`]) and the native io_uring loop
//! ([`websocket_handler`]), where the layer is transparent to a hand-off:
//! it forwards [`Handler::detach_requested`], [`Handler::on_detach_failed`]
//! (with the MQTT bytes decoded so far) and [`Handler::as_any`] to the
//! handler it wraps, gives up its session with
//! [`Handler::take_ws_session`], and frames a refusal when the hand-off
//! fails.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::handle::{CloseReason, DriverHandle, Handler};
use crate::tls::{TlsError, TlsSession};
use crate::ws::{close_code, WsError, WsRead, WsSession};

/// The runtime's handler behind a WebSocket session.
pub(super) struct WsHandler<H: ?Sized> {
    pub(super) inner: Rc<H>,
    /// `None` once taken for a hand-off (the driver calls nothing else
    /// after that).
    pub(super) session: RefCell<Option<Box<WsSession>>>,
    pub(super) handle: DriverHandle,
    /// Bytes at the front of the driver's buffer that are already decoded
    /// (MQTT bytes the inner handler left, or that routing decoded).
    pub(super) decoded: Cell<usize>,
}

/// Wraps `inner` (the runtime's handler) in a WebSocket session for the
/// native loop; `decoded` bytes at the front of the driver's first buffer
/// are MQTT bytes already decoded (a hand-off's).
pub fn websocket_handler(
    inner: Rc<dyn Handler>,
    session: Box<WsSession>,
    handle: DriverHandle,
    decoded: usize,
) -> Rc<dyn Handler> {
    Rc::new(WsHandler {
        inner,
        session: RefCell::new(Some(session)),
        handle,
        decoded: Cell::new(decoded),
    })
}

impl<H: Handler + ?Sized> Handler for WsHandler<H> {
    fn on_bytes(&self, buf: &mut BytesMut) {
        let from = self.decoded.get().min(buf.len());
        let (result, wants_write) = {
            let mut session = self.session.borrow_mut();
            let Some(session) = session.as_mut() else {
                buf.clear();
                return;
            };
            let result = session.read(buf, from);
            (result, session.wants_write())
        };
        if wants_write {
            self.handle.transmit();
        }
        let peer_closed = match result {
            Ok(state) => state == WsRead::PeerClosed,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket refused; closing the connection");
                self.inner.on_ws_failed(&e);
                buf.clear();
                self.decoded.set(0);
                self.handle.close();
                return;
            }
        };
        if !buf.is_empty() {
            self.inner.on_bytes(buf);
        }
        self.decoded.set(buf.len());
        if peer_closed {
            self.handle.close();
        }
    }

    fn take_outgoing(&self) -> Option<Bytes> {
        let plain = self.inner.take_outgoing();
        let mut session = self.session.borrow_mut();
        let session = session.as_mut()?;
        let mut out = Vec::new();
        session.take_output(&mut out);
        if let Some(plain) = plain {
            session.frame(&plain, &mut out);
        }
        if self.handle.is_closing() {
            // The broker closes: a close frame after its last packet.
            session.queue_close(close_code::NORMAL);
            session.take_output(&mut out);
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    fn reads_paused(&self) -> bool {
        self.inner.reads_paused()
    }

    fn on_closed(&self, reason: CloseReason) {
        self.inner.on_closed(reason);
    }

    fn on_tls_established(&self, session: &TlsSession) {
        self.inner.on_tls_established(session);
    }

    fn on_tls_failed(&self, error: &TlsError) {
        self.inner.on_tls_failed(error);
    }

    fn on_ws_failed(&self, error: &WsError) {
        self.inner.on_ws_failed(error);
    }

    fn detach_requested(&self) -> bool {
        self.inner.detach_requested()
    }

    fn on_detach_failed(&self, bytes: &[u8]) -> bool {
        // The driver's buffer starts with the MQTT bytes decoded so far.
        let decoded = bytes.get(..self.decoded.get()).unwrap_or(bytes);
        self.inner.on_detach_failed(decoded)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        self.inner.as_any()
    }

    fn take_ws_session(&self) -> Option<Box<WsSession>> {
        self.session.borrow_mut().take()
    }
}
