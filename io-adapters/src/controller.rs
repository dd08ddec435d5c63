//! Runs the controller (`proto_core::controller::ControllerRole`) replicated through raft: the
//! role on the remoting driver, its log in openraft (see `raft/`).
//!
//! This file only connects the role's log hooks to [`crate::raft::Replicated`]; startup
//! (listeners, storage, config) is the caller's.

use proto_core::controller::{ControllerRole, Entry, Leadership};
use store_core::storage::Storage;

use crate::raft::state_machine::ApplyEntry;
use crate::raft::{
    run_replicated, Applied, LeaderView, Replicated, ReplicatedConfig, ReplicatedError,
};

impl ApplyEntry for ControllerRole {
    fn apply_entry(&mut self, index: u64, entry: &Entry, now_ms: u64) -> Applied {
        self.apply(index, entry, now_ms)
    }
}

impl Replicated for ControllerRole {
    fn poll_proposal(&mut self) -> Option<Entry> {
        ControllerRole::poll_proposal(self)
    }

    fn proposal_failed(&mut self, id: u64, leader_addr: Option<String>, now_ms: u64) {
        ControllerRole::proposal_failed(self, id, leader_addr, now_ms);
    }

    fn leadership_changed(&mut self, view: LeaderView, now_ms: u64) {
        let leadership = Leadership {
            is_leader: view.is_self,
            leader_id: view.leader_id,
            leader_addr: view.leader_addr,
        };
        self.set_leadership(leadership, now_ms);
    }
}

/// Serves `role` on `config.remoting_listener`, replicated with the peers in `config`, until
/// `shutdown` resolves.
pub async fn run_controller<S: Storage + Send + Sync + 'static>(
    role: ControllerRole,
    config: ReplicatedConfig<S>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<ControllerRole, ReplicatedError> {
    run_replicated(role, config, shutdown).await
}
