//! The controller's replicated metadata: per broker set (`brokerName`), the registered brokers,
//! the master, its epoch and the sync state set (ISR). It changes only through
//! [`ControllerState::apply`] of a committed [`Command`], on every controller in log order.
//!
//! `apply` is deterministic: it reads nothing but the state and the command. Whatever depends on
//! one controller's view (which brokers are alive, their epochs and offsets, whether unclean
//! elections are allowed) was put into the command by the leader that proposed it. `apply`
//! validates again, because the state may have moved between proposal and commit; a refused
//! command changes nothing and says why in [`Applied`].
//!
//! Invariants after every apply: a master, if any, is registered and is in the sync state set;
//! every member of the sync state set is registered; `master_epoch` and `sync_state_set_epoch`
//! never decrease; each master epoch names at most one master.
//!
//! What it leaves out: liveness (leader-local, `heartbeat.rs`), the choice among candidates
//! (`elect.rs`), and the wire (`mod.rs` builds responses from [`Applied`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::elect::{choose_master, Candidate, Choice};
use crate::ResponseCode;

/// Everything the controller group agrees on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    /// Keyed by `brokerName`.
    pub broker_sets: BTreeMap<String, BrokerSet>,
}

/// One broker set: a master and its slaves sharing a `brokerName`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerSet {
    pub cluster_name: String,
    /// brokerId -> the address the broker registered (`ip:port`).
    pub brokers: BTreeMap<i64, String>,
    pub master: Option<i64>,
    /// Bumped by one each time a new master is elected; 0 until the first election.
    pub master_epoch: i32,
    /// The in-sync replicas; contains the master whenever there is one.
    pub sync_state_set: BTreeSet<i64>,
    pub sync_state_set_epoch: i32,
}

/// A change to the state, as replicated through the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Command {
    /// CONTROLLER_REGISTER_BROKER: add the broker (and its set, if new) or update its address.
    RegisterBroker {
        cluster_name: String,
        broker_name: String,
        broker_id: i64,
        broker_address: String,
    },
    /// CONTROLLER_ALTER_SYNC_STATE_SET from a master.
    AlterSyncStateSet {
        broker_name: String,
        master_broker_id: i64,
        master_epoch: i32,
        /// The set the master wants.
        sync_state_set: BTreeSet<i64>,
        /// The sync state set epoch the master holds (fenced if stale).
        sync_state_set_epoch: i32,
        /// Brokers of the set the proposing leader saw alive.
        alive: BTreeSet<i64>,
    },
    /// CONTROLLER_ELECT_MASTER from a broker or an admin, or the leader's own election after a
    /// master's heartbeats expired.
    ElectMaster {
        broker_name: String,
        /// The broker asking (it names itself) or designated by an admin; `None` when the
        /// controller itself triggers the election.
        broker_id: Option<i64>,
        /// An admin's designation: elect `broker_id` or nobody.
        designate: bool,
        /// The brokers of the set the proposing leader saw alive, with what they reported.
        alive: Vec<Candidate>,
        /// `enableElectUncleanMaster` of the proposing leader.
        allow_unclean: bool,
    },
}

/// What applying a command did: the outcome a response reports, and the broker set afterwards.
/// `Default` (SUCCESS, nothing else) is what a log entry without a command (raft's blank and
/// membership entries) yields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// A [`ResponseCode`] value (SUCCESS, or why the command was refused).
    pub code: i32,
    pub remark: Option<String>,
    /// The broker set named by the command, after the apply; `None` if it does not exist.
    pub replica: Option<ReplicaInfo>,
    /// A new master was elected, or the master was removed, by this command.
    pub master_changed: bool,
}

/// A broker set as a response describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    pub cluster_name: String,
    pub broker_name: String,
    pub master_broker_id: Option<i64>,
    pub master_address: Option<String>,
    pub master_epoch: i32,
    pub sync_state_set: BTreeSet<i64>,
    pub sync_state_set_epoch: i32,
    /// Every registered broker: id -> address.
    pub brokers: BTreeMap<i64, String>,
}

