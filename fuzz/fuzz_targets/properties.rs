#![no_main]
//! Fuzzes the properties parser: parse, encode, parse again must give the first parse, and the
//! zero-allocation lookup must agree with the parsed map for every key.
use libfuzzer_sys::fuzz_target;
use store_core::format::properties::{find_property, Properties};

fuzz_target!(|data: &[u8]| {
    let first = Properties::parse_bytes(data);
    let encoded = first.encode();
    assert_eq!(Properties::parse(&encoded), first);
    if let Ok(text) = std::str::from_utf8(data) {
        for (key, value) in first.iter() {
            assert_eq!(find_property(text.as_bytes(), key), Some(value.as_bytes()));
        }
    }
});
