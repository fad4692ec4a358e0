//! How one v5 property value is read, sized and written (MQTT 5.0 section
//! 2.2.2.2): the wire types, the value rules a property may add (a flag is
//! 0 or 1, some integers may not be 0, ...), whether a property may occur
//! once or many times, and the [`Properties`] trait every property struct
//! implements. `properties.rs` names, per property, one of each; the
//! `properties!` macro (`property_macro.rs`) plugs them together.
//!
//! ```text
//! | identifier (1 byte) | value: Byte | Two/Four Byte Integer | VarInt | len + bytes | pair |
//! ```

use bytes::Bytes;

use super::reader::{validate_topic_name, Reader};
use super::sizer::{put_field, Sizer};
use super::writer::Out;
use super::DecodeError;

/// How a property value is encoded (section 2.2.2.2, "Type" column). The
/// codec works with the [`wire`] structs; this enum names them in tests.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireType {
    Byte,
    TwoByteInt,
    FourByteInt,
    VarInt,
    Utf8,
    Binary,
    Utf8Pair,
}

/// Size and write one value of each wire type, identifier excluded. One
/// unit struct per [`WireType`] variant, so the macro can name it.
pub(crate) mod wire {
    use super::*;

    /// The Rust type a property of each wire type is stored as.
    macro_rules! value_type {
        (Byte) => {
            u8
        };
        (TwoByteInt) => {
            u16
        };
        (FourByteInt) => {
            u32
        };
        (VarInt) => {
            u32
        };
        (Utf8) => {
            ::bytes::Bytes
        };
        (Binary) => {
            ::bytes::Bytes
        };
        (Utf8Pair) => {
            (::bytes::Bytes, ::bytes::Bytes)
        };
    }
    pub(crate) use value_type;

    pub(crate) struct Byte;
    pub(crate) struct TwoByteInt;
    pub(crate) struct FourByteInt;
    pub(crate) struct VarInt;
    /// UTF-8 strings and binary data share one layout: a Two Byte Integer
    /// length, then the bytes.
    pub(crate) struct LengthPrefixed;
    pub(crate) type Utf8 = LengthPrefixed;
    pub(crate) type Binary = LengthPrefixed;
    pub(crate) struct Utf8Pair;

    /// Big-endian integers of a fixed width (sections 1.5.1 - 1.5.3).
    macro_rules! fixed_width {
        ($($wire:ident: $t:ty => $put:ident;)*) => {$(
            impl $wire {
                #[inline]
                pub(crate) fn size(_: &$t, s: &mut Sizer) {
                    s.fixed(core::mem::size_of::<$t>());
                }
                #[inline]
                pub(crate) fn put(v: &$t, out: &mut impl Out) {
                    out.$put(*v);
                }
            }
        )*};
    }
    fixed_width! {
        Byte: u8 => put_u8;
        TwoByteInt: u16 => put_u16;
        FourByteInt: u32 => put_u32;
    }

    impl VarInt {
        #[inline]
        pub(crate) fn size(v: &u32, s: &mut Sizer) {
            s.varint(*v);
        }
        #[inline]
        pub(crate) fn put(v: &u32, out: &mut impl Out) {
            out.put_varint(*v);
        }
    }

    impl LengthPrefixed {
        #[inline]
        pub(crate) fn size(v: &Bytes, s: &mut Sizer) {
            s.field(v);
        }
        #[inline]
        pub(crate) fn put(v: &Bytes, out: &mut impl Out) {
            put_field(out, v);
        }
    }

    impl Utf8Pair {
        #[inline]
        pub(crate) fn size((k, v): &(Bytes, Bytes), s: &mut Sizer) {
            s.field(k);
            s.field(v);
        }
        #[inline]
        pub(crate) fn put((k, v): &(Bytes, Bytes), out: &mut impl Out) {
            put_field(out, k);
            put_field(out, v);
        }
    }
}

/// Readers of one value (identifier already consumed), each enforcing the
/// value rule its name says. `property_id` is only used in errors.
pub(crate) mod read {
    use super::*;

    /// Four Byte Integer, any value (expiry intervals, Will Delay).
    #[inline]
    pub(crate) fn u32(r: &mut Reader<'_>, _property_id: u8) -> Result<u32, DecodeError> {
        r.u32()
    }

    /// Two Byte Integer, any value (Server Keep Alive, Topic Alias Maximum).
    #[inline]
    pub(crate) fn u16(r: &mut Reader<'_>, _property_id: u8) -> Result<u16, DecodeError> {
        r.u16()
    }

    /// UTF-8 Encoded String (section 1.5.4), validated.
    #[inline]
    pub(crate) fn utf8(r: &mut Reader<'_>, _property_id: u8) -> Result<Bytes, DecodeError> {
        r.utf8()
    }

    /// Binary Data (section 1.5.6).
    #[inline]
    pub(crate) fn binary(r: &mut Reader<'_>, _property_id: u8) -> Result<Bytes, DecodeError> {
        r.binary()
    }

