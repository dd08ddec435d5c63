//! Broker and name-server settings read the way RocketMQ operators write them: a `broker.conf`
//! in Java properties format with RocketMQ's key names, then `--set key=value` overrides.
//!
//! One table of keys (`Settings::set`) is the single place a key is understood. A key RocketMQ
//! knows but we do not use is accepted quietly (an existing `broker.conf` must not drown its
//! operator in warnings); a key nobody knows is warned about; a bad value is refused with an
//! error naming the key.

pub mod controller;
mod properties;

use std::path::PathBuf;

pub use properties::parse_properties;

/// Every config key of RocketMQ's BrokerConfig, MessageStoreConfig, Netty and NamesrvConfig,
/// by name only: keys in this list that `Settings::set` does not use are accepted and ignored.
const ROCKETMQ_KEYS: &str = include_str!("rocketmq_keys.txt");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config key {key}: bad value {value:?}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("--set {0:?}: expected key=value")]
    BadOverride(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    AsyncFlush,
    SyncFlush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerRole {
    AsyncMaster,
    SyncMaster,
    Slave,
}

/// What a key did when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// We read it.
    Used,
    /// RocketMQ knows it; we have no use for it.
    Ignored,
    /// Nobody knows it: probably a typo.
    Unknown,
}

/// The settings of one node, with RocketMQ's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub broker_cluster_name: String,
    pub broker_name: String,
    pub broker_id: i64,
    /// `host:port;host:port`.
    pub namesrv_addr: Option<String>,
    pub listen_port: u16,
    /// Interface the broker listens on (`bindAddress`, RocketMQ's Netty key).
    pub bind_address: String,
    /// Address advertised to name servers; `None` means "work it out at start".
    pub broker_ip1: Option<String>,
    pub store_path_root_dir: PathBuf,
    pub flush_disk_type: FlushDiskType,
    pub broker_role: BrokerRole,
    pub auto_create_topic_enable: bool,
    pub auto_create_subscription_group: bool,
    pub default_topic_queue_nums: u32,
    pub broker_permission: u32,
    /// Hours of the day when expired files are deleted (`deleteWhen=04;05`).
    pub delete_when: Vec<u8>,
    pub file_reserved_time_hours: u32,
    pub mapped_file_size_commit_log: u64,
    pub mapped_file_size_consume_queue: u64,
    pub disk_max_used_space_ratio: u32,
    /// Disk use (percent) above which writes are refused; RocketMQ caps it at 90.
    pub disk_space_warning_level_ratio: u32,
    /// Disk use (percent) above which unexpired segments are deleted; capped at 85.
    pub disk_space_clean_forcibly_ratio: u32,
    pub clean_file_forcibly_enable: bool,
    /// `warmMapedFileEnable` (false): fault every page of a new store file in ahead of the
    /// appends (on the store's prefault thread, not the write path), as RocketMQ warms mapped
    /// files. Without it pages are still populated a window ahead of the writes.
    pub warm_maped_file_enable: bool,
    pub max_message_size: u32,
    pub flush_interval_commit_log_ms: u64,
    pub flush_commit_log_least_pages: u32,
    pub flush_commit_log_thorough_interval_ms: u64,
    pub sync_flush_timeout_ms: u64,
    pub check_crc_on_recover: bool,
    pub long_polling_enable: bool,
    pub short_polling_time_ms: u64,
    pub notify_consumer_ids_changed_enable: bool,
    pub register_name_server_period_ms: u64,
    pub region_id: String,
    pub trace_on: bool,
    /// `haListenPort`; 0 (the default) means `listenPort + 1`, as BrokerStartup does.
    pub ha_listen_port: u16,
    /// `haMasterAddress`: a slave's fixed master HA address (else the name server's answer).
    pub ha_master_address: Option<String>,
    pub ha_send_heartbeat_interval_ms: u64,
    pub ha_housekeeping_interval_ms: u64,
    pub ha_transfer_batch_size: u32,
    pub ha_max_gap_not_in_sync: u64,
    pub in_sync_replicas: u32,
    /// Controller-mode replication (`proto_core::ha::HaConfig` documents each).
    pub all_ack_in_sync_state_set: bool,
    pub min_in_sync_replicas: u32,
    pub ha_max_time_slave_not_catchup_ms: u64,
    /// `syncStateSetMaxSize` (our key; 0, the default, means unbounded).
    pub sync_state_set_max_size: usize,
    /// Controller mode (`proto_core::broker::ControllerModeConfig` documents each):
    /// `enableControllerMode`, `controllerAddr` (`host:port;host:port`), periods in ms.
    pub enable_controller_mode: bool,
    pub controller_addr: Option<String>,
    pub controller_heart_beat_timeout_ms: u64,
    pub broker_heartbeat_interval_ms: u64,
    pub sync_broker_metadata_period_ms: u64,
    pub check_sync_state_set_period_ms: u64,
    pub sync_controller_metadata_period_ms: u64,
    pub broker_election_priority: i32,
    pub message_delay_level: String,
    pub enable_property_filter: bool,
    /// Name-server listen address of `node standalone` (our key; RocketMQ runs two processes).
    pub namesrv_listen: String,
    pub transaction_timeout_ms: u64,
    pub transaction_check_max: u32,
    pub transaction_check_interval_ms: u64,
    pub reject_transaction_message: bool,
    /// `timerWheelEnable` (true): accept timer messages (`TIMER_*` properties).
    pub timer_wheel_enable: bool,
    /// `timerMaxDelaySec` (3 days).
    pub timer_max_delay_sec: u64,
    /// `timerPrecisionMs` (1000), snapped down to 100, 200, 500 or 1000 as Java does.
    pub timer_precision_ms: u64,
    /// `timerFlushIntervalMs` (1000).
    pub timer_flush_interval_ms: u64,
    /// `mappedFileSizeTimerLog` (100 MiB).
    pub mapped_file_size_timer_log: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            broker_cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            namesrv_addr: None,
            listen_port: 10911,
            bind_address: "0.0.0.0".into(),
            broker_ip1: None,
            store_path_root_dir: default_store_dir(),
            flush_disk_type: FlushDiskType::AsyncFlush,
            broker_role: BrokerRole::AsyncMaster,
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            broker_permission: 6,
            delete_when: vec![4],
            file_reserved_time_hours: 72,
            mapped_file_size_commit_log: 1 << 30,
            mapped_file_size_consume_queue: 300_000 * 20,
            disk_max_used_space_ratio: 75,
            disk_space_warning_level_ratio: 90,
            disk_space_clean_forcibly_ratio: 85,
            clean_file_forcibly_enable: true,
            warm_maped_file_enable: false,
            max_message_size: 4 << 20,
            flush_interval_commit_log_ms: 500,
            flush_commit_log_least_pages: 4,
            flush_commit_log_thorough_interval_ms: 10_000,
            sync_flush_timeout_ms: 5_000,
            check_crc_on_recover: true,
            long_polling_enable: true,
            short_polling_time_ms: 1_000,
            notify_consumer_ids_changed_enable: true,
            register_name_server_period_ms: 30_000,
            region_id: "DefaultRegion".into(),
            trace_on: true,
            ha_listen_port: 0,
            ha_master_address: None,
            ha_send_heartbeat_interval_ms: 5_000,
            ha_housekeeping_interval_ms: 20_000,
            ha_transfer_batch_size: 32 * 1024,
            ha_max_gap_not_in_sync: 256 * 1024 * 1024,
            in_sync_replicas: 1,
            all_ack_in_sync_state_set: false,
            min_in_sync_replicas: 1,
            ha_max_time_slave_not_catchup_ms: 15_000,
            sync_state_set_max_size: 0,
            enable_controller_mode: false,
            controller_addr: None,
            controller_heart_beat_timeout_ms: 10_000,
            broker_heartbeat_interval_ms: 1_000,
            sync_broker_metadata_period_ms: 5_000,
            check_sync_state_set_period_ms: 5_000,
            sync_controller_metadata_period_ms: 10_000,
            broker_election_priority: i32::MAX,
            message_delay_level: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .into(),
            enable_property_filter: false,
            namesrv_listen: "0.0.0.0:9876".into(),
            transaction_timeout_ms: 6_000,
            transaction_check_max: 15,
            transaction_check_interval_ms: 30_000,
            reject_transaction_message: false,
            timer_wheel_enable: true,
            timer_max_delay_sec: 3 * 24 * 3600,
            timer_precision_ms: 1000,
            timer_flush_interval_ms: 1000,
            mapped_file_size_timer_log: 100 << 20,
        }
    }
}

