//! [`SubscriptionGroupTable`]: consumer groups' broker-side settings (Java
//! `SubscriptionGroupManager`, protocol reference §13.7), auto-created with Java's defaults when
//! a group first shows up, and [`SubscriptionGroupWrapper`], the `subscriptionGroup.json` shape.
//!
//! It only keeps state: the broker persists [`SubscriptionGroupTable::to_persist`] when
//! [`SubscriptionGroupTable::is_dirty`]. What it leaves out: attribute validation (groups have
//! no attributes Java checks beyond the key format) and using the forbidden table, which is
//! carried so a file written by Java reads back intact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::topic_config::validate_group;
use crate::body::{BodyError, DataVersion, SubscriptionGroupConfig};

/// `subscriptionGroup.json`:
/// `{"dataVersion":{…},"forbiddenTable":{},"subscriptionGroupTable":{"cg1":{…}}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    #[serde(deserialize_with = "null_as_default")]
    pub data_version: DataVersion,
    /// Group -> topic -> forbidden bits (5.x).
    #[serde(deserialize_with = "null_as_default")]
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    #[serde(deserialize_with = "null_as_default")]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

impl SubscriptionGroupWrapper {
    pub fn decode(bytes: &[u8]) -> Result<SubscriptionGroupWrapper, BodyError> {
        crate::body::decode_json(bytes, "SubscriptionGroupWrapper")
    }

    pub fn encode(&self) -> Vec<u8> {
        crate::body::encode_json(self)
    }
}

/// fastjson writes absent members as `null` in some versions; read those as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Group name -> settings.
#[derive(Clone, Debug)]
pub struct SubscriptionGroupTable {
    table: BTreeMap<String, SubscriptionGroupConfig>,
    forbidden: BTreeMap<String, BTreeMap<String, i32>>,
    data_version: DataVersion,
    /// `autoCreateSubscriptionGroup`.
    auto_create: bool,
    /// `enableCreateSysGroup`: `CID_RMQ_SYS_*` groups are created even without auto-creation.
    create_sys_group: bool,
    dirty: bool,
}

impl SubscriptionGroupTable {
    /// The groups Java creates at start (tools, filter server, self test, ONS and transaction
    /// groups), with Java's defaults.
    pub fn new(auto_create: bool, create_sys_group: bool) -> SubscriptionGroupTable {
        let table = BUILT_IN_GROUPS
            .iter()
            .map(|name| {
                let config = SubscriptionGroupConfig {
                    group_name: name.to_string(),
                    ..SubscriptionGroupConfig::default()
                };
                (name.to_string(), config)
            })
            .collect();
        SubscriptionGroupTable {
            table,
            forbidden: BTreeMap::new(),
            data_version: DataVersion::default(),
            auto_create,
            create_sys_group,
            dirty: false,
        }
    }

    /// Merges a persisted file over the built-in groups (persisted entries win).
    pub fn load(&mut self, persisted: SubscriptionGroupWrapper) {
        self.table.extend(persisted.subscription_group_table);
        self.forbidden.extend(persisted.forbidden_table);
        self.data_version = persisted.data_version;
    }