impl ControllerState {
    /// Applies one committed command. Refusals leave the state unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        let (broker_name, outcome) = match cmd {
            Command::RegisterBroker {
                cluster_name,
                broker_name,
                broker_id,
                broker_address,
            } => (
                broker_name,
                self.register(cluster_name, broker_name, *broker_id, broker_address),
            ),
            Command::AlterSyncStateSet {
                broker_name,
                master_broker_id,
                master_epoch,
                sync_state_set,
                sync_state_set_epoch,
                alive,
            } => (
                broker_name,
                self.broker_sets.get_mut(broker_name).map_or_else(
                    || refuse(ResponseCode::ControllerAlterSyncStateSetFailed, NO_METADATA),
                    |set| {
                        set.alter(
                            *master_broker_id,
                            *master_epoch,
                            sync_state_set,
                            *sync_state_set_epoch,
                            alive,
                        )
                    },
                ),
            ),
            Command::ElectMaster {
                broker_name,
                broker_id,
                designate,
                alive,
                allow_unclean,
            } => (
                broker_name,
                self.broker_sets.get_mut(broker_name).map_or_else(
                    || {
                        refuse(
                            ResponseCode::ControllerBrokerNeedToBeRegistered,
                            NO_METADATA,
                        )
                    },
                    |set| set.elect(*broker_id, *designate, alive, *allow_unclean),
                ),
            ),
        };
        if let Some(set) = self.broker_sets.get(broker_name) {
            set.check_invariants();
        }
        Applied {
            code: outcome.code.value(),
            remark: outcome.remark,
            replica: self.replica_info(broker_name),
            master_changed: outcome.master_changed,
        }
    }

    /// The broker set `broker_name` as responses describe it.
    pub fn replica_info(&self, broker_name: &str) -> Option<ReplicaInfo> {
        let set = self.broker_sets.get(broker_name)?;
        Some(ReplicaInfo {
            cluster_name: set.cluster_name.clone(),
            broker_name: broker_name.to_owned(),
            master_broker_id: set.master,
            master_address: set.master.and_then(|id| set.brokers.get(&id).cloned()),
            master_epoch: set.master_epoch,
            sync_state_set: set.sync_state_set.clone(),
            sync_state_set_epoch: set.sync_state_set_epoch,
            brokers: set.brokers.clone(),
        })
    }

    fn register(
        &mut self,
        cluster_name: &str,
        broker_name: &str,
        broker_id: i64,
        broker_address: &str,
    ) -> Outcome {
        if broker_id < 0 {
            return refuse(
                ResponseCode::ControllerBrokerIdInvalid,
                format!("brokerId {broker_id} is negative"),
            );
        }
        if broker_name.is_empty() || broker_address.is_empty() {
            return refuse(
                ResponseCode::ControllerInvalidRequest,
                "brokerName and brokerAddress must not be empty",
            );
        }
        let set = self
            .broker_sets
            .entry(broker_name.to_owned())
            .or_insert_with(|| BrokerSet {
                cluster_name: cluster_name.to_owned(),
                ..BrokerSet::default()
            });
        set.brokers.insert(broker_id, broker_address.to_owned());
        Outcome::success(false)
    }
}

impl BrokerSet {
    fn alter(
        &mut self,
        master_broker_id: i64,
        master_epoch: i32,
        new_set: &BTreeSet<i64>,
        sync_state_set_epoch: i32,
        alive: &BTreeSet<i64>,
    ) -> Outcome {
        // Checked in Java's order, so a stale master hears the same code as from Java.
        if *new_set == self.sync_state_set {
            return refuse(
                ResponseCode::ControllerAlterSyncStateSetFailed,
                "the new syncStateSet equals the current one",
            );
        }
        if self.master != Some(master_broker_id) {
            return refuse(
                ResponseCode::ControllerInvalidMaster,
                format!("the master is {:?}, not {master_broker_id}", self.master),
            );
        }
        if master_epoch != self.master_epoch {
            return refuse(
                ResponseCode::ControllerFencedMasterEpoch,
                format!(
                    "the master epoch is {}, not {master_epoch}",
                    self.master_epoch
                ),
            );
        }
        if sync_state_set_epoch != self.sync_state_set_epoch {
            return refuse(
                ResponseCode::ControllerFencedSyncStateSetEpoch,
                format!(
                    "the syncStateSet epoch is {}, not {sync_state_set_epoch}",
                    self.sync_state_set_epoch
                ),
            );
        }
        if let Some(id) = new_set.iter().find(|id| !self.brokers.contains_key(id)) {
            return refuse(
                ResponseCode::ControllerInvalidReplicas,
                format!("replica {id} is not registered"),
            );
        }
        if let Some(id) = new_set.iter().find(|id| !alive.contains(id)) {
            return refuse(
                ResponseCode::ControllerBrokerNotAlive,
                format!("replica {id} is not alive"),
            );
        }
        if !new_set.contains(&master_broker_id) {
            return refuse(
                ResponseCode::ControllerAlterSyncStateSetFailed,
                format!("the new syncStateSet lacks the master {master_broker_id}"),
            );
        }
        let Some(next_epoch) = self.sync_state_set_epoch.checked_add(1) else {
            return refuse(
                ResponseCode::ControllerAlterSyncStateSetFailed,
                "the syncStateSet epoch is exhausted",
            );
        };
        self.sync_state_set = new_set.clone();
        self.sync_state_set_epoch = next_epoch;
        Outcome::success(false)
    }

