//! `node broker`: turns RocketMQ-style settings into the broker machine's config, opens the
//! memory-mapped store (recovering it), and runs the broker on the driver until shutdown.

use std::future::Future;

use io_adapters::driver::{self, DriverConfig};
use io_adapters::{clock, MmapStorage};
use proto_core::broker::schedule::parse_delay_levels;
use proto_core::broker::{Broker, BrokerConfig, ControllerModeConfig, TimerSettings};
use proto_core::ha::{BrokerRole as HaRole, HaConfig};
use store_core::consume_queue::ConsumeQueueConfig;
use store_core::flush::{FlushDiskType as StoreFlushType, FlushPolicy};
use store_core::retention::RetentionConfig;
use store_core::store::StoreConfig;
use store_core::timer::TimerConfig;

use crate::config::{BrokerRole, ConfigError, FlushDiskType, Settings};
use crate::roles::{announce, bind, local_addr, NodeError};

/// Runs a broker with `settings` until `shutdown` resolves, then stops it cleanly (flush,
/// checkpoint, abort marker removed).
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    check_controller_mode(&settings)?;
    let dir = settings.store_path_root_dir.clone();
    let dir_text = dir.display().to_string();
    std::fs::create_dir_all(&dir).map_err(|e| NodeError::DataDir {
        dir: dir_text.clone(),
        reason: e.to_string(),
    })?;
    let storage = MmapStorage::open_with(&dir, settings.warm_maped_file_enable).map_err(|e| {
        NodeError::DataDir {
            dir: dir_text.clone(),
            reason: e.to_string(),
        }
    })?;

    let listener = bind(&format!(
        "{}:{}",
        settings.bind_address, settings.listen_port
    ))
    .await?;
    // `listenPort=0` asks for an ephemeral port; advertise the one we got.
    let port = local_addr(&listener).port();
    // The HA port: `haListenPort`, or `listenPort + 1` (ephemeral when listenPort is).
    let ha_wanted = match (settings.ha_listen_port, settings.listen_port) {
        (0, 0) => 0,
        (0, listen) => listen.saturating_add(1),
        (ha, _) => ha,
    };
    let ha_listener = bind(&format!("{}:{}", settings.bind_address, ha_wanted)).await?;
    let mut config = broker_config(&settings, port);
    config.ha_listen_port = local_addr(&ha_listener).port();
    config.ha = ha_config(&settings);
    let advertised = format!("{}:{}", config.broker_ip1, port);
    let started = std::time::Instant::now();
    let (broker, report) =
        Broker::new(config, storage, clock::now_ms()).map_err(|e| NodeError::Store {
            dir: dir_text.clone(),
            reason: e.to_string(),
        })?;
    tracing::info!(dir = %dir_text, ?report, elapsed_ms = started.elapsed().as_millis() as u64, "store opened");
    println!("broker store at {dir_text}");
    println!(
        "broker advertises {advertised} (brokerIP1) to name servers {:?}",
        settings.namesrv_addr
    );
    announce("broker", &listener);
    announce("broker HA port", &ha_listener);

    let (hooks, ha) = io_adapters::ha::hooks(&broker);
    let ha_master = tokio::spawn(io_adapters::ha::serve_master(ha_listener, ha.clone()));
    let ha_slave = tokio::spawn(io_adapters::ha::run_slave(ha));
    let mut stop_error = None;
    driver::run_with(
        broker,
        listener,
        DriverConfig::default(),
        shutdown,
        |broker, now| {
            // Flush, checkpoint, abort marker removed; UNREGISTER_BROKER goes out after this.
            stop_error = broker.shutdown(now).err();
        },
        hooks,
    )
    .await;
    ha_master.abort();
    ha_slave.abort();
    if let Some(e) = stop_error {
        return Err(NodeError::Store {
            dir: dir_text,
            reason: format!("shutdown: {e}"),
        });
    }
    tracing::info!("broker stopped cleanly");
    Ok(())
}

