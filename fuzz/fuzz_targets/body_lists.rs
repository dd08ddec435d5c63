#![no_main]
//! Fuzzes the small list bodies (TopicList, KVTable, GroupList, the consumer id list, the queue
//! lock bodies, MessageQueue) and ConsumerOffsetSerializeWrapper (bare Integer keys): decoding
//! must never panic, and whatever decodes must survive encode -> decode unchanged.
use libfuzzer_sys::fuzz_target;
use proto_core::body::{
    ConsumerOffsetSerializeWrapper, GetConsumerListByGroupResponseBody, GroupList, KVTable,
    LockBatchRequestBody, LockBatchResponseBody, MessageQueue, TopicList, UnlockBatchRequestBody,
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
        TopicList,
        KVTable,
        GroupList,
        GetConsumerListByGroupResponseBody,
        LockBatchRequestBody,
        UnlockBatchRequestBody,
        LockBatchResponseBody,
        MessageQueue,
        ConsumerOffsetSerializeWrapper,
    );
});
