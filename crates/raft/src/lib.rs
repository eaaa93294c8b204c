//! cairn-raft: the Raft consensus algorithm as a pure state machine, with etcd raft's semantics: pre-vote,
//! check-quorum, learners, single-step membership changes, leader transfer, ReadIndex, snapshots, flow control.
//!
//! # Layout
//! - [`types`]: entries, hard state, membership, snapshots, messages (encoding them is the server's job).
//! - [`storage`]: the [`Storage`] trait the driver implements, and [`MemStorage`].
//! - `log`: the log as one node sees it: persisted entries, the unstable tail, commit and apply cursors.
//! - [`progress`]: the leader's view of each follower (probe / replicate / snapshot, inflight window), quorums.
//! - `read_only`: pending ReadIndex requests.
//! - `raft`: the state machine: `step` and the leader, candidate and follower step functions.
//! - [`raw_node`]: [`RawNode`], the driver's interface: tick, step, propose, then `ready` / `advance`.
//! - [`config`]: the node parameters, [`Config`].
//! - [`rng`]: the seeded generator behind randomized election timeouts.
//!
//! It must NOT do I/O: no threads, no files, no sockets, no clock, no global randomness. Time is `tick()`,
//! randomness a per-node seeded generator, so a test can replay any run exactly.

pub mod config;
mod log;
pub mod progress;
mod raft;
pub mod raw_node;
mod read_only;
pub mod rng;
pub mod storage;
pub mod types;

pub use config::Config;
pub use raw_node::{PeerStatus, RawNode, Ready, Status};
pub use storage::{MemStorage, Storage, StorageError};
pub use types::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType, ReadState,
    Snapshot, SnapshotMetadata, SoftState, StateRole,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No leader to take the proposal, or leadership is being transferred, or this node was removed.
    #[error("raft proposal dropped")]
    ProposalDropped,
    #[error("raft: proposal has no entries")]
    EmptyProposal,
    #[error("raft: cannot step a local message received from the network")]
    StepLocalMsg,
    #[error("raft: response from a peer not in the cluster")]
    StepPeerNotFound,
    #[error("raft: malformed message: {0}")]
    MalformedMessage(String),
    #[error("raft: invalid config: {0}")]
    InvalidConfig(String),
    #[error("raft storage: {0}")]
    Storage(#[from] StorageError),
}
