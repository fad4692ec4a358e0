//! The `properties!` macro: from one table row per v5 property (identifier,
//! wire type, value rule, field, the packets that allow it) it generates
//! the property structs, their decode / size / write ([`Properties`]), the
//! identifier constants (`id::*`), and the allowed-in table of MQTT 5.0
//! section 2.2.2.2. The table itself is in `properties.rs`; this file is
//! only the machinery, so that adding a property is one row there.
//!
//! A row reads
//!
//! ```text
//! 0x0B SUBSCRIPTION_IDENTIFIER: VarInt subscription_id, subscription_identifier [Publish(subscription_identifiers many), Subscribe];
//! ^id  ^constant in id::        ^wire  ^value rule      ^field (once, or many)   ^packet kinds; a kind may name its own field
//! ```
//!
//! A struct gets a field for each row whose list names its kind: `Option`
//! for `once` (the default), `Vec` for `many`.
//!
//! [`Properties`]: super::property_values::Properties

/// Generates everything from the kinds list and the table; see the module
/// documentation for the row syntax.
macro_rules! properties {
    (
        kinds { $( $(#[$meta:meta])* $kind:ident => $strukt:ident ),* $(,)? }
        table $table:tt
    ) => {
        $( $crate::codec::property_macro::property_struct!($(#[$meta])* $strukt $kind $table); )*
        $crate::codec::property_macro::property_table!($table);
    };
}
pub(crate) use properties;

/// The identifier constants (`id::*`), `wire_type` (tests), `not_here` and
/// `allowed_in`, expanded in `properties.rs`; the struct impls call the
/// last two by name.
macro_rules! property_table {
    ({ $(
        $id:literal $name:ident: $wire:ident $read:ident, $field:ident $($mult:ident)?
            [ $( $kind:ident $(( $($own:tt)* ))? ),* ];
    )* }) => {
        /// Property identifiers (section 2.2.2.2, table 2-4).
        pub(crate) mod id {
            $( pub(crate) const $name: u8 = $id; )*
        }

        /// The wire type of a known property identifier, `None` for unknown ones.
        #[cfg(test)]
        pub(crate) const fn wire_type(property_id: u8) -> Option<$crate::codec::property_values::WireType> {
            match property_id {
                $( id::$name => Some($crate::codec::property_values::WireType::$wire), )*
                _ => None,
            }
        }

        /// The error for an identifier a property struct has no field for:
        /// a property of another packet, or no property at all.
        #[inline]
        pub(crate) fn not_here(packet_type: u8, property_id: u8) -> $crate::codec::DecodeError {
            if allowed_in(property_id) != 0 {
                $crate::codec::DecodeError::PropertyNotAllowed {
                    packet_type,
                    property_id,
                }
            } else {
                $crate::codec::DecodeError::InvalidPropertyId(property_id)
            }
        }

        /// Section 2.2.2.2 table 2-4 as a bit mask over packet types (bit n =
        /// packet type n; bit 0 = Will Properties, which travel in CONNECT).
        /// 0 for an unknown identifier.
        pub(crate) const fn allowed_in(property_id: u8) -> u16 {
            match property_id {
                $( id::$name => 0 $( | $crate::codec::property_macro::kind_mask!($kind) )*, )*
                _ => 0,
            }
        }
    };
}
pub(crate) use property_table;

/// The packet types whose properties a kind holds (bit n = packet type n).
macro_rules! kind_mask {
    (Will) => {
        1 << 0
    };
    (Connect) => {
        1 << 1
    };
    (ConnAck) => {
        1 << 2
    };
    (Publish) => {
        1 << 3
    };
    // PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK: Reason String and
    // User Property only.
    (Ack) => {
        (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 9) | (1 << 11)
    };
    (Subscribe) => {
        1 << 8
    };
    (Unsubscribe) => {
        1 << 10
    };
    (Disconnect) => {
        1 << 14
    };
    (Auth) => {
        1 << 15
    };
}
pub(crate) use kind_mask;

/// `same_kind!(a b [then] [else])`: expands `then` when the two kinds are
/// the same, else `else` (a `macro_rules` pattern can only compare an
/// identifier with a literal one, hence a rule per kind).
macro_rules! same_kind {
    (Will Will [$($then:tt)*] $else:tt) => { $($then)* };
    (Connect Connect [$($then:tt)*] $else:tt) => { $($then)* };
    (ConnAck ConnAck [$($then:tt)*] $else:tt) => { $($then)* };
    (Publish Publish [$($then:tt)*] $else:tt) => { $($then)* };
    (Ack Ack [$($then:tt)*] $else:tt) => { $($then)* };
    (Subscribe Subscribe [$($then:tt)*] $else:tt) => { $($then)* };
    (Unsubscribe Unsubscribe [$($then:tt)*] $else:tt) => { $($then)* };
    (Disconnect Disconnect [$($then:tt)*] $else:tt) => { $($then)* };
    (Auth Auth [$($then:tt)*] $else:tt) => { $($then)* };
    ($a:ident $b:ident $then:tt [$($else:tt)*]) => { $($else)* };
}
pub(crate) use same_kind;

/// One property struct: walks the table, keeps the rows whose list names
/// the struct's kind, then emits the struct and its impls.
macro_rules! property_struct {
    // Entry.
    ($(#[$meta:meta])* $strukt:ident $kind:ident { $($rows:tt)* }) => {
        $crate::codec::property_macro::property_struct!(
            @rows [$(#[$meta])* $strukt $kind] [] $($rows)*
        );
    };
    // Next row: look for the kind in its list.
    (@rows $head:tt $kept:tt
        $id:literal $name:ident: $wire:ident $read:ident, $field:ident $($mult:ident)?
            [$($kinds:tt)*];
        $($rest:tt)*
    ) => {
        $crate::codec::property_macro::property_struct!(
            @find $head $kept ($id $name $wire $read $field $($mult)?) [$($kinds)*] $($rest)*
        );
    };
    // The list is exhausted: not in this struct.
    (@find $head:tt $kept:tt $row:tt [] $($rest:tt)*) => {
        $crate::codec::property_macro::property_struct!(@rows $head $kept $($rest)*);
    };
    // Compare the struct's kind with the list's first kind.
    (@find [$(#[$meta:meta])* $strukt:ident $kind:ident] $kept:tt $row:tt
        [$k:ident $(( $($own:tt)* ))? $(, $($ks:tt)*)?] $($rest:tt)*
    ) => {
        $crate::codec::property_macro::same_kind!($kind $k
            [$crate::codec::property_macro::property_struct!(
                @keep [$(#[$meta])* $strukt $kind] $kept $row [$($($own)*)?] $($rest)*
            );]
            [$crate::codec::property_macro::property_struct!(
                @find [$(#[$meta])* $strukt $kind] $kept $row [$($($ks)*)?] $($rest)*
            );]
        );
    };
    // Keep the row, with the field and multiplicity the kind names ...
    (@keep $head:tt [$($kept:tt)*] ($id:literal $name:ident $wire:ident $read:ident $($row:ident)*)
        [$field:ident $mult:ident] $($rest:tt)*
    ) => {
        $crate::codec::property_macro::property_struct!(
            @rows $head [$($kept)* ($id $name $wire $read $field $mult)] $($rest)*
        );
    };
    // ... or the row's own (`once` unless it says `many`).
    (@keep $head:tt [$($kept:tt)*] ($id:literal $name:ident $wire:ident $read:ident $field:ident $mult:ident)
        [] $($rest:tt)*
    ) => {
        $crate::codec::property_macro::property_struct!(
            @rows $head [$($kept)* ($id $name $wire $read $field $mult)] $($rest)*
        );
    };
    (@keep $head:tt [$($kept:tt)*] ($id:literal $name:ident $wire:ident $read:ident $field:ident)
        [] $($rest:tt)*
    ) => {
        $crate::codec::property_macro::property_struct!(
            @rows $head [$($kept)* ($id $name $wire $read $field once)] $($rest)*
        );
    };
    // Every row seen: emit.
    (@rows [$(#[$meta:meta])* $strukt:ident $kind:ident]
        [$( ($id:literal $name:ident $wire:ident $read:ident $field:ident $mult:ident) )*]
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $strukt {
            $(
                #[doc = concat!(stringify!($name), " (", stringify!($id), "), ", stringify!($mult), ".")]
                pub $field: $crate::codec::property_values::slot_type!($mult $wire),
            )*
        }

        impl $strukt {
            /// True when no property is set (the common, fast case).
            #[inline]
            pub fn is_empty(&self) -> bool {
                true $( && $crate::codec::property_values::Slot::is_empty(&self.$field) )*
            }
        }

        impl $crate::codec::property_values::Properties for $strukt {
            fn read_one(
                &mut self,
                r: &mut $crate::codec::reader::Reader<'_>,
                property_id: u8,
                packet_type: u8,
            ) -> Result<(), $crate::codec::DecodeError> {
                use $crate::codec::property_values::{read, Slot};
                match property_id {
                    $( id::$name => Slot::store(
                        &mut self.$field,
                        property_id,
                        read::$read(r, property_id)?,
                    ), )*
                    _ => Err(not_here(packet_type, property_id)),
                }
            }

            #[inline]
            fn size(&self, s: &mut $crate::codec::sizer::Sizer) {
                use $crate::codec::property_values::{wire, Slot};
                $( for v in Slot::values(&self.$field) {
                    // The identifier: one byte for every defined property.
                    s.fixed(1);
                    wire::$wire::size(v, s);
                } )*
            }

            #[inline]
            fn write(&self, out: &mut impl $crate::codec::writer::Out) {
                use $crate::codec::property_values::{wire, Slot};
                $( for v in Slot::values(&self.$field) {
                    out.put_u8(id::$name);
                    wire::$wire::put(v, out);
                } )*
            }
        }
    };
}
pub(crate) use property_struct;
