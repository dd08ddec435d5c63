//! Java enums in bodies: written by name, read by name or by ordinal.
//!
//! fastjson writes an enum by its name and reads either its name or its ordinal; the C++ client
//! relies on the latter (`"consumeType":1`). [`java_enum!`] declares a Rust enum whose variants
//! follow the Java declaration order, so a variant's index is its Java ordinal, and gives it
//! that serde behaviour.
//!
//! What it leaves out: enums outside bodies (request codes, language codes) have their own
//! codecs in `crate::codec`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// What the shared visitor needs to know about a Java enum.
pub(crate) trait JavaEnum: Sized + 'static {
    /// The Java type name, for error messages.
    const JAVA_NAME: &'static str;
    /// Every Java name, in declaration order.
    const NAMES: &'static [&'static str];

    fn from_name(name: &str) -> Option<Self>;
    fn from_ordinal(ordinal: u64) -> Option<Self>;
}

/// Reads a [`JavaEnum`] from a name, an ordinal, or a string holding an ordinal.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, E: JavaEnum>(d: D) -> Result<E, D::Error> {
    d.deserialize_any(EnumVisitor(PhantomData))
}

struct EnumVisitor<E>(PhantomData<E>);

impl<E: JavaEnum> Visitor<'_> for EnumVisitor<E> {
    type Value = E;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} name or ordinal", E::JAVA_NAME)
    }

    fn visit_str<Er: de::Error>(self, v: &str) -> Result<E, Er> {
        if let Some(e) = E::from_name(v) {
            return Ok(e);
        }
        match v.parse::<u64>() {
            Ok(ordinal) => self.visit_u64(ordinal),
            Err(_) => Err(Er::unknown_variant(v, E::NAMES)),
        }
    }

    fn visit_u64<Er: de::Error>(self, v: u64) -> Result<E, Er> {
        E::from_ordinal(v).ok_or_else(|| Er::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<Er: de::Error>(self, v: i64) -> Result<E, Er> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(Er::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }
}

/// Declares a Java enum: variants in Java declaration order, each with its Java name, one of
/// them marked `#[default]`.
macro_rules! java_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $java:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value in Java declaration order: a value's index is its Java ordinal.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The Java name, as written on the wire.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $java,)+
                }
            }

            /// The Java ordinal (declaration index).
            pub fn ordinal(self) -> u32 {
                self as u32
            }
        }

        impl $crate::body::java_enum::JavaEnum for $name {
            const JAVA_NAME: &'static str = stringify!($name);
            const NAMES: &'static [&'static str] = &[$($java),+];

            fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($java => Some($name::$variant),)+
                    _ => None,
                }
            }

            fn from_ordinal(ordinal: u64) -> Option<$name> {
                usize::try_from(ordinal).ok().and_then(|i| $name::ALL.get(i)).copied()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                $crate::body::java_enum::deserialize(d)
            }
        }
    };
}

pub(crate) use java_enum;
