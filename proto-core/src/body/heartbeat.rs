//! The HEART_BEAT body (protocol reference §13.5, §10.1): [`HeartbeatData`] with its producer
//! and consumer groups and their subscriptions.
//!
//! Real clients differ, so reading is lenient: the C++ client writes the three consumer enums as
//! Java ordinals and `subVersion` as a string, and omits `unitMode`, `classFilterMode`,
//! `expressionType` and, for `*` subscriptions, `tagsSet`/`codeSet`; a producer-only C++
//! heartbeat has no `consumerDataSet`. Missing members take the Java client's defaults.
//!
//! What it leaves out: tag parsing and hashing for `codeSet` (the broker keeps what the client
//! sent, as Java does) and the v2 fingerprint computation.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::java_enum::java_enum;
use super::lenient::{long, or_default};

/// A client's groups and subscriptions, sent to every broker it talks to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HeartbeatData {
    /// `clientIP@instanceName[@unitName]`.
    #[serde(rename = "clientID", deserialize_with = "or_default")]
    pub client_id: String,
    #[serde(deserialize_with = "or_default")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 5.x heartbeat v2: 0 means v1 semantics.
    pub heartbeat_fingerprint: i32,
    #[serde(deserialize_with = "or_default")]
    pub producer_data_set: Vec<ProducerData>,
    /// 5.x heartbeat v2: subscriptions omitted because unchanged.
    pub without_sub: bool,
}

/// A producer group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProducerData {
    #[serde(deserialize_with = "or_default")]
    pub group_name: String,
}

/// A consumer group as one client runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumerData {
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    #[serde(deserialize_with = "or_default")]
    pub group_name: String,
    pub message_model: MessageModel,
    #[serde(deserialize_with = "or_default")]
    pub subscription_data_set: Vec<SubscriptionData>,
    pub unit_mode: bool,
}

/// One topic subscription with its filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionData {
    pub class_filter_mode: bool,
    /// Java `String.hashCode` of each tag, as the client computed it (the C++ client sends 0).
    #[serde(deserialize_with = "or_default")]
    pub code_set: BTreeSet<i32>,
    /// `TAG` or `SQL92`.
    #[serde(deserialize_with = "or_default")]
    pub expression_type: String,
    /// `*` for all, otherwise tags joined by `||` (or an SQL92 expression).
    #[serde(deserialize_with = "or_default")]
    pub sub_string: String,
    /// The subscription's version, a millisecond timestamp; a number or a string.
    #[serde(deserialize_with = "long")]
    pub sub_version: i64,
    #[serde(deserialize_with = "or_default")]
    pub tags_set: BTreeSet<String>,
    #[serde(deserialize_with = "or_default")]
    pub topic: String,
}

// The enum defaults are the Java push consumer's, so a heartbeat that omits a member means what
// a default Java client would have sent.

java_enum! {
    /// Pull or push (Java `ConsumeType`).
    pub enum ConsumeType {
        ConsumeActively = "CONSUME_ACTIVELY",
        #[default]
        ConsumePassively = "CONSUME_PASSIVELY",
        ConsumePop = "CONSUME_POP",
    }
}

java_enum! {
    /// Java `MessageModel`.
    pub enum MessageModel {
        Broadcasting = "BROADCASTING",
        #[default]
        Clustering = "CLUSTERING",
    }
}

java_enum! {
    /// Where a new consumer group starts (Java `ConsumeFromWhere`; three deprecated values kept
    /// because their positions fix the ordinals of the rest).
    pub enum ConsumeFromWhere {
        #[default]
        ConsumeFromLastOffset = "CONSUME_FROM_LAST_OFFSET",
        ConsumeFromLastOffsetAndFromMinWhenBootFirst =
            "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        ConsumeFromMinOffset = "CONSUME_FROM_MIN_OFFSET",
        ConsumeFromMaxOffset = "CONSUME_FROM_MAX_OFFSET",
        ConsumeFromFirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        ConsumeFromTimestamp = "CONSUME_FROM_TIMESTAMP",
    }
}

json_body!(HeartbeatData);

impl Default for SubscriptionData {
    fn default() -> SubscriptionData {
        SubscriptionData {
            class_filter_mode: false,
            code_set: BTreeSet::new(),
            expression_type: EXPRESSION_TYPE_TAG.to_string(),
            sub_string: String::new(),
            sub_version: 0,
            tags_set: BTreeSet::new(),
            topic: String::new(),
        }
    }
}

