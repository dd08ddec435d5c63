//! Requests a producer and a consumer send, built as the Java client builds them (protocol
//! reference §6, §10, §20). Each returns a command with opaque 0; the connection assigns it.
//!
//! What it leaves out: SEND_MESSAGE (V1) and batch sends, compression of large bodies,
//! user properties, and SQL92 subscriptions.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel, MessageQueue,
    ProducerData, SubscriptionData, EXPRESSION_TYPE_TAG,
};
use crate::codec::code::RequestCode;
use crate::codec::command::RemotingCommand;
pub use crate::header::PullSysFlag;
use crate::header::{
    encode_header, GetConsumerListByGroupRequestHeader, GetMaxOffsetRequestHeader,
    GetRouteInfoRequestHeader, PullMessageRequestHeader, QueryConsumerOffsetRequestHeader,
    SendMessageRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::message::properties::{self, Properties, KEY_SEPARATOR};
use crate::message::tag::tag_hash_code;

/// The template topic an auto-created topic copies (Java `TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const DEFAULT_TOPIC: &str = "TBW102";
/// Queues of an auto-created topic (Java `DefaultMQProducer.defaultTopicQueueNums`).
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;
/// Java `ExpressionType.TAG`.
/// A subscription to every tag.
const SUB_ALL: &str = "*";

/// A message to send: what the application gives a producer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub topic: String,
    pub body: Bytes,
    pub tags: Option<String>,
    /// Business keys, indexed by the broker; joined with a space on the wire.
    pub keys: Vec<String>,
    /// Application flag, stored verbatim.
    pub flag: i32,
}

/// GET_ROUTEINFO_BY_TOPIC (105) to a name server.
pub fn route_request(topic: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic.value(), 0);
    encode_header(
        &mut cmd,
        &GetRouteInfoRequestHeader {
            topic: topic.to_string(),
            accept_standard_json_only: None,
        },
    );
    cmd
}

/// SEND_MESSAGE_V2 (310) of `msg` to `mq`, with the properties every Java send carries: `KEYS`
/// and `TAGS` when given, `UNIQ_KEY` (made once per message, kept across retries) and
/// `WAIT=true`.
pub fn send_message_v2_request(
    producer_group: &str,
    mq: &MessageQueue,
    msg: &OutgoingMessage,
    uniq_key: &str,
    born_timestamp_ms: i64,
) -> RemotingCommand {
    let mut props = Properties::new();
    if !msg.keys.is_empty() {
        props.insert(properties::KEYS, msg.keys.join(KEY_SEPARATOR));
    }
    if let Some(tags) = &msg.tags {
        props.insert(properties::TAGS, tags.as_str());
    }
    props.insert(properties::UNIQ_KEY, uniq_key);
    props.insert(properties::WAIT, "true");
    let header = SendMessageRequestHeader {
        producer_group: producer_group.to_string(),
        topic: mq.topic.clone(),
        default_topic: DEFAULT_TOPIC.to_string(),
        default_topic_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
        queue_id: mq.queue_id,
        sys_flag: 0,
        born_timestamp: born_timestamp_ms,
        flag: msg.flag,
        properties: Some(props.encode()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: Some(mq.broker_name.clone()),
    };
    let code = RequestCode::SendMessageV2;
    let mut cmd = RemotingCommand::request(code.value(), 0).with_body(msg.body.clone());
    header.encode_for(code, cmd.ext_fields_mut());
    cmd
}

/// A TAG subscription to `topic` (Java `FilterAPI.buildSubscriptionData`): `*` or an empty
/// expression means every tag; otherwise tags joined by `||`, each with its Java hash code.
pub fn subscription(topic: &str, expression: &str, sub_version: i64) -> SubscriptionData {
    let expression = expression.trim();
    let mut data = SubscriptionData {
        topic: topic.to_string(),
        sub_string: if expression.is_empty() {
            SUB_ALL
        } else {
            expression
        }
        .to_string(),
        sub_version,
        expression_type: EXPRESSION_TYPE_TAG.to_string(),
        ..SubscriptionData::default()
    };
    if data.sub_string != SUB_ALL {
        let tags: BTreeSet<String> = data
            .sub_string
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        // The wire carries Java's int hash; `tag_hash_code` widens it, so this narrows back.
        data.code_set = tags.iter().map(|t| tag_hash_code(t) as i32).collect();
        data.tags_set = tags;
    }
    data
}

/// The heartbeat of a producer-only client.
pub fn producer_heartbeat(client_id: &str, group: &str) -> HeartbeatData {
    HeartbeatData {
        client_id: client_id.to_string(),
        producer_data_set: vec![ProducerData {
            group_name: group.to_string(),
        }],
        ..HeartbeatData::default()
    }
}

/// The heartbeat of a clustering consumer that pulls itself (`CONSUME_ACTIVELY`).
pub fn consumer_heartbeat(
    client_id: &str,
    group: &str,
    subscriptions: Vec<SubscriptionData>,
    consume_from_where: ConsumeFromWhere,
) -> HeartbeatData {
    HeartbeatData {
        client_id: client_id.to_string(),
        consumer_data_set: vec![ConsumerData {
            consume_from_where,
            consume_type: ConsumeType::ConsumeActively,
            group_name: group.to_string(),
            message_model: MessageModel::Clustering,
            subscription_data_set: subscriptions,
            unit_mode: false,
        }],
        ..HeartbeatData::default()
    }
}

/// HEART_BEAT (34): no header, the data in the body.
pub fn heartbeat_request(data: &HeartbeatData) -> RemotingCommand {
    RemotingCommand::request(RequestCode::HeartBeat.value(), 0).with_body(data.encode())
}

/// GET_CONSUMER_LIST_BY_GROUP (38).
pub fn consumer_list_request(group: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::GetConsumerListByGroup.value(), 0);
    encode_header(
        &mut cmd,
        &GetConsumerListByGroupRequestHeader {
            consumer_group: group.to_string(),
        },
    );
    cmd
}

