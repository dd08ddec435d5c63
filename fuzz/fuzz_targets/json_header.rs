#![no_main]
//! Fuzzes the JSON header decoder: it must never panic, and whatever it accepts must survive
//! encode -> decode unchanged.
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto_core::codec::json_header;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = json_header::decode(data) {
        let mut out = BytesMut::new();
        json_header::encode(&cmd, &mut out);
        assert_eq!(json_header::decode(&out), Ok(cmd));
    }
});
