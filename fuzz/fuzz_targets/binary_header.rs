#![no_main]
//! Fuzzes the ROCKETMQ binary header decoder: it must never panic, and whatever it accepts
//! must survive encode -> decode unchanged (a decoded command always fits the encoding).
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto_core::codec::binary_header;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = binary_header::decode(data) {
        let mut out = BytesMut::new();
        binary_header::encode(&cmd, &mut out).expect("a decoded command re-encodes");
        assert_eq!(binary_header::decode(&out), Ok(cmd));
    }
});