fn default_store_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(
        || PathBuf::from("store"),
        |home| PathBuf::from(home).join("store"),
    )
}

impl Settings {
    /// Sets one key from its text. The single table of keys we understand.
    pub fn set(&mut self, key: &str, value: &str) -> Result<KeyUse, ConfigError> {
        let v = value.trim();
        match key {
            "brokerClusterName" => self.broker_cluster_name = non_empty(key, v)?,
            "brokerName" => self.broker_name = non_empty(key, v)?,
            "brokerId" => self.broker_id = number(key, v)?,
            "namesrvAddr" => self.namesrv_addr = (!v.is_empty()).then(|| v.to_string()),
            "listenPort" => self.listen_port = number(key, v)?,
            "bindAddress" => self.bind_address = non_empty(key, v)?,
            "brokerIP1" => self.broker_ip1 = (!v.is_empty()).then(|| v.to_string()),
            "storePathRootDir" => self.store_path_root_dir = PathBuf::from(non_empty(key, v)?),
            "flushDiskType" => {
                self.flush_disk_type = match v {
                    "ASYNC_FLUSH" => FlushDiskType::AsyncFlush,
                    "SYNC_FLUSH" => FlushDiskType::SyncFlush,
                    _ => return Err(bad(key, v, "expected ASYNC_FLUSH or SYNC_FLUSH")),
                }
            }
            "brokerRole" => {
                self.broker_role = match v {
                    "ASYNC_MASTER" => BrokerRole::AsyncMaster,
                    "SYNC_MASTER" => BrokerRole::SyncMaster,
                    "SLAVE" => BrokerRole::Slave,
                    _ => return Err(bad(key, v, "expected ASYNC_MASTER, SYNC_MASTER or SLAVE")),
                }
            }
            "autoCreateTopicEnable" => self.auto_create_topic_enable = boolean(key, v)?,
            "autoCreateSubscriptionGroup" => self.auto_create_subscription_group = boolean(key, v)?,
            "defaultTopicQueueNums" => self.default_topic_queue_nums = positive(key, v)?,
            "brokerPermission" => self.broker_permission = bounded(key, v, 0, 15)?,
            "deleteWhen" => self.delete_when = hours(key, v)?,
            "fileReservedTime" => self.file_reserved_time_hours = positive(key, v)?,
            "mappedFileSizeCommitLog" => self.mapped_file_size_commit_log = at_least(key, v, 4096)?,
            "mappedFileSizeConsumeQueue" => {
                let size: u64 = at_least(key, v, 20)?;
                if !size.is_multiple_of(20) {
                    return Err(bad(key, v, "must be a multiple of the 20-byte unit"));
                }
                self.mapped_file_size_consume_queue = size;
            }
            "diskMaxUsedSpaceRatio" => self.disk_max_used_space_ratio = bounded(key, v, 10, 95)?,
            "diskSpaceWarningLevelRatio" => {
                self.disk_space_warning_level_ratio = bounded(key, v, 35, 90)?;
            }
            "diskSpaceCleanForciblyRatio" => {
                self.disk_space_clean_forcibly_ratio = bounded(key, v, 30, 85)?;
            }
            "cleanFileForciblyEnable" => self.clean_file_forcibly_enable = boolean(key, v)?,
            "warmMapedFileEnable" => self.warm_maped_file_enable = boolean(key, v)?,
            "maxMessageSize" => self.max_message_size = positive(key, v)?,
            "flushIntervalCommitLog" => self.flush_interval_commit_log_ms = positive(key, v)?,
            "flushCommitLogLeastPages" => self.flush_commit_log_least_pages = number(key, v)?,
            "flushCommitLogThoroughInterval" => {
                self.flush_commit_log_thorough_interval_ms = positive(key, v)?
            }
            "syncFlushTimeout" => self.sync_flush_timeout_ms = positive(key, v)?,
            "checkCRCOnRecover" => self.check_crc_on_recover = boolean(key, v)?,
            "longPollingEnable" => self.long_polling_enable = boolean(key, v)?,
            "shortPollingTimeMills" => self.short_polling_time_ms = positive(key, v)?,
            "notifyConsumerIdsChangedEnable" => {
                self.notify_consumer_ids_changed_enable = boolean(key, v)?
            }
            "registerNameServerPeriod" => {
                self.register_name_server_period_ms = bounded(key, v, 1_000, 60_000)?
            }
            "regionId" => self.region_id = non_empty(key, v)?,
            "traceOn" => self.trace_on = boolean(key, v)?,
            "haListenPort" => self.ha_listen_port = number(key, v)?,
            "haMasterAddress" => self.ha_master_address = (!v.is_empty()).then(|| v.to_string()),
            "haSendHeartbeatInterval" => self.ha_send_heartbeat_interval_ms = positive(key, v)?,
            "haHousekeepingInterval" => self.ha_housekeeping_interval_ms = positive(key, v)?,
            "haTransferBatchSize" => self.ha_transfer_batch_size = positive(key, v)?,
            "haMaxGapNotInSync" => self.ha_max_gap_not_in_sync = positive(key, v)?,
            "inSyncReplicas" => self.in_sync_replicas = positive(key, v)?,
            "allAckInSyncStateSet" => self.all_ack_in_sync_state_set = boolean(key, v)?,
            "minInSyncReplicas" => self.min_in_sync_replicas = positive(key, v)?,
            "haMaxTimeSlaveNotCatchup" => self.ha_max_time_slave_not_catchup_ms = positive(key, v)?,
            "syncStateSetMaxSize" => self.sync_state_set_max_size = number(key, v)?,
            "enableControllerMode" => self.enable_controller_mode = boolean(key, v)?,
            "controllerAddr" => self.controller_addr = (!v.is_empty()).then(|| v.to_string()),
            "controllerHeartBeatTimeoutMills" => {
                self.controller_heart_beat_timeout_ms = positive(key, v)?
            }
            "brokerHeartbeatInterval" => self.broker_heartbeat_interval_ms = positive(key, v)?,
            "syncBrokerMetadataPeriod" => self.sync_broker_metadata_period_ms = positive(key, v)?,
            "checkSyncStateSetPeriod" => self.check_sync_state_set_period_ms = positive(key, v)?,
            "syncControllerMetadataPeriod" => {
                self.sync_controller_metadata_period_ms = positive(key, v)?
            }
            "brokerElectionPriority" => self.broker_election_priority = number(key, v)?,
            "messageDelayLevel" => {
                proto_core::broker::schedule::parse_delay_levels(v)
                    .map_err(|e| bad(key, v, &e.to_string()))?;
                self.message_delay_level = v.to_string();
            }
            "enablePropertyFilter" => self.enable_property_filter = boolean(key, v)?,
            "namesrvListen" => self.namesrv_listen = non_empty(key, v)?,
            "transactionTimeOut" => self.transaction_timeout_ms = number(key, v)?,
            "transactionCheckMax" => self.transaction_check_max = positive(key, v)?,
            "transactionCheckInterval" => self.transaction_check_interval_ms = positive(key, v)?,
            "rejectTransactionMessage" => self.reject_transaction_message = boolean(key, v)?,
            "timerWheelEnable" => self.timer_wheel_enable = boolean(key, v)?,
            "timerMaxDelaySec" => self.timer_max_delay_sec = positive(key, v)?,
            "timerPrecisionMs" => {
                // Java's setter: the largest of 100, 200, 500, 1000 not above the value.
                let ms: u64 = positive(key, v)?;
                self.timer_precision_ms = [1000, 500, 200, 100]
                    .into_iter()
                    .find(|&c| ms >= c)
                    .unwrap_or(100);
            }
            "timerFlushIntervalMs" => self.timer_flush_interval_ms = positive(key, v)?,
            "mappedFileSizeTimerLog" => self.mapped_file_size_timer_log = at_least(key, v, 4096)?,
            _ if ROCKETMQ_KEYS.lines().any(|k| k == key) => return Ok(KeyUse::Ignored),
            _ => return Ok(KeyUse::Unknown),
        }
        Ok(KeyUse::Used)
    }

