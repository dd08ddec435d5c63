//! Controller mode on the broker (`enableControllerMode`, RocketMQ 5's `ReplicasManager`): the
//! broker's side of the conversation with the controller group that decides, per broker set,
//! who is master at which epoch and which replicas are in sync.
//!
//! What it does, as a plain state machine fed by the [`Broker`]'s timers and responses:
//! - starts as a slave without a master (sends are refused with SERVICE_NOT_AVAILABLE);
//! - finds the controller leader: CONTROLLER_GET_METADATA_INFO to every `controllerAddr`, or the
//!   address a CONTROLLER_NOT_LEADER answer names in its remark;
//! - registers (CONTROLLER_REGISTER_BROKER with the configured `brokerId`), then sends
//!   BROKER_HEARTBEAT oneway to every controller each `brokerHeartbeatInterval` (epoch, max
//!   offset, confirm offset, `controllerHeartBeatTimeoutMills`), and asks for its broker set's
//!   replica info (CONTROLLER_GET_REPLICA_INFO) each `syncBrokerMetadataPeriod`;
//! - acts on the answers and on NOTIFY_BROKER_ROLE_CHANGED: a master epoch newer than the one it
//!   acted on makes it master (itself named) or the slave of the named broker; a set without a
//!   master makes it ask for an election naming itself (CONTROLLER_ELECT_MASTER); an older epoch
//!   is a typed error, logged and ignored ([`RoleNewsError`]);
//! - as master, every `checkSyncStateSetPeriod` proposes the sync state set the replica set wants
//!   (CONTROLLER_ALTER_SYNC_STATE_SET): committed on SUCCESS, the proposal dropped on a refusal;
//! - re-registers with the name servers at once on each role change. Like Java's
//!   `changeToMaster`/`changeToSlave`, a master registers as brokerId 0 (`MixAll.MASTER_ID`) and a
//!   slave under its own id, so the name server's routes point at the new master at once and
//!   the old master's entry (same address, id 0) is replaced when it comes back as a slave.
//!
//! A slave connects to its master's HA port at the master's broker address with port + 1 (the
//! default `haListenPort`; Java's slave in controller mode learns `haServerAddr` from the name
//! server instead, which can name the old master for a while after a failover).
//!
//! Every request has a deadline ([`REQUEST_TIMEOUT_MS`], Java's `invokeSync` 3 s); a request to
//! the leader that fails or times out makes the broker look for the leader again.
//!
//! Left out: GET_NEXT_BROKER_ID / APPLY_BROKER_ID and the broker metadata files (the configured
//! `brokerId` is the controller id; it must be 1 or more since 0 is the name server's master
//! id), DNS look-up of controller addresses, reachability scans, the broker's `fenced` flag
//! beyond refusing sends, and `brokerElectionPriority` other than Java's default.

use std::collections::BTreeMap;

use store_core::storage::Storage;

use super::Broker;
use crate::body::SyncStateSet;
use crate::ha::{BrokerRole, StaleEpoch};
use crate::header::{
    decode_header, encode_header, AlterSyncStateSetRequestHeader, BrokerHeartbeatRequestHeader,
    ElectMasterRequestHeader, ElectMasterResponseHeader, GetMetaDataResponseHeader,
    GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader,
    NotifyBrokerRoleChangedRequestHeader, RegisterBrokerToControllerRequestHeader,
    RegisterBrokerToControllerResponseHeader,
};
use crate::reply::{success, RequestError};
use crate::role::Transmit;
use crate::{RemotingCommand, RequestCode, ResponseCode};

/// How long a request to a controller may go unanswered (Java's `invokeSync(.., 3000)`).
pub const REQUEST_TIMEOUT_MS: u64 = 3_000;

/// Pause before asking again after a failed discovery or registration (Java sleeps 1 s).
pub const RETRY_MS: u64 = 1_000;

/// The name server's id for a broker set's master (Java's `MixAll.MASTER_ID`).
const MASTER_ID: i64 = 0;

/// Controller-mode settings, with Java `BrokerConfig` names and defaults. The switch itself,
/// `enableControllerMode`, is `HaConfig::controller_mode` (replication reads it too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerModeConfig {
    /// `controllerAddr`, split on `;`: the controllers' remoting addresses.
    pub controller_addrs: Vec<String>,
    /// `controllerHeartBeatTimeoutMills` (10 000 ms): after this silence the controller thinks
    /// the broker dead (sent in every heartbeat).
    pub controller_heartbeat_timeout_ms: u64,
    /// `brokerHeartbeatInterval` (1 000 ms).
    pub broker_heartbeat_interval_ms: u64,
    /// `syncBrokerMetadataPeriod` (5 000 ms): how often the replica info is polled.
    pub sync_broker_metadata_period_ms: u64,
    /// `checkSyncStateSetPeriod` (5 000 ms): how often a master checks its sync state set.
    pub check_sync_state_set_period_ms: u64,
    /// `syncControllerMetadataPeriod` (10 000 ms): how often the leader is looked up again.
    pub sync_controller_metadata_period_ms: u64,
    /// `brokerElectionPriority` (`Integer.MAX_VALUE`, the lowest priority).
    pub broker_election_priority: i32,
}

