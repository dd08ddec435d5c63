//! Client-session headers (§6.6–§6.8, §10, §12): unregistering, consumer lists and their change
//! notice, sending a failed message back, transactions, and the heartbeat response keys.
//!
//! HEART_BEAT, LOCK_BATCH_MQ and UNLOCK_BATCH_MQ carry everything in their JSON bodies and have
//! no header.

/// HEART_BEAT response extFields key: `"true"`, the broker understands heartbeat v2
/// (fingerprints, `withoutSub`).
pub const IS_SUPPORT_HEART_BEAT_V2: &str = "IS_SUPPORT_HEART_BEAT_V2";
/// HEART_BEAT response extFields key: `"true"`/`"false"`, whether the broker saw the client's
/// subscriptions change. A v1 heartbeat always gets `"true"`.
pub const IS_SUB_CHANGE: &str = "IS_SUB_CHANGE";

command_header! {
    /// UNREGISTER_CLIENT (35) request; the response has no fields.
    pub struct UnregisterClientRequestHeader {
        client_id: String = req "clientID",
        /// The C++ client sends `""` for the group kind it is not; treat empty as absent.
        producer_group: String = opt "producerGroup",
        consumer_group: String = opt "consumerGroup",
    }
}

command_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38) request; the list comes back in the body.
    pub struct GetConsumerListByGroupRequestHeader {
        consumer_group: String = req "consumerGroup",
    }
}

command_header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (40), broker to client, oneway.
    pub struct NotifyConsumerIdsChangedRequestHeader {
        consumer_group: String = req "consumerGroup",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK (36) request; the response has no fields.
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the failed message.
        offset: i64 = req "offset",
        group: String = req "group",
        /// 0: the broker picks `3 + reconsumeTimes`; negative: straight to the DLQ; positive:
        /// that level.
        delay_level: i32 = req "delayLevel",
        origin_msg_id: String = opt "originMsgId",
        origin_topic: String = opt "originTopic",
        unit_mode: bool = or(false) "unitMode",
        max_reconsume_times: i32 = opt "maxReconsumeTimes",
    }
}

command_header! {
    /// END_TRANSACTION (37), client to broker, oneway. The remark may carry the client's
    /// local-transaction error text.
    pub struct EndTransactionRequestHeader {
        topic: String = opt "topic",
        /// Must equal the half message's producer group.
        producer_group: String = req "producerGroup",
        /// Consume-queue offset of the half message.
        tran_state_table_offset: i64 = req "tranStateTableOffset",
        /// Commit-log offset of the half message.
        commit_log_offset: i64 = req "commitLogOffset",
        /// MessageSysFlag transaction type: 0 unknown, 8 commit, 12 rollback.
        commit_or_rollback: i32 = req "commitOrRollback",
        /// True when answering CHECK_TRANSACTION_STATE.
        from_transaction_check: bool = or(false) "fromTransactionCheck",
        /// UNIQ_KEY of the message.
        msg_id: String = req "msgId",
        transaction_id: String = opt "transactionId",
    }
}

command_header! {
    /// CHECK_TRANSACTION_STATE (39), broker to client, oneway; the body is the half message.
    pub struct CheckTransactionStateRequestHeader {
        topic: String = opt "topic",
        tran_state_table_offset: i64 = req "tranStateTableOffset",
        commit_log_offset: i64 = req "commitLogOffset",
        /// UNIQ_KEY of the message.
        msg_id: String = opt "msgId",
        transaction_id: String = opt "transactionId",
        offset_msg_id: String = opt "offsetMsgId",
        /// The asking broker's name, in the generic `bname` key; 5.x clients send their
        /// END_TRANSACTION answer to that broker.
        broker_name: String = opt "bname",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_header, request_ext_fields, CPP_PUSH_CONSUMER, RUST_CLIENT};
    use super::super::CommandHeader;
    use super::*;
    use crate::codec::code::RequestCode;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn unregister_client_round_trips(h in UnregisterClientRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn consumer_list_round_trips(h in GetConsumerListByGroupRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn notify_ids_changed_round_trips(h in NotifyConsumerIdsChangedRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn send_back_round_trips(h in ConsumerSendMsgBackRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn end_transaction_round_trips(h in EndTransactionRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn check_transaction_round_trips(h in CheckTransactionStateRequestHeader::arbitrary()) {
            check_header(&h)?;
        }
    }

    #[test]
    fn real_clients_unregister_and_list_consumers() {
        for jsonl in [CPP_PUSH_CONSUMER, RUST_CLIENT] {
            let unregisters = request_ext_fields(jsonl, RequestCode::UnregisterClient.value());
            assert!(!unregisters.is_empty());
            for fields in &unregisters {
                let header =
                    UnregisterClientRequestHeader::decode(fields).expect("unregister decodes");
                assert!(!header.client_id.is_empty());
                assert!(header.producer_group.is_some() || header.consumer_group.is_some());
            }
            let lists = request_ext_fields(jsonl, RequestCode::GetConsumerListByGroup.value());
            assert!(!lists.is_empty());
            for fields in &lists {
                GetConsumerListByGroupRequestHeader::decode(fields).expect("list decodes");
            }
        }
    }

    #[test]
    fn java_defaults_fill_absent_flags() {
        let fields = [("offset", "100"), ("group", "g"), ("delayLevel", "0")]
            .into_iter()
            .collect();
        let header = ConsumerSendMsgBackRequestHeader::decode(&fields).expect("decodes");
        assert!(!header.unit_mode);
        assert_eq!(header.max_reconsume_times, None);
    }
}
