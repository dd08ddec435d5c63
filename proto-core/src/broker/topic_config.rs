//! [`TopicConfigTable`]: the broker's topic table (Java `TopicConfigManager`), with the system
//! topics a broker creates at start, auto-creation from the `TBW102` template (protocol
//! reference §8.1), retry and dead-letter topics, topic and group name rules, and the version a
//! broker registers with name servers.
//!
//! It only keeps state. The broker decides when to persist ([`TopicConfigTable::is_dirty`],
//! [`TopicConfigTable::to_persist`], `topics.json`) and when to re-register
//! ([`TopicConfigTable::take_register_needed`]); every change bumps the data version and raises
//! both flags, so a created topic reaches the name servers at once, as Java's
//! `registerIncrementBrokerData` does.
//!
//! What it leaves out: static-topic mappings (registered as empty maps), tiered-store reserve
//! times, unit-mode flag updates, and the broker-permission masking applied when registering
//! (the broker's).

use std::collections::{BTreeMap, BTreeSet};

use crate::body::{
    DataVersion, PermName, TopicConfig, TopicConfigAndMappingSerializeWrapper,
    TopicConfigSerializeWrapper,
};

/// Broker settings that shape the system topics (Java `BrokerConfig` keys of the same names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicTableSettings {
    pub broker_cluster_name: String,
    pub broker_name: String,
    /// `autoCreateTopicEnable`: keep the `TBW102` template and let sends create topics from it.
    pub auto_create_topic_enable: bool,
    /// `defaultTopicQueueNums`: the template's queue count.
    pub default_topic_queue_nums: i32,
    /// `clusterTopicEnable`: the cluster-name topic is readable and writable.
    pub cluster_topic_enable: bool,
    /// `brokerTopicEnable`: the broker-name topic is readable and writable.
    pub broker_topic_enable: bool,
    /// `traceTopicEnable` with `msgTraceTopicName`.
    pub trace_topic_enable: bool,
    pub msg_trace_topic_name: String,
    /// `reviveQueueNum`: queues of the POP revive topic.
    pub revive_queue_num: i32,
    /// `timerWheelEnable`: create the timer-wheel topic.
    pub timer_wheel_enable: bool,
}

impl TopicTableSettings {
    /// Java's defaults for a broker of `broker_name` in `broker_cluster_name`.
    pub fn new(broker_cluster_name: &str, broker_name: &str) -> TopicTableSettings {
        TopicTableSettings {
            broker_cluster_name: broker_cluster_name.to_string(),
            broker_name: broker_name.to_string(),
            auto_create_topic_enable: true,
            default_topic_queue_nums: 8,
            cluster_topic_enable: true,
            broker_topic_enable: true,
            trace_topic_enable: false,
            msg_trace_topic_name: RMQ_SYS_TRACE_TOPIC.to_string(),
            revive_queue_num: 8,
            timer_wheel_enable: true,
        }
    }
}

/// Topic name -> config, with its data version and change flags.
#[derive(Clone, Debug)]
pub struct TopicConfigTable {
    settings: TopicTableSettings,
    table: BTreeMap<String, TopicConfig>,
    data_version: DataVersion,
    /// Topics this broker made at start (besides the fixed [`SYSTEM_TOPICS`]).
    system_topics: BTreeSet<String>,
    /// Changed since the last [`TopicConfigTable::mark_persisted`].
    dirty: bool,
    /// Changed since the last [`TopicConfigTable::take_register_needed`].
    register_needed: bool,
}

/// Why a send could not create its topic from the default topic (the broker answers
/// TOPIC_NOT_EXIST).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AutoCreateError {
    #[error("default topic {default_topic} does not exist on this broker")]
    DefaultTopicMissing { default_topic: String },
    #[error("default topic {default_topic} has perm {perm} without the inherit bit")]
    DefaultTopicNotInheritable { default_topic: String, perm: i32 },
}

