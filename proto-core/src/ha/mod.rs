//! Master/slave replication as RocketMQ's default HA (not controller mode): the broker's role
//! (`brokerRole`: ASYNC_MASTER, SYNC_MASTER, SLAVE), the HA wire format, the master's
//! bookkeeping of slaves and of SYNC_MASTER sends waiting for them, and the slave's reporting
//! rules. Pure: sockets, tasks and timers are io-adapters' (`io_adapters::ha`); the commit-log
//! bytes go through the store (`MessageStore::commit_log_data` on the master,
//! `MessageStore::append_replicated` on the slave); the broker ties them together
//! (`broker/replication.rs`).
//!
//! - `wire.rs`: slave reports `[8: offset]`, master frames `[8: offset][4: size][bytes]`;
//! - `master.rs`: [`master::ReplicaSet`], slaves' acks and held SYNC_MASTER replies;
//! - `slave.rs`: [`slave::MasterLink`], when a slave reports and when it gives up.
//!
//! Role and epoch can change at runtime ([`Replication::change_role`]) so a controller can
//! promote a slave or fence an old master later. Left out here: the controller itself,
//! epochs on the wire, truncation of a diverged slave, failover.

pub mod auto_wire;
pub mod master;
pub mod slave;
pub mod wire;

use master::ReplicaSet;

/// `brokerRole`, as Java's `BrokerRole` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerRole {
    /// Replies once stored locally; slaves catch up on their own.
    #[default]
    AsyncMaster,
    /// Replies once enough slaves have the message too.
    SyncMaster,
    /// Copies a master's commit log; refuses sends.
    Slave,
}

impl BrokerRole {
    /// The Java constant's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
    }

    /// Parses the Java constant's name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<BrokerRole> {
        match name {
            "ASYNC_MASTER" => Some(BrokerRole::AsyncMaster),
            "SYNC_MASTER" => Some(BrokerRole::SyncMaster),
            "SLAVE" => Some(BrokerRole::Slave),
            _ => None,
        }
    }

    #[must_use]
    pub fn is_master(self) -> bool {
        self != BrokerRole::Slave
    }
}

/// Replication settings, with `MessageStoreConfig` names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// `brokerRole` (ASYNC_MASTER).
    pub role: BrokerRole,
    /// `haMasterAddress`: a slave's fixed master HA address; without it the slave uses the
    /// `haServerAddr` the name server returns on registration.
    pub ha_master_address: Option<String>,
    /// `haSendHeartbeatInterval` (5 000 ms).
    pub ha_send_heartbeat_interval_ms: u64,
    /// `haHousekeepingInterval` (20 000 ms).
    pub ha_housekeeping_interval_ms: u64,
    /// `haTransferBatchSize` (32 KiB): most bytes per master frame.
    pub ha_transfer_batch_size: u32,
    /// `haMaxGapNotInSync` (256 MiB): a slave further behind is not in sync.
    pub ha_max_gap_not_in_sync: u64,
    /// `inSyncReplicas` (1), master included. SYNC_MASTER waits for
    /// `max(inSyncReplicas, 2) - 1` slaves: at least one, as RocketMQ 4 did. (RocketMQ 5
    /// waits for none unless this is raised, which acknowledges sends a master loss loses.)
    pub in_sync_replicas: u32,
    /// Most SYNC_MASTER replies held at once.
    pub await_ack_max: usize,
    /// `enableControllerMode` (false): the controller picks the master, the HA wire carries
    /// epochs (`auto_wire`), slaves truncate a diverged tail, reads stop at the confirm offset.
    pub controller_mode: bool,
    /// `allAckInSyncStateSet` (false): in controller mode a SYNC send waits for every member
    /// of the sync state set, and reads stop at what all of them hold.
    pub all_ack_in_sync_state_set: bool,
    /// `minInSyncReplicas` (1), master included: in controller mode a SYNC send to a smaller
    /// sync state set is refused at once ("in-sync replicas not enough").
    pub min_in_sync_replicas: u32,
    /// `haMaxTimeSlaveNotCatchup` (15 000 ms): a member not caught up for this long leaves the
    /// sync state set.
    pub ha_max_time_slave_not_catchup_ms: u64,
    /// `syncStateSetMaxSize` (ours, unbounded by default): most members, master included.
    pub sync_state_set_max_size: usize,
}

impl Default for HaConfig {
    fn default() -> HaConfig {
        HaConfig {
            role: BrokerRole::AsyncMaster,
            ha_master_address: None,
            ha_send_heartbeat_interval_ms: 5_000,
            ha_housekeeping_interval_ms: 20_000,
            ha_transfer_batch_size: 32 * 1024,
            ha_max_gap_not_in_sync: 256 * 1024 * 1024,
            in_sync_replicas: 1,
            await_ack_max: 100_000,
            controller_mode: false,
            all_ack_in_sync_state_set: false,
            min_in_sync_replicas: 1,
            ha_max_time_slave_not_catchup_ms: 15_000,
            sync_state_set_max_size: usize::MAX,
        }
    }
}

impl HaConfig {
    /// Slave acks a SYNC_MASTER send waits for.
    #[must_use]
    pub fn slave_acks_needed(&self) -> usize {
        (self.in_sync_replicas.max(2) - 1) as usize
    }
}

/// A role change carried an epoch older than the one the broker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stale epoch {offered}: this broker already holds epoch {held}")]
pub struct StaleEpoch {
    pub held: u64,
    pub offered: u64,
}

