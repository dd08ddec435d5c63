//! Topic configuration bodies (protocol reference §13.6, §16.6): [`TopicConfig`],
//! [`DataVersion`], and the wrappers a broker registers with ([`TopicConfigSerializeWrapper`],
//! 5.x [`TopicConfigAndMappingSerializeWrapper`]); the same shapes are `topics.json` on disk.
//!
//! What it leaves out: the compressed register form's one-line topic text (see
//! `super::register`) and the broker's topic-config store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::java_enum::java_enum;
use super::lenient::or_default;
use super::static_topic::{TopicQueueMappingDetail, TopicQueueMappingInfo};

/// One topic's configuration on one broker. Missing members take Java's field defaults (16
/// queues each way, perm 6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfig {
    /// 5.x topic attributes, e.g. `{"+message.type":"NORMAL"}`.
    #[serde(deserialize_with = "or_default")]
    pub attributes: BTreeMap<String, String>,
    pub order: bool,
    /// [`super::PermName`] bits.
    pub perm: i32,
    pub read_queue_nums: i32,
    pub topic_filter_type: TopicFilterType,
    #[serde(deserialize_with = "or_default")]
    pub topic_name: String,
    pub topic_sys_flag: i32,
    pub write_queue_nums: i32,
}

java_enum! {
    /// Java `TopicFilterType`.
    pub enum TopicFilterType {
        #[default]
        SingleTag = "SINGLE_TAG",
        MultiTag = "MULTI_TAG",
    }
}

/// The version of a broker's topic table; name servers compare all three members for equality.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DataVersion {
    /// Incremented on every change.
    pub counter: i64,
    /// 5.x controller epoch, otherwise 0; absent from 4.x bodies.
    pub state_version: i64,
    /// Milliseconds of the last change.
    pub timestamp: i64,
}

/// A broker's topic table with its version (4.x REGISTER_BROKER body and `topics.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    #[serde(deserialize_with = "or_default")]
    pub data_version: DataVersion,
    /// Topic name -> config.
    #[serde(deserialize_with = "or_default")]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
}

/// The 5.x wrapper: the topic table plus static-topic mappings (both maps stay `{}` when static
/// topics are unused). Java's class extends [`TopicConfigSerializeWrapper`]; the members are
/// repeated here because serde's flatten cannot read integer map keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfigAndMappingSerializeWrapper {
    #[serde(deserialize_with = "or_default")]
    pub data_version: DataVersion,
    #[serde(deserialize_with = "or_default")]
    pub mapping_data_version: DataVersion,
    #[serde(deserialize_with = "or_default")]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Topic -> the full mapping this broker keeps.
    #[serde(deserialize_with = "or_default")]
    pub topic_queue_mapping_detail_map: BTreeMap<String, TopicQueueMappingDetail>,
    /// Topic -> the mapping summary sent to name servers.
    #[serde(deserialize_with = "or_default")]
    pub topic_queue_mapping_info_map: BTreeMap<String, TopicQueueMappingInfo>,
}

json_body!(
    TopicConfig,
    DataVersion,
    TopicConfigSerializeWrapper,
    TopicConfigAndMappingSerializeWrapper,
);

impl Default for TopicConfig {
    fn default() -> TopicConfig {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm: super::PermName::PERM_READ | super::PermName::PERM_WRITE,
            read_queue_nums: QUEUE_NUMS_DEFAULT,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: QUEUE_NUMS_DEFAULT,
        }
    }
}

impl From<TopicConfigSerializeWrapper> for TopicConfigAndMappingSerializeWrapper {
    /// A 4.x table as a 5.x one: no mappings, mapping version zero.
    fn from(w: TopicConfigSerializeWrapper) -> TopicConfigAndMappingSerializeWrapper {
        TopicConfigAndMappingSerializeWrapper {
            data_version: w.data_version,
            topic_config_table: w.topic_config_table,
            ..TopicConfigAndMappingSerializeWrapper::default()
        }
    }
}

/// Java `TopicConfig.defaultReadQueueNums`/`defaultWriteQueueNums`.
const QUEUE_NUMS_DEFAULT: i32 = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::{topic_config_and_mapping_wrapper, topic_config_wrapper};
    use proptest::prelude::*;

    #[test]
    fn missing_members_take_java_defaults() {
        let config = TopicConfig::decode(br#"{"topicName":"T"}"#).unwrap();
        assert_eq!(config.read_queue_nums, 16);
        assert_eq!(config.write_queue_nums, 16);
        assert_eq!(config.perm, 6);
        assert_eq!(config.topic_filter_type, TopicFilterType::SingleTag);
        // A 4.x DataVersion has no stateVersion.
        let v = DataVersion::decode(br#"{"counter":12,"timestamp":1700000000000}"#).unwrap();
        assert_eq!(
            (v.counter, v.state_version, v.timestamp),
            (12, 0, 1_700_000_000_000)
        );
    }

    #[test]
    fn writes_the_documented_topic_config() {
        let config = TopicConfig {
            topic_name: "TopicTest".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            ..TopicConfig::default()
        };
        assert_eq!(
            String::from_utf8(config.encode()).unwrap(),
            concat!(
                r#"{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"#,
                r#""topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"#,
                r#""writeQueueNums":4}"#
            )
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn wrapper_round_trip(w in topic_config_wrapper()) {
            prop_assert_eq!(TopicConfigSerializeWrapper::decode(&w.encode()).unwrap(), w);
        }

        #[test]
        fn mapping_wrapper_round_trip(w in topic_config_and_mapping_wrapper()) {
            prop_assert_eq!(TopicConfigAndMappingSerializeWrapper::decode(&w.encode()).unwrap(), w);
        }
    }
}
