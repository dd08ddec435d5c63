//! Per-queue statistics keyed by [`MessageQueue`] (protocol reference §13.7):
//! [`ConsumeStats`] (GET_CONSUME_STATS), [`TopicStatsTable`] (GET_TOPIC_STATS_INFO) and
//! [`ResetOffsetBody`] (RESET_CONSUMER_OFFSET / INVOKE_BROKER_TO_RESET_OFFSET).
//!
//! Their maps are written in fastjson's object-key form (`{{"brokerName":…}:{…}}`), the only
//! form Java tools are known to read back, and read from it (or from quoted keys) through
//! `super::normalize` and `super::message_queue`.
//!
//! What it leaves out: computing the numbers (the broker's).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::message_queue::{read_table, MessageQueue, ObjectWriter};
use super::{decode_json, BodyError};

/// A consumer group's progress per queue.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumeStats {
    pub consume_tps: f64,
    #[serde(deserialize_with = "read_table")]
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
}

/// One queue's offsets for a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OffsetWrapper {
    /// The queue's max offset.
    pub broker_offset: i64,
    /// The committed offset (negative reads as 0 on the broker).
    pub consumer_offset: i64,
    /// Store time of the message at `consumer_offset - 1`, 0 if none.
    pub last_timestamp: i64,
    /// max(consumer offset, the last pull's next begin offset).
    pub pull_offset: i64,
}

/// A topic's offsets per queue.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicStatsTable {
    #[serde(deserialize_with = "read_table")]
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
    pub topic_put_tps: f64,
}

/// One queue's offset range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicOffset {
    /// Store time of the last message, 0 if the queue is empty.
    pub last_update_timestamp: i64,
    pub max_offset: i64,
    pub min_offset: i64,
}

/// The offsets to reset a group to, per queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResetOffsetBody {
    #[serde(deserialize_with = "read_table")]
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl ConsumeStats {
    pub fn decode(bytes: &[u8]) -> Result<ConsumeStats, BodyError> {
        decode_json(bytes, "ConsumeStats")
    }

    /// Writes `offsetTable` in fastjson's object-key form.
    pub fn encode(&self) -> Vec<u8> {
        ObjectWriter::new()
            .member("consumeTps", &self.consume_tps)
            .table("offsetTable", &self.offset_table)
            .finish()
    }
}

impl TopicStatsTable {
    pub fn decode(bytes: &[u8]) -> Result<TopicStatsTable, BodyError> {
        decode_json(bytes, "TopicStatsTable")
    }

    /// Writes `offsetTable` in fastjson's object-key form.
    pub fn encode(&self) -> Vec<u8> {
        ObjectWriter::new()
            .table("offsetTable", &self.offset_table)
            .member("topicPutTps", &self.topic_put_tps)
            .finish()
    }
}

impl ResetOffsetBody {
    pub fn decode(bytes: &[u8]) -> Result<ResetOffsetBody, BodyError> {
        decode_json(bytes, "ResetOffsetBody")
    }

    /// Writes `offsetTable` in fastjson's object-key form.
    pub fn encode(&self) -> Vec<u8> {
        ObjectWriter::new()
            .table("offsetTable", &self.offset_table)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::{consume_stats, reset_offset_body, topic_stats_table};
    use proptest::prelude::*;

    fn mq(queue_id: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "broker-a".into(),
            queue_id,
            topic: "TopicTest".into(),
        }
    }

    #[test]
    fn reads_the_documented_consume_stats() {
        // Protocol reference §13.7, fastjson's object-key form.
        let json = br#"{"consumeTps":0.0,
 "offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}:
   {"brokerOffset":1200,"consumerOffset":1190,"lastTimestamp":1700000000000,"pullOffset":1200}}}"#;
        let stats = ConsumeStats::decode(json).unwrap();
        let offsets = stats.offset_table[&mq(0)];
        assert_eq!(offsets.broker_offset, 1200);
        assert_eq!(offsets.consumer_offset, 1190);
        assert_eq!(offsets.pull_offset, 1200);
        assert_eq!(offsets.last_timestamp, 1_700_000_000_000);
    }

    #[test]
    fn writes_object_keys() {
        let stats = TopicStatsTable {
            offset_table: BTreeMap::from([(
                mq(1),
                TopicOffset {
                    last_update_timestamp: 5,
                    max_offset: 9,
                    min_offset: 0,
                },
            )]),
            topic_put_tps: 0.0,
        };
        assert_eq!(
            String::from_utf8(stats.encode()).unwrap(),
            concat!(
                r#"{"offsetTable":{{"brokerName":"broker-a","queueId":1,"topic":"TopicTest"}:"#,
                r#"{"lastUpdateTimestamp":5,"maxOffset":9,"minOffset":0}},"topicPutTps":0.0}"#
            )
        );
        let reset = ResetOffsetBody {
            offset_table: BTreeMap::from([(mq(0), 42)]),
        };
        assert_eq!(
            String::from_utf8(reset.encode()).unwrap(),
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}:42}}"#
        );
    }

    #[test]
    fn reads_quoted_keys_too() {
        let json = br#"{"offsetTable":{
            "{\"brokerName\":\"broker-a\",\"queueId\":2,\"topic\":\"TopicTest\"}":7}}"#;
        let reset = ResetOffsetBody::decode(json).unwrap();
        assert_eq!(reset.offset_table[&mq(2)], 7);
        let err = ResetOffsetBody::decode(br#"{"offsetTable":{"0":7}}"#).unwrap_err();
        assert!(
            matches!(
                err,
                BodyError::Shape {
                    body: "ResetOffsetBody",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn consume_stats_round_trip(stats in consume_stats()) {
            prop_assert_eq!(ConsumeStats::decode(&stats.encode()).unwrap(), stats);
        }

        #[test]
        fn topic_stats_round_trip(stats in topic_stats_table()) {
            prop_assert_eq!(TopicStatsTable::decode(&stats.encode()).unwrap(), stats);
        }

        #[test]
        fn reset_offset_round_trip(body in reset_offset_body()) {
            prop_assert_eq!(ResetOffsetBody::decode(&body.encode()).unwrap(), body);
        }
    }
}