impl Default for ControllerModeConfig {
    fn default() -> ControllerModeConfig {
        ControllerModeConfig {
            controller_addrs: Vec::new(),
            controller_heartbeat_timeout_ms: 10_000,
            broker_heartbeat_interval_ms: 1_000,
            sync_broker_metadata_period_ms: 5_000,
            check_sync_state_set_period_ms: 5_000,
            sync_controller_metadata_period_ms: 10_000,
            broker_election_priority: i32::MAX,
        }
    }
}

/// What a request in flight asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    Metadata,
    Register,
    ReplicaInfo,
    Elect,
    AlterSyncStateSet,
}

#[derive(Clone, Debug)]
struct InFlight {
    ask: Ask,
    addr: String,
    deadline_ms: u64,
}

/// The master of the broker set as last acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Master {
    broker_id: i64,
    addr: String,
}

/// News about the broker set's master, from any of the controller's answers.
#[derive(Clone, Debug, Default)]
struct RoleNews {
    master_broker_id: Option<i64>,
    master_addr: Option<String>,
    master_epoch: Option<i32>,
    sync_state_set: SyncStateSet,
}

/// Why role news was not acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleNewsError {
    /// The news carries an epoch older than one already acted on (late or replayed).
    #[error(transparent)]
    Stale(#[from] StaleEpoch),
    /// A NOTIFY_BROKER_ROLE_CHANGED about another broker set.
    #[error("news about broker set {0}, not ours")]
    OtherBrokerSet(String),
    /// A master id without an address (or an epoch) to go with it.
    #[error("master {0} named without its address or epoch")]
    Incomplete(i64),
    /// The master's epoch could not be recorded; the broker stays as it was and retries on
    /// the next news.
    #[error("recording master epoch {epoch}: {reason}")]
    EpochRecord { epoch: i32, reason: String },
}

/// The broker's controller-mode state (owned by the [`Broker`] when `enableControllerMode`).
#[derive(Debug)]
pub(super) struct ControllerClient {
    config: ControllerModeConfig,
    /// The controller leader's remoting address, once known.
    leader: Option<String>,
    /// CONTROLLER_REGISTER_BROKER succeeded (the controller keeps it across leader changes).
    registered: bool,
    /// The newest master epoch acted on (0: none yet).
    master_epoch: i32,
    master: Option<Master>,
    in_flight: BTreeMap<i32, InFlight>,
    next_discover_ms: u64,
    next_register_ms: u64,
    next_heartbeat_ms: u64,
    next_replica_info_ms: Option<u64>,
    next_check_ms: Option<u64>,
    /// The last replica-info answer from the leader: a master that has heard nothing for a
    /// heartbeat timeout steps down (see `controller_lease`).
    last_leader_answer_ms: u64,
}

impl ControllerClient {
    /// The client for `config`, or `None` when controller mode is off.
    pub(super) fn new(
        enabled: bool,
        config: &ControllerModeConfig,
        now_ms: u64,
    ) -> Option<ControllerClient> {
        enabled.then(|| ControllerClient {
            config: config.clone(),
            leader: None,
            registered: false,
            master_epoch: 0,
            master: None,
            in_flight: BTreeMap::new(),
            next_discover_ms: now_ms,
            next_register_ms: now_ms,
            next_heartbeat_ms: now_ms,
            next_replica_info_ms: None,
            next_check_ms: None,
            last_leader_answer_ms: now_ms,
        })
    }

    fn asking(&self, ask: Ask) -> bool {
        self.in_flight.values().any(|f| f.ask == ask)
    }

    fn deadline(&self) -> u64 {
        let in_flight = self.in_flight.values().map(|f| f.deadline_ms);
        let discover = if self.leader.is_none() && !self.asking(Ask::Metadata) {
            self.next_discover_ms
        } else {
            self.next_discover_ms
                .saturating_add(self.config.sync_controller_metadata_period_ms)
        };
        let register = (self.leader.is_some() && !self.registered && !self.asking(Ask::Register))
            .then_some(self.next_register_ms);
        let heartbeat = self.registered.then_some(self.next_heartbeat_ms);
        in_flight
            .chain([discover])
            .chain(register)
            .chain(heartbeat)
            .chain(self.next_replica_info_ms)
            .chain(self.next_check_ms)
            .chain(self.master.is_some().then(|| {
                self.last_leader_answer_ms
                    .saturating_add(self.config.controller_heartbeat_timeout_ms)
                    .saturating_add(1)
            }))
            .min()
            .unwrap_or(u64::MAX)
    }
}

