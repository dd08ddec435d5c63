//! openraft's state machine for the controller: each batch of committed entries goes to the
//! driver's core task as one [`Job`], which applies them in log order to the machine it runs
//! (the `ControllerRole`) and sends their results back.
//!
//! The machine lives on the driver's task, not here: requests, timers and committed entries then
//! reach it in one order, and it never needs a lock. Membership and blank entries are raft's own;
//! they are tracked here and answered with the default result.
//!
//! Snapshots are never taken (the raft config's policy is `Never`): the controller's log grows by
//! a few entries per broker registration or failover, so replaying it at start is cheap, and the
//! log is never purged, so a lagging follower is always caught up from the log and never needs a
//! snapshot. Building, sending or installing one is refused with a storage error.
//!
//! Left out: persisting the applied state. A restart re-applies the whole log (openraft does it up
//! to the committed id the log store saved).

use std::io::Cursor;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use tokio::sync::{mpsc, oneshot};

use super::types::{Applied, Entry, LogEntry, LogId, StorageError, TypeConfig};
use crate::driver::Job;

/// A machine that applies committed controller entries (the `ControllerRole`; tests use others).
pub trait ApplyEntry: Send + 'static {
    /// Applies the entry at log `index`; called once per entry, in log order, on every replica.
    fn apply_entry(&mut self, index: u64, entry: &Entry, now_ms: u64) -> Applied;
}

/// The state machine handle openraft owns.
pub struct StateMachine<R> {
    jobs: mpsc::Sender<Job<R>>,
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, BasicNode>,
}

impl<R: ApplyEntry> StateMachine<R> {
    /// Applies through `jobs`, the job queue of the driver running the machine.
    pub fn new(jobs: mpsc::Sender<Job<R>>) -> StateMachine<R> {
        StateMachine {
            jobs,
            last_applied: None,
            membership: StoredMembership::default(),
        }
    }
}

/// Why a job could not run: the driver has stopped. openraft treats it as a storage failure and
/// stops too, which is what a controller shutting down wants.
#[derive(Debug, thiserror::Error)]
#[error("the controller's driver has stopped")]
struct DriverStopped;

fn refuse_snapshot() -> StorageError {
    #[derive(Debug, thiserror::Error)]
    #[error("the controller takes no snapshots (policy Never, the log is never purged)")]
    struct NoSnapshots;
    StorageIOError::read_snapshot(None, &NoSnapshots).into()
}

impl<R: ApplyEntry> RaftStateMachine<TypeConfig> for StateMachine<R> {
    type SnapshotBuilder = NoSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, BasicNode>), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The entries the machine must see, with their position in the batch's answer.
        let mut normal: Vec<(usize, u64, Entry)> = Vec::new();
        let mut count = 0;
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(data) => normal.push((count, entry.log_id.index, data)),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                }
                EntryPayload::Blank => {}
            }
            count += 1;
        }
        let mut out = vec![Applied::default(); count];
        if normal.is_empty() {
            return Ok(out);
        }
        let (tx, rx) = oneshot::channel();
        let job: Job<R> = Box::new(move |machine: &mut R, now: u64| {
            let results: Vec<(usize, Applied)> = normal
                .iter()
                .map(|(at, index, entry)| (*at, machine.apply_entry(*index, entry, now)))
                .collect();
            let _ = tx.send(results);
        });
        let stopped =
            || -> StorageError { StorageIOError::write_state_machine(&DriverStopped).into() };
        self.jobs.send(job).await.map_err(|_| stopped())?;
        for (at, applied) in rx.await.map_err(|_| stopped())? {
            if let Some(slot) = out.get_mut(at) {
                *slot = applied;
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> NoSnapshotBuilder {
        NoSnapshotBuilder
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Err(refuse_snapshot())
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<u64, BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        Err(refuse_snapshot())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(None)
    }
}

/// The snapshot builder openraft's trait asks for; never called under the `Never` policy.
pub struct NoSnapshotBuilder;

impl RaftSnapshotBuilder<TypeConfig> for NoSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        Err(refuse_snapshot())
    }
}
