//! The only crate that performs I/O: tokio TCP drivers for the protocol state machines,
//! memory-mapped `Storage` for the store, and the system clock.
//!
//! Under `--cfg madsim` the `tokio` dependency is madsim's simulator, so this very code runs in
//! the deterministic simulations of `sim/`. It holds no protocol meaning of its own: decisions
//! live in `proto-core` and `store-core`.

pub mod client;
pub mod clock;
pub mod consumer;
pub mod controller;
pub mod driver;
pub mod ha;
pub mod peers;
pub mod producer;
pub mod raft;

pub mod mmap_storage;
mod outbox;
mod prefault;

pub use mmap_storage::MmapStorage;