impl<S: Storage + Clone> Broker<S> {
    /// In controller mode: starts as a slave without a master, refusing sends until the
    /// controller names this broker master.
    pub(super) fn start_controller_mode(&mut self) {
        if self.controller.is_none() {
            return;
        }
        // Epoch 0 is never newer than anything held, so this cannot fail on a fresh broker.
        if let Err(e) = self.ha.change_role(BrokerRole::Slave, 0) {
            tracing::warn!(error = %e, "controller mode: starting role not applied");
        }
        self.store.set_slave(true);
        tracing::info!(
            controllers = ?self.config.controller.controller_addrs,
            broker_id = self.config.broker_id,
            "controller mode: waiting for the controller to name a master"
        );
    }

    /// The id registered with name servers: 0 while master in controller mode, else
    /// `brokerId`.
    pub(super) fn name_server_broker_id(&self) -> i64 {
        match &self.controller {
            Some(_) if self.is_controller_master() => MASTER_ID,
            _ => self.config.broker_id,
        }
    }

    /// Whether a name server's answer naming `master_addr` may set the master's addresses: always
    /// outside controller mode; in it only when that is the master the controller named (its
    /// `haServerAddr` then replaces the port + 1 guess, as Java's slave learns it).
    pub(super) fn name_server_master_agrees(&self, master_addr: Option<&str>) -> bool {
        match &self.controller {
            None => true,
            Some(c) => c
                .master
                .as_ref()
                .is_some_and(|m| Some(m.addr.as_str()) == master_addr),
        }
    }

    /// The controller named this broker master and it took the role.
    fn is_controller_master(&self) -> bool {
        self.controller.as_ref().is_some_and(|c| {
            c.master
                .as_ref()
                .is_some_and(|m| m.broker_id == self.config.broker_id)
        }) && self.ha.role().is_master()
    }

    /// When controller-mode work is next due.
    pub(super) fn controller_deadline(&self) -> Option<u64> {
        self.controller.as_ref().map(ControllerClient::deadline)
    }

    /// Periodic controller-mode work: expired requests, leader discovery, registration,
    /// heartbeats, replica-info polls, the master's sync state set check.
    pub(super) fn controller_timeout(&mut self, now_ms: u64) {
        let Some(c) = self.controller.as_mut() else {
            return;
        };
        let expired: Vec<i32> = c
            .in_flight
            .iter()
            .filter(|(_, f)| now_ms >= f.deadline_ms)
            .map(|(opaque, _)| *opaque)
            .collect();
        for opaque in expired {
            if let Some(f) = self
                .controller
                .as_mut()
                .and_then(|c| c.in_flight.remove(&opaque))
            {
                tracing::warn!(addr = %f.addr, ask = ?f.ask, "controller request timed out");
                self.controller_request_failed(&f, now_ms);
            }
        }
        self.controller_lease(now_ms);
        self.controller_progress(now_ms);
    }

    /// A master cut off from the controller leader for a whole heartbeat timeout steps down:
    /// by then the controller may have elected another master, and although this one can no
    /// longer acknowledge writes (its sync state set waits for the successor), it would still
    /// serve reads and keep registering as the route's master id, sending consumers back to
    /// an older log (sim ctrl_partition seed 8). It becomes a slave without a master, registers
    /// under its own id, and acts on the controller's next answer again (a renewed claim on
    /// the same epoch goes through an election, see `become_controller_master`).
    fn controller_lease(&mut self, now_ms: u64) {
        if !self.is_controller_master() {
            return;
        }
        let Some(c) = self.controller.as_mut() else {
            return;
        };
        let silent = now_ms.saturating_sub(c.last_leader_answer_ms);
        if silent <= c.config.controller_heartbeat_timeout_ms {
            return;
        }
        tracing::warn!(
            silent_ms = silent,
            epoch = c.master_epoch,
            "no word from the controller leader for a heartbeat timeout: stepping down as master"
        );
        c.master = None;
        c.next_check_ms = None;
        let epoch = self.ha.epoch();
        if let Err(e) = self.change_role(BrokerRole::Slave, epoch, now_ms) {
            tracing::warn!(error = %e, "step-down refused");
        }
        self.register_all();
    }

    /// Sends whatever is due now.
    fn controller_progress(&mut self, now_ms: u64) {
        let Some(c) = self.controller.as_ref() else {
            return;
        };
        let discover_due = if c.leader.is_none() {
            now_ms >= c.next_discover_ms && !c.asking(Ask::Metadata)
        } else {
            now_ms
                >= c.next_discover_ms
                    .saturating_add(c.config.sync_controller_metadata_period_ms)
        };
        let register_due = c.leader.is_some()
            && !c.registered
            && !c.asking(Ask::Register)
            && now_ms >= c.next_register_ms;
        let heartbeat_due = c.registered && now_ms >= c.next_heartbeat_ms;
        let replica_info_due = c.leader.is_some()
            && c.registered
            && !c.asking(Ask::ReplicaInfo)
            && c.next_replica_info_ms.is_some_and(|at| now_ms >= at);
        let check_due = c.next_check_ms.is_some_and(|at| now_ms >= at);
        if discover_due {
            self.discover_leader(now_ms);
        }
        if register_due {
            self.register_to_controller(now_ms);
        }
        if heartbeat_due {
            self.send_controller_heartbeat(now_ms);
        }
        if replica_info_due {
            self.ask_replica_info(now_ms);
        }
        if check_due {
            self.check_sync_state_set(now_ms);
        }
    }

