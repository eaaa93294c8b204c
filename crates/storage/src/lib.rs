//! cairn-storage: everything cairn keeps on disk.
//!
//! # Layout
//! - [`wal`]: the write-ahead log: segment files of CRC32C-chained records, group-commit fsync, torn-tail repair
//!   (its module doc gives the byte layout).
//! - [`backend`]: the redb file holding the applied state (etcd's bbolt `member/snap/db`): tables named as etcd's
//!   buckets, read and write transactions, non-durable commits between checkpoints.
//! - [`member`]: a member's identity (etcd's member and cluster ids, the WAL's Metadata record) and the
//!   membership rows, written alike by the server's bootstrap and `cairnctl snapshot restore`.
//!
//! It must not know raft or mvcc: it stores bytes whose meaning belongs to the crates above it (the membership
//! it encodes is etcd's wire `Member` and cairn's `ConfState` message, not raft's state).

pub mod backend;
pub mod member;
pub mod wal;

pub use backend::{Backend, BackendError, ReadTx, Table, WriteTx};
pub use wal::{Wal, WalContents, WalError, WalOptions};
