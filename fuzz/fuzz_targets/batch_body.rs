#![no_main]
//! Fuzzes the batch request body decoder. An accepted body must re-encode to the same length
//! and decode to the same entries (MAGICCODE/BODYCRC are ignored, so bytes may differ there).
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use store_core::format::batch::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(entries) = decode_batch(&body) {
        let mut again = Vec::new();
        encode_batch(&entries, &mut again);
        assert_eq!(again.len(), data.len());
        let reparsed = decode_batch(&Bytes::from(again)).expect("our own encoding decodes");
        assert_eq!(reparsed, entries);
    }
});