/// Replication settings (`brokerRole`, `haMasterAddress`, `haTransferBatchSize`...).
fn ha_config(s: &Settings) -> HaConfig {
    HaConfig {
        role: match s.broker_role {
            BrokerRole::AsyncMaster => HaRole::AsyncMaster,
            BrokerRole::SyncMaster => HaRole::SyncMaster,
            BrokerRole::Slave => HaRole::Slave,
        },
        ha_master_address: s.ha_master_address.clone(),
        ha_send_heartbeat_interval_ms: s.ha_send_heartbeat_interval_ms,
        ha_housekeeping_interval_ms: s.ha_housekeeping_interval_ms,
        ha_transfer_batch_size: s.ha_transfer_batch_size,
        ha_max_gap_not_in_sync: s.ha_max_gap_not_in_sync,
        in_sync_replicas: s.in_sync_replicas,
        controller_mode: s.enable_controller_mode,
        all_ack_in_sync_state_set: s.all_ack_in_sync_state_set,
        min_in_sync_replicas: s.min_in_sync_replicas,
        ha_max_time_slave_not_catchup_ms: s.ha_max_time_slave_not_catchup_ms,
        sync_state_set_max_size: match s.sync_state_set_max_size {
            0 => usize::MAX,
            n => n,
        },
        ..HaConfig::default()
    }
}

fn broker_config(s: &Settings, port: u16) -> BrokerConfig {
    let defaults = StoreConfig::default();
    let store = StoreConfig {
        segment_size: s.mapped_file_size_commit_log,
        consume_queue: ConsumeQueueConfig {
            units_per_file: s.mapped_file_size_consume_queue / 20,
        },
        flush: FlushPolicy {
            flush_disk_type: match s.flush_disk_type {
                FlushDiskType::AsyncFlush => StoreFlushType::AsyncFlush,
                FlushDiskType::SyncFlush => StoreFlushType::SyncFlush,
            },
            interval_ms: s.flush_interval_commit_log_ms,
            least_pages: u64::from(s.flush_commit_log_least_pages),
            thorough_interval_ms: s.flush_commit_log_thorough_interval_ms,
        },
        retention: RetentionConfig {
            file_reserved_time_hours: u64::from(s.file_reserved_time_hours),
            delete_when: s.delete_when.clone(),
            disk_max_used_space_ratio: s.disk_max_used_space_ratio,
            disk_space_warning_level_ratio: s.disk_space_warning_level_ratio,
            disk_space_clean_forcibly_ratio: s.disk_space_clean_forcibly_ratio,
            clean_file_forcibly_enable: s.clean_file_forcibly_enable,
            ..defaults.retention.clone()
        },
        max_message_size: s.max_message_size,
        check_crc_on_recover: s.check_crc_on_recover,
        // Checked when the key was set; the default parses.
        message_delay_level_ms: parse_delay_levels(&s.message_delay_level)
            .unwrap_or_else(|_| defaults.message_delay_level_ms.clone()),
        ..defaults
    };

    BrokerConfig {
        broker_cluster_name: s.broker_cluster_name.clone(),
        broker_name: s.broker_name.clone(),
        broker_id: s.broker_id,
        broker_ip1: s
            .broker_ip1
            .clone()
            .unwrap_or_else(|| "127.0.0.1".to_string()),
        listen_port: port,
        ha_listen_port: s.ha_listen_port,
        namesrv_addrs: split_addrs(s.namesrv_addr.as_deref()),
        region_id: s.region_id.clone(),
        trace_on: s.trace_on,
        auto_create_topic_enable: s.auto_create_topic_enable,
        auto_create_subscription_group: s.auto_create_subscription_group,
        default_topic_queue_nums: s.default_topic_queue_nums as i32,
        broker_permission: s.broker_permission as i32,
        register_name_server_period_ms: s.register_name_server_period_ms,
        sync_flush_timeout_ms: s.sync_flush_timeout_ms,
        long_polling_enable: s.long_polling_enable,
        short_polling_time_ms: s.short_polling_time_ms,
        enable_property_filter: s.enable_property_filter,
        transaction_timeout_ms: s.transaction_timeout_ms,
        transaction_check_max: s.transaction_check_max,
        transaction_check_interval_ms: s.transaction_check_interval_ms,
        reject_transaction_message: s.reject_transaction_message,
        pid: std::process::id(),
        rng_seed: clock::now_ms(),
        store,
        controller: controller_config(s),
        timer: TimerSettings {
            enable: s.timer_wheel_enable,
            flush_interval_ms: s.timer_flush_interval_ms,
            store: TimerConfig {
                log_file_size: s.mapped_file_size_timer_log,
                ..TimerConfig::new(s.timer_precision_ms, s.timer_max_delay_sec)
            },
        },
        ..BrokerConfig::default()
    }
}