    /// Applies a properties file's text, then `key=value` overrides; warns about unknown keys.
    pub fn apply(
        &mut self,
        file_text: Option<&str>,
        overrides: &[String],
    ) -> Result<(), ConfigError> {
        apply_settings(file_text, overrides, "broker", |k, v| self.set(k, v))
    }
}

/// Feeds a properties file's pairs, then `key=value` overrides (which win, coming later), to
/// `set`, and logs the keys it did not use. `kind` names the settings in the log lines.
fn apply_settings(
    file_text: Option<&str>,
    overrides: &[String],
    kind: &str,
    mut set: impl FnMut(&str, &str) -> Result<KeyUse, ConfigError>,
) -> Result<(), ConfigError> {
    let mut pairs = file_text.map(parse_properties).unwrap_or_default();
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
        pairs.push((k.trim().to_string(), v.to_string()));
    }
    for (key, value) in &pairs {
        match set(key, value)? {
            KeyUse::Used => {}
            KeyUse::Ignored => {
                tracing::debug!(key, kind, "RocketMQ config key not used by this node")
            }
            KeyUse::Unknown => tracing::warn!(key, kind, "unknown config key, ignored"),
        }
    }
    Ok(())
}

fn bad(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::BadValue {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn non_empty(key: &str, v: &str) -> Result<String, ConfigError> {
    if v.is_empty() {
        return Err(bad(key, v, "must not be empty"));
    }
    Ok(v.to_string())
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.parse()
        .map_err(|_| bad(key, v, "not a valid number for this key"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    v: &str,
) -> Result<T, ConfigError> {
    let n: T = number(key, v)?;
    if n <= T::default() {
        return Err(bad(key, v, "must be greater than zero"));
    }
    Ok(n)
}

fn at_least(key: &str, v: &str, min: u64) -> Result<u64, ConfigError> {
    let n: u64 = number(key, v)?;
    if n < min {
        return Err(bad(key, v, &format!("must be at least {min}")));
    }
    Ok(n)
}

fn bounded<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    key: &str,
    v: &str,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    let n: T = number(key, v)?;
    if n < min || n > max {
        return Err(bad(key, v, &format!("must be between {min} and {max}")));
    }
    Ok(n)
}

fn boolean(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, v, "expected true or false")),
    }
}

