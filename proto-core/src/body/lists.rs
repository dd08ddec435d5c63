//! Small list and table bodies (protocol reference §13.4, §10.4): [`TopicList`], [`KVTable`],
//! [`GroupList`], [`GetConsumerListByGroupResponseBody`] and the queue-lock bodies.
//!
//! Java `Set`s are `BTreeSet`s here: the same "no duplicates" meaning, and a stable order on the
//! wire. What it leaves out: lock expiry and ownership rules (the broker's).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::lenient::or_default;
use super::message_queue::MessageQueue;

/// Topic names (GET_ALL_TOPIC_LIST_FROM_NAMESERVER, GET_TOPICS_BY_CLUSTER, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicList {
    /// Set by GET_SYSTEM_TOPIC_LIST_FROM_NS: a broker to ask for its own system topics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    #[serde(deserialize_with = "or_default")]
    pub topic_list: BTreeSet<String>,
}

/// String keys to string values (KV config namespaces, GET_BROKER_RUNTIME_INFO, the
/// REGISTER_BROKER response's order-topic config).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KVTable {
    #[serde(deserialize_with = "or_default")]
    pub table: BTreeMap<String, String>,
}

/// Consumer group names (GET_CONSUME_STATS_IN_BROKER and similar queries).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GroupList {
    #[serde(deserialize_with = "or_default")]
    pub group_list: BTreeSet<String>,
}

/// The client ids of a consumer group (GET_CONSUMER_LIST_BY_GROUP response), in the broker's
/// order; clients sort them before rebalancing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GetConsumerListByGroupResponseBody {
    #[serde(deserialize_with = "or_default")]
    pub consumer_id_list: Vec<String>,
}

/// LOCK_BATCH_MQ request: lock these queues for an orderly consumer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    #[serde(deserialize_with = "or_default")]
    pub client_id: String,
    #[serde(deserialize_with = "or_default")]
    pub consumer_group: String,
    #[serde(deserialize_with = "or_default")]
    pub mq_set: BTreeSet<MessageQueue>,
    /// Lock only on the receiving broker (not its replicas' group).
    pub only_this_broker: bool,
}

/// UNLOCK_BATCH_MQ request: the same members as [`LockBatchRequestBody`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UnlockBatchRequestBody {
    #[serde(deserialize_with = "or_default")]
    pub client_id: String,
    #[serde(deserialize_with = "or_default")]
    pub consumer_group: String,
    #[serde(deserialize_with = "or_default")]
    pub mq_set: BTreeSet<MessageQueue>,
    pub only_this_broker: bool,
}

/// LOCK_BATCH_MQ response: the queues now locked by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", deserialize_with = "or_default")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

json_body!(
    TopicList,
    KVTable,
    GroupList,
    GetConsumerListByGroupResponseBody,
    LockBatchRequestBody,
    UnlockBatchRequestBody,
    LockBatchResponseBody,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::{
        consumer_list, group_list, kv_table, lock_batch_request, lock_batch_response, topic_list,
    };
    use proptest::prelude::*;

    #[test]
    fn reads_the_documented_shapes() {
        let topics = TopicList::decode(br#"{"topicList":["T1","T2"]}"#).unwrap();
        assert_eq!(topics.topic_list.len(), 2);
        assert_eq!(topics.broker_addr, None);
        let kv = KVTable::decode(br#"{"table":{"k":"v"}}"#).unwrap();
        assert_eq!(kv.table["k"], "v");
        let groups = GroupList::decode(br#"{"groupList":["g1"]}"#).unwrap();
        assert!(groups.group_list.contains("g1"));
        let lock = br#"{"clientId":"c","consumerGroup":"g",
            "mqSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"}],"onlyThisBroker":false}"#;
        let lock = LockBatchRequestBody::decode(lock).unwrap();
        assert_eq!(lock.mq_set.iter().next().unwrap().broker_name, "broker-a");
        let locked = LockBatchResponseBody::decode(
            br#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"}]}"#,
        )
        .unwrap();
        assert_eq!(locked.lock_ok_mq_set.len(), 1);
        assert!(String::from_utf8(locked.encode())
            .unwrap()
            .starts_with(r#"{"lockOKMQSet":[{"#));
    }

    proptest! {
        #[test]
        fn topic_list_round_trip(body in topic_list()) {
            prop_assert_eq!(TopicList::decode(&body.encode()).unwrap(), body);
        }

        #[test]
        fn kv_table_round_trip(body in kv_table()) {
            prop_assert_eq!(KVTable::decode(&body.encode()).unwrap(), body);
        }

        #[test]
        fn group_list_round_trip(body in group_list()) {
            prop_assert_eq!(GroupList::decode(&body.encode()).unwrap(), body);
        }

        #[test]
        fn consumer_list_round_trip(body in consumer_list()) {
            let back = GetConsumerListByGroupResponseBody::decode(&body.encode()).unwrap();
            prop_assert_eq!(back, body);
        }

        #[test]
        fn lock_bodies_round_trip(body in lock_batch_request(), locked in lock_batch_response()) {
            prop_assert_eq!(LockBatchRequestBody::decode(&body.encode()).unwrap(), body.clone());
            let unlock = UnlockBatchRequestBody {
                client_id: body.client_id,
                consumer_group: body.consumer_group,
                mq_set: body.mq_set,
                only_this_broker: body.only_this_broker,
            };
            prop_assert_eq!(UnlockBatchRequestBody::decode(&unlock.encode()).unwrap(), unlock);
            prop_assert_eq!(LockBatchResponseBody::decode(&locked.encode()).unwrap(), locked);
        }
    }
}
