//! [`SubscriptionGroupConfig`], a consumer group's broker-side settings (protocol reference
//! §13.7; `subscriptionGroup.json` entries, UPDATE_AND_CREATE_SUBSCRIPTIONGROUP bodies).
//!
//! Missing members take Java's field defaults, which are not all zero (consumption enabled, one
//! retry queue, 16 retries, ...). What it leaves out: computing retry delays from the policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::java_enum::java_enum;
use super::lenient::or_default;

/// A consumer group's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    #[serde(deserialize_with = "or_default")]
    pub attributes: BTreeMap<String, String>,
    /// The broker id consumers pull from normally (0 = master).
    pub broker_id: i64,
    pub consume_broadcast_enable: bool,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_message_orderly: bool,
    pub consume_timeout_minute: i32,
    #[serde(deserialize_with = "or_default")]
    pub group_name: String,
    #[serde(deserialize_with = "or_default")]
    pub group_retry_policy: GroupRetryPolicy,
    pub group_sys_flag: i32,
    pub notify_consumer_ids_changed_enable: bool,
    pub retry_max_times: i32,
    pub retry_queue_nums: i32,
    /// 5.x: the group's subscriptions as configured on the broker; absent unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data_set: Option<Vec<SimpleSubscriptionData>>,
    /// The slave id suggested when the master lags.
    pub which_broker_when_consume_slowly: i64,
}

/// How a group's retries are delayed (5.x).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GroupRetryPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customized_retry_policy: Option<CustomizedRetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exponential_retry_policy: Option<ExponentialRetryPolicy>,
    #[serde(rename = "type")]
    pub kind: GroupRetryPolicyType,
}

java_enum! {
    /// Java `GroupRetryPolicyType`.
    pub enum GroupRetryPolicyType {
        Exponential = "EXPONENTIAL",
        #[default]
        Customized = "CUSTOMIZED",
    }
}

/// Retry delays doubling from `initial` up to `max` (milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExponentialRetryPolicy {
    pub initial: i64,
    pub max: i64,
    pub multiplier: i64,
}

/// Retry delays from a table, one per attempt (milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomizedRetryPolicy {
    #[serde(deserialize_with = "or_default")]
    pub next: Vec<i64>,
}

/// One broker-side subscription of a group (5.x).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SimpleSubscriptionData {
    #[serde(deserialize_with = "or_default")]
    pub expression: String,
    #[serde(deserialize_with = "or_default")]
    pub expression_type: String,
    #[serde(deserialize_with = "or_default")]
    pub topic: String,
    pub version: i64,
}

json_body!(SubscriptionGroupConfig);

impl Default for SubscriptionGroupConfig {
    fn default() -> SubscriptionGroupConfig {
        SubscriptionGroupConfig {
            attributes: BTreeMap::new(),
            broker_id: 0,
            consume_broadcast_enable: true,
            consume_enable: true,
            consume_from_min_enable: true,
            consume_message_orderly: false,
            consume_timeout_minute: 15,
            group_name: String::new(),
            group_retry_policy: GroupRetryPolicy::default(),
            group_sys_flag: 0,
            notify_consumer_ids_changed_enable: true,
            retry_max_times: 16,
            retry_queue_nums: 1,
            subscription_data_set: None,
            which_broker_when_consume_slowly: 1,
        }
    }
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

impl Default for CustomizedRetryPolicy {
    /// The delay levels 1s 5s 10s 30s 1m 2m ... 10m 20m 30m 1h 2h.
    fn default() -> CustomizedRetryPolicy {
        const S: i64 = 1_000;
        const M: i64 = 60 * S;
        CustomizedRetryPolicy {
            next: vec![
                S,
                5 * S,
                10 * S,
                30 * S,
                M,
                2 * M,
                3 * M,
                4 * M,
                5 * M,
                6 * M,
                7 * M,
                8 * M,
                9 * M,
                10 * M,
                20 * M,
                30 * M,
                60 * M,
                120 * M,
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::subscription_group_config;
    use proptest::prelude::*;

    #[test]
    fn missing_members_take_java_defaults() {
        let config = SubscriptionGroupConfig::decode(br#"{"groupName":"cg1"}"#).unwrap();
        assert!(config.consume_enable);
        assert!(config.consume_broadcast_enable);
        assert!(!config.consume_message_orderly);
        assert_eq!(config.retry_queue_nums, 1);
        assert_eq!(config.retry_max_times, 16);
        assert_eq!(config.which_broker_when_consume_slowly, 1);
        assert_eq!(config.consume_timeout_minute, 15);
        assert_eq!(
            config.group_retry_policy.kind,
            GroupRetryPolicyType::Customized
        );
        let text = String::from_utf8(config.encode()).unwrap();
        assert!(
            text.contains(r#""groupRetryPolicy":{"type":"CUSTOMIZED"}"#),
            "{text}"
        );
        assert!(!text.contains("subscriptionDataSet"), "{text}");
        assert_eq!(CustomizedRetryPolicy::default().next.len(), 18);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip(config in subscription_group_config()) {
            prop_assert_eq!(SubscriptionGroupConfig::decode(&config.encode()).unwrap(), config);
        }
    }
}