/// What the HA adapter needs to know about its broker, refreshed after every turn.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HaView {
    pub role: BrokerRole,
    /// Bumped by every role change.
    pub epoch: u64,
    /// The master's HA address, for a slave.
    pub master_ha_addr: Option<String>,
    /// The commit log's write position.
    pub max_offset: u64,
}

/// A broker's replication state: role, epoch, where its master is, and (as master) its
/// slaves and the replies waiting for them.
#[derive(Debug)]
pub struct Replication<T> {
    pub config: HaConfig,
    role: BrokerRole,
    epoch: u64,
    /// The master's HA address learned from the name server (`haServerAddr`).
    learned_master_ha_addr: Option<String>,
    /// The master's broker address learned from the name server (`masterAddr`), for the
    /// slave's periodic topic-config copy.
    pub master_addr: Option<String>,
    pub replicas: ReplicaSet<T>,
    /// A slave's topic-config copy from its master: the request in flight, and when the next
    /// one is due (Java's `SlaveSynchronize`, every 10 s).
    pub sync_opaque: Option<i32>,
    /// The consumer-offset copy in flight.
    pub offset_sync_opaque: Option<i32>,
    pub next_sync_ms: u64,
}

impl<T> Replication<T> {
    #[must_use]
    pub fn new(config: HaConfig) -> Replication<T> {
        Replication {
            role: config.role,
            epoch: 0,
            learned_master_ha_addr: None,
            master_addr: None,
            replicas: ReplicaSet::new(config.await_ack_max),
            sync_opaque: None,
            offset_sync_opaque: None,
            next_sync_ms: 0,
            config,
        }
    }

    #[must_use]
    pub fn role(&self) -> BrokerRole {
        self.role
    }

    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Changes role; `epoch` must not go backwards. Returns whether anything changed.
    ///
    /// # Errors
    /// [`StaleEpoch`] when `epoch` is older than the one held: a late or replayed role
    /// change from the network, which the caller logs and ignores (nothing changes).
    pub fn change_role(&mut self, role: BrokerRole, epoch: u64) -> Result<bool, StaleEpoch> {
        if epoch < self.epoch {
            return Err(StaleEpoch {
                held: self.epoch,
                offered: epoch,
            });
        }
        let changed = role != self.role || epoch != self.epoch;
        self.role = role;
        self.epoch = epoch;
        Ok(changed)
    }

    /// The master addresses a REGISTER_BROKER answer named (a slave's only). The
    /// configured `haMasterAddress` wins over the learned one.
    pub fn learn_master(&mut self, ha_server_addr: Option<&str>, master_addr: Option<&str>) {
        if let Some(addr) = ha_server_addr.filter(|a| !a.is_empty()) {
            if self.learned_master_ha_addr.as_deref() != Some(addr) {
                tracing::info!(addr, "master HA address learned from the name server");
            }
            self.learned_master_ha_addr = Some(addr.to_string());
        }
        if let Some(addr) = master_addr.filter(|a| !a.is_empty()) {
            self.master_addr = Some(addr.to_string());
        }
    }

    /// The master's HA address a slave connects to.
    #[must_use]
    pub fn master_ha_addr(&self) -> Option<&str> {
        self.config
            .ha_master_address
            .as_deref()
            .or(self.learned_master_ha_addr.as_deref())
    }

    /// Whether a send that waits for its store result needs slave acks.
    #[must_use]
    pub fn needs_acks(&self) -> bool {
        self.role == BrokerRole::SyncMaster
    }

    /// The view the HA adapter follows.
    #[must_use]
    pub fn view(&self, max_offset: u64) -> HaView {
        HaView {
            role: self.role,
            epoch: self.epoch,
            master_ha_addr: if self.role == BrokerRole::Slave {
                self.master_ha_addr().map(str::to_string)
            } else {
                None
            },
            max_offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print_as_java() {
        for role in [
            BrokerRole::AsyncMaster,
            BrokerRole::SyncMaster,
            BrokerRole::Slave,
        ] {
            assert_eq!(BrokerRole::from_name(role.name()), Some(role));
        }
        assert_eq!(BrokerRole::from_name("sync_master"), None);
    }

    #[test]
    fn sync_master_waits_for_at_least_one_slave() {
        let mut c = HaConfig::default();
        assert_eq!(c.slave_acks_needed(), 1);
        c.in_sync_replicas = 3;
        assert_eq!(c.slave_acks_needed(), 2);
    }

    #[test]
    fn a_configured_master_address_wins_and_only_slaves_follow_one() {
        let mut r = Replication::<()>::new(HaConfig {
            role: BrokerRole::Slave,
            ..HaConfig::default()
        });
        assert_eq!(r.view(0).master_ha_addr, None);
        r.learn_master(Some("10.0.0.1:10912"), Some("10.0.0.1:10911"));
        assert_eq!(r.view(0).master_ha_addr.as_deref(), Some("10.0.0.1:10912"));
        r.config.ha_master_address = Some("10.0.0.9:10912".into());
        assert_eq!(r.master_ha_addr(), Some("10.0.0.9:10912"));
        assert_eq!(r.change_role(BrokerRole::SyncMaster, 1), Ok(true));
        assert_eq!(
            r.view(5),
            HaView {
                role: BrokerRole::SyncMaster,
                epoch: 1,
                master_ha_addr: None,
                max_offset: 5
            }
        );
        assert_eq!(r.change_role(BrokerRole::SyncMaster, 1), Ok(false));
        assert_eq!(
            r.change_role(BrokerRole::Slave, 0),
            Err(StaleEpoch {
                held: 1,
                offered: 0
            })
        );
        assert_eq!(
            r.role(),
            BrokerRole::SyncMaster,
            "a stale change changes nothing"
        );
    }
}