/// Controller mode's settings (`enableControllerMode` itself goes to `HaConfig`).
fn controller_config(s: &Settings) -> ControllerModeConfig {
    ControllerModeConfig {
        controller_addrs: split_addrs(s.controller_addr.as_deref()),
        controller_heartbeat_timeout_ms: s.controller_heart_beat_timeout_ms,
        broker_heartbeat_interval_ms: s.broker_heartbeat_interval_ms,
        sync_broker_metadata_period_ms: s.sync_broker_metadata_period_ms,
        check_sync_state_set_period_ms: s.check_sync_state_set_period_ms,
        sync_controller_metadata_period_ms: s.sync_controller_metadata_period_ms,
        broker_election_priority: s.broker_election_priority,
    }
}

/// `a:p;b:p` as a list, blanks dropped.
fn split_addrs(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// Controller mode needs controllers to ask, and a `brokerId` of 1 or more: the name server
/// knows a set's master as id 0, so a slave registering as 0 would pass for the master
/// (RocketMQ's controller hands out ids from 1 for the same reason).
fn check_controller_mode(s: &Settings) -> Result<(), ConfigError> {
    if !s.enable_controller_mode {
        return Ok(());
    }
    if split_addrs(s.controller_addr.as_deref()).is_empty() {
        return Err(ConfigError::BadValue {
            key: "controllerAddr".into(),
            value: s.controller_addr.clone().unwrap_or_default(),
            reason: "enableControllerMode=true needs at least one controller address".into(),
        });
    }
    if s.broker_id < 1 {
        return Err(ConfigError::BadValue {
            key: "brokerId".into(),
            value: s.broker_id.to_string(),
            reason: "in controller mode brokerId must be 1 or more (0 is the master's id)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(sets: &[&str]) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        s.apply(None, &sets)?;
        Ok(s)
    }

    #[test]
    fn controller_mode_keys_reach_the_broker_config() {
        let s = settings(&[
            "enableControllerMode=true",
            "controllerAddr=127.0.0.1:9878; 127.0.0.1:9879;",
            "brokerId=2",
            "controllerHeartBeatTimeoutMills=3000",
            "brokerHeartbeatInterval=500",
            "syncBrokerMetadataPeriod=1000",
            "checkSyncStateSetPeriod=700",
        ])
        .unwrap();
        assert_eq!(check_controller_mode(&s), Ok(()));
        let config = broker_config(&s, 10911);
        assert_eq!(
            config.controller,
            ControllerModeConfig {
                controller_addrs: vec!["127.0.0.1:9878".into(), "127.0.0.1:9879".into()],
                controller_heartbeat_timeout_ms: 3_000,
                broker_heartbeat_interval_ms: 500,
                sync_broker_metadata_period_ms: 1_000,
                check_sync_state_set_period_ms: 700,
                ..ControllerModeConfig::default()
            }
        );
        assert!(ha_config(&s).controller_mode);
    }

    #[test]
    fn defaults_are_rocketmq_s() {
        let s = Settings::default();
        assert!(!ha_config(&s).controller_mode);
        assert_eq!(controller_config(&s), ControllerModeConfig::default());
        assert_eq!(check_controller_mode(&s), Ok(()));
    }

    #[test]
    fn controller_mode_refuses_master_id_and_missing_controllers() {
        let no_id = settings(&["enableControllerMode=true", "controllerAddr=h:1"]).unwrap();
        assert!(matches!(
            check_controller_mode(&no_id),
            Err(ConfigError::BadValue { key, .. }) if key == "brokerId"
        ));
        let no_addr = settings(&["enableControllerMode=true", "brokerId=1"]).unwrap();
        assert!(matches!(
            check_controller_mode(&no_addr),
            Err(ConfigError::BadValue { key, .. }) if key == "controllerAddr"
        ));
    }
}
