#![no_main]
//! Fuzzes both message id decoders. An accepted offset id re-encodes to the input in upper
//! case; an accepted client id always has the length of its address family.
use libfuzzer_sys::fuzz_target;
use store_core::format::msg_id::{decode_offset_msg_id, decode_uniq_key, encode_offset_msg_id};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((host, offset)) = decode_offset_msg_id(&text) {
        assert_eq!(
            encode_offset_msg_id(host, offset),
            text.to_ascii_uppercase()
        );
    }
    if let Ok(parts) = decode_uniq_key(&text) {
        assert_eq!(text.len(), if parts.ip.is_ipv4() { 32 } else { 56 });
    }
});
