//! The controller (RocketMQ 5 controller mode) as a pure machine: it keeps, per broker set, the
//! master, its epoch and the sync state set, replicated through a log that an adapter runs
//! (openraft in `io-adapters`), and answers brokers' controller requests.
//!
//! # Driving contract
//! [`ControllerRole`] is a [`Role`] (see `role.rs` for the per-turn order) plus four log hooks:
//! 1. after each turn, drain [`ControllerRole::poll_proposal`] and hand each [`Entry`] to the
//!    log; if the log refuses one, call [`ControllerRole::proposal_failed`];
//! 2. hand every committed entry, in log order and on every controller, to
//!    [`ControllerRole::apply`], then drain `poll_transmit` (answers go out on apply);
//! 3. report leadership changes with [`ControllerRole::set_leadership`].
//!
//! Requests that change the state (register, alter sync state set, elect) become proposals and
//! are answered when their entry is applied here. Reads are answered by the leader from its
//! applied state; GET_METADATA_INFO and BROKER_HEARTBEAT by anyone. A non-leader answers CONTROLLER_NOT_LEADER with
//! the leader's remoting address as the whole remark (absent when unknown). Every controller
//! tracks broker heartbeats; the leader, every `scanNotActiveBrokerInterval`, proposes an election for
//! each broker set whose master has gone silent, putting the alive brokers and what they
//! reported into the command so every controller applies the same thing.
//!
//! What it leaves out: the log itself, persistence and snapshots (the adapter's), broker id
//! assignment (GET_NEXT_BROKER_ID / APPLY_BROKER_ID: brokers use their configured id), cleaning
//! broker data and the controller config requests (answered REQUEST_CODE_NOT_SUPPORTED).

mod answer;
pub mod elect;
pub mod heartbeat;
pub mod state;

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::body::decode_json;
use crate::header::{
    decode_header, encode_header, AlterSyncStateSetRequestHeader, BrokerHeartbeatRequestHeader,
    ElectMasterRequestHeader, GetMetaDataResponseHeader, GetReplicaInfoRequestHeader,
    RegisterBrokerToControllerRequestHeader,
};
use crate::reply::{
    body_error, not_supported, or_system_error, reply, respond, success, RequestError,
};
use crate::role::{ConnId, Role, Transmit};
use crate::{RemotingCommand, RequestCode, ResponseCode};

pub use elect::Candidate;
pub use heartbeat::{BrokerLive, Liveness};
pub use state::{Applied, BrokerSet, Command, ControllerState, ReplicaInfo};

/// One log entry: a command and who proposed it, so the proposer can answer the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The raft node id of the controller that proposed it.
    pub proposer: u64,
    /// Unique among the proposer's entries of one process run.
    pub id: u64,
    pub cmd: Command,
}

/// Raft leadership as the adapter last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    pub leader_id: Option<u64>,
    /// The leader's remoting address (the one brokers talk to), when known.
    pub leader_addr: Option<String>,
}

/// The controller's settings, with RocketMQ's names (ControllerConfig.java) and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `controllerDLegerGroup`, reported by GET_METADATA_INFO.
    pub controller_dleger_group: String,
    /// `controllerDLegerPeers` as configured, reported by GET_METADATA_INFO.
    pub controller_dleger_peers: String,
    /// This controller's raft node id (`controllerDLegerSelfId` "n0" is 0).
    pub self_id: u64,
    /// This controller's remoting address, reported as the leader's when it leads.
    pub remoting_addr: String,
    pub scan_not_active_broker_interval_ms: u64,
    pub enable_elect_unclean_master: bool,
    pub notify_broker_role_changed: bool,
    /// A broker's heartbeat timeout when its heartbeat does not say
    /// (`controllerHeartBeatTimeoutMills`), and the grace period of a new leader.
    pub controller_heart_beat_timeout_mills: u64,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            controller_dleger_group: String::new(),
            controller_dleger_peers: String::new(),
            self_id: 0,
            remoting_addr: String::new(),
            scan_not_active_broker_interval_ms: 5_000,
            enable_elect_unclean_master: false,
            notify_broker_role_changed: true,
            controller_heart_beat_timeout_mills: 10_000,
        }
    }
}

