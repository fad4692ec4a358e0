//! Outgoing buffers: handed to the runtime batch by batch, kept while the
//! connection is busy, given back once it is quiet.
//!
//! [`Broker::take_outgoing`] splits the batch off the connection's buffer,
//! so the buffer's room is reused for the next batch once the runtime has
//! dropped this one (no allocation per batch: a QoS 1 PUBACK, a PINGRESP).
//! Keeping it for good would cost every idle connection its last buffer,
//! so a connection that took a batch is listed in `out_kept`; every
//! [`OUT_RELEASE_AFTER_MS`] the list is walked, and a connection that took
//! no batch since the last walk and has nothing waiting drops its buffer
//! (the memory goes when the runtime drops the last batch too). The walk
//! is one timer for all listed connections, armed only while the list is
//! not empty: an idle broker is not woken for it.

use bytes::{Bytes, BytesMut};

use super::{Broker, ConnId};

/// How long a connection keeps its outgoing buffer after its last batch,
/// in milliseconds: between this and twice this.
pub const OUT_RELEASE_AFTER_MS: u64 = 1_000;

impl Broker {
    /// Everything waiting to be written to `conn`, as one batch (`None`
    /// when nothing waits); counted as sent. The buffer's spare room stays
    /// for the next batch (no allocation per batch) until the connection
    /// has been quiet for [`OUT_RELEASE_AFTER_MS`] (module docs).
    pub fn take_outgoing(&mut self, conn: ConnId) -> Option<Bytes> {
        let out = self.outgoing(conn)?;
        if out.is_empty() {
            return None;
        }
        let batch = out.split().freeze();
        if let Some(c) = self.conns.get_mut(conn) {
            c.out_used = true;
            if !c.out_kept {
                c.out_kept = true;
                self.out_kept.push((conn, c.generation));
                if self.out_release_due_ms.is_none() {
                    self.out_release_due_ms = Some(self.clock_ms + OUT_RELEASE_AFTER_MS);
                }
            }
        }
        Some(batch)
    }

    /// Drops the outgoing buffers of the listed connections that took no
    /// batch since the last walk and have nothing waiting (module docs).
    pub(super) fn release_quiet_buffers(&mut self, now_ms: u64) {
        if self.out_release_due_ms.is_none_or(|due| due > now_ms) {
            return;
        }
        let mut i = 0;
        while let Some(&(conn, generation)) = self.out_kept.get(i) {
            let keep = match self.conns.get_mut(conn) {
                Some(c) if c.generation == generation => {
                    if c.out_used || !c.out.is_empty() || c.has_backlog() {
                        c.out_used = false;
                        true
                    } else {
                        c.out = BytesMut::new();
                        c.out_kept = false;
                        false
                    }
                }
                // Closed (its slot freed or taken by another connection).
                _ => false,
            };
            if keep {
                i += 1;
            } else {
                self.out_kept.swap_remove(i);
            }
        }
        self.out_release_due_ms = if self.out_kept.is_empty() {
            // All quiet: the list's own room goes too.
            self.out_kept = Vec::new();
            None
        } else {
            Some(now_ms + OUT_RELEASE_AFTER_MS)
        };
    }
}
