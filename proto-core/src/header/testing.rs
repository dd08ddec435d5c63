//! Test support for the header modules: one generic property check that every header codec must
//! pass, and a minimal reader for the golden client frames in `../shared/vectors/`.
//!
//! The frame reader is deliberately naive (length word, header-length word, JSON header) so that
//! these tests do not depend on the real frame decoder they would otherwise be testing alongside.

use std::fmt::Debug;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{CommandHeader, FieldSpec, FieldType, HeaderError};
use crate::codec::command::ExtFields;

/// Keys real clients add that no header names; decoding must ignore them.
const FOREIGN_KEYS: [(&str, &str); 6] = [
    ("AccessKey", ""),
    ("Signature", "+YR5Y5dIKVUN2xVhr3Cz5wQhZYU="),
    ("OnsChannel", "ALIYUN"),
    ("bname", "broker-a"),
    ("nsd", "true"),
    ("lo", "false"),
];

/// [`check_codec`] for a [`CommandHeader`].
pub(crate) fn check_header<H>(header: &H) -> Result<(), TestCaseError>
where
    H: CommandHeader + PartialEq + Debug,
{
    check_codec(header, H::FIELDS, H::encode, H::decode)
}

/// The properties every header codec has, checked on one value:
/// 1. encode then decode is the identity, also with foreign keys around;
/// 2. encoding writes only declared keys, and every required one;
/// 3. dropping any required key fails with `MissingField` naming it;
/// 4. garbage in any numeric key fails with `BadNumber` naming it.
pub(crate) fn check_codec<H: PartialEq + Debug>(
    header: &H,
    specs: &[FieldSpec],
    encode: impl Fn(&H, &mut ExtFields),
    decode: impl Fn(&ExtFields) -> Result<H, HeaderError>,
) -> Result<(), TestCaseError> {
    let mut fields = ExtFields::new();
    encode(header, &mut fields);
    prop_assert_eq!(&decode(&fields)?, header);

    for (key, _) in fields.iter() {
        prop_assert!(specs.iter().any(|s| s.key == key), "undeclared key {}", key);
    }
    for spec in specs.iter().filter(|s| s.required) {
        prop_assert!(
            fields.get(spec.key).is_some(),
            "required {} not encoded",
            spec.key
        );
    }

    let mut noisy = fields.clone();
    for (key, value) in FOREIGN_KEYS {
        if specs.iter().all(|s| s.key != key) {
            noisy.insert(key, value);
        }
    }
    prop_assert_eq!(&decode(&noisy)?, header);

    for spec in specs.iter().filter(|s| s.required) {
        let mut without = fields.clone();
        without.remove(spec.key);
        prop_assert_eq!(
            decode(&without),
            Err(HeaderError::MissingField { field: spec.key })
        );
    }

    let numeric = |s: &&FieldSpec| matches!(s.ty, FieldType::Int | FieldType::Long);
    for spec in specs.iter().filter(numeric) {
        if fields.get(spec.key).is_none() {
            continue;
        }
        let mut garbled = fields.clone();
        garbled.insert(spec.key, "12x");
        prop_assert_eq!(
            decode(&garbled),
            Err(HeaderError::BadNumber {
                field: spec.key,
                value: "12x".to_owned()
            })
        );
    }
    Ok(())
}

pub(crate) const CPP_PRODUCER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/cpp-producer.jsonl"
));
pub(crate) const CPP_PUSH_CONSUMER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/cpp-push-consumer.jsonl"
));
pub(crate) const BROKER_TO_NAMESRV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/broker-to-namesrv.jsonl"
));
pub(crate) const RUST_CLIENT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/rust-client.jsonl"
));

/// The `extFields` of every client-to-server request with `code` in a vector file, in file
/// order. JSON numbers and booleans become their text, as the C++ client sends some numbers
/// unquoted.
pub(crate) fn request_ext_fields(jsonl: &str, code: i32) -> Vec<ExtFields> {
    jsonl
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("vector line is JSON"))
        .filter(|frame| frame["dir"] == "c2s" && frame["code"] == code)
        .filter(|frame| frame["flag"].as_i64().expect("flag is a number") & 1 == 0)
        .map(|frame| {
            let hex = frame["hex"].as_str().expect("hex is a string");
            ext_fields_of_frame(&unhex(hex))
        })
        .collect()
}

fn ext_fields_of_frame(frame: &[u8]) -> ExtFields {
    let word = u32::from_be_bytes(frame[4..8].try_into().expect("four bytes"));
    assert_eq!(word >> 24, 0, "vectors hold JSON headers only");
    let header_len = (word & 0x00FF_FFFF) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&frame[8..8 + header_len]).expect("JSON header");
    let map = header["extFields"].as_object().expect("extFields map");
    map.iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}
