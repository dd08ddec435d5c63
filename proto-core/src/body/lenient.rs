//! serde field helpers for the ways real peers bend member types.
//!
//! - [`or_default`]: null reads as the empty value. Java writes nothing for a null member, but
//!   rocketmq-rust writes explicit nulls, and a null collection means "none" to every reader.
//! - [`long`]: a Java `long` written as a number or as a string holding one. The C++ client
//!   sends `subVersion` as a string; fastjson's BrowserCompatible mode writes longs beyond 2⁵³
//!   as strings.
//! - [`language`]: a [`LanguageCode`] by name (or by number, as the JSON header allows).
//!
//! What it leaves out: enums (see `super::java_enum`) and map keys (see `super::normalize` and
//! `super::message_queue`).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

use crate::codec::command::LanguageCode;

/// Reads null as `T::default()`.
pub(crate) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a Java `long` from a number or a string holding one; null reads as 0, as fastjson
/// reads it into a primitive.
pub(crate) fn long<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(LongVisitor)
}

struct LongVisitor;

impl Visitor<'_> for LongVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a 64-bit integer or a string holding one")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.trim()
            .parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }
}

/// Serde for [`LanguageCode`]: its name, or its byte when it has none.
pub(crate) mod language {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(lang: &LanguageCode, s: S) -> Result<S::Ok, S::Error> {
        match lang.name() {
            Some(name) => s.serialize_str(name),
            None => s.serialize_u8(lang.code()),
        }
    }

    /// An unknown name or an out-of-range number reads as `Other`: an unknown language must not
    /// make a whole body unreadable.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
        d.deserialize_any(LanguageVisitor)
    }

    struct LanguageVisitor;

    impl Visitor<'_> for LanguageVisitor {
        type Value = LanguageCode;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a language name or code")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<LanguageCode, E> {
            Ok(LanguageCode::from_name(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<LanguageCode, E> {
            Ok(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_code))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<LanguageCode, E> {
            Ok(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Probe {
        #[serde(default, deserialize_with = "long")]
        n: i64,
        #[serde(default, deserialize_with = "or_default")]
        list: Vec<u8>,
        #[serde(default = "java", with = "language")]
        lang: LanguageCode,
    }

    fn java() -> LanguageCode {
        LanguageCode::Java
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn long_reads_numbers_strings_and_null() {
        assert_eq!(probe(r#"{"n":-5}"#).unwrap().n, -5);
        assert_eq!(
            probe(r#"{"n":"1795274782419"}"#).unwrap().n,
            1_795_274_782_419
        );
        assert_eq!(probe(r#"{"n":null}"#).unwrap().n, 0);
        assert!(probe(r#"{"n":"x"}"#).is_err());
        assert!(probe(r#"{"n":18446744073709551615}"#).is_err());
        assert!(probe(r#"{"n":1.5}"#).is_err());
    }

    #[test]
    fn null_collections_read_as_empty() {
        assert_eq!(probe(r#"{"list":null}"#).unwrap().list, Vec::<u8>::new());
        assert_eq!(probe(r#"{"list":[1]}"#).unwrap().list, vec![1]);
    }

    #[test]
    fn language_by_name_or_code() {
        assert_eq!(probe(r#"{"lang":"CPP"}"#).unwrap().lang, LanguageCode::Cpp);
        assert_eq!(probe(r#"{"lang":12}"#).unwrap().lang, LanguageCode::Rust);
        assert_eq!(
            probe(r#"{"lang":"KLINGON"}"#).unwrap().lang,
            LanguageCode::Other
        );
        assert_eq!(probe(r#"{"lang":-1}"#).unwrap().lang, LanguageCode::Other);
    }
}
