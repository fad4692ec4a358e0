//! TLS on the native loop: a connection's session state and the server
//! handshake driven through the helper threads (`crate::tls::offload`),
//! as the monoio path's `Connection::handshake` does, without a future.
//!
//! ```text
//!   receive (ciphertext) ─▶ session here?  yes ─▶ HandshakePool::submit_to(session, cipher, inbox, token)
//!                                          no  ─▶ kept until the step comes back (bounded)
//!   Driver::complete ─▶ StepInbox::take_all ─▶ on_step: session back, its flight queued,
//!        failure ─▶ alert sent, close (TlsError);  established ─▶ Ready(DriverTls), identity,
//!        ciphertext kept meanwhile decrypted, plaintext to the handler
//! ```
//!
//! Once established, the session is the same [`DriverTls`] the monoio
//! driver's tasks share, and reads and writes go through the same
//! `decrypt` / `tls_output` ([`crate::conn`]): one byte transform for both
//! backends. Sessions without helper threads (client sessions, a pool
//! that is gone) finish their handshake inline there, as on monoio, and a
//! server step run inline is counted in the pool's statistics.

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{token, Driver, Op};
use crate::conn::{decrypt, CloseReason, ConnTls, DriverTls};
use crate::tls::offload::{HandshakePool, Step};
use crate::tls::{TlsRead, TlsSession};

/// A connection's TLS state on the native loop.
pub(super) enum NativeTls {
    /// A server handshake whose steps run on the helper threads.
    Handshake(Box<Handshake>),
    /// Established (or a session that handshakes inline): the state the
    /// monoio driver shares between its tasks.
    Ready(Rc<DriverTls>),
}

/// A server handshake in progress (module docs).
pub(super) struct Handshake {
    /// Here between steps; `None` while a step is on a helper thread.
    session: Option<Box<TlsSession>>,
    pool: Arc<HandshakePool>,
    /// Ciphertext that arrived while a step was away.
    cipher: BytesMut,
}

impl NativeTls {
    /// The state of a new or handed-over connection's session.
    pub(super) fn new(tls: ConnTls) -> NativeTls {
        match tls.pool {
            Some(pool) if tls.session.is_server() && tls.session.is_handshaking() => {
                NativeTls::Handshake(Box::new(Handshake {
                    session: Some(tls.session),
                    pool,
                    cipher: BytesMut::new(),
                }))
            }
            pool => NativeTls::Ready(Rc::new(DriverTls::new(ConnTls {
                session: tls.session,
                pool,
            }))),
        }
    }

    /// The session, for a hand-off (`None` if it is on a helper thread).
    pub(super) fn into_session(self) -> Option<Box<TlsSession>> {
        match self {
            NativeTls::Handshake(h) => h.session,
            NativeTls::Ready(tls) => Rc::try_unwrap(tls).ok().map(DriverTls::into_session),
        }
    }
}

impl Handshake {
    /// What the session queued (its flight, or the alert of a failure).
    pub(super) fn flight(&mut self) -> Option<Bytes> {
        let session = self.session.as_mut()?;
        if !session.wants_write() {
            return None;
        }
        let mut out = Vec::new();
        session.take_output(&mut out);
        Some(Bytes::from(out))
    }
}

impl Driver {
    /// Ciphertext for a connection whose handshake is in progress: the
    /// next step goes to a helper thread, or waits for the one away.
    pub(super) fn handshake_input(&mut self, slot: u32, gen: u32, cipher: &[u8]) {
        let max = self.config.read_buffer_max_bytes;
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let Some(NativeTls::Handshake(h)) = c.rare.as_deref_mut().and_then(|r| r.tls.as_mut())
        else {
            return;
        };
        h.cipher.extend_from_slice(cipher);
        if h.session.is_none() {
            if h.cipher.len() >= max {
                self.end(slot, gen, CloseReason::ReadBufferFull);
            }
            return;
        }
        self.submit_step(slot, gen);
    }