/// Why a topic or group name is refused (the broker answers INVALID_PARAMETER).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("the {kind} name is blank")]
    Blank { kind: &'static str },
    #[error("the {kind} name {name:?} has characters outside [%|a-zA-Z0-9_-]")]
    IllegalCharacters { kind: &'static str, name: String },
    #[error("the {kind} name {name:?} is {len} characters long, more than {max}")]
    TooLong {
        kind: &'static str,
        name: String,
        len: usize,
        max: usize,
    },
}

/// Why UPDATE_AND_CREATE_TOPIC attributes were refused (Java `AttributeUtil`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributeError {
    #[error("attribute key {key:?} must start with + or - and name a key without + or -")]
    WrongFormat { key: String },
    #[error("attribute {key} may only be added (+) when a topic is created")]
    OnlyAddOnCreate { key: String },
    #[error("attribute {key} appears twice")]
    Duplicate { key: String },
    #[error("attribute {key} cannot be deleted: the topic does not have it")]
    DeleteMissing { key: String },
    #[error("attribute {key} is not supported")]
    Unsupported { key: String },
    #[error("attribute {key} cannot be changed after creation")]
    Unchangeable { key: String },
    #[error("attribute {key} does not accept the value {value:?}")]
    BadValue { key: String, value: String },
}

impl TopicConfigTable {
    /// The table a broker starts with: the system topics Java's `TopicConfigManager` creates.
    /// The version starts at counter 0 stamped `now_ms` and nothing is dirty yet; call
    /// [`TopicConfigTable::load`] next with `topics.json` when there is one.
    pub fn new(settings: TopicTableSettings, now_ms: u64) -> TopicConfigTable {
        let mut t = TopicConfigTable {
            settings,
            table: BTreeMap::new(),
            data_version: DataVersion {
                counter: 0,
                state_version: 0,
                timestamp: millis(now_ms),
            },
            system_topics: BTreeSet::new(),
            dirty: false,
            register_needed: false,
        };
        t.create_system_topics();
        t
    }

    /// Merges a persisted table over the start-up one (persisted entries win) and takes its
    /// version, as Java's `decode` does.
    pub fn load(&mut self, persisted: TopicConfigSerializeWrapper) {
        self.table.extend(persisted.topic_config_table);
        self.data_version = persisted.data_version;
    }

    /// The `topics.json` content.
    pub fn to_persist(&self) -> TopicConfigSerializeWrapper {
        TopicConfigSerializeWrapper {
            data_version: self.data_version,
            topic_config_table: self.table.clone(),
        }
    }

    /// The 5.x registration wrapper (static-topic maps empty). The broker masks perms by its own
    /// permission before sending, as Java's `registerBrokerAll` does.
    pub fn to_register(&self) -> TopicConfigAndMappingSerializeWrapper {
        TopicConfigAndMappingSerializeWrapper::from(self.to_persist())
    }

    /// Changed since the last [`TopicConfigTable::mark_persisted`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The broker wrote [`TopicConfigTable::to_persist`] to disk.
    pub fn mark_persisted(&mut self) {
        self.dirty = false;
    }

    /// True once after any change: the broker should register with the name servers now.
    pub fn take_register_needed(&mut self) -> bool {
        std::mem::take(&mut self.register_needed)
    }

    pub fn data_version(&self) -> DataVersion {
        self.data_version
    }

    pub fn settings(&self) -> &TopicTableSettings {
        &self.settings
    }

    pub fn select(&self, topic: &str) -> Option<&TopicConfig> {
        self.table.get(topic)
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.table.contains_key(topic)
    }

    pub fn is_order_topic(&self, topic: &str) -> bool {
        self.table.get(topic).is_some_and(|c| c.order)
    }

    /// All topics, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &TopicConfig)> {
        self.table.iter()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Java `TopicValidator.isSystemTopic`, including the topics this broker made at start.
    pub fn is_system_topic(&self, topic: &str) -> bool {
        SYSTEM_TOPICS.contains(&topic)
            || topic.starts_with(SYSTEM_TOPIC_PREFIX)
            || self.system_topics.contains(topic)
    }