/// The controller machine; see the module docs for how to drive it.
#[derive(Debug)]
pub struct ControllerRole {
    config: ControllerConfig,
    state: ControllerState,
    liveness: Liveness,
    leadership: Leadership,
    /// Proposals not yet applied or failed, by entry id.
    pending: BTreeMap<u64, Pending>,
    /// Proposals not yet taken by the adapter.
    proposals: VecDeque<Entry>,
    next_id: u64,
    next_opaque: i32,
    transmits: VecDeque<Transmit>,
    /// When the leader next scans for silent masters; `None` when not leading.
    next_scan_ms: Option<u64>,
    /// Broker sets with a controller-triggered election in flight, so a scan does not propose
    /// the same election again before the first one lands.
    electing: BTreeSet<String>,
    /// The index of the last applied entry (raft's first index may be 0).
    last_applied: Option<u64>,
}

#[derive(Debug)]
struct Pending {
    origin: Origin,
    cmd: Command,
    deadline_ms: u64,
}

#[derive(Debug)]
enum Origin {
    /// A broker's or admin's request, answered on `conn`.
    Request {
        conn: ConnId,
        request: RemotingCommand,
    },
    /// The leader's own election for a silent master.
    Scan { broker_name: String },
}

impl ControllerRole {
    pub fn new(config: ControllerConfig) -> ControllerRole {
        ControllerRole {
            config,
            state: ControllerState::default(),
            liveness: Liveness::default(),
            leadership: Leadership::default(),
            pending: BTreeMap::new(),
            proposals: VecDeque::new(),
            next_id: 1,
            next_opaque: 1,
            transmits: VecDeque::new(),
            next_scan_ms: None,
            electing: BTreeSet::new(),
            last_applied: None,
        }
    }

    /// A committed log entry, in log order, on every controller (leader or not).
    pub fn apply(&mut self, index: u64, entry: &Entry, now_ms: u64) -> Applied {
        // The adapter hands entries over in log order, once each. One delivered again (an
        // adapter bug) must not be applied twice: commands are not idempotent (an election
        // would raise the epoch again).
        if let Some(last) = self.last_applied.filter(|&last| index <= last) {
            tracing::error!(
                index,
                last,
                "controller log entry delivered again; not applied"
            );
            return Applied {
                code: ResponseCode::SystemError.value(),
                remark: Some(format!(
                    "log entry {index} delivered after entry {last}; not applied again"
                )),
                replica: None,
                master_changed: false,
            };
        }
        self.last_applied = Some(index);
        let applied = self.state.apply(&entry.cmd);
        if entry.proposer == self.config.self_id {
            // Ids of an earlier run of this process may come back while the log replays; new
            // ids start past them, and a pending proposal is answered only by its own command.
            self.next_id = self.next_id.max(entry.id.saturating_add(1));
            if self
                .pending
                .get(&entry.id)
                .is_some_and(|p| p.cmd == entry.cmd)
            {
                if let Some(pending) = self.pending.remove(&entry.id) {
                    self.finish(pending, &applied, now_ms);
                }
            }
        }
        if self.leadership.is_leader && self.config.notify_broker_role_changed {
            self.notify_role_changed(&applied, now_ms);
        }
        applied
    }

    /// Entries this controller wants replicated (drained by the adapter after each turn).
    pub fn poll_proposal(&mut self) -> Option<Entry> {
        self.proposals.pop_front()
    }

