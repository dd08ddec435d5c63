//! `topics.json`: the broker's topic table (RocketMQ's `TopicConfigSerializeWrapper` as
//! `TopicConfigManager` persists it).
//!
//! Members RocketMQ 5.x may add (static-topic mapping tables) are kept as read and written back
//! unchanged. What it leaves out: permission bits and attribute meanings (the broker's).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{null_as_default, ConfigFile, DataVersion};

/// RocketMQ's default read and write queue count for a new topic config (`TopicConfig`).
pub const DEFAULT_QUEUE_NUMS: i32 = 16;
/// `PermName.PERM_READ | PermName.PERM_WRITE`.
pub const DEFAULT_PERM: i32 = 6;

/// `config/topics.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfigTable {
    #[serde(deserialize_with = "null_as_default")]
    pub data_version: DataVersion,
    /// Topic name → config.
    #[serde(deserialize_with = "null_as_default")]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Members this type does not model, kept for the next write.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ConfigFile for TopicConfigTable {
    const FILE_NAME: &'static str = "topics.json";
}

impl TopicConfigTable {
    pub fn get(&self, topic: &str) -> Option<&TopicConfig> {
        self.topic_config_table.get(topic)
    }

    /// Adds or replaces the config of `config.topic_name`, bumping the data version; returns
    /// the config it replaced.
    pub fn put(&mut self, config: TopicConfig, now_ms: u64) -> Option<TopicConfig> {
        self.data_version.next_version(now_ms);
        self.topic_config_table
            .insert(config.topic_name.clone(), config)
    }

    /// Removes a topic's config, bumping the data version if it was there.
    pub fn remove(&mut self, topic: &str, now_ms: u64) -> Option<TopicConfig> {
        let removed = self.topic_config_table.remove(topic);
        if removed.is_some() {
            self.data_version.next_version(now_ms);
        }
        removed
    }
}

/// One topic's settings (`TopicConfig`); missing members take RocketMQ's field defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub topic_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    /// Permission bits: 2 write, 4 read, 1 inherit.
    pub perm: i32,
    #[serde(deserialize_with = "null_as_default")]
    pub topic_filter_type: TopicFilterType,
    pub topic_sys_flag: i32,
    pub order: bool,
    /// 5.x topic attributes, e.g. `+message.type` → `NORMAL`.
    #[serde(deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, String>,
}

impl TopicConfig {
    /// A config for `topic_name` with RocketMQ's defaults (16 + 16 queues, read-write).
    pub fn new(topic_name: impl Into<String>) -> TopicConfig {
        TopicConfig {
            topic_name: topic_name.into(),
            ..TopicConfig::default()
        }
    }
}

impl Default for TopicConfig {
    fn default() -> TopicConfig {
        TopicConfig {
            topic_name: String::new(),
            read_queue_nums: DEFAULT_QUEUE_NUMS,
            write_queue_nums: DEFAULT_QUEUE_NUMS,
            perm: DEFAULT_PERM,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }
}

/// `TopicFilterType`, written by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TopicFilterType {
    #[default]
    #[serde(rename = "SINGLE_TAG")]
    SingleTag,
    #[serde(rename = "MULTI_TAG")]
    MultiTag,
}

#[cfg(test)]
mod tests {
    use super::super::{load, parse_json, persist};
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn a_java_topics_json_loads_with_defaults_and_keeps_unknown_members() {
        let java = r#"{
	"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},
	"topicConfigTable":{
		"TopicTest":{"attributes":{"+message.type":"NORMAL"},"order":false,"perm":6,"readQueueNums":4,
			"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4},
		"Sparse":{"topicName":"Sparse","attributes":null}
	},
	"topicQueueMappingInfoMap":{}
}"#;
        let t: TopicConfigTable = parse_json(java.as_bytes()).unwrap().unwrap();
        let test = t.get("TopicTest").unwrap();
        assert_eq!(
            (test.read_queue_nums, test.write_queue_nums, test.perm),
            (4, 4, 6)
        );
        assert_eq!(
            test.attributes.get("+message.type").map(String::as_str),
            Some("NORMAL")
        );
        assert_eq!(t.get("Sparse").unwrap(), &TopicConfig::new("Sparse"));
        assert_eq!(t.data_version.counter, 3);
        assert!(t.extra.contains_key("topicQueueMappingInfoMap"));
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.contains("\"topicQueueMappingInfoMap\":{}"), "{text}");
        assert!(
            text.contains("\"topicFilterType\":\"SINGLE_TAG\""),
            "{text}"
        );
        assert!(text.contains("\"readQueueNums\":4"), "{text}");
    }

    #[test]
    fn changes_bump_the_version_and_persist() {
        let s = MemStorage::new();
        let mut t = TopicConfigTable::default();
        let mut c = TopicConfig::new("T");
        c.topic_filter_type = TopicFilterType::MultiTag;
        assert_eq!(t.put(c.clone(), 10), None);
        assert_eq!(t.remove("nope", 20), None);
        assert_eq!(t.data_version.counter, 1);
        assert_eq!(t.data_version.timestamp, 10);
        persist(&s, &t).unwrap();
        assert_eq!(load::<TopicConfigTable, _>(&s).unwrap(), Some(t.clone()));
        assert_eq!(t.remove("T", 30), Some(c));
        assert_eq!(t.data_version.counter, 2);
    }
}