    /// SEND_MESSAGE to an unknown topic (§8.1): returns the existing config, or creates the topic
    /// from `default_topic` with `min(client_queue_nums, template write queues)` queues each way,
    /// the template's perm without INHERIT and its filter type.
    pub fn create_in_send(
        &mut self,
        topic: &str,
        default_topic: &str,
        client_queue_nums: i32,
        topic_sys_flag: i32,
        now_ms: u64,
    ) -> Result<TopicConfig, AutoCreateError> {
        if let Some(existing) = self.table.get(topic) {
            return Ok(existing.clone());
        }
        let auto_create = self.settings.auto_create_topic_enable;
        let Some(template) = self.table.get_mut(default_topic) else {
            return Err(AutoCreateError::DefaultTopicMissing {
                default_topic: default_topic.to_string(),
            });
        };
        // A template left over in topics.json from a run with auto-creation on must not keep
        // creating topics; Java rewrites its perm in place (without a version bump).
        if default_topic == AUTO_CREATE_TOPIC_KEY_TOPIC && !auto_create {
            template.perm = PermName::PERM_READ | PermName::PERM_WRITE;
        }
        if !PermName::is_inherited(template.perm) {
            return Err(AutoCreateError::DefaultTopicNotInheritable {
                default_topic: default_topic.to_string(),
                perm: template.perm,
            });
        }
        let queue_nums = client_queue_nums.min(template.write_queue_nums).max(0);
        let config = TopicConfig {
            topic_name: topic.to_string(),
            read_queue_nums: queue_nums,
            write_queue_nums: queue_nums,
            perm: template.perm & !PermName::PERM_INHERIT,
            topic_sys_flag,
            topic_filter_type: template.topic_filter_type,
            ..TopicConfig::default()
        };
        tracing::info!(
            topic,
            default_topic,
            queue_nums,
            "topic auto-created by a send"
        );
        self.put(config.clone(), now_ms);
        Ok(config)
    }

    /// Retry and dead-letter topics (Java `createTopicInSendMessageBackMethod`): returns the
    /// existing config (after setting its order flag to `order`, as Java does), or creates the
    /// topic with `queue_nums` queues each way and `perm`.
    pub fn create_in_send_back(
        &mut self,
        topic: &str,
        queue_nums: i32,
        perm: i32,
        order: bool,
        topic_sys_flag: i32,
        now_ms: u64,
    ) -> TopicConfig {
        if let Some(existing) = self.table.get_mut(topic) {
            if existing.order != order {
                existing.order = order;
                let config = existing.clone();
                self.bump(now_ms);
                return config;
            }
            return existing.clone();
        }
        let config = TopicConfig {
            topic_name: topic.to_string(),
            read_queue_nums: queue_nums,
            write_queue_nums: queue_nums,
            perm,
            topic_sys_flag,
            order,
            ..TopicConfig::default()
        };
        tracing::info!(topic, queue_nums, perm, "retry or DLQ topic created");
        self.put(config.clone(), now_ms);
        config
    }

    /// Returns the existing config of `config.topic_name`, or adds `config`.
    pub fn create_if_absent(&mut self, config: TopicConfig, now_ms: u64) -> TopicConfig {
        assert!(!config.topic_name.is_empty(), "a topic config needs a name");
        if let Some(existing) = self.table.get(&config.topic_name) {
            return existing.clone();
        }
        self.put(config.clone(), now_ms);
        config
    }

    /// UPDATE_AND_CREATE_TOPIC: replaces or adds the topic. Its `attributes` are alterations
    /// (`+key` adds or updates, `-key` deletes; only `+` on creation) applied to the current
    /// attributes; on an error nothing changes.
    pub fn update(&mut self, mut config: TopicConfig, now_ms: u64) -> Result<(), AttributeError> {
        let current = self.table.get(&config.topic_name).map(|c| &c.attributes);
        config.attributes = alter_attributes(current, &config.attributes)?;
        self.put(config, now_ms);
        Ok(())
    }

    /// DELETE_TOPIC_IN_BROKER: removes the topic; returns its config if it existed.
    pub fn delete(&mut self, topic: &str, now_ms: u64) -> Option<TopicConfig> {
        let old = self.table.remove(topic)?;
        self.bump(now_ms);
        Some(old)
    }

