//! How one `extFields` entry becomes a typed value and back, and the `command_header!` macro that
//! declares a header struct from a table of (field, kind, type, key) rows.
//!
//! Values follow Java's `RemotingCommand` reflection codec: integers in decimal (an optional sign,
//! no whitespace), booleans as `"true"`/`"false"`, strings verbatim. It leaves out RocketMQ's
//! double-typed fields, which no header we serve uses.

use super::{FieldSpec, FieldType, HeaderError};
use crate::codec::command::ExtFields;
use crate::codec::decimal::Decimal;

/// A type that can sit in one `extFields` value.
pub(crate) trait FieldValue: Sized {
    const TYPE: FieldType;

    /// Parses the text found under `key`; `key` only names the field in the error.
    fn parse(key: &'static str, text: &str) -> Result<Self, HeaderError>;

    /// [`FieldValue::parse`] into an existing value, reusing what it owns: a decoder that keeps
    /// one header from request to request fills its strings without allocating.
    fn parse_into(&mut self, key: &'static str, text: &str) -> Result<(), HeaderError> {
        *self = Self::parse(key, text)?;
        Ok(())
    }

    /// Hands the text Java would send for this value to `use_text`. A callback rather than a
    /// returned `String`, so numbers are formatted on the stack and nothing is allocated.
    fn render_with<R>(&self, use_text: impl FnOnce(&str) -> R) -> R;

    /// Values a round-trip test draws; every one must survive `render_with` then `parse`.
    #[cfg(test)]
    fn strategy() -> proptest::strategy::BoxedStrategy<Self>;
}

impl FieldValue for String {
    const TYPE: FieldType = FieldType::Text;

    fn parse(_key: &'static str, text: &str) -> Result<String, HeaderError> {
        Ok(text.to_owned())
    }

    fn parse_into(&mut self, _key: &'static str, text: &str) -> Result<(), HeaderError> {
        self.clear();
        self.push_str(text);
        Ok(())
    }

    fn render_with<R>(&self, use_text: impl FnOnce(&str) -> R) -> R {
        use_text(self)
    }

    #[cfg(test)]
    fn strategy() -> proptest::strategy::BoxedStrategy<String> {
        use proptest::prelude::*;
        any::<String>().boxed()
    }
}

impl FieldValue for i32 {
    const TYPE: FieldType = FieldType::Int;

    fn parse(key: &'static str, text: &str) -> Result<i32, HeaderError> {
        text.parse().map_err(|_| HeaderError::bad_number(key, text))
    }

    fn render_with<R>(&self, use_text: impl FnOnce(&str) -> R) -> R {
        use_text(Decimal::new(i64::from(*self)).as_str())
    }

    #[cfg(test)]
    fn strategy() -> proptest::strategy::BoxedStrategy<i32> {
        use proptest::prelude::*;
        any::<i32>().boxed()
    }
}

impl FieldValue for i64 {
    const TYPE: FieldType = FieldType::Long;

    fn parse(key: &'static str, text: &str) -> Result<i64, HeaderError> {
        text.parse().map_err(|_| HeaderError::bad_number(key, text))
    }

    fn render_with<R>(&self, use_text: impl FnOnce(&str) -> R) -> R {
        use_text(Decimal::new(*self).as_str())
    }

    #[cfg(test)]
    fn strategy() -> proptest::strategy::BoxedStrategy<i64> {
        use proptest::prelude::*;
        any::<i64>().boxed()
    }
}

impl FieldValue for bool {
    const TYPE: FieldType = FieldType::Bool;

    /// Java's `Boolean.parseBoolean`: `"true"` in any case is true, everything else false. The
    /// C++ client writes booleans as `"0"`/`"1"`, so `"1"` is true as well.
    fn parse(_key: &'static str, text: &str) -> Result<bool, HeaderError> {
        Ok(text.eq_ignore_ascii_case("true") || text == "1")
    }

    fn render_with<R>(&self, use_text: impl FnOnce(&str) -> R) -> R {
        use_text(if *self { "true" } else { "false" })
    }