    /// Queues `cmd` to `addr` and remembers what it asked.
    fn controller_request(&mut self, addr: String, ask: Ask, cmd: RemotingCommand, now_ms: u64) {
        if let Some(c) = self.controller.as_mut() {
            c.in_flight.insert(
                cmd.opaque,
                InFlight {
                    ask,
                    addr: addr.clone(),
                    deadline_ms: now_ms.saturating_add(REQUEST_TIMEOUT_MS),
                },
            );
            self.transmits.push_back(Transmit::Request { addr, cmd });
        }
    }

    /// CONTROLLER_GET_METADATA_INFO to every controller.
    fn discover_leader(&mut self, now_ms: u64) {
        let Some(c) = self.controller.as_mut() else {
            return;
        };
        c.next_discover_ms = now_ms.saturating_add(RETRY_MS);
        let addrs = c.config.controller_addrs.clone();
        for addr in addrs {
            let cmd = RemotingCommand::request(
                RequestCode::ControllerGetMetadataInfo.value(),
                self.next_opaque(),
            );
            self.controller_request(addr, Ask::Metadata, cmd, now_ms);
        }
    }

    fn register_to_controller(&mut self, now_ms: u64) {
        let Some(leader) = self.controller.as_ref().and_then(|c| c.leader.clone()) else {
            return;
        };
        let header = RegisterBrokerToControllerRequestHeader {
            cluster_name: self.config.broker_cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            broker_address: self.config.broker_addr(),
            invoke_time: i64::try_from(now_ms).unwrap_or(i64::MAX),
        };
        let mut cmd = RemotingCommand::request(
            RequestCode::ControllerRegisterBroker.value(),
            self.next_opaque(),
        );
        encode_header(&mut cmd, &header);
        self.controller_request(leader, Ask::Register, cmd, now_ms);
    }

    /// BROKER_HEARTBEAT, oneway, to every controller (as Java does), so a new leader hears
    /// from the broker without waiting for it to notice the change.
    fn send_controller_heartbeat(&mut self, now_ms: u64) {
        let Some(c) = self.controller.as_mut() else {
            return;
        };
        c.next_heartbeat_ms = now_ms.saturating_add(c.config.broker_heartbeat_interval_ms.max(1));
        let addrs = c.config.controller_addrs.clone();
        let timeout = c.config.controller_heartbeat_timeout_ms;
        let priority = c.config.broker_election_priority;
        let max_offset = self.store.commit_log_max_offset();
        let confirm_offset = if self.ha.role().is_master() {
            self.ha_confirm_offset()
        } else {
            self.store.confirm_offset()
        };
        // Java sends the epoch file's last epoch: the newest epoch whose data this broker holds,
        // which is what the controller's election compares.
        let last_epoch = self.store.epochs().last_epoch().unwrap_or(0);
        let header = BrokerHeartbeatRequestHeader {
            cluster_name: self.config.broker_cluster_name.clone(),
            broker_addr: self.config.broker_addr(),
            broker_name: self.config.broker_name.clone(),
            broker_id: Some(self.config.broker_id),
            epoch: Some(i32::try_from(last_epoch).unwrap_or(i32::MAX)),
            max_offset: Some(i64::try_from(max_offset).unwrap_or(i64::MAX)),
            confirm_offset: Some(i64::try_from(confirm_offset).unwrap_or(i64::MAX)),
            heartbeat_timeout_mills: Some(i64::try_from(timeout).unwrap_or(i64::MAX)),
            election_priority: Some(priority),
        };
        for addr in addrs {
            let mut cmd =
                RemotingCommand::request(RequestCode::BrokerHeartbeat.value(), self.next_opaque());
            cmd.mark_oneway();
            encode_header(&mut cmd, &header);
            self.transmits.push_back(Transmit::Request { addr, cmd });
        }
    }

    fn ask_replica_info(&mut self, now_ms: u64) {
        let Some(c) = self.controller.as_mut() else {
            return;
        };
        c.next_replica_info_ms =
            Some(now_ms.saturating_add(c.config.sync_broker_metadata_period_ms.max(1)));
        let Some(leader) = c.leader.clone() else {
            return;
        };
        let header = GetReplicaInfoRequestHeader {
            broker_name: self.config.broker_name.clone(),
        };
        let mut cmd = RemotingCommand::request(
            RequestCode::ControllerGetReplicaInfo.value(),
            self.next_opaque(),
        );
        encode_header(&mut cmd, &header);
        self.controller_request(leader, Ask::ReplicaInfo, cmd, now_ms);
    }