    /// The log refused a proposal (not leader any more / shut down).
    pub fn proposal_failed(&mut self, id: u64, leader_addr: Option<String>, _now_ms: u64) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        let leader_addr = leader_addr.or_else(|| self.leadership.leader_addr.clone());
        self.refuse_not_leader(pending, leader_addr);
    }

    /// Raft leadership changed (from openraft metrics).
    pub fn set_leadership(&mut self, leadership: Leadership, now_ms: u64) {
        let was_leader = self.leadership.is_leader;
        self.leadership = leadership;
        if self.leadership.is_leader && !was_leader {
            let grace_ms = self.config.controller_heart_beat_timeout_mills;
            self.liveness.start_leading(now_ms, grace_ms);
            self.next_scan_ms = Some(now_ms.saturating_add(self.scan_interval_ms()));
            tracing::info!(self_id = self.config.self_id, "controller leads");
        }
        if !self.leadership.is_leader && was_leader {
            self.liveness.stop_leading();
            self.next_scan_ms = None;
            // Proposals the adapter has not taken yet will never reach the log through us.
            let leader_addr = self.leadership.leader_addr.clone();
            while let Some(entry) = self.proposals.pop_front() {
                if let Some(pending) = self.pending.remove(&entry.id) {
                    self.refuse_not_leader(pending, leader_addr.clone());
                }
            }
        }
    }

    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    /// Broker liveness as this controller sees it.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    fn scan_interval_ms(&self) -> u64 {
        // A zero interval would re-arm the timer at the same instant forever.
        self.config.scan_not_active_broker_interval_ms.max(1)
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        request: &RemotingCommand,
        now_ms: u64,
    ) -> Result<Option<RemotingCommand>, RequestError> {
        let code = RequestCode::from_value(request.code);
        if code == RequestCode::ControllerGetMetadataInfo {
            return Ok(Some(self.metadata(request)));
        }
        if code == RequestCode::BrokerHeartbeat {
            // Every controller keeps the heartbeats it gets (brokers send them to all, as Java's
            // do), so a follower that becomes leader already knows epochs and offsets; only the
            // leader acts on them.
            return self.heartbeat(request, now_ms).map(Some);
        }
        let known = matches!(
            code,
            RequestCode::ControllerRegisterBroker
                | RequestCode::ControllerAlterSyncStateSet
                | RequestCode::ControllerElectMaster
                | RequestCode::ControllerGetReplicaInfo
                | RequestCode::ControllerGetSyncStateData
        );
        if !known {
            return Ok(Some(not_supported(request)));
        }
        if !self.leadership.is_leader {
            return Ok(Some(not_leader(
                request,
                self.leadership.leader_addr.clone(),
            )));
        }
        match code {
            RequestCode::ControllerGetReplicaInfo => {
                let header: GetReplicaInfoRequestHeader = decode_header(request)?;
                let state = &self.state;
                Ok(Some(answer::replica_info_response(
                    request,
                    state,
                    &header.broker_name,
                )))
            }
            RequestCode::ControllerGetSyncStateData => {
                let names: Vec<String> = if request.body.is_empty() {
                    Vec::new()
                } else {
                    decode_json(&request.body, "brokerNames").map_err(body_error("brokerNames"))?
                };
                let body = answer::sync_state_data(&self.state, &names, &self.liveness, now_ms);
                Ok(Some(success(request).with_body(body.encode())))
            }
            _ => {
                let cmd = self.command(request, now_ms)?;
                let origin = Origin::Request {
                    conn,
                    request: request.clone(),
                };
                Ok(self.propose(origin, cmd, now_ms))
            }
        }
    }

    /// The command a write request asks for, with the leader's view of liveness filled in.
    fn command(&self, request: &RemotingCommand, now_ms: u64) -> Result<Command, RequestError> {
        match RequestCode::from_value(request.code) {
            RequestCode::ControllerRegisterBroker => {
                let h: RegisterBrokerToControllerRequestHeader = decode_header(request)?;
                Ok(Command::RegisterBroker {
                    cluster_name: h.cluster_name,
                    broker_name: h.broker_name,
                    broker_id: h.broker_id,
                    broker_address: h.broker_address,
                })
            }
            RequestCode::ControllerAlterSyncStateSet => {
                let h: AlterSyncStateSetRequestHeader = decode_header(request)?;
                let body = crate::body::SyncStateSet::decode(&request.body)
                    .map_err(body_error("SyncStateSet"))?;
                let alive =
                    self.state
                        .broker_sets
                        .get(&h.broker_name)
                        .map_or_else(BTreeSet::new, |set| {
                            let candidates = self.liveness.candidates(&h.broker_name, set, now_ms);
                            candidates.into_iter().map(|c| c.broker_id).collect()
                        });
                Ok(Command::AlterSyncStateSet {
                    broker_name: h.broker_name,
                    master_broker_id: h.master_broker_id,
                    master_epoch: h.master_epoch,
                    sync_state_set: body.sync_state_set,
                    sync_state_set_epoch: body.sync_state_set_epoch,
                    alive,
                })
            }
            _ => {
                let h: ElectMasterRequestHeader = decode_header(request)?;
                let broker_id = (h.broker_id >= 0).then_some(h.broker_id);
                Ok(self.elect_command(&h.broker_name, broker_id, h.designate_elect, now_ms))
            }
        }
    }

    fn elect_command(
        &self,
        broker_name: &str,
        broker_id: Option<i64>,
        designate: bool,
        now_ms: u64,
    ) -> Command {
        let alive = self
            .state
            .broker_sets
            .get(broker_name)
            .map_or_else(Vec::new, |set| {
                self.liveness.candidates(broker_name, set, now_ms)
            });
        Command::ElectMaster {
            broker_name: broker_name.to_owned(),
            broker_id,
            designate,
            alive,
            allow_unclean: self.config.enable_elect_unclean_master,
        }
    }

    /// Queues `cmd` for the log; `None` means "answered on apply". Refused with SYSTEM_BUSY
    /// when too many proposals are in flight.
    fn propose(&mut self, origin: Origin, cmd: Command, now_ms: u64) -> Option<RemotingCommand> {
        if self.pending.len() >= PENDING_MAX {
            return match origin {
                Origin::Request { request, .. } => Some(reply(
                    &request,
                    ResponseCode::SystemBusy,
                    "too many controller requests in flight",
                )),
                Origin::Scan { .. } => None,
            };
        }
        if let Origin::Scan { broker_name } = &origin {
            self.electing.insert(broker_name.clone());
        }
        let id = self.next_id;
        self.next_id += 1;
        let deadline_ms = now_ms.saturating_add(PROPOSAL_TIMEOUT_MS);
        self.proposals.push_back(Entry {
            proposer: self.config.self_id,
            id,
            cmd: cmd.clone(),
        });
        self.pending.insert(
            id,
            Pending {
                origin,
                cmd,
                deadline_ms,
            },
        );
        None
    }

    fn heartbeat(
        &mut self,
        request: &RemotingCommand,
        now_ms: u64,
    ) -> Result<RemotingCommand, RequestError> {
        let h: BrokerHeartbeatRequestHeader = decode_header(request)?;
        let Some(broker_id) = h.broker_id else {
            return Ok(reply(
                request,
                ResponseCode::ControllerInvalidRequest,
                "the heartbeat lacks brokerId",
            ));
        };
        let timeout_ms = h
            .heartbeat_timeout_mills
            .and_then(|ms| u64::try_from(ms).ok())
            .filter(|ms| *ms > 0)
            .unwrap_or(self.config.controller_heart_beat_timeout_mills);
        let live = BrokerLive {
            broker_addr: h.broker_addr,
            last_heartbeat_ms: now_ms,
            timeout_ms,
            epoch: h.epoch.unwrap_or(0),
            max_offset: h.max_offset.unwrap_or(0),
            confirm_offset: h.confirm_offset.unwrap_or(0),
            election_priority: h.election_priority.unwrap_or(0),
        };
        if !self.liveness.record(&h.broker_name, broker_id, live) {
            return Ok(reply(
                request,
                ResponseCode::SystemBusy,
                "too many brokers heartbeating",
            ));
        }
        Ok(success(request))
    }

    fn metadata(&self, request: &RemotingCommand) -> RemotingCommand {
        let leader_addr = if self.leadership.is_leader {
            Some(self.config.remoting_addr.clone())
        } else {
            self.leadership.leader_addr.clone()
        };
        let header = GetMetaDataResponseHeader {
            group: Some(self.config.controller_dleger_group.clone()),
            // Our ids are the number in DLedger's "n<k>" self ids.
            controller_leader_id: self.leadership.leader_id.map(|id| format!("n{id}")),
            controller_leader_address: leader_addr,
            is_leader: self.leadership.is_leader,
            peers: Some(self.config.controller_dleger_peers.clone()),
        };
        let mut response = success(request);
        encode_header(&mut response, &header);
        response
    }

    /// Answers (or forgets) a pending proposal whose entry was applied.
    fn finish(&mut self, pending: Pending, applied: &Applied, now_ms: u64) {
        match pending.origin {
            Origin::Request { conn, request } => {
                let response = answer::applied_response(&request, applied, &self.liveness, now_ms);
                respond(&mut self.transmits, conn, request.is_oneway(), response);
            }
            Origin::Scan { broker_name } => {
                self.electing.remove(&broker_name);
                tracing::info!(%broker_name, code = applied.code, "controller election applied");
            }
        }
    }

    fn refuse_not_leader(&mut self, pending: Pending, leader_addr: Option<String>) {
        match pending.origin {
            Origin::Request { conn, request } => {
                let response = not_leader(&request, leader_addr);
                respond(&mut self.transmits, conn, request.is_oneway(), response);
            }
            Origin::Scan { broker_name } => {
                self.electing.remove(&broker_name);
            }
        }
    }

    /// Tells the alive brokers of a set that its master changed (Java notifies active brokers
    /// only; the others learn it when they poll GET_REPLICA_INFO).
    fn notify_role_changed(&mut self, applied: &Applied, now_ms: u64) {
        let Some(info) = applied.replica.as_ref().filter(|_| applied.master_changed) else {
            return;
        };
        if info.master_broker_id.is_none() {
            return;
        }
        for (id, addr) in &info.brokers {
            if !self.liveness.is_alive(&info.broker_name, *id, now_ms) {
                continue;
            }
            let opaque = self.next_opaque;
            self.next_opaque = self.next_opaque.wrapping_add(1);
            let cmd = answer::role_changed_notice(info, opaque);
            self.transmits.push_back(Transmit::Request {
                addr: addr.clone(),
                cmd,
            });
        }
    }

    /// The leader's periodic check: propose an election for each set whose master went silent.
    fn scan(&mut self, now_ms: u64) {
        self.liveness.forget_long_silent(now_ms);
        let silent: Vec<String> = self
            .state
            .broker_sets
            .iter()
            .filter(|(name, set)| {
                set.master
                    .is_some_and(|master| !self.liveness.is_alive(name, master, now_ms))
            })
            .map(|(name, _)| name.clone())
            .filter(|name| !self.electing.contains(name))
            .collect();
        for broker_name in silent {
            tracing::warn!(%broker_name, "master heartbeats expired; proposing an election");
            let cmd = self.elect_command(&broker_name, None, false, now_ms);
            let _ = self.propose(Origin::Scan { broker_name }, cmd, now_ms);
        }
    }

    fn expire_pending(&mut self, now_ms: u64) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(pending) = self.pending.remove(&id) else {
                continue;
            };
            match pending.origin {
                Origin::Request { conn, request } => {
                    let response = reply(
                        &request,
                        ResponseCode::SystemError,
                        "the controller log did not commit the request in time",
                    );
                    respond(&mut self.transmits, conn, request.is_oneway(), response);
                }
                Origin::Scan { broker_name } => {
                    self.electing.remove(&broker_name);
                }
            }
        }
    }
}