    #[cfg(test)]
    fn strategy() -> proptest::strategy::BoxedStrategy<bool> {
        use proptest::prelude::*;
        any::<bool>().boxed()
    }
}

/// Reads a field the header cannot do without.
#[cfg(test)]
pub(crate) fn required<T: FieldValue>(
    fields: &ExtFields,
    key: &'static str,
) -> Result<T, HeaderError> {
    required_text(fields.get(key), key)
}

/// Reads a field that may be absent; a present but malformed value is still an error.
#[cfg(test)]
pub(crate) fn optional<T: FieldValue>(
    fields: &ExtFields,
    key: &'static str,
) -> Result<Option<T>, HeaderError> {
    optional_text(fields.get(key), key)
}

/// Parses the text found under `key`, which the header cannot do without.
pub(crate) fn required_text<T: FieldValue>(
    text: Option<&str>,
    key: &'static str,
) -> Result<T, HeaderError> {
    match text {
        Some(text) => T::parse(key, text),
        None => Err(HeaderError::MissingField { field: key }),
    }
}

/// Parses the text found under `key`, which may be absent; present but malformed text is still
/// an error.
pub(crate) fn optional_text<T: FieldValue>(
    text: Option<&str>,
    key: &'static str,
) -> Result<Option<T>, HeaderError> {
    text.map(|text| T::parse(key, text)).transpose()
}

/// [`required_text`] into `slot`, reusing what it owns.
pub(crate) fn required_into<T: FieldValue>(
    slot: &mut T,
    text: Option<&str>,
    key: &'static str,
) -> Result<(), HeaderError> {
    match text {
        Some(text) => slot.parse_into(key, text),
        None => Err(HeaderError::MissingField { field: key }),
    }
}

/// [`optional_text`] into `slot`, reusing a present value's buffer.
pub(crate) fn optional_into<T: FieldValue>(
    slot: &mut Option<T>,
    text: Option<&str>,
    key: &'static str,
) -> Result<(), HeaderError> {
    match (slot.as_mut(), text) {
        (Some(value), Some(text)) => value.parse_into(key, text),
        (None, Some(text)) => {
            *slot = Some(T::parse(key, text)?);
            Ok(())
        }
        (_, None) => {
            *slot = None;
            Ok(())
        }
    }
}

pub(crate) fn put<T: FieldValue>(fields: &mut ExtFields, key: &'static str, value: &T) {
    value.render_with(|text| fields.insert(key, text));
}

pub(crate) const fn spec<T: FieldValue>(key: &'static str, required: bool) -> FieldSpec {
    FieldSpec {
        key,
        ty: T::TYPE,
        required,
    }
}

/// Declares a header struct and its codec from one row per field:
///
/// ```text
/// field_name: Type = req "javaKey",            // required: absent => MissingField
/// field_name: Type = opt "javaKey",            // Option<Type>: absent => None, None => omitted
/// field_name: Type = or(default) "javaKey",    // Type: absent => default; always encoded
/// ```
///
/// The single-key form implements [`CommandHeader`](super::CommandHeader). The two-key form
/// (`req "producerGroup" | "a"`) is for the send header, whose V1 and V2 shapes carry the same
/// fields under long and one-letter keys: it generates `decode_v1`/`encode_v1`,
/// `decode_v2`/`encode_v2` and `FIELDS_V1`/`FIELDS_V2` instead.
///
/// Under `cfg(test)` each struct also gets `arbitrary()`, a proptest strategy over all its fields.
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty = $kind:ident $(($default:expr))? $key:literal,
            )*
        }
    ) => {
        command_header!(@struct $(#[$meta])* $name { $($(#[$fmeta])* $field : $kind $ty,)* });

        impl $crate::header::CommandHeader for $name {
            const FIELDS: &'static [$crate::header::FieldSpec] =
                &[$(command_header!(@spec $kind $ty, $key),)*];

            fn decode(
                fields: &$crate::codec::command::ExtFields,
            ) -> Result<$name, $crate::header::HeaderError> {
                command_header!(@decode_all fields, $name { $($field $key $kind $([$default])? : $ty;)* })
            }

            fn encode(&self, fields: &mut $crate::codec::command::ExtFields) {
                $(command_header!(@encode fields, $kind, &self.$field, $key);)*
            }
        }
    };

    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty = $kind:ident $(($default:expr))? $key1:literal | $key2:literal,
            )*
        }
    ) => {
        command_header!(@struct $(#[$meta])* $name { $($(#[$fmeta])* $field : $kind $ty,)* });

        /// Every field at its type's default: what the `_into` decoders start from.
        impl Default for $name {
            fn default() -> $name {
                $name { $($field: Default::default(),)* }
            }
        }

        impl $name {
            /// The keys of the V1 (long-name) shape.
            pub const FIELDS_V1: &'static [$crate::header::FieldSpec] =
                &[$(command_header!(@spec $kind $ty, $key1),)*];
            /// The keys of the V2 (one-letter) shape.
            pub const FIELDS_V2: &'static [$crate::header::FieldSpec] =
                &[$(command_header!(@spec $kind $ty, $key2),)*];

            /// Decodes the V1 shape (long Java field names).
            pub fn decode_v1(
                fields: &$crate::codec::command::ExtFields,
            ) -> Result<$name, $crate::header::HeaderError> {
                let mut header = $name::default();
                header.decode_v1_into(fields)?;
                Ok(header)
            }

            /// Decodes the V2 shape (one-letter keys).
            pub fn decode_v2(
                fields: &$crate::codec::command::ExtFields,
            ) -> Result<$name, $crate::header::HeaderError> {
                let mut header = $name::default();
                header.decode_v2_into(fields)?;
                Ok(header)
            }

            /// [`Self::decode_v1`] into `self`, reusing its strings' buffers (a hot path keeps
            /// one header and decodes every request into it). After an error `self` holds a
            /// mix of old and new fields.
            pub fn decode_v1_into(
                &mut self,
                fields: &$crate::codec::command::ExtFields,
            ) -> Result<(), $crate::header::HeaderError> {
                command_header!(@decode_all_into self, fields { $($field $key1 $kind $([$default])? : $ty;)* })
            }

            /// [`Self::decode_v2`] into `self`, as [`Self::decode_v1_into`].
            pub fn decode_v2_into(
                &mut self,
                fields: &$crate::codec::command::ExtFields,
            ) -> Result<(), $crate::header::HeaderError> {
                command_header!(@decode_all_into self, fields { $($field $key2 $kind $([$default])? : $ty;)* })
            }

            /// Encodes the V1 shape (long Java field names).
            pub fn encode_v1(&self, fields: &mut $crate::codec::command::ExtFields) {
                $(command_header!(@encode fields, $kind, &self.$field, $key1);)*
            }

            /// Encodes the V2 shape (one-letter keys).
            pub fn encode_v2(&self, fields: &mut $crate::codec::command::ExtFields) {
                $(command_header!(@encode fields, $kind, &self.$field, $key2);)*
            }
        }
    };

    (@struct $(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $kind:ident $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: command_header!(@type $kind $ty),)*
        }

        #[cfg(test)]
        impl $name {
            proptest::prop_compose! {
                /// Any value of this header, every optional field both present and absent.
                pub(crate) fn arbitrary()($($field in command_header!(@strategy $kind $ty),)*) -> $name {
                    $name { $($field,)* }
                }
            }
        }
    };

    (@type req $ty:ty) => { $ty };
    (@type or $ty:ty) => { $ty };
    (@type opt $ty:ty) => { Option<$ty> };

    (@spec req $ty:ty, $key:literal) => { $crate::header::field::spec::<$ty>($key, true) };
    (@spec or $ty:ty, $key:literal) => { $crate::header::field::spec::<$ty>($key, false) };
    (@spec opt $ty:ty, $key:literal) => { $crate::header::field::spec::<$ty>($key, false) };

    // One pass over the entries picks out each field's text: the first entry with its key, as
    // `ExtFields::get` would. Expands to one `Option<&str>` local per field, named after it;
    // macro hygiene keeps them apart from `key` and `value`.
    (@pick $fields:ident { $($field:ident $key:literal;)* }) => {
        $(let mut $field: Option<&str> = None;)*
        for (key, value) in $fields.iter() {
            match key {
                $($key => {
                    $field.get_or_insert(value);
                })*
                _ => {}
            }
        }
    };

    // `@pick`, then the fields are parsed in declaration order, so the first bad field
    // reported is the one per-field look-ups would report.
    (@decode_all $fields:ident, $name:ident {
        $($field:ident $key:literal $kind:ident $([$default:expr])? : $ty:ty;)*
    }) => {{
        command_header!(@pick $fields { $($field $key;)* });
        Ok($name {
            $($field: command_header!(@decode $field, $kind $ty $(, $default)?, $key),)*
        })
    }};

    // `@decode_all` into an existing header: the same pass, then each field parsed in place
    // in declaration order (so the same first error).
    (@decode_all_into $header:ident, $fields:ident {
        $($field:ident $key:literal $kind:ident $([$default:expr])? : $ty:ty;)*
    }) => {{
        command_header!(@pick $fields { $($field $key;)* });
        $(command_header!(@decode_into $header.$field, $field, $kind $ty $(, $default)?, $key);)*
        Ok(())
    }};

    (@decode_into $slot:expr, $text:ident, req $ty:ty, $key:literal) => {
        $crate::header::field::required_into::<$ty>(&mut $slot, $text, $key)?
    };
    (@decode_into $slot:expr, $text:ident, opt $ty:ty, $key:literal) => {
        $crate::header::field::optional_into::<$ty>(&mut $slot, $text, $key)?
    };
    (@decode_into $slot:expr, $text:ident, or $ty:ty, $default:expr, $key:literal) => {
        $slot = $crate::header::field::optional_text::<$ty>($text, $key)?.unwrap_or($default)
    };

    (@decode $text:ident, req $ty:ty, $key:literal) => {
        $crate::header::field::required_text::<$ty>($text, $key)?
    };
    (@decode $text:ident, opt $ty:ty, $key:literal) => {
        $crate::header::field::optional_text::<$ty>($text, $key)?
    };
    (@decode $text:ident, or $ty:ty, $default:expr, $key:literal) => {
        $crate::header::field::optional_text::<$ty>($text, $key)?.unwrap_or($default)
    };

    (@encode $fields:ident, req, $value:expr, $key:literal) => {
        $crate::header::field::put($fields, $key, $value)
    };
    (@encode $fields:ident, or, $value:expr, $key:literal) => {
        $crate::header::field::put($fields, $key, $value)
    };
    (@encode $fields:ident, opt, $value:expr, $key:literal) => {
        if let Some(value) = $value {
            $crate::header::field::put($fields, $key, value)
        }
    };

    (@strategy opt $ty:ty) => {
        proptest::option::of(<$ty as $crate::header::field::FieldValue>::strategy())
    };
    (@strategy $kind:ident $ty:ty) => {
        <$ty as $crate::header::field::FieldValue>::strategy()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(key: &str, value: &str) -> ExtFields {
        [(key, value)].into_iter().collect()
    }

    #[test]
    fn booleans_follow_java_and_accept_cpp_one() {
        for (text, expected) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("1", true),
            ("false", false),
            ("0", false),
            ("yes", false),
            ("", false),
            (" true", false),
            ("11", false),
        ] {
            assert_eq!(
                required::<bool>(&one("b", text), "b"),
                Ok(expected),
                "{text:?}"
            );
        }
    }

    #[test]
    fn numbers_are_plain_decimal() {
        assert_eq!(required::<i32>(&one("n", "-42"), "n"), Ok(-42));
        assert_eq!(required::<i32>(&one("n", "+7"), "n"), Ok(7));
        assert_eq!(
            required::<i64>(&one("n", "9223372036854775807"), "n"),
            Ok(i64::MAX)
        );
        for bad in ["", " 1", "1 ", "0x10", "1.0", "2147483648", "1e3", "--1"] {
            let err = required::<i32>(&one("n", bad), "n");
            assert!(
                matches!(err, Err(HeaderError::BadNumber { field: "n", .. })),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn absent_fields_are_missing_or_none() {
        let fields = one("other", "1");
        assert_eq!(
            required::<String>(&fields, "topic"),
            Err(HeaderError::MissingField { field: "topic" })
        );
        assert_eq!(optional::<i64>(&fields, "offset"), Ok(None));
        assert!(optional::<i64>(&one("offset", "x"), "offset").is_err());
    }

    proptest! {
        #[test]
        fn values_round_trip(s in String::strategy(), i in i32::strategy(), l in i64::strategy(),
                             b in bool::strategy()) {
            let mut fields = ExtFields::new();
            put(&mut fields, "s", &s);
            put(&mut fields, "i", &i);
            put(&mut fields, "l", &l);
            put(&mut fields, "b", &b);
            prop_assert_eq!(required::<String>(&fields, "s"), Ok(s));
            prop_assert_eq!(required::<i32>(&fields, "i"), Ok(i));
            prop_assert_eq!(required::<i64>(&fields, "l"), Ok(l));
            prop_assert_eq!(required::<bool>(&fields, "b"), Ok(b));
        }

        #[test]
        fn parsing_any_text_never_panics(text in ".*") {
            let fields = one("k", &text);
            let _ = required::<i32>(&fields, "k");
            let _ = required::<i64>(&fields, "k");
            let _ = required::<bool>(&fields, "k");
        }
    }
}