    fn elect(
        &mut self,
        broker_id: Option<i64>,
        designate: bool,
        alive: &[Candidate],
        allow_unclean: bool,
    ) -> Outcome {
        // Only registered brokers reported alive may become master.
        let candidates: Vec<Candidate> = alive
            .iter()
            .filter(|c| self.brokers.contains_key(&c.broker_id))
            .cloned()
            .collect();
        let first_election = self.master_epoch == 0 && self.master.is_none();
        let choice = choose_master(
            &candidates,
            &self.sync_state_set,
            self.master,
            broker_id,
            designate,
            first_election,
            allow_unclean,
        );
        match choice {
            Choice::Keep(_) => Outcome {
                code: ResponseCode::ControllerMasterStillExist,
                remark: Some("the master is still alive; nothing to elect".to_owned()),
                master_changed: false,
            },
            Choice::New(id) => self.install_master(id),
            Choice::Nobody if broker_id.is_none() && self.master.is_some() => {
                // The controller's own election after the master expired: nobody eligible means
                // no master until an ISR member comes back. The epoch stays, so the next master
                // still gets a higher one than the last.
                self.master = None;
                Outcome {
                    code: ResponseCode::ControllerMasterNotAvailable,
                    remark: Some("the master is gone and no replica is eligible".to_owned()),
                    master_changed: true,
                }
            }
            Choice::Nobody => refuse(
                ResponseCode::ControllerElectMasterFailed,
                "no eligible replica to elect",
            ),
        }
    }

    fn install_master(&mut self, id: i64) -> Outcome {
        let (Some(master_epoch), Some(sync_state_set_epoch)) = (
            self.master_epoch.checked_add(1),
            self.sync_state_set_epoch.checked_add(1),
        ) else {
            return refuse(
                ResponseCode::ControllerElectMasterFailed,
                "the master epoch is exhausted",
            );
        };
        self.master = Some(id);
        self.master_epoch = master_epoch;
        // Only the new master is known to hold everything it will serve; slaves rejoin the set
        // through AlterSyncStateSet once they have caught up with it.
        self.sync_state_set = BTreeSet::from([id]);
        self.sync_state_set_epoch = sync_state_set_epoch;
        Outcome::success(true)
    }

    fn check_invariants(&self) {
        if let Some(master) = self.master {
            assert!(self.sync_state_set.contains(&master));
            assert!(self.brokers.contains_key(&master));
        }
        for id in &self.sync_state_set {
            assert!(self.brokers.contains_key(id));
        }
    }
}

/// What a command did, before it is wrapped into [`Applied`].
struct Outcome {
    code: ResponseCode,
    remark: Option<String>,
    master_changed: bool,
}

impl Outcome {
    fn success(master_changed: bool) -> Outcome {
        Outcome {
            code: ResponseCode::Success,
            remark: None,
            master_changed,
        }
    }
}

fn refuse(code: ResponseCode, remark: impl Into<String>) -> Outcome {
    Outcome {
        code,
        remark: Some(remark.into()),
        master_changed: false,
    }
}

/// Java's remark for a broker set the controller has never heard of.
const NO_METADATA: &str = "Broker metadata is not existed";