    /// The `subscriptionGroup.json` content.
    pub fn to_persist(&self) -> SubscriptionGroupWrapper {
        SubscriptionGroupWrapper {
            data_version: self.data_version,
            forbidden_table: self.forbidden.clone(),
            subscription_group_table: self.table.clone(),
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn mark_persisted(&mut self) {
        self.dirty = false;
    }

    pub fn data_version(&self) -> DataVersion {
        self.data_version
    }

    /// The group's settings without creating it (UPDATE_CONSUMER_OFFSET and send-back checks).
    pub fn get(&self, group: &str) -> Option<&SubscriptionGroupConfig> {
        self.table.get(group)
    }

    pub fn contains(&self, group: &str) -> bool {
        self.table.contains_key(group)
    }

    /// Java `findSubscriptionGroupConfig`: the group's settings, created with defaults when
    /// absent and auto-creation applies (always for `CID_RMQ_SYS_*` with `create_sys_group`)
    /// and the name is valid. `None` means the group may not consume here.
    pub fn find_or_create(&mut self, group: &str, now_ms: u64) -> Option<&SubscriptionGroupConfig> {
        if !self.table.contains_key(group) {
            let allowed = self.auto_create
                || (self.create_sys_group && group.starts_with(CID_RMQ_SYS_PREFIX));
            if !allowed || validate_group(group).is_err() {
                return None;
            }
            tracing::info!(group, "subscription group auto-created");
            let config = SubscriptionGroupConfig {
                group_name: group.to_string(),
                ..SubscriptionGroupConfig::default()
            };
            self.table.insert(group.to_string(), config);
            self.bump(now_ms);
        }
        self.table.get(group)
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: replaces or adds the group.
    pub fn update(&mut self, config: SubscriptionGroupConfig, now_ms: u64) {
        assert!(
            !config.group_name.is_empty(),
            "a subscription group config needs a name"
        );
        self.table.insert(config.group_name.clone(), config);
        self.bump(now_ms);
    }

    /// DELETE_SUBSCRIPTIONGROUP: removes the group and its forbidden entries; returns its
    /// settings if it existed.
    pub fn delete(&mut self, group: &str, now_ms: u64) -> Option<SubscriptionGroupConfig> {
        self.forbidden.remove(group);
        let old = self.table.remove(group)?;
        self.bump(now_ms);
        Some(old)
    }

    /// Java `disableConsume`.
    pub fn disable_consume(&mut self, group: &str, now_ms: u64) {
        if let Some(config) = self.table.get_mut(group) {
            config.consume_enable = false;
            self.bump(now_ms);
        }
    }

    /// All groups, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &SubscriptionGroupConfig)> {
        self.table.iter()
    }

    fn bump(&mut self, now_ms: u64) {
        self.data_version.counter += 1;
        self.data_version.timestamp = i64::try_from(now_ms).unwrap_or(i64::MAX);
        self.dirty = true;
    }
}

/// System consumer groups' prefix (Java `MixAll.CID_RMQ_SYS_PREFIX`).
pub const CID_RMQ_SYS_PREFIX: &str = "CID_RMQ_SYS_";

/// Groups every Java broker has from the start.
const BUILT_IN_GROUPS: [&str; 8] = [
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_RMQ_SYS_TRANS",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subscription_group_config() -> impl Strategy<Value = SubscriptionGroupConfig> {
        (
            "[a-zA-Z0-9_-]{1,12}",
            any::<bool>(),
            0i32..5,
            -1i32..20,
            any::<bool>(),
        )
            .prop_map(
                |(group_name, consume_enable, retry_queue_nums, retry_max_times, orderly)| {
                    SubscriptionGroupConfig {
                        group_name,
                        consume_enable,
                        retry_queue_nums,
                        retry_max_times,
                        consume_message_orderly: orderly,
                        ..SubscriptionGroupConfig::default()
                    }
                },
            )
    }

    #[test]
    fn auto_creates_valid_groups_with_defaults() {
        let mut t = SubscriptionGroupTable::new(true, true);
        assert!(t.contains("TOOLS_CONSUMER"));
        assert!(t.contains("CID_RMQ_SYS_TRANS"));
        let config = t.find_or_create("cg1", 10).unwrap();
        assert_eq!((config.retry_max_times, config.retry_queue_nums), (16, 1));
        assert!(config.notify_consumer_ids_changed_enable);
        assert_eq!(t.data_version().counter, 1);
        assert!(t.is_dirty());
        // A second lookup creates nothing.
        t.find_or_create("cg1", 11);
        assert_eq!(t.data_version().counter, 1);
        assert!(t.find_or_create("bad group", 12).is_none());
        assert!(t.find_or_create(&"g".repeat(121), 12).is_none());
    }

    #[test]
    fn without_auto_create_only_system_groups_appear() {
        let mut t = SubscriptionGroupTable::new(false, true);
        assert!(t.find_or_create("cg1", 0).is_none());
        assert!(t.find_or_create("CID_RMQ_SYS_X", 0).is_some());
        let mut t = SubscriptionGroupTable::new(false, false);
        assert!(t.find_or_create("CID_RMQ_SYS_X", 0).is_none());
        assert!(t.find_or_create("TOOLS_CONSUMER", 0).is_some());
    }

    #[test]
    fn update_delete_disable() {
        let mut t = SubscriptionGroupTable::new(true, true);
        let config = SubscriptionGroupConfig {
            group_name: "cg".into(),
            retry_max_times: 3,
            ..SubscriptionGroupConfig::default()
        };
        t.update(config, 1);
        assert_eq!(t.get("cg").unwrap().retry_max_times, 3);
        t.disable_consume("cg", 2);
        assert!(!t.get("cg").unwrap().consume_enable);
        assert!(t.delete("cg", 3).is_some());
        assert!(t.delete("cg", 4).is_none());
        assert_eq!(t.data_version().counter, 3);
    }

    #[test]
    fn reads_a_java_file() {
        let json = br#"{"dataVersion":{"counter":4,"stateVersion":0,"timestamp":1},"forbiddenTable":{"cg":{"T":1}},
            "subscriptionGroupTable":{"cg":{"groupName":"cg","retryMaxTimes":5,"consumeEnable":true}}}"#;
        let mut t = SubscriptionGroupTable::new(true, true);
        t.load(SubscriptionGroupWrapper::decode(json).unwrap());
        assert_eq!(t.get("cg").unwrap().retry_max_times, 5);
        assert_eq!(t.get("cg").unwrap().retry_queue_nums, 1);
        assert_eq!(t.data_version().counter, 4);
        assert_eq!(t.to_persist().forbidden_table["cg"]["T"], 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn persisted_form_round_trips(configs in prop::collection::vec(subscription_group_config(), 0..5)) {
            let mut t = SubscriptionGroupTable::new(true, true);
            for config in configs {
                t.update(config, 1);
            }
            let bytes = t.to_persist().encode();
            let mut back = SubscriptionGroupTable::new(false, false);
            back.load(SubscriptionGroupWrapper::decode(&bytes).unwrap());
            prop_assert_eq!(back.to_persist(), t.to_persist());
        }
    }
}
