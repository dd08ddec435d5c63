//! `subscriptionGroup.json`: consumer groups' broker-side settings (RocketMQ's
//! `SubscriptionGroupManager` as it persists itself).
//!
//! Missing members take RocketMQ's field defaults, which are not all zero (consumption on, one
//! retry queue, 16 retries, ...). Members this type does not model are kept for the next write.
//! What it leaves out: computing retry delays from the policy, and the forbidden bits' meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{null_as_default, ConfigFile, DataVersion};

/// `config/subscriptionGroup.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionGroupTable {
    /// Group name → settings.
    #[serde(deserialize_with = "null_as_default")]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// Group → topic → forbidden bit set.
    #[serde(deserialize_with = "null_as_default")]
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    #[serde(deserialize_with = "null_as_default")]
    pub data_version: DataVersion,
    /// Members this type does not model, kept for the next write.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ConfigFile for SubscriptionGroupTable {
    const FILE_NAME: &'static str = "subscriptionGroup.json";
}

impl SubscriptionGroupTable {
    pub fn get(&self, group: &str) -> Option<&SubscriptionGroupConfig> {
        self.subscription_group_table.get(group)
    }

    /// Adds or replaces `config.group_name`'s settings, bumping the data version; returns the
    /// settings it replaced.
    pub fn put(
        &mut self,
        config: SubscriptionGroupConfig,
        now_ms: u64,
    ) -> Option<SubscriptionGroupConfig> {
        self.data_version.next_version(now_ms);
        self.subscription_group_table
            .insert(config.group_name.clone(), config)
    }

    /// Removes a group's settings (and its forbidden bits), bumping the data version if it was
    /// there.
    pub fn remove(&mut self, group: &str, now_ms: u64) -> Option<SubscriptionGroupConfig> {
        let removed = self.subscription_group_table.remove(group);
        self.forbidden_table.remove(group);
        if removed.is_some() {
            self.data_version.next_version(now_ms);
        }
        removed
    }
}

/// A consumer group's settings (`SubscriptionGroupConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub group_name: String,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_broadcast_enable: bool,
    pub consume_message_orderly: bool,
    pub retry_queue_nums: i32,
    pub retry_max_times: i32,
    #[serde(deserialize_with = "null_as_default")]
    pub group_retry_policy: GroupRetryPolicy,
    /// The broker consumers pull from normally (0 = master).
    pub broker_id: i64,
    /// The slave suggested when the master lags.
    pub which_broker_when_consume_slowly: i64,
    pub notify_consumer_ids_changed_enable: bool,
    pub group_sys_flag: i32,
    /// Push consumers only.
    pub consume_timeout_minute: i32,
    /// 5.x broker-side subscriptions; absent unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data_set: Option<Vec<SimpleSubscriptionData>>,
    #[serde(deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, String>,
}

impl SubscriptionGroupConfig {
    /// Settings for `group_name` with RocketMQ's defaults.
    pub fn new(group_name: impl Into<String>) -> SubscriptionGroupConfig {
        SubscriptionGroupConfig {
            group_name: group_name.into(),
            ..SubscriptionGroupConfig::default()
        }
    }
}

impl Default for SubscriptionGroupConfig {
    fn default() -> SubscriptionGroupConfig {
        SubscriptionGroupConfig {
            group_name: String::new(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            group_retry_policy: GroupRetryPolicy::default(),
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            subscription_data_set: None,
            attributes: BTreeMap::new(),
        }
    }
}

/// How a group's retries are delayed (`GroupRetryPolicy`, 5.x). fastjson writes `type` and
/// whichever policy is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GroupRetryPolicy {
    #[serde(rename = "type")]
    pub kind: GroupRetryPolicyType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exponential_retry_policy: Option<ExponentialRetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customized_retry_policy: Option<CustomizedRetryPolicy>,
}

/// `GroupRetryPolicyType`, written by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum GroupRetryPolicyType {
    #[serde(rename = "EXPONENTIAL")]
    Exponential,
    #[default]
    #[serde(rename = "CUSTOMIZED")]
    Customized,
}

/// Delays doubling from `initial` to `max` milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExponentialRetryPolicy {
    pub initial: i64,
    pub max: i64,
    pub multiplier: i64,
}

impl Default for ExponentialRetryPolicy {
    /// 5 s, doubling, up to 2 h.
    fn default() -> ExponentialRetryPolicy {
        ExponentialRetryPolicy {
            initial: 5_000,
            max: 7_200_000,
            multiplier: 2,
        }
    }
}

/// Delays from a table, one per attempt (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomizedRetryPolicy {
    #[serde(deserialize_with = "null_as_default")]
    pub next: Vec<i64>,
}

/// One broker-side subscription of a group (`SimpleSubscriptionData`, 5.x).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SimpleSubscriptionData {
    #[serde(deserialize_with = "null_as_default")]
    pub topic: String,
    #[serde(deserialize_with = "null_as_default")]
    pub expression_type: String,
    #[serde(deserialize_with = "null_as_default")]
    pub expression: String,
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::super::{load, parse_json, persist};
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn a_sparse_java_entry_takes_rocketmq_defaults() {
        let java = r#"{"subscriptionGroupTable":{"cg1":{"groupName":"cg1","retryMaxTimes":3,
            "groupRetryPolicy":{"type":"EXPONENTIAL","exponentialRetryPolicy":{"initial":1000}}}},
            "forbiddenTable":{"cg1":{"T":1}},"dataVersion":{"counter":2,"stateVersion":0,"timestamp":9},
            "somethingNew":[1]}"#;
        let t: SubscriptionGroupTable = parse_json(java.as_bytes()).unwrap().unwrap();
        let g = t.get("cg1").unwrap();
        assert_eq!(g.retry_max_times, 3);
        assert_eq!(g.retry_queue_nums, 1);
        assert!(g.consume_enable && g.consume_broadcast_enable && g.consume_from_min_enable);
        assert_eq!(
            (g.which_broker_when_consume_slowly, g.consume_timeout_minute),
            (1, 15)
        );
        assert_eq!(g.group_retry_policy.kind, GroupRetryPolicyType::Exponential);
        let exp = g
            .group_retry_policy
            .exponential_retry_policy
            .clone()
            .unwrap();
        assert_eq!((exp.initial, exp.max, exp.multiplier), (1000, 7_200_000, 2));
        assert_eq!(t.forbidden_table["cg1"]["T"], 1);
        assert_eq!(t.extra["somethingNew"], serde_json::json!([1]));
        let text = serde_json::to_string(&SubscriptionGroupConfig::new("g")).unwrap();
        assert!(
            text.contains("\"groupRetryPolicy\":{\"type\":\"CUSTOMIZED\"}"),
            "{text}"
        );
        assert!(!text.contains("subscriptionDataSet"), "{text}");
    }

    #[test]
    fn changes_bump_the_version_and_persist() {
        let s = MemStorage::new();
        let mut t = SubscriptionGroupTable::default();
        t.put(SubscriptionGroupConfig::new("g"), 7);
        t.forbidden_table
            .entry("g".into())
            .or_default()
            .insert("T".into(), 2);
        persist(&s, &t).unwrap();
        assert_eq!(
            load::<SubscriptionGroupTable, _>(&s).unwrap(),
            Some(t.clone())
        );
        assert!(t.remove("g", 8).is_some());
        assert!(t.forbidden_table.is_empty());
        assert_eq!(t.data_version.counter, 2);
    }
}
