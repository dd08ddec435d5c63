//! Broker administration headers (§6.10): topic creation and deletion, statistics, consumer
//! connections and offset reset. Requests that carry everything in a JSON body (subscription
//! groups) or nothing at all (runtime info, config) have no header here.

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17) request (Java's `CreateTopicRequestHeader`).
    pub struct CreateTopicRequestHeader {
        topic: String = req "topic",
        default_topic: String = req "defaultTopic",
        read_queue_nums: i32 = req "readQueueNums",
        write_queue_nums: i32 = req "writeQueueNums",
        /// PermName bits (§17.5).
        perm: i32 = req "perm",
        /// `SINGLE_TAG` or `MULTI_TAG`.
        topic_filter_type: String = req "topicFilterType",
        topic_sys_flag: i32 = opt "topicSysFlag",
        order: bool = req "order",
        /// Topic attributes, `+key=value` entries joined with `,`.
        attributes: String = opt "attributes",
        force: bool = or(false) "force",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_BROKER (215) request.
    pub struct DeleteTopicRequestHeader {
        topic: String = req "topic",
    }
}

command_header! {
    /// GET_TOPIC_STATS_INFO (202) request.
    pub struct GetTopicStatsInfoRequestHeader {
        topic: String = req "topic",
    }
}

command_header! {
    /// GET_CONSUME_STATS (208) request.
    pub struct GetConsumeStatsRequestHeader {
        consumer_group: String = req "consumerGroup",
        topic: String = opt "topic",
        /// Topics joined with `;`.
        topic_list: String = opt "topicList",
    }
}

command_header! {
    /// GET_CONSUMER_CONNECTION_LIST (203) request.
    pub struct GetConsumerConnectionListRequestHeader {
        consumer_group: String = req "consumerGroup",
    }
}

command_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222) request.
    pub struct ResetOffsetRequestHeader {
        group: String = req "group",
        topic: String = req "topic",
        /// Java's primitive default: −1, every queue of the topic.
        queue_id: i32 = or(-1) "queueId",
        /// Reset to this offset instead of searching by `timestamp`.
        offset: i64 = opt "offset",
        timestamp: i64 = req "timestamp",
        is_force: bool = req "isForce",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_header;
    use super::super::CommandHeader;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn create_topic_round_trips(h in CreateTopicRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn delete_topic_round_trips(h in DeleteTopicRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn topic_stats_round_trips(h in GetTopicStatsInfoRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn consume_stats_round_trips(h in GetConsumeStatsRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn consumer_connections_round_trips(
            h in GetConsumerConnectionListRequestHeader::arbitrary()
        ) {
            check_header(&h)?;
        }

        #[test]
        fn reset_offset_round_trips(h in ResetOffsetRequestHeader::arbitrary()) {
            check_header(&h)?;
        }
    }

    #[test]
    fn reset_offset_defaults_to_every_queue() {
        let fields = [
            ("group", "g"),
            ("topic", "T"),
            ("timestamp", "1700000000000"),
            ("isForce", "true"),
        ]
        .into_iter()
        .collect();
        let header = ResetOffsetRequestHeader::decode(&fields).expect("decodes");
        assert_eq!(header.queue_id, -1);
        assert_eq!(header.offset, None);
        assert!(header.is_force);
    }
}
