//! Deterministic whole-cluster simulations: name servers, brokers and clients of the real node
//! code on madsim's simulated hosts, network, clock and disk, checked by invariants.
//!
//! Built only with `--cfg madsim` into `target/sim` (see `scripts/sim`). In a normal build this
//! crate holds only `recovery_check` (pure store-core code, unit-tested there), so `cargo test`
//! on the workspace stays fast.
//!
//! - `options.rs`: scenarios and everything a run draws from its seed;
//! - `trace.rs`: the readable event trace and its hash (same seed, same hash);
//! - `disk.rs`: each broker's simulated disk (a `MemStorage` kept across kill/restart) and the
//!   planted bug that lets the checkers prove they can fail;
//! - `history.rs`: what clients were told and what they read, and the checkers over it;
//! - `cluster.rs`: the madsim nodes (name server, brokers) and the faults applied to them;
//! - `ha_cluster.rs`: one replicated broker set (master + slaves) with the production HA
//!   adapter, each broker publishing its (role, epoch), the controller group of controller
//!   mode (`run_controller` hosts), and the commit-log reader its checkers use;
//! - `recovery_check.rs`: after every recovery, every consume-queue unit must point at a valid
//!   commit-log record;
//! - `workload.rs`: producers and the consumer, written with `RemotingClient`;
//! - `scenarios/`: phase one of each scenario, one module per family;
//! - `run.rs`: one run of a scenario: faults on (safety), heal, then liveness.
//!
//! What it leaves out: reordering within one TCP connection (madsim keeps each in order, as
//! TCP does).

#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod disk;
#[cfg(madsim)]
pub mod ha_cluster;
#[cfg(madsim)]
pub mod history;
#[cfg(madsim)]
pub mod options;
pub mod recovery_check;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod scenarios;
#[cfg(madsim)]
pub mod trace;
#[cfg(madsim)]
pub mod workload;
