#![no_main]
//! Fuzzes ClusterInfo (bare number keys) and the bodies with MessageQueue object keys
//! (ConsumeStats, TopicStatsTable, ResetOffsetBody): decoding must never panic, and whatever
//! decodes must survive encode -> decode unchanged.
use libfuzzer_sys::fuzz_target;
use proto_core::body::{ClusterInfo, ConsumeStats, ResetOffsetBody, TopicStatsTable};

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
        ClusterInfo,
        ConsumeStats,
        TopicStatsTable,
        ResetOffsetBody
    );
});
