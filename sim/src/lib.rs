//! Deterministic whole-cluster simulations: name servers, brokers and clients of the real node
//! code on madsim's simulated hosts, network, clock and disk, checked by invariants.
//!
//! Built only with `--cfg madsim` into `target/sim` (see `scripts/sim`). In a normal build this
//! crate is empty, so `cargo test` on the workspace stays fast.
//!
//! - `options.rs`: scenarios and everything a run draws from its seed;
//! - `trace.rs`: the readable event trace and its hash (same seed, same hash);
//! - `disk.rs`: each broker's simulated disk (a `MemStorage` kept across kill/restart) and the
//!   planted bug that lets the checkers prove they can fail;
//! - `history.rs`: what clients were told and what they read, and the checkers over it;
//! - `cluster.rs`: the madsim nodes (name server, brokers) and the faults applied to them;
//! - `workload.rs`: producers and the consumer, written with `RemotingClient`;
//! - `run.rs`: one run of a scenario: faults on (safety), heal, then liveness.
//!
//! What it leaves out: consumer-group rebalancing, slow disks and link reordering (madsim
//! delivers TCP in order), name server restarts and the disk-full scenario.

#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod disk;
#[cfg(madsim)]
pub mod history;
#[cfg(madsim)]
pub mod options;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod trace;
#[cfg(madsim)]
pub mod workload;