    /// CONTROLLER_ELECT_MASTER naming this broker (Java's `brokerElect`).
    fn ask_election(&mut self, now_ms: u64) {
        let Some(c) = self.controller.as_ref() else {
            return;
        };
        let Some(leader) = c.leader.clone() else {
            return;
        };
        if c.asking(Ask::Elect) {
            return;
        }
        tracing::info!(
            broker_id = self.config.broker_id,
            "no master: asking for an election"
        );
        let header = ElectMasterRequestHeader {
            cluster_name: self.config.broker_cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            designate_elect: false,
            invoke_time: i64::try_from(now_ms).unwrap_or(i64::MAX),
        };
        let mut cmd = RemotingCommand::request(
            RequestCode::ControllerElectMaster.value(),
            self.next_opaque(),
        );
        encode_header(&mut cmd, &header);
        self.controller_request(leader, Ask::Elect, cmd, now_ms);
    }

    /// As master: proposes the sync state set the replica set wants, if it differs from the
    /// committed one and no proposal is in flight.
    fn check_sync_state_set(&mut self, now_ms: u64) {
        let Some(c) = self.controller.as_mut() else {
            return;
        };
        c.next_check_ms =
            Some(now_ms.saturating_add(c.config.check_sync_state_set_period_ms.max(1)));
        let Some(leader) = c.leader.clone() else {
            return;
        };
        if c.asking(Ask::AlterSyncStateSet) || !self.is_controller_master() {
            return;
        }
        let epoch = self.controller.as_ref().map_or(0, |c| c.master_epoch);
        let max_offset = self.store.commit_log_max_offset();
        let Some(wanted) = self.ha.replicas.wanted_sync_state_set(
            max_offset,
            now_ms,
            self.ha.config.ha_max_time_slave_not_catchup_ms,
            self.ha.config.sync_state_set_max_size,
        ) else {
            return;
        };
        let (_, held_epoch) = self.ha.replicas.sync_state_set();
        let body = SyncStateSet {
            sync_state_set: wanted
                .iter()
                .filter_map(|id| i64::try_from(*id).ok())
                .collect(),
            sync_state_set_epoch: i32::try_from(held_epoch).unwrap_or(i32::MAX),
        };
        tracing::info!(set = ?body.sync_state_set, epoch = held_epoch, "proposing a sync state set");
        self.ha.replicas.propose_sync_state_set(wanted);
        let header = AlterSyncStateSetRequestHeader {
            broker_name: self.config.broker_name.clone(),
            master_broker_id: self.config.broker_id,
            master_epoch: epoch,
            invoke_time: i64::try_from(now_ms).unwrap_or(i64::MAX),
        };
        let mut cmd = RemotingCommand::request(
            RequestCode::ControllerAlterSyncStateSet.value(),
            self.next_opaque(),
        );
        encode_header(&mut cmd, &header);
        let cmd = cmd.with_body(body.encode());
        self.controller_request(leader, Ask::AlterSyncStateSet, cmd, now_ms);
    }

    /// A request to a controller failed (no connection) or went unanswered.
    fn controller_request_failed(&mut self, f: &InFlight, now_ms: u64) {
        let Some(c) = self.controller.as_mut() else {
            return;
        };
        // Discovery asks every controller, the leader too; only a request that relied on the
        // leader being there says it is gone.
        if f.ask != Ask::Metadata && c.leader.as_deref() == Some(f.addr.as_str()) {
            tracing::info!(addr = %f.addr, "controller leader unreachable: looking for the leader again");
            c.leader = None;
            c.next_discover_ms = now_ms;
        }
        match f.ask {
            Ask::Register => c.next_register_ms = now_ms.saturating_add(RETRY_MS),
            // The controller may have committed it: keep the proposal counted until the next
            // replica info tells the committed set, and ask for that soon.
            Ask::AlterSyncStateSet => c.next_replica_info_ms = Some(now_ms),
            Ask::Metadata | Ask::ReplicaInfo | Ask::Elect => {}
        }
    }

    /// A request to `addr` could not be sent (the dial failed).
    pub(super) fn controller_peer_failed(&mut self, cmd: &RemotingCommand, now_ms: u64) {
        if let Some(f) = self
            .controller
            .as_mut()
            .and_then(|c| c.in_flight.remove(&cmd.opaque))
        {
            self.controller_request_failed(&f, now_ms);
        }
    }

