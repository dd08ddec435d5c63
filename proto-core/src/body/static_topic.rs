//! Static-topic queue mappings (Java `statictopic` package), carried in route data and broker
//! registrations.
//!
//! These are kept so a registration or route from a Java peer that uses static topics reads and
//! re-encodes intact; this crate does not interpret them (no logic-to-physical queue mapping).
//! What it leaves out: `TopicQueueMappingUtils` and every rule about epochs and dirty mappings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lenient::{long, or_default};

/// One topic's logical queues hosted on one broker (Java `TopicQueueMappingInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicQueueMappingInfo {
    /// The hosting broker's name.
    #[serde(deserialize_with = "or_default")]
    pub bname: String,
    /// Logical queue id -> physical queue id on this broker.
    #[serde(deserialize_with = "or_default")]
    pub curr_id_map: BTreeMap<i32, i32>,
    pub dirty: bool,
    /// Fences stale mappings; may come as a string from BrowserCompatible writers.
    #[serde(deserialize_with = "long")]
    pub epoch: i64,
    #[serde(deserialize_with = "or_default")]
    pub scope: String,
    #[serde(deserialize_with = "or_default")]
    pub topic: String,
    pub total_queues: i32,
}

/// The full mapping a broker keeps for a topic (Java `TopicQueueMappingDetail`, which extends
/// `TopicQueueMappingInfo`; the members are repeated because serde's flatten cannot read
/// integer map keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicQueueMappingDetail {
    #[serde(deserialize_with = "or_default")]
    pub bname: String,
    #[serde(deserialize_with = "or_default")]
    pub curr_id_map: BTreeMap<i32, i32>,
    pub dirty: bool,
    #[serde(deserialize_with = "long")]
    pub epoch: i64,
    /// Global queue id -> the physical queues it has lived on, oldest first.
    #[serde(deserialize_with = "or_default")]
    pub hosted_queues: BTreeMap<i32, Vec<LogicQueueMappingItem>>,
    #[serde(deserialize_with = "or_default")]
    pub scope: String,
    #[serde(deserialize_with = "or_default")]
    pub topic: String,
    pub total_queues: i32,
}

/// One physical queue's span within a logical queue (Java `LogicQueueMappingItem`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LogicQueueMappingItem {
    #[serde(deserialize_with = "or_default")]
    pub bname: String,
    /// Physical end offset, exclusive; -1 while open.
    pub end_offset: i64,
    pub gen: i32,
    pub logic_offset: i64,
    pub queue_id: i32,
    pub start_offset: i64,
    pub time_of_end: i64,
    pub time_of_start: i64,
}

json_body!(TopicQueueMappingInfo, TopicQueueMappingDetail);

/// Java's `MixAll.METADATA_SCOPE_GLOBAL`, the default scope.
pub const SCOPE_GLOBAL: &str = "__global__";

impl Default for TopicQueueMappingInfo {
    fn default() -> TopicQueueMappingInfo {
        TopicQueueMappingInfo {
            bname: String::new(),
            curr_id_map: BTreeMap::new(),
            dirty: false,
            epoch: 0,
            scope: SCOPE_GLOBAL.to_string(),
            topic: String::new(),
            total_queues: 0,
        }
    }
}

impl Default for TopicQueueMappingDetail {
    fn default() -> TopicQueueMappingDetail {
        TopicQueueMappingDetail {
            bname: String::new(),
            curr_id_map: BTreeMap::new(),
            dirty: false,
            epoch: 0,
            hosted_queues: BTreeMap::new(),
            scope: SCOPE_GLOBAL.to_string(),
            topic: String::new(),
            total_queues: 0,
        }
    }
}

impl Default for LogicQueueMappingItem {
    fn default() -> LogicQueueMappingItem {
        LogicQueueMappingItem {
            bname: String::new(),
            end_offset: -1,
            gen: 0,
            logic_offset: 0,
            queue_id: 0,
            start_offset: 0,
            time_of_end: -1,
            time_of_start: -1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::{mapping_detail, mapping_info};
    use proptest::prelude::*;

    #[test]
    fn reads_fastjson_integer_keys_and_java_defaults() {
        let json = br#"{"bname":"b","currIdMap":{0:1,1:0},"epoch":"9007199254740993",
            "topic":"T","totalQueues":2}"#;
        let info = TopicQueueMappingInfo::decode(json).unwrap();
        assert_eq!(info.curr_id_map, BTreeMap::from([(0, 1), (1, 0)]));
        assert_eq!(info.epoch, 9_007_199_254_740_993);
        assert_eq!(info.scope, SCOPE_GLOBAL);
        let item: LogicQueueMappingItem = serde_json::from_str("{}").unwrap();
        assert_eq!(item.end_offset, -1);
    }

    proptest! {
        #[test]
        fn info_round_trip(info in mapping_info()) {
            prop_assert_eq!(TopicQueueMappingInfo::decode(&info.encode()).unwrap(), info);
        }

        #[test]
        fn detail_round_trip(detail in mapping_detail()) {
            prop_assert_eq!(TopicQueueMappingDetail::decode(&detail.encode()).unwrap(), detail);
        }
    }
}