    /// The name server's order-topic table (REGISTER_BROKER response): marks those topics
    /// ordered.
    pub fn update_order_topics<'a>(
        &mut self,
        order_topics: impl IntoIterator<Item = &'a str>,
        now_ms: u64,
    ) {
        let mut changed = false;
        for topic in order_topics {
            if let Some(config) = self.table.get_mut(topic) {
                if !config.order {
                    config.order = true;
                    changed = true;
                }
            }
        }
        if changed {
            self.bump(now_ms);
        }
    }

    fn put(&mut self, config: TopicConfig, now_ms: u64) {
        self.table.insert(config.topic_name.clone(), config);
        self.bump(now_ms);
    }

    /// Java `DataVersion.nextVersion`: counter + 1, stamped now.
    fn bump(&mut self, now_ms: u64) {
        self.data_version.counter += 1;
        self.data_version.timestamp = millis(now_ms);
        self.dirty = true;
        self.register_needed = true;
    }

    fn create_system_topics(&mut self) {
        let s = self.settings.clone();
        let rw = PermName::PERM_READ | PermName::PERM_WRITE;
        let with_rw = |enable: bool| PermName::PERM_INHERIT | if enable { rw } else { 0 };
        self.add_system(RMQ_SYS_SELF_TEST_TOPIC, 1, rw);
        if s.auto_create_topic_enable {
            let perm = PermName::PERM_INHERIT | rw;
            self.add_system(
                AUTO_CREATE_TOPIC_KEY_TOPIC,
                s.default_topic_queue_nums,
                perm,
            );
        }
        self.add_system(RMQ_SYS_BENCHMARK_TOPIC, 1024, rw);
        self.add_system(
            &s.broker_cluster_name,
            QUEUE_NUMS_CLASS_DEFAULT,
            with_rw(s.cluster_topic_enable),
        );
        self.add_system(&s.broker_name, 1, with_rw(s.broker_topic_enable));
        self.add_system(RMQ_SYS_OFFSET_MOVED_EVENT, 1, rw);
        self.add_system(RMQ_SYS_SCHEDULE_TOPIC, SCHEDULE_TOPIC_QUEUE_NUMS, rw);
        if s.trace_topic_enable {
            self.add_system(&s.msg_trace_topic_name, 1, rw);
        }
        self.add_system(
            &format!("{}_{REPLY_TOPIC_POSTFIX}", s.broker_cluster_name),
            1,
            rw,
        );
        let revive = format!("{REVIVE_TOPIC_PREFIX}{}", s.broker_cluster_name);
        self.add_system(&revive, s.revive_queue_num, rw);
        let member_group = format!("{SYNC_BROKER_MEMBER_GROUP_PREFIX}{}", s.broker_name);
        self.add_system(&member_group, 1, PermName::PERM_INHERIT);
        self.add_system(RMQ_SYS_TRANS_HALF_TOPIC, 1, rw);
        self.add_system(RMQ_SYS_TRANS_OP_HALF_TOPIC, 1, rw);
        if s.timer_wheel_enable {
            self.add_system(TIMER_TOPIC, 1, rw);
        }
    }

    fn add_system(&mut self, topic: &str, queue_nums: i32, perm: i32) {
        self.system_topics.insert(topic.to_string());
        let config = TopicConfig {
            topic_name: topic.to_string(),
            read_queue_nums: queue_nums,
            write_queue_nums: queue_nums,
            perm,
            ..TopicConfig::default()
        };
        self.table.insert(topic.to_string(), config);
    }
}

/// Java `TopicValidator.validateTopic`: non-blank, `[%|a-zA-Z0-9_-]` only, at most 127
/// characters, or 255 for `%RETRY%`/`%DLQ%` topics.
pub fn validate_topic(topic: &str) -> Result<(), NameError> {
    let kind = "topic";
    check_chars(kind, topic)?;
    let max = if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
        || topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
    {
        RETRY_OR_DLQ_TOPIC_LEN_MAX
    } else {
        TOPIC_LEN_MAX
    };
    check_len(kind, topic, max)
}

/// Java `TopicValidator.validateGroup`: like topics, at most 120 characters.
pub fn validate_group(group: &str) -> Result<(), NameError> {
    check_chars("group", group)?;
    check_len("group", group, GROUP_LEN_MAX)
}

/// Topics clients may not send to (NO_PERMISSION).
pub fn is_not_allowed_send_topic(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
}

/// `%RETRY%<group>`.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

/// `%DLQ%<group>`.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

