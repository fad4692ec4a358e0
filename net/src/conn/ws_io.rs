//! WebSocket inside the driver (the `crate::ws` session as a byte
//! transform): [`WsHandler`] wraps the runtime's handler, decodes what the
//! reader delivers (after TLS) into MQTT bytes for it, and frames what it
//! returns for the writer (which encrypts it on wss). The MQTT bytes the
//! inner handler leaves in the buffer stay at its front, already decoded:
//! the driver's buffer limit and started-packet timeout apply to them as
//! on TCP.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::handle::{CloseReason, DriverHandle, Handler};
use crate::tls::{TlsError, TlsSession};
use crate::ws::{close_code, WsError, WsRead, WsSession};

/// The runtime's handler behind a WebSocket session.
pub(super) struct WsHandler<H> {
    pub(super) inner: Rc<H>,
    pub(super) session: RefCell<Box<WsSession>>,
    pub(super) handle: DriverHandle,
    /// Bytes at the front of the driver's buffer that are already decoded
    /// (MQTT bytes the inner handler left, or that routing decoded).
    pub(super) decoded: Cell<usize>,
}

impl<H: Handler> Handler for WsHandler<H> {
    fn on_bytes(&self, buf: &mut BytesMut) {
        let from = self.decoded.get().min(buf.len());
        let (result, wants_write) = {
            let mut session = self.session.borrow_mut();
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
}
