//! Phase one (faults on) of each scenario, one small module per family. Each `run` applies its
//! faults while the producers send, checks what only it can check (failover, refusal codes,
//! group offsets), and returns with every fault healed; `run.rs` then requires liveness.
//!
//! To add a scenario: a `Scenario` variant and its name in `options.rs` (with any options it
//! draws in `Options::draw_faults`), a function here or in a new module, its arm in
//! [`fault_phase`], and a `#[madsim::test]` in `tests/scenarios.rs`.
//!
//! - `crash.rs`: broker kill -9 and restart (SYNC/ASYNC flush, torn tails, corrupted bytes);
//! - `partition.rs`: broker↔name server, client↔broker, swizzle-clogging, name server restart;
//! - `disk.rs`: disk full then freed, slow syncs;
//! - `network.rs`: latency spikes and packet loss;
//! - `churn.rs`: consumer group members joining, crashing and leaving;
//! - `delay.rs`: delay-level and timer messages across broker kills;
//! - `transaction.rs`: transactions across broker and producer kills;
//! - `retry.rs`: the retry ladder to the DLQ across broker and consumer kills;
//! - `ha.rs`: a replicated broker set (master + slaves); these run their own course
//!   (`ha::run`), not the phases of `run.rs`;
//! - `controller.rs`: controller mode (controllers, failover, fencing, truncation), run by
//!   `controller::run` likewise.

mod churn;
pub mod controller;
mod crash;
mod delay;
mod disk;
pub mod ha;
mod network;
mod partition;
mod retry;
mod transaction;

use std::sync::{Arc, Mutex, MutexGuard};

use madsim::runtime::NodeHandle;
use madsim::task::NodeId;
use rand::rngs::StdRng;

use crate::cluster::Cluster;
use crate::history::History;
use crate::options::{Options, Scenario};
use crate::trace::Trace;

/// What a scenario's phase one works with.
pub struct Ctx<'a> {
    pub opts: &'a Options,
    pub cluster: &'a Cluster,
    pub history: &'a History,
    pub trace: &'a Trace,
    /// A client host for the scenario's own requests (probes, route checks).
    pub checker: &'a NodeHandle,
    /// Producer and consumer hosts, for client-side partitions.
    pub clients: Vec<NodeId>,
}

/// Whether the harness's own consumer (which reads every queue with private cursors) runs:
/// not when a consumer group is under test, whose members must do all the reading.
pub fn uses_plain_consumer(scenario: Scenario) -> bool {
    scenario != Scenario::ConsumerChurn
}

pub use delay::DELAY_LEVELS_MS;

/// A scenario's bookkeeping shared by its producer, consumer and checking tasks.
struct Shared<T>(Arc<Mutex<T>>);

// Written out rather than derived: a derive would demand `T: Clone`, but cloning shares the
// one book.
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Default> Default for Shared<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(T::default())))
    }
}

impl<T> Shared<T> {
    /// Locks the book; a task that panicked while holding it has already failed the run, so
    /// the book is used as it stands rather than poisoning every other task.
    fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs phase one of `ctx.opts.scenario`; returns with its faults healed.
pub async fn fault_phase(ctx: &Ctx<'_>, rng: &mut StdRng) {
    match ctx.opts.scenario {
        Scenario::BrokerKillRestartSyncFlush
        | Scenario::BrokerKillRestartAsyncFlush
        | Scenario::TornTailWrite
        | Scenario::CorruptTail => crash::kills(ctx, rng).await,
        Scenario::NamesrvPartition => partition::namesrv_partition(ctx, rng).await,
        Scenario::ClientPartition => partition::client_partition(ctx, rng).await,
        Scenario::SwizzleClog => partition::swizzle_clog(ctx, rng).await,
        Scenario::NamesrvRestart => partition::namesrv_restart(ctx, rng).await,
        Scenario::DiskFull => disk::disk_full(ctx, rng).await,
        Scenario::SlowDisk => disk::slow_disk(ctx).await,
        Scenario::LinkDelay => network::link_delay(ctx, rng).await,
        Scenario::ConsumerChurn => churn::churn(ctx, rng).await,
        Scenario::DelayTimerCrash => delay::delay_timer_crash(ctx, rng).await,
        Scenario::TransactionCrash => transaction::transaction_crash(ctx, rng).await,
        Scenario::RetryDlqCrash => retry::retry_dlq_crash(ctx, rng).await,
        // Run by `ha::run`, which `run.rs` hands these to before any phase.
        Scenario::HaMasterKill
        | Scenario::CtrlMasterKill
        | Scenario::CtrlPartition
        | Scenario::CtrlLeaderLoss
        | Scenario::CtrlFlapping
        | Scenario::CtrlOldMasterReturns => {}
    }
}