fn check_chars(kind: &'static str, name: &str) -> Result<(), NameError> {
    // Java's isBlank also treats whitespace-only names as blank.
    if name.chars().all(char::is_whitespace) {
        return Err(NameError::Blank { kind });
    }
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-');
    if !name.bytes().all(legal) {
        return Err(NameError::IllegalCharacters {
            kind,
            name: name.to_string(),
        });
    }
    Ok(())
}

fn check_len(kind: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    // Only ASCII passed check_chars, so bytes are Java chars.
    if name.len() > max {
        return Err(NameError::TooLong {
            kind,
            name: name.to_string(),
            len: name.len(),
            max,
        });
    }
    Ok(())
}

/// Java `AttributeUtil.alterCurrentAttributes` over `TopicAttributes.ALL`. `current` is `None`
/// when the topic is being created.
fn alter_attributes(
    current: Option<&BTreeMap<String, String>>,
    requested: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, AttributeError> {
    let create = current.is_none();
    let mut result = current.cloned().unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut deletes = Vec::new();
    for (key, value) in requested {
        let wrong = || AttributeError::WrongFormat { key: key.clone() };
        let (op, real) = match key.split_at_checked(1) {
            Some((op @ ("+" | "-"), real)) if !real.is_empty() && !real.contains(['+', '-']) => {
                (op, real)
            }
            _ => return Err(wrong()),
        };
        if !seen.insert(real) {
            return Err(AttributeError::Duplicate {
                key: real.to_string(),
            });
        }
        let Some(attribute) = TOPIC_ATTRIBUTES.iter().find(|a| a.key == real) else {
            return Err(AttributeError::Unsupported {
                key: real.to_string(),
            });
        };
        if create && op != "+" {
            return Err(AttributeError::OnlyAddOnCreate {
                key: real.to_string(),
            });
        }
        if !create && !attribute.changeable {
            return Err(AttributeError::Unchangeable {
                key: real.to_string(),
            });
        }
        if op == "-" {
            if !result.contains_key(real) {
                return Err(AttributeError::DeleteMissing {
                    key: real.to_string(),
                });
            }
            deletes.push(real);
            continue;
        }
        if !(attribute.verify)(value) {
            return Err(AttributeError::BadValue {
                key: real.to_string(),
                value: value.clone(),
            });
        }
        result.insert(real.to_string(), value.clone());
    }
    for key in deletes {
        result.remove(key);
    }
    Ok(result)
}

fn millis(now_ms: u64) -> i64 {
    i64::try_from(now_ms).unwrap_or(i64::MAX)
}

/// One of Java's `TopicAttributes.ALL`.
struct TopicAttribute {
    key: &'static str,
    /// May be altered after the topic exists.
    changeable: bool,
    verify: fn(&str) -> bool,
}

const TOPIC_ATTRIBUTES: [TopicAttribute; 4] = [
    TopicAttribute {
        key: "queue.type",
        changeable: false,
        verify: |v| matches!(v, "BatchCQ" | "SimpleCQ"),
    },
    TopicAttribute {
        key: "cleanup.policy",
        changeable: false,
        verify: |v| matches!(v, "DELETE" | "COMPACTION"),
    },
    TopicAttribute {
        key: "message.type",
        changeable: true,
        verify: |v| {
            matches!(
                v,
                "UNSPECIFIED" | "NORMAL" | "FIFO" | "DELAY" | "TRANSACTION" | "MIXED"
            )
        },
    },
    TopicAttribute {
        key: "reserve.time",
        changeable: true,
        verify: |v| v.parse::<i64>().is_ok_and(|n| n >= -1),
    },
];

/// The auto-creation template topic.
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
/// Where delayed messages wait (18 queues, one per delay level).
pub const RMQ_SYS_SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
pub const RMQ_SYS_BENCHMARK_TOPIC: &str = "BenchmarkTest";
pub const RMQ_SYS_TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const RMQ_SYS_TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
pub const RMQ_SYS_TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
pub const RMQ_SYS_SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const RMQ_SYS_OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const RMQ_SYS_ROCKSDB_OFFSET_TOPIC: &str = "CHECKPOINT_TOPIC";
/// 5.x timer-wheel topic.
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
pub const SYNC_BROKER_MEMBER_GROUP_PREFIX: &str = "rmq_sys_SYNC_BROKER_MEMBER_";
pub const REVIVE_TOPIC_PREFIX: &str = "rmq_sys_REVIVE_LOG_";
pub const REPLY_TOPIC_POSTFIX: &str = "REPLY_TOPIC";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
/// Queues of a group's dead-letter topic (Java `MixAll.DLQ_NUMS_PER_GROUP`).
pub const DLQ_NUMS_PER_GROUP: i32 = 1;
/// Queues of `SCHEDULE_TOPIC_XXXX`: one per delay level.
pub const SCHEDULE_TOPIC_QUEUE_NUMS: i32 = 18;
pub const TOPIC_LEN_MAX: usize = 127;
pub const RETRY_OR_DLQ_TOPIC_LEN_MAX: usize = 255;
pub const GROUP_LEN_MAX: usize = 120;

/// Java `TopicValidator`'s fixed system topic set.
pub const SYSTEM_TOPICS: [&str; 10] = [
    AUTO_CREATE_TOPIC_KEY_TOPIC,
    RMQ_SYS_SCHEDULE_TOPIC,
    RMQ_SYS_BENCHMARK_TOPIC,
    RMQ_SYS_TRANS_HALF_TOPIC,
    RMQ_SYS_TRACE_TOPIC,
    RMQ_SYS_TRANS_OP_HALF_TOPIC,
    RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC,
    RMQ_SYS_SELF_TEST_TOPIC,
    RMQ_SYS_OFFSET_MOVED_EVENT,
    RMQ_SYS_ROCKSDB_OFFSET_TOPIC,
];

/// Topics a client may not send to (§8 step 2).
pub const NOT_ALLOWED_SEND_TOPICS: [&str; 6] = [
    RMQ_SYS_SCHEDULE_TOPIC,
    RMQ_SYS_TRANS_HALF_TOPIC,
    RMQ_SYS_TRANS_OP_HALF_TOPIC,
    RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC,
    RMQ_SYS_SELF_TEST_TOPIC,
    RMQ_SYS_OFFSET_MOVED_EVENT,
];

/// Java `new TopicConfig(name)` queue counts, kept by the cluster-name topic.
const QUEUE_NUMS_CLASS_DEFAULT: i32 = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table() -> TopicConfigTable {
        TopicConfigTable::new(TopicTableSettings::new("DefaultCluster", "broker-a"), 1_000)
    }

    #[test]
    fn start_up_topics_match_java() {
        let t = table();
        let tbw = t.select("TBW102").unwrap();
        assert_eq!(
            (tbw.perm, tbw.read_queue_nums, tbw.write_queue_nums),
            (7, 8, 8)
        );
        let schedule = t.select("SCHEDULE_TOPIC_XXXX").unwrap();
        assert_eq!((schedule.perm, schedule.write_queue_nums), (6, 18));
        assert_eq!(t.select("DefaultCluster").unwrap().perm, 7);
        assert_eq!(t.select("DefaultCluster").unwrap().read_queue_nums, 16);
        assert_eq!(t.select("broker-a").unwrap().write_queue_nums, 1);
        assert_eq!(
            t.select("rmq_sys_SYNC_BROKER_MEMBER_broker-a")
                .unwrap()
                .perm,
            1
        );
        assert_eq!(
            t.select("rmq_sys_REVIVE_LOG_DefaultCluster")
                .unwrap()
                .read_queue_nums,
            8
        );
        for topic in [
            "SELF_TEST_TOPIC",
            "BenchmarkTest",
            "OFFSET_MOVED_EVENT",
            "DefaultCluster_REPLY_TOPIC",
            "RMQ_SYS_TRANS_HALF_TOPIC",
            "RMQ_SYS_TRANS_OP_HALF_TOPIC",
            "rmq_sys_wheel_timer",
        ] {
            assert!(t.contains(topic), "{topic}");
            assert!(t.is_system_topic(topic), "{topic}");
        }
        assert!(!t.contains("RMQ_SYS_TRACE_TOPIC"));
        assert!(t.is_system_topic("broker-a"));
        assert!(!t.is_system_topic("TopicTest"));
        assert_eq!(t.data_version().counter, 0);
        assert!(!t.is_dirty());

        let mut s = TopicTableSettings::new("c", "b");
        s.auto_create_topic_enable = false;
        s.cluster_topic_enable = false;
        let t = TopicConfigTable::new(s, 0);
        assert!(!t.contains("TBW102"));
        assert_eq!(t.select("c").unwrap().perm, PermName::PERM_INHERIT);
    }

    #[test]
    fn auto_create_follows_the_template() {
        let mut t = table();
        let created = t
            .create_in_send("TopicTest", "TBW102", 4, 0, 5_000)
            .unwrap();
        assert_eq!(
            (
                created.read_queue_nums,
                created.write_queue_nums,
                created.perm
            ),
            (4, 4, 6)
        );
        assert_eq!(t.data_version().counter, 1);
        assert_eq!(t.data_version().timestamp, 5_000);
        assert!(t.is_dirty());
        assert!(t.take_register_needed());
        assert!(!t.take_register_needed());
        // min(client, template): the template has 8.
        let big = t.create_in_send("Big", "TBW102", 100, 0, 6_000).unwrap();
        assert_eq!(big.write_queue_nums, 8);
        // Existing topics come back unchanged, with no version bump.
        let again = t
            .create_in_send("TopicTest", "TBW102", 8, 0, 7_000)
            .unwrap();
        assert_eq!(again.write_queue_nums, 4);
        assert_eq!(t.data_version().counter, 2);
        assert_eq!(
            t.create_in_send("X", "NoSuchTemplate", 4, 0, 0),
            Err(AutoCreateError::DefaultTopicMissing {
                default_topic: "NoSuchTemplate".into()
            })
        );
        assert!(matches!(
            t.create_in_send("X", "TopicTest", 4, 0, 0),
            Err(AutoCreateError::DefaultTopicNotInheritable { perm: 6, .. })
        ));
    }

    #[test]
    fn disabled_auto_create_neuters_a_persisted_template() {
        let mut s = TopicTableSettings::new("c", "b");
        s.auto_create_topic_enable = false;
        let mut t = TopicConfigTable::new(s, 0);
        let mut persisted = table().to_persist();
        persisted.data_version.counter = 9;
        t.load(persisted);
        assert_eq!(t.select("TBW102").unwrap().perm, 7);
        assert_eq!(t.data_version().counter, 9);
        assert!(t.create_in_send("T", "TBW102", 4, 0, 0).is_err());
        assert_eq!(t.select("TBW102").unwrap().perm, 6);
        assert!(!t.contains("T"));
    }

    #[test]
    fn retry_and_dlq_topics() {
        let mut t = table();
        let retry = t.create_in_send_back(&retry_topic("cg"), 1, 6, false, 0, 10);
        assert_eq!(retry.topic_name, "%RETRY%cg");
        assert_eq!(
            (retry.read_queue_nums, retry.perm, retry.order),
            (1, 6, false)
        );
        assert_eq!(t.data_version().counter, 1);
        // Same order flag: nothing changes.
        t.create_in_send_back("%RETRY%cg", 3, 6, false, 0, 11);
        assert_eq!(t.data_version().counter, 1);
        assert_eq!(t.select("%RETRY%cg").unwrap().read_queue_nums, 1);
        // A different order flag is written back.
        assert!(t.create_in_send_back("%RETRY%cg", 1, 6, true, 0, 12).order);
        assert!(t.is_order_topic("%RETRY%cg"));
        assert_eq!(t.data_version().counter, 2);
        let dlq = t.create_in_send_back(&dlq_topic("cg"), DLQ_NUMS_PER_GROUP, 6, false, 0, 13);
        assert_eq!(dlq.topic_name, "%DLQ%cg");
    }

    #[test]
    fn update_and_delete_bump_the_version() {
        let mut t = table();
        let mut config = TopicConfig {
            topic_name: "T".into(),
            read_queue_nums: 2,
            write_queue_nums: 2,
            ..TopicConfig::default()
        };
        config
            .attributes
            .insert("+message.type".into(), "FIFO".into());
        t.update(config.clone(), 1).unwrap();
        assert_eq!(t.select("T").unwrap().attributes["message.type"], "FIFO");
        assert_eq!(t.data_version().counter, 1);
        // Deleting an attribute, then an unknown one.
        config.attributes.clear();
        config
            .attributes
            .insert("-message.type".into(), String::new());
        t.update(config.clone(), 2).unwrap();
        assert!(t.select("T").unwrap().attributes.is_empty());
        assert_eq!(
            t.update(config.clone(), 3),
            Err(AttributeError::DeleteMissing {
                key: "message.type".into()
            })
        );
        config.attributes.clear();
        config
            .attributes
            .insert("+queue.type".into(), "SimpleCQ".into());
        assert_eq!(
            t.update(config.clone(), 3),
            Err(AttributeError::Unchangeable {
                key: "queue.type".into()
            })
        );
        config.attributes.clear();
        config
            .attributes
            .insert("+message.type".into(), "WEIRD".into());
        assert!(matches!(
            t.update(config.clone(), 3),
            Err(AttributeError::BadValue { .. })
        ));
        config.topic_name = "New".into();
        config.attributes.clear();
        config
            .attributes
            .insert("-message.type".into(), String::new());
        assert!(matches!(
            t.update(config, 3),
            Err(AttributeError::OnlyAddOnCreate { .. })
        ));
        assert_eq!(t.data_version().counter, 2);
        assert!(t.delete("T", 4).is_some());
        assert!(t.delete("T", 5).is_none());
        assert_eq!(t.data_version().counter, 3);
        t.update_order_topics(["SELF_TEST_TOPIC", "Nope"], 6);
        assert!(t.is_order_topic("SELF_TEST_TOPIC"));
        assert_eq!(t.data_version().counter, 4);
    }

    #[test]
    fn names_follow_java_rules() {
        assert!(validate_topic("Topic_A-1|%").is_ok());
        assert_eq!(validate_topic(""), Err(NameError::Blank { kind: "topic" }));
        assert_eq!(
            validate_topic("  "),
            Err(NameError::Blank { kind: "topic" })
        );
        assert!(matches!(
            validate_topic("a b"),
            Err(NameError::IllegalCharacters { .. })
        ));
        assert!(matches!(
            validate_topic("tópico"),
            Err(NameError::IllegalCharacters { .. })
        ));
        assert!(validate_topic(&"a".repeat(127)).is_ok());
        assert!(matches!(
            validate_topic(&"a".repeat(128)),
            Err(NameError::TooLong { len: 128, .. })
        ));
        assert!(validate_topic(&format!("%RETRY%{}", "a".repeat(248))).is_ok());
        assert!(validate_topic(&format!("%DLQ%{}", "a".repeat(251))).is_err());
        assert!(validate_group(&"g".repeat(120)).is_ok());
        assert!(validate_group(&"g".repeat(121)).is_err());
        assert!(is_not_allowed_send_topic("SCHEDULE_TOPIC_XXXX"));
        assert!(is_not_allowed_send_topic("OFFSET_MOVED_EVENT"));
        assert!(!is_not_allowed_send_topic("TBW102"));
    }

    #[test]
    fn persisted_form_round_trips() {
        let mut t = table();
        t.create_in_send("TopicTest", "TBW102", 4, 0, 5).unwrap();
        let bytes = t.to_persist().encode();
        let mut fresh = table();
        fresh.load(TopicConfigSerializeWrapper::decode(&bytes).unwrap());
        assert_eq!(fresh.to_persist(), t.to_persist());
        let reg = t.to_register();
        assert_eq!(reg.topic_config_table.len(), t.len());
        assert!(reg.topic_queue_mapping_info_map.is_empty());
    }

    proptest! {
        #[test]
        fn names_are_valid_iff_the_regex_matches(name in "[%|a-zA-Z0-9_ .-]{0,140}") {
            let legal = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"%|_-".contains(&b))
                && name.len() <= 127;
            prop_assert_eq!(validate_topic(&name).is_ok(), legal);
        }

        #[test]
        fn auto_created_queues_never_exceed_the_template(client in -5i32..50, template in 0i32..20) {
            let mut s = TopicTableSettings::new("c", "b");
            s.default_topic_queue_nums = template;
            let mut t = TopicConfigTable::new(s, 0);
            let created = t.create_in_send("T", "TBW102", client, 0, 1).unwrap();
            prop_assert!(created.write_queue_nums <= template);
            prop_assert!(created.write_queue_nums >= 0);
            prop_assert_eq!(created.read_queue_nums, created.write_queue_nums);
            prop_assert!(!PermName::is_inherited(created.perm));
        }
    }
}
