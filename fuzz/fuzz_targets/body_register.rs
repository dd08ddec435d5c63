#![no_main]
//! Fuzzes RegisterBrokerBody in both forms (JSON, and zlib-compressed binary) and the bare
//! TopicConfigSerializeWrapper of old brokers: decoding must never panic, and whatever decodes
//! must survive encode -> decode unchanged, in JSON and, for a body that came compressed, in
//! the compressed form too (which carries less than JSON).
use libfuzzer_sys::fuzz_target;
use proto_core::body::{RegisterBrokerBody, TopicConfigSerializeWrapper};

fuzz_target!(|data: &[u8]| {
    for compressed in [false, true] {
        let Ok(body) = RegisterBrokerBody::decode(data, compressed) else {
            continue;
        };
        let json = RegisterBrokerBody::decode(&body.encode(false), false);
        assert_eq!(json.expect("re-encoded JSON decodes"), body);
        // With the flag set, everything but a body starting with `{` is read as compressed.
        if compressed && data.first() != Some(&b'{') {
            let again = RegisterBrokerBody::decode(&body.encode(true), true);
            assert_eq!(again.expect("re-compressed body decodes"), body);
        }
    }
    if let Ok(wrapper) = TopicConfigSerializeWrapper::decode(data) {
        let again = TopicConfigSerializeWrapper::decode(&wrapper.encode());
        assert_eq!(again.expect("a re-encoded body decodes"), wrapper);
    }
});