    /// Sends the kept ciphertext with the session to a helper thread (or,
    /// if the helpers are gone, runs the step here).
    fn submit_step(&mut self, slot: u32, gen: u32) {
        let inbox = self.steps_inbox.clone();
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let Some(NativeTls::Handshake(h)) = c.rare.as_deref_mut().and_then(|r| r.tls.as_mut())
        else {
            return;
        };
        if h.cipher.is_empty() {
            return;
        }
        let Some(session) = h.session.take() else {
            return;
        };
        let cipher = std::mem::take(&mut h.cipher);
        let tag = token(Op::Handshake, slot, gen);
        match h.pool.submit_to(session, cipher, &inbox, tag) {
            Ok(()) => {}
            Err((mut session, cipher)) => {
                let mut plain = BytesMut::new();
                let (result, _) =
                    crate::conn::decrypt(&mut session, Some(h.pool.stats()), &cipher, &mut plain);
                self.on_step(
                    slot,
                    gen,
                    Step {
                        session,
                        plain,
                        result,
                    },
                );
            }
        }
    }

    /// Takes the steps the helper threads finished (`Driver::complete`).
    pub(super) fn take_steps(&mut self) {
        let mut steps = std::mem::take(&mut self.steps);
        self.steps_inbox.take_all(&mut steps);
        for (tag, step) in steps.drain(..) {
            let (_, slot, gen) = super::untoken(tag);
            self.on_step(slot, gen, step);
        }
        self.steps = steps;
    }

    /// A handshake step came back: the session resumes on this thread.
    fn on_step(&mut self, slot: u32, gen: u32, step: Step) {
        // A connection closed meanwhile (or the slot reused) drops it.
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let Some(NativeTls::Handshake(h)) = c.rare.as_deref_mut().and_then(|r| r.tls.as_mut())
        else {
            return;
        };
        let Step {
            session,
            plain,
            result,
        } = step;
        if session.wants_write() {
            // The flight (or alert) leaves with the next send; marked as
            // output to send, since once established the session's output
            // leaves only with a transmit (TLS 1.2: the server's Finished).
            c.handle.mark_transmit();
            c.handle.queue();
        }
        let established = result.is_ok() && !session.is_handshaking();
        h.session = Some(session);
        if !c.is_open() {
            return;
        }
        match result {
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake refused");
                c.handler.on_tls_failed(&e);
                c.handle.set_tls_failed();
                c.handle.close();
                return;
            }
            Ok(TlsRead::PeerClosed) => {
                self.end(slot, gen, CloseReason::PeerClosed);
                return;
            }
            Ok(TlsRead::Open) => {}
        }
        if !established {
            // More of the client's flight may have arrived meanwhile.
            self.submit_step(slot, gen);
            return;
        }
        let Some(NativeTls::Handshake(h)) = c.rare.as_deref_mut().and_then(|r| r.tls.take()) else {
            return;
        };
        let Handshake {
            session,
            pool,
            cipher,
        } = *h;
        let Some(session) = session else {
            return;
        };
        let tls = Rc::new(DriverTls::new(ConnTls {
            session,
            pool: Some(pool),
        }));
        c.rare.get_or_insert_with(Box::default).tls = Some(NativeTls::Ready(tls.clone()));
        c.handler.on_tls_established(&tls.session.borrow());
        // TLS 1.3: application data that came with the client's Finished.
        c.buf_mut().unsplit(plain);
        if !cipher.is_empty() {
            self.decrypt_into(slot, gen, &tls, &cipher);
        } else if c.buffered() > 0 {
            self.deliver_buf(slot, gen);
        }
        self.after_recv(slot, gen);
    }
}

impl Driver {
    /// TLS: decrypt one receive into the connection's plaintext buffer.
    pub(super) fn decrypt_into(&mut self, slot: u32, gen: u32, tls: &DriverTls, cipher: &[u8]) {
        let Some(c) = self.conn(slot, gen) else {
            return;
        };
        let (result, established) = decrypt(
            &mut tls.session.borrow_mut(),
            tls.stats.as_deref(),
            cipher,
            c.buf_mut(),
        );
        if tls.session.borrow().wants_write() {
            // Handshake flight, alert or ticket.
            c.handle.mark_transmit();
            c.handle.queue();
        }
        let peer_closed = match result {
            Ok(state) => state == TlsRead::PeerClosed,
            Err(e) => {
                tracing::debug!(error = %e, "TLS session failed; closing the connection");
                c.handler.on_tls_failed(&e);
                c.write_failed = None;
                c.handle.set_tls_failed();
                c.handle.close();
                return;
            }
        };
        if established {
            c.handler.on_tls_established(&tls.session.borrow());
        }
        if c.buffered() > 0 {
            self.deliver_buf(slot, gen);
        }
        if peer_closed {
            self.end(slot, gen, CloseReason::PeerClosed);
        }
    }
}