    /// UTF-8 String Pair (section 1.5.7), the User Property.
    #[inline]
    pub(crate) fn utf8_pair(
        r: &mut Reader<'_>,
        _property_id: u8,
    ) -> Result<(Bytes, Bytes), DecodeError> {
        let key = r.utf8()?;
        let value = r.utf8()?;
        Ok((key, value))
    }

    /// A Byte whose only values are 0 and 1 (Payload Format Indicator,
    /// Request Problem / Response Information, the *Available flags, and
    /// Maximum QoS, section 3.2.2.3.4: "0 or 1", absent means 2).
    #[inline]
    pub(crate) fn flag(r: &mut Reader<'_>, property_id: u8) -> Result<u8, DecodeError> {
        match r.u8()? {
            v @ (0 | 1) => Ok(v),
            _ => Err(DecodeError::InvalidPropertyValue(property_id)),
        }
    }

    /// A value for which 0 is a Protocol Error.
    #[inline]
    fn nonzero<T: PartialEq + Default>(v: T, property_id: u8) -> Result<T, DecodeError> {
        if v == T::default() {
            return Err(DecodeError::InvalidPropertyValue(property_id));
        }
        Ok(v)
    }

    /// Receive Maximum (sections 3.1.2.11.3, 3.2.2.3.3: "a Protocol Error to
    /// include ... the value 0") and Topic Alias (section 3.3.2.3.4: "A Topic
    /// Alias of 0 is not permitted").
    #[inline]
    pub(crate) fn nonzero_u16(r: &mut Reader<'_>, property_id: u8) -> Result<u16, DecodeError> {
        nonzero(r.u16()?, property_id)
    }

    /// Maximum Packet Size (sections 3.1.2.11.4, 3.2.2.3.6: 0 is a Protocol Error).
    #[inline]
    pub(crate) fn nonzero_u32(r: &mut Reader<'_>, property_id: u8) -> Result<u32, DecodeError> {
        nonzero(r.u32()?, property_id)
    }

    /// Subscription Identifier: 1 to 268,435,455 (the varint maximum); 0 is
    /// a Protocol Error (sections 3.3.2.3.8, 3.8.2.1.2).
    #[inline]
    pub(crate) fn subscription_id(r: &mut Reader<'_>, property_id: u8) -> Result<u32, DecodeError> {
        nonzero(r.varint()?, property_id)
    }

    /// Response Topic: a Topic Name, so no wildcards ([MQTT-3.3.2-14]).
    #[inline]
    pub(crate) fn topic_name(r: &mut Reader<'_>, property_id: u8) -> Result<Bytes, DecodeError> {
        let topic = r.binary()?;
        validate_topic_name(&topic).map_err(|e| match e {
            DecodeError::WildcardInTopicName => DecodeError::InvalidPropertyValue(property_id),
            other => other,
        })?;
        Ok(topic)
    }
}

/// Decode, size and write one packet kind's property struct (implemented
/// by the `properties!` macro for every struct).
pub(crate) trait Properties: Default {
    /// Read the value of property `property_id` (identifier already
    /// consumed) into `self`, enforcing allowed-here, single occurrence and
    /// value range. `packet_type` is only used in errors.
    fn read_one(
        &mut self,
        r: &mut Reader<'_>,
        property_id: u8,
        packet_type: u8,
    ) -> Result<(), DecodeError>;

    /// Add the encoded size of the properties (Property Length excluded).
    fn size(&self, s: &mut Sizer);

    /// Write the properties (Property Length excluded).
    fn write(&self, out: &mut impl Out);
}

/// Where a property struct keeps a property: `Option` for one that may
/// occur once, `Vec` for one that may repeat (User Property; Subscription
/// Identifier in PUBLISH, section 3.3.2.3.8).
pub(crate) trait Slot<T> {
    /// Store a decoded value. A second value of a single-occurrence
    /// property is a Protocol Error (section 2.2.2.2: "It is a Protocol
    /// Error to include ... more than once").
    fn store(&mut self, property_id: u8, value: T) -> Result<(), DecodeError>;
    /// The values held, in wire order.
    fn values(&self) -> core::slice::Iter<'_, T>;
    #[inline]
    fn is_empty(&self) -> bool {
        self.values().len() == 0
    }
}

impl<T> Slot<T> for Option<T> {
    #[inline]
    fn store(&mut self, property_id: u8, value: T) -> Result<(), DecodeError> {
        if self.is_some() {
            return Err(DecodeError::DuplicateProperty(property_id));
        }
        *self = Some(value);
        Ok(())
    }
    #[inline]
    fn values(&self) -> core::slice::Iter<'_, T> {
        self.as_slice().iter()
    }
}

impl<T> Slot<T> for Vec<T> {
    #[inline]
    fn store(&mut self, _property_id: u8, value: T) -> Result<(), DecodeError> {
        self.push(value);
        Ok(())
    }
    #[inline]
    fn values(&self) -> core::slice::Iter<'_, T> {
        self.iter()
    }
}

/// The field type of a property held `once` or `many` times.
macro_rules! slot_type {
    (once $wire:ident) => { Option<$crate::codec::property_values::wire::value_type!($wire)> };
    (many $wire:ident) => { Vec<$crate::codec::property_values::wire::value_type!($wire)> };
}
pub(crate) use slot_type;