/// `deleteWhen` is one or more hours of the day separated by `;`, like `04` or `04;16`.
fn hours(key: &str, v: &str) -> Result<Vec<u8>, ConfigError> {
    v.split(';')
        .map(|h| match h.trim().parse::<u8>() {
            Ok(h) if h < 24 => Ok(h),
            _ => Err(bad(key, v, "expected hours 00-23 separated by ';'")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocketmq_broker_conf_sets_rocketmq_keys() {
        let conf = "brokerClusterName = DefaultCluster\nbrokerName = broker-b\nbrokerId = 0\n\
                    deleteWhen = 04\nfileReservedTime = 48\nbrokerRole = SYNC_MASTER\n\
                    flushDiskType = SYNC_FLUSH\n";
        let mut s = Settings::default();
        s.apply(
            Some(conf),
            &["listenPort=20911".into(), "brokerName=broker-c".into()],
        )
        .unwrap();
        assert_eq!(s.broker_name, "broker-c");
        assert_eq!(s.file_reserved_time_hours, 48);
        assert_eq!(s.broker_role, BrokerRole::SyncMaster);
        assert_eq!(s.flush_disk_type, FlushDiskType::SyncFlush);
        assert_eq!(s.listen_port, 20911);
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut s = Settings::default();
        let err = s.set("listenPort", "99999").unwrap_err();
        assert!(err.to_string().contains("listenPort"), "{err}");
        let err = s.set("flushDiskType", "SOMETIMES").unwrap_err();
        assert!(err.to_string().contains("flushDiskType"), "{err}");
        assert!(s.set("deleteWhen", "25").is_err());
        assert!(s.set("mappedFileSizeConsumeQueue", "30").is_err());
        let err = s.set("messageDelayLevel", "1s 5x").unwrap_err();
        assert!(err.to_string().contains("5x"), "{err}");
        assert!(matches!(
            s.apply(None, &["noequals".into()]),
            Err(ConfigError::BadOverride(_))
        ));
    }

    #[test]
    fn known_rocketmq_keys_are_ignored_unknown_ones_flagged() {
        let mut s = Settings::default();
        assert_eq!(
            s.set("sendMessageThreadPoolNums", "8").unwrap(),
            KeyUse::Ignored
        );
        assert_eq!(s.set("brokerNmae", "x").unwrap(), KeyUse::Unknown);
        assert_eq!(s.set("deleteWhen", "04;16").unwrap(), KeyUse::Used);
        assert_eq!(s.delete_when, vec![4, 16]);
    }

    #[test]
    fn disk_ratios_keep_rocketmq_s_bounds() {
        let mut s = Settings::default();
        assert_eq!(s.disk_space_warning_level_ratio, 90);
        s.set("diskSpaceWarningLevelRatio", "80").unwrap();
        assert_eq!(s.disk_space_warning_level_ratio, 80);
        // RocketMQ never lets writes run past 90 % or forced cleaning wait past 85 %.
        assert!(s.set("diskSpaceWarningLevelRatio", "95").is_err());
        assert!(s.set("diskSpaceCleanForciblyRatio", "86").is_err());
        s.set("cleanFileForciblyEnable", "false").unwrap();
        assert!(!s.clean_file_forcibly_enable);
        assert!(!s.warm_maped_file_enable);
        assert_eq!(s.set("warmMapedFileEnable", "true"), Ok(KeyUse::Used));
        assert!(s.warm_maped_file_enable);
    }

    #[test]
    fn transaction_keys_are_read() {
        let mut s = Settings::default();
        let conf =
            "transactionTimeOut=1000\ntransactionCheckMax=3\ntransactionCheckInterval=2000\n\
                    rejectTransactionMessage=true\n";
        s.apply(Some(conf), &[]).unwrap();
        assert_eq!(s.transaction_timeout_ms, 1_000);
        assert_eq!(s.transaction_check_max, 3);
        assert_eq!(s.transaction_check_interval_ms, 2_000);
        assert!(s.reject_transaction_message);
        assert!(s.set("transactionCheckInterval", "0").is_err());
    }

    #[test]
    fn timer_keys_are_read_with_java_precision_snapping() {
        let mut s = Settings::default();
        assert!(s.timer_wheel_enable);
        assert_eq!(
            (s.timer_max_delay_sec, s.timer_precision_ms),
            (259_200, 1000)
        );
        s.apply(
            None,
            &["timerPrecisionMs=300".into(), "timerMaxDelaySec=60".into()],
        )
        .unwrap();
        assert_eq!((s.timer_precision_ms, s.timer_max_delay_sec), (200, 60));
        s.set("timerPrecisionMs", "50").unwrap();
        assert_eq!(s.timer_precision_ms, 100);
        s.set("timerWheelEnable", "false").unwrap();
        assert!(!s.timer_wheel_enable);
        assert!(s.set("timerMaxDelaySec", "0").is_err());
    }
}
