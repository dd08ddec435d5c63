//! The `node` binary's library half: command-line parsing, RocketMQ-style config files and the
//! wiring of name server, broker, admin and bench onto `io-adapters`. Kept as a library so `sim/`
//! can start the very same roles on simulated hosts.
//!
//! What it leaves out: protocol and storage logic, which live in `proto-core` and `store-core`.

pub mod admin;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod net;
pub mod roles;
