#![no_main]
//! Fuzzes the stored-record decoder over arbitrary bytes read as a pull response body (records
//! back to back). Every record it accepts must re-encode to exactly the bytes it came from
//! (when the encoder would pick the same version), and the lengths must add up.
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use store_core::format::record::{decode_all, peek, MessageVersion};

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    let mut at = 0usize;
    for item in decode_all(buf.clone()) {
        let Ok(record) = item else { break };
        let len = record.encoded_len();
        assert!(at + len <= data.len(), "record runs past the input");
        let magic = peek(&data[at..])
            .expect("a decoded record has a head")
            .magic;
        if MessageVersion::from_magic(magic) == Some(record.version()) {
            let mut again = Vec::new();
            record.encode_into(&mut again);
            assert_eq!(
                &again[..],
                &data[at..at + len],
                "re-encoding changed the record"
            );
        }
        at += len;
    }
});
