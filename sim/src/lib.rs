//! Deterministic whole-cluster simulations: name servers, brokers and clients of the real node
//! code on madsim's simulated hosts, network, clock and disk, checked by invariants.
//!
//! Built only with `--cfg madsim` into `target/sim` (see `scripts/sim`). In a normal build this
//! crate is empty, so `cargo test` on the workspace stays fast.
