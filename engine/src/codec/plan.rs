//! The encoder's plan and framing: a [`Plan`] holds every length the write
//! pass needs (computed by a sizing pass over the packet, nothing written
//! yet), and [`emit`] checks it, reserves once, writes the fixed header
//! (section 2.1) and hands over to the packet's body writer.
//!
//! ```text
//! | first byte | Remaining Length (1-4, from the plan) | body (plan.remaining bytes) |
//! ```

use bytes::BytesMut;

use super::properties::{props_size, Properties};
use super::sizer::Sizer;
use super::varint::{varint_len, VARINT_MAX};
use super::writer::{Out, Writer};
use super::EncodeError;

impl Sizer {
    /// The packet's property block when `v5`; returns its Property Length.
    #[inline]
    pub(crate) fn props_block<P: Properties>(&mut self, props: &P, v5: bool) -> usize {
        if !v5 {
            return 0;
        }
        let p = props_size(props);
        self.block(p);
        p.len
    }

    /// The plan of a packet without will properties.
    #[inline]
    pub(crate) fn plan(self, props: usize) -> Plan {
        Plan {
            remaining: self.len,
            props,
            will_props: 0,
            too_long: self.too_long,
        }
    }
}

/// Everything the write pass needs to know up front.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Plan {
    /// Remaining Length: variable header + payload.
    pub(crate) remaining: usize,
    /// Property Length of the packet's properties (v5).
    pub(crate) props: usize,
    /// Property Length of the will properties (v5 CONNECT with a will).
    pub(crate) will_props: usize,
    pub(crate) too_long: bool,
}

impl Plan {
    #[inline]
    pub(crate) fn frame_len(&self) -> usize {
        1 + varint_len(u32::try_from(self.remaining).unwrap_or(u32::MAX)) + self.remaining
    }

    /// The checks that make encoding infallible once writing starts.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        if self.too_long {
            return Err(EncodeError::FieldTooLong);
        }
        if self.remaining > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge);
        }
        Ok(())
    }
}

/// Check the plan, reserve once, write the fixed header (section 2.1) and
/// the body; nothing is written when the plan fails its checks.
#[inline(always)]
pub(crate) fn emit(
    plan: Plan,
    first_byte: u8,
    out: &mut BytesMut,
    body: impl FnOnce(&mut BytesMut, &Plan),
) -> Result<usize, EncodeError> {
    plan.check()?;
    let frame_len = plan.frame_len();
    out.reserve(frame_len);
    let start = out.len();
    out.put_u8(first_byte);
    out.put_varint(plan.remaining as u32);
    body(out, &plan);
    debug_assert_eq!(out.len() - start, frame_len);
    Ok(frame_len)
}

/// [`emit`] through a [`Writer`] over the zero-filled frame: no capacity
/// check per field. Measured faster for CONNECT (many small fields), slower
/// for packets with few fields (the zero fill costs more than it saves).
#[inline(always)]
pub(crate) fn emit_sized(
    plan: Plan,
    first_byte: u8,
    out: &mut BytesMut,
    body: impl FnOnce(&mut Writer<'_>, &Plan),
) -> Result<usize, EncodeError> {
    plan.check()?;
    let frame_len = plan.frame_len();
    let start = out.len();
    out.resize(start + frame_len, 0);
    let mut w = Writer::new(out.get_mut(start..).unwrap_or_default());
    w.put_u8(first_byte);
    w.put_varint(plan.remaining as u32);
    body(&mut w, &plan);
    debug_assert_eq!(w.written(), frame_len);
    Ok(frame_len)
}
