//! PULL_MESSAGE headers (§6.3, §9): the request (codes 11 and 361) and its response.
//!
//! The response's remark (the store status name) and body (stored records) are not header
//! fields and are left to the broker.

command_header! {
    /// PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361) request.
    pub struct PullMessageRequestHeader {
        consumer_group: String = req "consumerGroup",
        topic: String = req "topic",
        queue_id: i32 = req "queueId",
        /// First logical offset wanted.
        queue_offset: i64 = req "queueOffset",
        max_msg_nums: i32 = req "maxMsgNums",
        /// PullSysFlag bits: commit offset, suspend, subscription, class filter, lite pull.
        sys_flag: i32 = req "sysFlag",
        /// Offset to commit when the commit bit is set; `-1` when the client has none.
        commit_offset: i64 = req "commitOffset",
        /// Long-poll hold time.
        suspend_timeout_millis: i64 = req "suspendTimeoutMillis",
        /// Filter expression, sent when the subscription bit is set.
        subscription: String = opt "subscription",
        sub_version: i64 = req "subVersion",
        /// `TAG` (the default) or `SQL92`.
        expression_type: String = opt "expressionType",
        /// The client's byte budget; Java's broker does not enforce it.
        max_msg_bytes: i32 = opt "maxMsgBytes",
        /// −1 SDK, 0 proxy for order, 1 proxy for broadcast, 2 proxy for stream.
        request_source: i32 = opt "requestSource",
        /// Java's spelling, kept as the key.
        proxy_froward_client_id: String = opt "proxyFrowardClientId",
    }
}

command_header! {
    /// PULL_MESSAGE response. Java clients unbox the four required fields, so every pull
    /// response, found or not, carries them.
    pub struct PullMessageResponseHeader {
        /// Broker id to pull from next (0 = master).
        suggest_which_broker_id: i64 = req "suggestWhichBrokerId",
        next_begin_offset: i64 = req "nextBeginOffset",
        min_offset: i64 = req "minOffset",
        /// One past the last message.
        max_offset: i64 = req "maxOffset",
        /// Static topics only.
        offset_delta: i64 = opt "offsetDelta",
        topic_sys_flag: i32 = opt "topicSysFlag",
        group_sys_flag: i32 = opt "groupSysFlag",
        /// With NO_PERMISSION: 1 broker, 2 group, 3 topic, 4 broadcasting, 5 subscription.
        forbidden_type: i32 = opt "forbiddenType",
    }
}

/// The request `sysFlag` bits of PULL_MESSAGE (Java `PullSysFlag`, §9.1), shared by the broker
/// that reads them and the client that sets them.
#[derive(Clone, Copy, Debug)]
pub struct PullSysFlag;

impl PullSysFlag {
    /// Also commit `commitOffset` for this queue.
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// The broker may hold the request (long polling).
    pub const SUSPEND: i32 = 0x2;
    /// The header's `subscription` is authoritative.
    pub const SUBSCRIPTION: i32 = 0x4;
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_header, request_ext_fields, CPP_PUSH_CONSUMER, RUST_CLIENT};
    use super::super::{CommandHeader, HeaderError};
    use super::*;
    use crate::codec::code::RequestCode;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pull_request_round_trips(h in PullMessageRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn pull_response_round_trips(h in PullMessageResponseHeader::arbitrary()) {
            check_header(&h)?;
        }
    }

    #[test]
    fn cpp_push_consumer_pull_decodes() {
        let pulls = request_ext_fields(CPP_PUSH_CONSUMER, RequestCode::PullMessage.value());
        assert_eq!(pulls.len(), 38);
        let first = PullMessageRequestHeader::decode(&pulls[0]).expect("first pull");
        let expected = PullMessageRequestHeader {
            consumer_group: "compat_cg_all_1795274782837".to_owned(),
            topic: "GoldenPush".to_owned(),
            queue_id: 0,
            queue_offset: 0,
            max_msg_nums: 32,
            sys_flag: 6,
            commit_offset: 0,
            suspend_timeout_millis: 15_000,
            subscription: Some("*".to_owned()),
            sub_version: 1_795_274_782_419,
            expression_type: None,
            max_msg_bytes: None,
            request_source: None,
            proxy_froward_client_id: None,
        };
        assert_eq!(first, expected);
        for fields in &pulls {
            let pull = PullMessageRequestHeader::decode(fields).expect("every C++ pull decodes");
            assert_eq!(pull.suspend_timeout_millis, 15_000);
        }
    }

    #[test]
    fn rust_client_pull_decodes() {
        let pulls = request_ext_fields(RUST_CLIENT, RequestCode::PullMessage.value());
        assert_eq!(pulls.len(), 9);
        let first = PullMessageRequestHeader::decode(&pulls[0]).expect("first pull");
        let expected = PullMessageRequestHeader {
            consumer_group: "bench_cg_25235".to_owned(),
            topic: "%RETRY%bench_cg_25235".to_owned(),
            queue_id: 0,
            queue_offset: 0,
            max_msg_nums: 32,
            sys_flag: 2,
            commit_offset: -1,
            suspend_timeout_millis: 15_000,
            subscription: Some(String::new()),
            sub_version: 1_795_274_795_335,
            expression_type: Some("TAG".to_owned()),
            max_msg_bytes: Some(262_144),
            request_source: None,
            proxy_froward_client_id: None,
        };
        assert_eq!(first, expected);
    }

    #[test]
    fn a_pull_without_its_offset_names_the_field() {
        let mut fields =
            request_ext_fields(RUST_CLIENT, RequestCode::PullMessage.value()).swap_remove(0);
        fields.remove("queueOffset");
        assert_eq!(
            PullMessageRequestHeader::decode(&fields),
            Err(HeaderError::MissingField {
                field: "queueOffset"
            })
        );
        fields.insert("queueOffset", "ten");
        assert_eq!(
            PullMessageRequestHeader::decode(&fields)
                .map_err(|e| e.to_string())
                .unwrap_err(),
            "the custom field <queueOffset> is not a decimal number: \"ten\""
        );
    }
}
