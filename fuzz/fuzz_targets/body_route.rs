#![no_main]
//! Fuzzes the route bodies (TopicRouteData, ClusterInfo, the broker member group) and the
//! fastjson normalizer under them: decoding must never panic, whatever decodes must survive
//! encode -> decode unchanged, and a normalized text must already be normal.
use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use proto_core::body::{normalize, ClusterInfo, GetBrokerMemberGroupResponseBody, TopicRouteData};

macro_rules! round_trip {
    ($data:expr, $($ty:ty),+ $(,)?) => {$(
        if let Ok(body) = <$ty>::decode($data) {
            let again = <$ty>::decode(&body.encode()).expect("a re-encoded body decodes");
            assert_eq!(again, body);
        }
    )+};
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Cow::Owned(text)) = normalize(data) {
        assert!(matches!(normalize(&text), Ok(Cow::Borrowed(_))));
    }
    round_trip!(
        data,
        TopicRouteData,
        ClusterInfo,
        GetBrokerMemberGroupResponseBody
    );
});