/// QUERY_CONSUMER_OFFSET (14) for `mq`; Java's consumers ask with `setZeroIfNotFound` unset,
/// so "never committed" comes back as QUERY_NOT_FOUND.
pub fn query_consumer_offset_request(group: &str, mq: &MessageQueue) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::QueryConsumerOffset.value(), 0);
    encode_header(
        &mut cmd,
        &QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_string(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            set_zero_if_not_found: None,
        },
    );
    cmd
}

/// UPDATE_CONSUMER_OFFSET (15): `offset` is the next offset to consume.
pub fn update_consumer_offset_request(
    group: &str,
    mq: &MessageQueue,
    offset: i64,
) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::UpdateConsumerOffset.value(), 0);
    encode_header(
        &mut cmd,
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_string(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            commit_offset: offset,
        },
    );
    cmd
}

/// GET_MAX_OFFSET (30): where CONSUME_FROM_LAST_OFFSET starts a queue never consumed.
pub fn get_max_offset_request(mq: &MessageQueue) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::GetMaxOffset.value(), 0);
    encode_header(
        &mut cmd,
        &GetMaxOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            committed: true,
        },
    );
    cmd
}

/// One PULL_MESSAGE of a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullArgs<'a> {
    pub group: &'a str,
    pub mq: &'a MessageQueue,
    pub subscription: &'a SubscriptionData,
    /// First offset wanted.
    pub queue_offset: i64,
    /// Offset to commit with the pull (Java sends it when its offset is > 0).
    pub commit_offset: Option<i64>,
    /// Java's push consumer: 32.
    pub max_msg_nums: i32,
    /// 0 asks for an answer at once; otherwise the broker may hold the pull this long.
    pub suspend_timeout_ms: i64,
    /// Send the expression with the pull, so the broker needs no heartbeat subscription.
    pub with_subscription: bool,
}