    /// A response to one of the controller requests: handled here (`true`), or not ours.
    pub(super) fn handle_controller_response(
        &mut self,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> bool {
        let Some(f) = self
            .controller
            .as_mut()
            .and_then(|c| c.in_flight.remove(&cmd.opaque))
        else {
            return false;
        };
        if cmd.code == ResponseCode::ControllerNotLeader.value() {
            self.follow_not_leader(&f, cmd.remark.as_deref(), now_ms);
            self.controller_progress(now_ms);
            return true;
        }
        let outcome = match f.ask {
            Ask::Metadata => self.on_metadata(cmd, now_ms),
            Ask::Register => self.on_registered(&f, cmd, now_ms),
            Ask::ReplicaInfo => {
                if let Some(c) = self.controller.as_mut() {
                    c.last_leader_answer_ms = now_ms;
                }
                self.on_replica_info(cmd, now_ms)
            }
            Ask::Elect => self.on_elected(cmd, now_ms),
            Ask::AlterSyncStateSet => self.on_altered(cmd),
        };
        if let Err(e) = outcome {
            tracing::warn!(ask = ?f.ask, addr = %f.addr, error = %e, "controller answer unreadable");
        }
        self.controller_progress(now_ms);
        true
    }

    /// CONTROLLER_NOT_LEADER: the remark is the leader's address when the controller knows it.
    fn follow_not_leader(&mut self, f: &InFlight, remark: Option<&str>, now_ms: u64) {
        let Some(c) = self.controller.as_mut() else {
            return;
        };
        let named = remark
            .map(str::trim)
            .filter(|r| !r.is_empty() && r.contains(':'));
        tracing::info!(addr = %f.addr, leader = ?named, "controller is not the leader");
        match named {
            Some(addr) if addr != f.addr => c.leader = Some(addr.to_string()),
            _ => {
                c.leader = None;
                c.next_discover_ms = now_ms.saturating_add(RETRY_MS);
            }
        }
        match f.ask {
            Ask::Register => c.next_register_ms = now_ms,
            Ask::ReplicaInfo | Ask::AlterSyncStateSet => c.next_replica_info_ms = Some(now_ms),
            Ask::Metadata | Ask::Elect => {}
        }
    }

    fn on_metadata(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Result<(), RequestError> {
        if cmd.code != ResponseCode::Success.value() {
            return Ok(());
        }
        let header: GetMetaDataResponseHeader = decode_header(cmd)?;
        let Some(leader) = header.controller_leader_address.filter(|a| !a.is_empty()) else {
            return Ok(());
        };
        if let Some(c) = self.controller.as_mut() {
            // One answer is enough: the other controllers' answers would say the same.
            c.in_flight.retain(|_, f| f.ask != Ask::Metadata);
            if c.leader.as_deref() != Some(leader.as_str()) {
                tracing::info!(%leader, "controller leader found");
                c.leader = Some(leader);
                c.next_register_ms = now_ms;
            }
            c.next_discover_ms = now_ms;
        }
        Ok(())
    }

    fn on_registered(
        &mut self,
        f: &InFlight,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Result<(), RequestError> {
        if cmd.code != ResponseCode::Success.value() {
            tracing::warn!(addr = %f.addr, code = cmd.code, remark = ?cmd.remark, "controller refused the registration");
            if let Some(c) = self.controller.as_mut() {
                c.next_register_ms = now_ms.saturating_add(RETRY_MS);
            }
            return Ok(());
        }
        let header: RegisterBrokerToControllerResponseHeader = decode_header(cmd)?;
        let news = RoleNews {
            master_broker_id: header.master_broker_id,
            master_addr: header.master_address,
            master_epoch: header.master_epoch,
            sync_state_set: sync_state_set_body(cmd)?,
        };
        if let Some(c) = self.controller.as_mut() {
            tracing::info!(
                broker_id = self.config.broker_id,
                "registered with the controller"
            );
            c.registered = true;
            c.next_replica_info_ms =
                Some(now_ms.saturating_add(c.config.sync_broker_metadata_period_ms.max(1)));
        }
        // Java takes the role the answer names, then heartbeats at once (then elects if
        // there is no master).
        self.act_on_role_news(news, now_ms);
        self.send_controller_heartbeat(now_ms);
        Ok(())
    }

    fn on_replica_info(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Result<(), RequestError> {
        if cmd.code == ResponseCode::ControllerBrokerMetadataNotExist.value() {
            // The controller lost (or never had) our registration: register again.
            if let Some(c) = self.controller.as_mut() {
                c.registered = false;
                c.next_register_ms = now_ms;
            }
            return Ok(());
        }
        if cmd.code != ResponseCode::Success.value() {
            tracing::warn!(code = cmd.code, remark = ?cmd.remark, "replica info refused");
            return Ok(());
        }
        let header: GetReplicaInfoResponseHeader = decode_header(cmd)?;
        let news = RoleNews {
            master_broker_id: header.master_broker_id,
            master_addr: header.master_address,
            master_epoch: header.master_epoch,
            sync_state_set: sync_state_set_body(cmd)?,
        };
        self.act_on_role_news(news, now_ms);
        Ok(())
    }

    fn on_elected(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Result<(), RequestError> {
        if cmd.code != ResponseCode::Success.value()
            && cmd.code != ResponseCode::ControllerMasterStillExist.value()
        {
            tracing::warn!(code = cmd.code, remark = ?cmd.remark, "election refused");
            return Ok(());
        }
        let header: ElectMasterResponseHeader = decode_header(cmd)?;
        let mut sync_state_set = sync_state_set_body(cmd)?;
        if let Some(epoch) = header.sync_state_set_epoch {
            sync_state_set.sync_state_set_epoch = epoch;
        }
        let news = RoleNews {
            master_broker_id: header.master_broker_id,
            master_addr: header.master_address,
            master_epoch: header.master_epoch,
            sync_state_set,
        };
        self.act_on_role_news(news, now_ms);
        Ok(())
    }

    fn on_altered(&mut self, cmd: &RemotingCommand) -> Result<(), RequestError> {
        if cmd.code != ResponseCode::Success.value() {
            // Refused (fenced epoch, invalid set): nothing was committed.
            tracing::warn!(code = cmd.code, remark = ?cmd.remark, "sync state set change refused");
            self.ha.replicas.clear_proposal();
            return Ok(());
        }
        let set = sync_state_set_body(cmd)?;
        self.commit_sync_state_set(&set);
        Ok(())
    }

    /// NOTIFY_BROKER_ROLE_CHANGED from the controller: acted on like a replica-info answer.
    pub(super) fn notify_broker_role_changed(
        &mut self,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Result<RemotingCommand, RequestError> {
        if self.controller.is_none() {
            return Ok(crate::reply::reply(
                cmd,
                ResponseCode::SystemError,
                "controller mode is off",
            ));
        }
        let header: NotifyBrokerRoleChangedRequestHeader = decode_header(cmd)?;
        let mut sync_state_set = sync_state_set_body(cmd)?;
        if let Some(epoch) = header.sync_state_set_epoch {
            sync_state_set.sync_state_set_epoch = epoch;
        }
        match header.broker_name {
            Some(name) if name != self.config.broker_name => {
                tracing::warn!(error = %RoleNewsError::OtherBrokerSet(name), "role change ignored");
            }
            _ => self.act_on_role_news(
                RoleNews {
                    master_broker_id: header.master_broker_id,
                    master_addr: header.master_address,
                    master_epoch: header.master_epoch,
                    sync_state_set,
                },
                now_ms,
            ),
        }
        Ok(success(cmd))
    }

    /// Acts on what the controller says about the broker set (Java's `changeBrokerRole` and
    /// the replica-info poll): errors are logged and the news dropped.
    fn act_on_role_news(&mut self, news: RoleNews, now_ms: u64) {
        if let Err(e) = self.try_role_news(news, now_ms) {
            tracing::warn!(error = %e, "controller news ignored");
        }
    }

    fn try_role_news(&mut self, news: RoleNews, now_ms: u64) -> Result<(), RoleNewsError> {
        let known = self.controller.as_ref().map_or(0, |c| c.master_epoch);
        let Some(master_id) = news.master_broker_id else {
            // No master: ask for one, naming this broker (the controller picks from the
            // sync state set, so this cannot put a lagging broker in charge).
            self.ask_election(now_ms);
            return Ok(());
        };
        let (Some(epoch), Some(addr)) = (
            news.master_epoch,
            news.master_addr.filter(|a| !a.is_empty()),
        ) else {
            return Err(RoleNewsError::Incomplete(master_id));
        };
        if epoch < known {
            return Err(StaleEpoch {
                held: u64::try_from(known).unwrap_or(0),
                offered: u64::try_from(epoch).unwrap_or(0),
            }
            .into());
        }
        let following = self.controller.as_ref().is_some_and(|c| c.master.is_some());
        if epoch == known && !following {
            // Stepped down (lease lapsed) and named again for the same epoch: act afresh.
            return if master_id == self.config.broker_id {
                self.become_controller_master(epoch, &news.sync_state_set, now_ms)
            } else {
                self.become_controller_slave(master_id, addr, epoch, now_ms)
            };
        }
        if epoch == known {
            if self.is_controller_master() && master_id == self.config.broker_id {
                self.commit_sync_state_set(&news.sync_state_set);
            }
            return Ok(());
        }
        if master_id == self.config.broker_id {
            self.become_controller_master(epoch, &news.sync_state_set, now_ms)
        } else {
            self.become_controller_slave(master_id, addr, epoch, now_ms)
        }
    }

    /// The controller committed `set`: the replica set waits for exactly these acks now.
    fn commit_sync_state_set(&mut self, set: &SyncStateSet) {
        let ids = set
            .sync_state_set
            .iter()
            .filter_map(|id| u64::try_from(*id).ok())
            .collect();
        let epoch = u32::try_from(set.sync_state_set_epoch).unwrap_or(0);
        self.ha.replicas.set_sync_state_set(ids, epoch);
    }

    /// Java's `changeToMaster`: record the epoch, take the SYNC_MASTER role with the
    /// controller's sync state set, schedule the set checks, register as brokerId 0.
    fn become_controller_master(
        &mut self,
        epoch: i32,
        set: &SyncStateSet,
        now_ms: u64,
    ) -> Result<(), RoleNewsError> {
        let ha_epoch = u64::try_from(epoch).unwrap_or(0);
        if ha_epoch < self.ha.epoch() {
            return Err(StaleEpoch {
                held: self.ha.epoch(),
                offered: ha_epoch,
            }
            .into());
        }
        // Named master of an epoch this broker already led: it restarted since (a fresh
        // promotion always brings a newer epoch). Its log may have lost an unflushed tail that
        // its slaves hold and acknowledged, so resuming would fork the epoch: it gives the
        // place up by asking for an election (the controller prefers another in-sync broker).
        if self
            .store
            .epochs()
            .last_epoch()
            .is_some_and(|last| i64::from(last) >= i64::from(epoch))
        {
            tracing::warn!(
                epoch,
                "named master of an epoch this broker led before a restart: asking for a new election"
            );
            self.ask_election(now_ms);
            return Ok(());
        }
        let max_offset = self.store.commit_log_max_offset();
        // Before any write of the new epoch: the epoch file says where it starts.
        self.record_master_epoch(epoch, max_offset)
            .map_err(|reason| RoleNewsError::EpochRecord { epoch, reason })?;
        self.ha
            .replicas
            .set_self_broker_id(u64::try_from(self.config.broker_id).unwrap_or(0));
        self.ha.replicas.set_epoch_start_offset(max_offset);
        self.commit_sync_state_set(set);
        self.change_role(BrokerRole::SyncMaster, ha_epoch, now_ms)?;
        let me = Master {
            broker_id: self.config.broker_id,
            addr: self.config.broker_addr(),
        };
        if let Some(c) = self.controller.as_mut() {
            c.master_epoch = epoch;
            c.master = Some(me);
            c.next_check_ms =
                Some(now_ms.saturating_add(c.config.check_sync_state_set_period_ms.max(1)));
        }
        tracing::info!(epoch, max_offset, "controller mode: this broker is master");
        self.register_all();
        Ok(())
    }

    /// Java's `changeToSlave`: follow `addr` at `epoch`, stop checking the sync state set,
    /// register under this broker's own id.
    fn become_controller_slave(
        &mut self,
        master_id: i64,
        addr: String,
        epoch: i32,
        now_ms: u64,
    ) -> Result<(), RoleNewsError> {
        let ha_epoch = u64::try_from(epoch).unwrap_or(0);
        self.change_role(BrokerRole::Slave, ha_epoch, now_ms)?;
        let ha_addr = ha_addr_of(&addr);
        self.ha.learn_master(ha_addr.as_deref(), Some(&addr));
        if let Some(c) = self.controller.as_mut() {
            c.master_epoch = epoch;
            c.master = Some(Master {
                broker_id: master_id,
                addr: addr.clone(),
            });
            c.next_check_ms = None;
        }
        tracing::info!(epoch, master = master_id, %addr, ha = ?ha_addr, "controller mode: this broker is a slave");
        self.register_all();
        Ok(())
    }

    /// The single place a new master epoch is made durable before the broker takes writes:
    /// the store's epoch file gets `(epoch, max_offset)` (RocketMQ's
    /// `AutoSwitchHAService.changeToMaster` → `epochCache.appendEntry`). Re-recording the
    /// newest epoch (a restarted master named again) adds nothing.
    fn record_master_epoch(&mut self, epoch: i32, max_offset: u64) -> Result<(), String> {
        let epoch = u32::try_from(epoch).map_err(|_| format!("negative epoch {epoch}"))?;
        self.store
            .append_epoch(epoch, max_offset)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The master's master/slave state for tests and status: the epoch acted on and the
    /// master's broker id.
    #[cfg(test)]
    pub(super) fn controller_master(&self) -> Option<(i32, i64)> {
        let c = self.controller.as_ref()?;
        Some((c.master_epoch, c.master.as_ref()?.broker_id))
    }
}

/// The SyncStateSet body of a controller answer; an empty body is an empty set.
fn sync_state_set_body(cmd: &RemotingCommand) -> Result<SyncStateSet, RequestError> {
    if cmd.body.is_empty() {
        return Ok(SyncStateSet::default());
    }
    SyncStateSet::decode(&cmd.body).map_err(crate::reply::body_error("SyncStateSet"))
}

/// The HA address of a broker at `addr` ("host:port"): port + 1, the default `haListenPort`.
fn ha_addr_of(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    Some(format!("{host}:{}", port.checked_add(1)?))
}

#[cfg(test)]
#[path = "controller_client_tests.rs"]
mod tests;
