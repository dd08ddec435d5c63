//! The raft type configuration of the controller's replicated log: node ids are `u64`, a node is
//! known by the address of its raft listener (`BasicNode`), an application entry is the
//! controller's [`Entry`] and the state machine answers each with an [`Applied`].
//!
//! Snapshots travel as byte buffers: the policy is never to take one (see `state_machine.rs`),
//! but openraft's type configuration needs a snapshot type all the same.

use std::io::Cursor;

pub use proto_core::controller::{Applied, Entry};

use super::runtime::SimRuntime;

openraft::declare_raft_types!(
    /// The controller's raft types.
    pub TypeConfig:
        D = Entry,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = SimRuntime,
);

/// A raft log entry of the controller.
pub type LogEntry = openraft::Entry<TypeConfig>;
/// A log position (leader id and index).
pub type LogId = openraft::LogId<u64>;
/// A raft vote.
pub type Vote = openraft::Vote<u64>;
/// openraft's storage error, as the storage traits return it.
pub type StorageError = openraft::StorageError<u64>;
/// The raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
