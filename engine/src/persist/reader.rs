//! Bounds-checked reading and plain writing of record fields: every read
//! names its field, so a short value says where it was torn.

use bytes::{BufMut, Bytes, BytesMut};

use super::RestoreError;
use crate::codec::{self, Packet, Protocol, Publish, QoS};

/// Reads fields from a stored value; never panics.
pub(super) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(super) fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, RestoreError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(RestoreError::Truncated(field))?;
        if end > self.buf.len() {
            return Err(RestoreError::Truncated(field));
        }
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RestoreError> {
        let b = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, RestoreError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(super) fn bool(&mut self, field: &'static str) -> Result<bool, RestoreError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RestoreError::Invalid(field)),
        }
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, RestoreError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, RestoreError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, RestoreError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// `u16` length + bytes.
    pub(super) fn short_bytes(&mut self, field: &'static str) -> Result<Bytes, RestoreError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// A flag byte, then the value if it is 1.
    pub(super) fn option<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, RestoreError>,
    ) -> Result<Option<T>, RestoreError> {
        if self.bool(field)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `u32` length + a PUBLISH frame (v5 encoding, QoS 0, no DUP).
    pub(super) fn publish(&mut self, field: &'static str) -> Result<Publish, RestoreError> {
        let len = self.u32(field)?;
        let frame = self.take(len as usize, field)?;
        match codec::decode_packet(frame, Protocol::V5) {
            Ok(Packet::Publish(p)) => Ok(p),
            Ok(_) => Err(RestoreError::Invalid(field)),
            Err(e) => Err(RestoreError::Publish(e)),
        }
    }

    pub(super) fn qos(&mut self, field: &'static str) -> Result<QoS, RestoreError> {
        QoS::from_u8(self.u8(field)?).ok_or(RestoreError::Invalid(field))
    }

    /// Every byte must have been read.
    pub(super) fn finish(self) -> Result<(), RestoreError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(RestoreError::TrailingBytes)
        }
    }
}

/// Appends record fields to a value.
pub(super) struct Writer {
    pub(super) out: BytesMut,
}

impl Writer {
    pub(super) fn new(version: u8) -> Writer {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(version);
        Writer { out }
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.out.put_u8(v);
    }

    pub(super) fn u16(&mut self, v: u16) {
        self.out.put_u16(v);
    }

    pub(super) fn u32(&mut self, v: u32) {
        self.out.put_u32(v);
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.out.put_u64(v);
    }

    /// `u16` length + bytes; longer input is cut at 65,535 bytes (the
    /// fields written this way are MQTT strings, which cannot be longer).
    pub(super) fn short_bytes(&mut self, b: &[u8]) {
        let b = b.get(..usize::from(u16::MAX)).unwrap_or(b);
        self.out.put_u16(b.len() as u16);
        self.out.put_slice(b);
    }

    /// `u32` length + the PUBLISH as a v5 frame with QoS 0, no DUP, no
    /// packet id, no topic alias (QoS, RETAIN and the packet id are fields
    /// of the record). `None` if it does not encode (over the protocol's
    /// limits: such a message is never delivered either).
    pub(super) fn publish(&mut self, p: &Publish) -> Option<()> {
        let mut plain = p.clone();
        plain.qos = QoS::AtMostOnce;
        plain.dup = false;
        plain.retain = false;
        plain.packet_id = 0;
        plain.properties.topic_alias = None;
        let frame = codec::encode_to_bytes(&Packet::Publish(plain), Protocol::V5).ok()?;
        self.out.put_u32(u32::try_from(frame.len()).ok()?);
        self.out.put_slice(&frame);
        Some(())
    }

    pub(super) fn finish(self) -> Bytes {
        self.out.freeze()
    }
}