impl Role for ControllerRole {
    fn handle_connected(
        &mut self,
        _conn: ConnId,
        _remote: SocketAddr,
        _dialled: Option<&str>,
        _now_ms: u64,
    ) {
    }

    fn handle_command(&mut self, conn: ConnId, cmd: RemotingCommand, now_ms: u64) {
        if cmd.is_response() {
            // Our notices are oneway; a response to anything else has nobody waiting for it.
            tracing::debug!(code = cmd.code, ?conn, "unexpected response ignored");
            return;
        }
        let handled = self.dispatch(conn, &cmd, now_ms).transpose();
        if let Some(handled) = handled {
            let response = or_system_error(handled, conn, &cmd);
            respond(&mut self.transmits, conn, cmd.is_oneway(), response);
        }
    }

    fn handle_closed(&mut self, _conn: ConnId, _now_ms: u64) {
        // A pending answer for a closed connection is dropped by the driver; the command may
        // still commit, which is what the broker would find when it asks again.
    }

    fn handle_peer_failed(&mut self, addr: &str, cmd: &RemotingCommand, _now_ms: u64) {
        tracing::warn!(%addr, code = cmd.code, "controller notice not delivered");
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        self.expire_pending(now_ms);
        if self.next_scan_ms.is_some_and(|at| at <= now_ms) {
            self.scan(now_ms);
            self.next_scan_ms = Some(now_ms.saturating_add(self.scan_interval_ms()));
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn next_timeout(&self) -> Option<u64> {
        let pending = self.pending.values().map(|p| p.deadline_ms).min();
        match (pending, self.next_scan_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// CONTROLLER_NOT_LEADER; the remark is the leader's remoting address alone, so a broker can
/// redirect without parsing prose.
fn not_leader(request: &RemotingCommand, leader_addr: Option<String>) -> RemotingCommand {
    RemotingCommand::response_to(
        request,
        ResponseCode::ControllerNotLeader.value(),
        leader_addr,
    )
}

/// The most proposals in flight; past it requests are refused with SYSTEM_BUSY.
pub const PENDING_MAX: usize = 1_024;

/// How long a proposal may wait for its entry before the request is answered SYSTEM_ERROR.
pub const PROPOSAL_TIMEOUT_MS: u64 = 10_000;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod tests;
