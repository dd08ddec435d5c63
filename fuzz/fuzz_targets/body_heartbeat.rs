#![no_main]
//! Fuzzes HeartbeatData and the bodies sharing its parts (ConsumerConnection,
//! ProducerConnection, SubscriptionGroupConfig): decoding must never panic, and whatever
//! decodes must survive encode -> decode unchanged.
use libfuzzer_sys::fuzz_target;
use proto_core::body::{
    ConsumerConnection, HeartbeatData, ProducerConnection, SubscriptionGroupConfig,
};

macro_rules! round_trip {
    ($data:expr, $($ty:ty),+ $(,)?) => {$(
        if let Ok(body) = <$ty>::decode($data) {
            let again = <$ty>::decode(&body.encode()).expect("a re-encoded body decodes");
            assert_eq!(again, body);
        }
    )+};
}

fuzz_target!(|data: &[u8]| {
    round_trip!(
        data,
        HeartbeatData,
        ConsumerConnection,
        ProducerConnection,
        SubscriptionGroupConfig,
    );
});