/// Java `ExpressionType.TAG`, the default filter type.
pub const EXPRESSION_TYPE_TAG: &str = "TAG";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::heartbeat_data;
    use proptest::prelude::*;

    #[test]
    fn reads_cpp_ordinals_and_string_sub_version() {
        // As the C++ client 0.4.4 sends it (shared/vectors/cpp-push-consumer.jsonl).
        let body = concat!(
            r#"{"clientID":"24837-127.0.0.1@DEFAULT","consumerDataSet":[{"consumeFromWhere":0,"#,
            r#""consumeType":1,"groupName":"g","messageModel":1,"subscriptionDataSet":[{"#,
            r#""codeSet":[0],"subString":"TagA","subVersion":"1795274782580","#,
            r#""tagsSet":["TagA"],"topic":"GoldenPush"}]}]}"#,
            "\n"
        )
        .as_bytes();
        let hb = HeartbeatData::decode(body).unwrap();
        let consumer = &hb.consumer_data_set[0];
        assert_eq!(
            consumer.consume_from_where,
            ConsumeFromWhere::ConsumeFromLastOffset
        );
        assert_eq!(consumer.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(consumer.message_model, MessageModel::Clustering);
        assert!(!consumer.unit_mode);
        let sub = &consumer.subscription_data_set[0];
        assert_eq!(sub.sub_version, 1_795_274_782_580);
        assert_eq!(sub.expression_type, "TAG");
        assert_eq!(sub.code_set, BTreeSet::from([0]));
        assert!(hb.producer_data_set.is_empty());
    }

    #[test]
    fn reads_the_java_example() {
        // Protocol reference §13.5.
        let body = br#"{"clientID":"192.168.0.5@31337#80123456789",
 "consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
 "consumeType":"CONSUME_PASSIVELY","groupName":"cg1","messageModel":"CLUSTERING",
 "subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919,2598920],
  "expressionType":"TAG","subString":"TagA || TagB","subVersion":1700000000000,
  "tagsSet":["TagA","TagB"],"topic":"TopicTest"},
  {"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*",
  "subVersion":1700000000001,"tagsSet":[],"topic":"%RETRY%cg1"}],"unitMode":false}],
 "heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],
 "withoutSub":false}"#;
        let hb = HeartbeatData::decode(body).unwrap();
        let subs = &hb.consumer_data_set[0].subscription_data_set;
        assert_eq!(subs[0].code_set, BTreeSet::from([2_598_919, 2_598_920]));
        assert_eq!(subs[1].topic, "%RETRY%cg1");
        assert_eq!(hb.producer_data_set[0].group_name, "CLIENT_INNER_PRODUCER");
    }

    #[test]
    fn enum_ordinals_follow_java_declaration_order() {
        assert_eq!(ConsumeFromWhere::ConsumeFromFirstOffset.ordinal(), 4);
        assert_eq!(ConsumeFromWhere::ConsumeFromTimestamp.ordinal(), 5);
        assert_eq!(ConsumeType::ConsumePop.ordinal(), 2);
        assert_eq!(MessageModel::Broadcasting.ordinal(), 0);
        let read = |json: &str| serde_json::from_str::<ConsumeFromWhere>(json);
        assert_eq!(read("4").unwrap(), ConsumeFromWhere::ConsumeFromFirstOffset);
        assert_eq!(
            read("\"5\"").unwrap(),
            ConsumeFromWhere::ConsumeFromTimestamp
        );
        assert!(read("6").is_err());
        assert!(read("-1").is_err());
        assert!(read("\"CONSUME_FROM_NOWHERE\"").is_err());
    }

    #[test]
    fn writes_enum_names() {
        let hb = HeartbeatData {
            client_id: "c".into(),
            consumer_data_set: vec![ConsumerData {
                group_name: "g".into(),
                ..ConsumerData::default()
            }],
            ..HeartbeatData::default()
        };
        let text = String::from_utf8(hb.encode()).unwrap();
        assert!(
            text.contains(
                r#""consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY""#
            ),
            "{text}"
        );
        assert!(text.contains(r#""messageModel":"CLUSTERING""#), "{text}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip(hb in heartbeat_data()) {
            prop_assert_eq!(HeartbeatData::decode(&hb.encode()).unwrap(), hb);
        }
    }
}
