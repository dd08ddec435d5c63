//! Settings of `node controller`, with the key names and defaults of RocketMQ's
//! `ControllerConfig` (DLedger mode) and `ControllerStartup` (remoting port 9878), read from a
//! properties file and `--set key=value` overrides like the broker's.
//!
//! Left out: the JRaft controller's keys and metrics exporters (accepted quietly, unused).

use std::path::PathBuf;

use super::{apply_settings, at_least, bad, boolean, non_empty, number, ConfigError, KeyUse};

/// Keys of RocketMQ's `ControllerConfig` we accept but do not use.
const IGNORED_KEYS: &[&str] = &[
    "rocketmqHome",
    "configStorePath",
    "controllerType",
    "controllerThreadPoolNums",
    "controllerRequestThreadPoolQueueCapacity",
    "mappedFileSize",
    "electMasterMaxRetryCount",
    "isProcessReadEvent",
    "scanInactiveMasterInterval",
    "metricsExporterType",
    "metricsGrpcExporterTarget",
    "metricsGrpcExporterHeader",
    "metricGrpcExporterTimeOutInMills",
    "metricGrpcExporterIntervalInMills",
    "metricLoggingExporterIntervalInMills",
    "metricsPromExporterPort",
    "metricsPromExporterHost",
    "metricsLabel",
    "metricsInDelta",
    "configBlackList",
];

/// The settings of one controller.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerSettings {
    /// `controllerDLegerGroup`: the raft group's name.
    pub group: String,
    /// `controllerDLegerPeers`: `n0-host:port;n1-host:port;...`, raft addresses.
    pub peers: String,
    /// `controllerDLegerSelfId`: this node's name among the peers (`n0`).
    pub self_id: String,
    /// `controllerStorePath`: where the raft log lives.
    pub store_path: PathBuf,
    /// `listenPort`: the remoting port brokers talk to (9878, as ControllerStartup sets).
    pub listen_port: u16,
    /// `bindAddress` (Netty's key): the interface the remoting port listens on.
    pub bind_address: String,
    /// `scanNotActiveBrokerInterval` (5000 ms): how often the leader looks for dead brokers.
    pub scan_not_active_broker_interval_ms: u64,
    /// `enableElectUncleanMaster` (false): may elect a master outside the sync state set.
    pub enable_elect_unclean_master: bool,
    /// `notifyBrokerRoleChanged` (true): tell brokers of a new master at once.
    pub notify_broker_role_changed: bool,
    /// `controllerHeartBeatTimeoutMills` (10 s): a broker silent this long is dead, unless its
    /// heartbeat names a timeout of its own.
    pub broker_heartbeat_timeout_ms: u64,
}

impl Default for ControllerSettings {
    fn default() -> ControllerSettings {
        ControllerSettings {
            group: "DefaultControllerGroup".into(),
            peers: "n0-127.0.0.1:9877".into(),
            self_id: "n0".into(),
            store_path: super::default_store_dir().join("controller"),
            listen_port: 9878,
            bind_address: "0.0.0.0".into(),
            scan_not_active_broker_interval_ms: 5_000,
            enable_elect_unclean_master: false,
            notify_broker_role_changed: true,
            broker_heartbeat_timeout_ms: 10_000,
        }
    }
}

impl ControllerSettings {
    /// Sets one key from its text. The single table of controller keys.
    pub fn set(&mut self, key: &str, value: &str) -> Result<KeyUse, ConfigError> {
        let v = value.trim();
        match key {
            "controllerDLegerGroup" => self.group = non_empty(key, v)?,
            "controllerDLegerPeers" => {
                io_adapters::raft::parse_peers(v).map_err(|e| bad(key, v, &e.to_string()))?;
                self.peers = v.to_string();
            }
            "controllerDLegerSelfId" => {
                io_adapters::raft::peer_id(v).map_err(|e| bad(key, v, &e.to_string()))?;
                self.self_id = v.to_string();
            }
            "controllerStorePath" => self.store_path = PathBuf::from(non_empty(key, v)?),
            "listenPort" => self.listen_port = number(key, v)?,
            "bindAddress" => self.bind_address = non_empty(key, v)?,
            "scanNotActiveBrokerInterval" => {
                self.scan_not_active_broker_interval_ms = at_least(key, v, 100)?
            }
            "enableElectUncleanMaster" => self.enable_elect_unclean_master = boolean(key, v)?,
            "notifyBrokerRoleChanged" => self.notify_broker_role_changed = boolean(key, v)?,
            "controllerHeartBeatTimeoutMills" => {
                self.broker_heartbeat_timeout_ms = at_least(key, v, 100)?
            }
            _ if IGNORED_KEYS.contains(&key) => return Ok(KeyUse::Ignored),
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
        apply_settings(file_text, overrides, "controller", |k, v| self.set(k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocketmq_controller_keys_are_read_and_checked() {
        let mut s = ControllerSettings::default();
        let file = "controllerDLegerGroup = group1\n\
                    controllerDLegerPeers = n0-127.0.0.1:9877;n1-127.0.0.1:9887;n2-127.0.0.1:9897\n\
                    controllerDLegerSelfId = n1\n\
                    controllerStorePath = /tmp/c1\n\
                    enableElectUncleanMaster = true\n\
                    metricsExporterType = DISABLE\n";
        s.apply(Some(file), &["listenPort=9888".into()]).unwrap();
        assert_eq!(s.group, "group1");
        assert_eq!(s.self_id, "n1");
        assert_eq!(s.store_path, PathBuf::from("/tmp/c1"));
        assert_eq!(s.listen_port, 9888);
        assert!(s.enable_elect_unclean_master);
        assert!(s.notify_broker_role_changed);
        assert_eq!(s.scan_not_active_broker_interval_ms, 5_000);
        assert_eq!(s.set("metricsLabel", "x"), Ok(KeyUse::Ignored));
        assert_eq!(s.set("brokerNmae", "x"), Ok(KeyUse::Unknown));
        assert!(s.set("controllerDLegerPeers", "n0:9877").is_err());
        assert!(s.set("controllerDLegerSelfId", "nx").is_err());
        assert!(s.set("notifyBrokerRoleChanged", "maybe").is_err());
    }
}