/// PULL_MESSAGE (11).
pub fn pull_request(args: &PullArgs<'_>) -> RemotingCommand {
    let mut sys_flag = 0;
    if args.commit_offset.is_some() {
        sys_flag |= PullSysFlag::COMMIT_OFFSET;
    }
    if args.suspend_timeout_ms > 0 {
        sys_flag |= PullSysFlag::SUSPEND;
    }
    if args.with_subscription {
        sys_flag |= PullSysFlag::SUBSCRIPTION;
    }
    let mut cmd = RemotingCommand::request(RequestCode::PullMessage.value(), 0);
    encode_header(
        &mut cmd,
        &PullMessageRequestHeader {
            consumer_group: args.group.to_string(),
            topic: args.mq.topic.clone(),
            queue_id: args.mq.queue_id,
            queue_offset: args.queue_offset,
            max_msg_nums: args.max_msg_nums,
            sys_flag,
            commit_offset: args.commit_offset.unwrap_or(0),
            suspend_timeout_millis: args.suspend_timeout_ms,
            subscription: Some(args.subscription.sub_string.clone()),
            sub_version: args.subscription.sub_version,
            expression_type: Some(args.subscription.expression_type.clone()),
            max_msg_bytes: None,
            request_source: None,
            proxy_froward_client_id: None,
        },
    );
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{decode_header, decode_send_header};

    fn mq() -> MessageQueue {
        MessageQueue {
            broker_name: "broker-a".to_string(),
            queue_id: 3,
            topic: "T".to_string(),
        }
    }

    #[test]
    fn send_carries_the_java_properties() {
        let msg = OutgoingMessage {
            topic: "T".to_string(),
            body: Bytes::from_static(b"hello"),
            tags: Some("TagA".to_string()),
            keys: vec!["k1".to_string(), "k2".to_string()],
            flag: 7,
        };
        let cmd = send_message_v2_request("pg", &mq(), &msg, "UNIQ", 1_700_000_000_000);
        assert_eq!(cmd.code, 310);
        assert_eq!(&cmd.body[..], b"hello");
        assert_eq!(cmd.ext("b"), Some("T"));
        let header = decode_send_header(&cmd).unwrap();
        assert_eq!(header.producer_group, "pg");
        assert_eq!(header.queue_id, 3);
        assert_eq!(header.flag, 7);
        assert_eq!(header.broker_name.as_deref(), Some("broker-a"));
        assert_eq!(header.default_topic, "TBW102");
        let props = Properties::parse(header.properties.as_deref().unwrap());
        assert_eq!(props.get(properties::KEYS), Some("k1 k2"));
        assert_eq!(props.get(properties::TAGS), Some("TagA"));
        assert_eq!(props.get(properties::UNIQ_KEY), Some("UNIQ"));
        assert_eq!(props.get(properties::WAIT), Some("true"));

        let bare = OutgoingMessage {
            topic: "T".to_string(),
            ..OutgoingMessage::default()
        };
        let cmd = send_message_v2_request("pg", &mq(), &bare, "U2", 0);
        let props = Properties::parse(
            decode_send_header(&cmd)
                .unwrap()
                .properties
                .as_deref()
                .unwrap(),
        );
        assert_eq!(
            (props.get(properties::KEYS), props.get(properties::TAGS)),
            (None, None)
        );
    }

    #[test]
    fn subscriptions_hash_their_tags() {
        let all = subscription("T", " ", 5);
        assert_eq!((all.sub_string.as_str(), all.sub_version), ("*", 5));
        assert!(all.tags_set.is_empty() && all.code_set.is_empty());
        let some = subscription("T", "TagA || TagB", 5);
        assert_eq!(
            some.tags_set,
            BTreeSet::from(["TagA".to_string(), "TagB".to_string()])
        );
        assert!(some.code_set.contains(&2_598_919));
        assert_eq!(some.expression_type, "TAG");
    }

    #[test]
    fn pull_flags_follow_the_arguments() {
        let sub = subscription("T", "*", 9);
        let mut args = PullArgs {
            group: "g",
            mq: &mq(),
            subscription: &sub,
            queue_offset: 10,
            commit_offset: Some(8),
            max_msg_nums: 32,
            suspend_timeout_ms: 15_000,
            with_subscription: false,
        };
        let cmd = pull_request(&args);
        let h: PullMessageRequestHeader = decode_header(&cmd).unwrap();
        assert_eq!(
            h.sys_flag,
            PullSysFlag::COMMIT_OFFSET | PullSysFlag::SUSPEND
        );
        assert_eq!((h.queue_offset, h.commit_offset, h.sub_version), (10, 8, 9));
        args.commit_offset = None;
        args.suspend_timeout_ms = 0;
        args.with_subscription = true;
        let h: PullMessageRequestHeader = decode_header(&pull_request(&args)).unwrap();
        assert_eq!(h.sys_flag, PullSysFlag::SUBSCRIPTION);
        assert_eq!(h.subscription.as_deref(), Some("*"));
    }

    #[test]
    fn heartbeats_and_small_requests_decode() {
        let sub = subscription("T", "*", 1);
        let hb = consumer_heartbeat(
            "ip@1",
            "cg",
            vec![sub.clone()],
            ConsumeFromWhere::ConsumeFromFirstOffset,
        );
        let cmd = heartbeat_request(&hb);
        assert_eq!(cmd.code, 34);
        let back = HeartbeatData::decode(&cmd.body).unwrap();
        assert_eq!(back, hb);
        assert_eq!(back.consumer_data_set[0].subscription_data_set, [sub]);
        let p = producer_heartbeat("ip@1", "pg");
        assert_eq!(p.producer_data_set[0].group_name, "pg");
        assert!(p.consumer_data_set.is_empty());

        let h: GetConsumerListByGroupRequestHeader =
            decode_header(&consumer_list_request("cg")).unwrap();
        assert_eq!(h.consumer_group, "cg");
        let h: QueryConsumerOffsetRequestHeader =
            decode_header(&query_consumer_offset_request("cg", &mq())).unwrap();
        assert_eq!((h.topic.as_str(), h.queue_id), ("T", 3));
        let h: UpdateConsumerOffsetRequestHeader =
            decode_header(&update_consumer_offset_request("cg", &mq(), 42)).unwrap();
        assert_eq!(h.commit_offset, 42);
        let h: GetMaxOffsetRequestHeader = decode_header(&get_max_offset_request(&mq())).unwrap();
        assert_eq!(h.queue_id, 3);
        let h: GetRouteInfoRequestHeader = decode_header(&route_request("T")).unwrap();
        assert_eq!(h.topic, "T");
    }
}
