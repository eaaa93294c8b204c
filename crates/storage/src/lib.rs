//! cairn-storage: everything cairn keeps on disk.
//!
//! # Layout
//! - [`wal`]: the write-ahead log: segment files of CRC32C-chained records, group-commit fsync, torn-tail repair
//!   (its module doc gives the byte layout).
//! - [`backend`]: the redb file holding the applied state (etcd's bbolt `member/snap/db`): tables named as etcd's
//!   buckets, read and write transactions, non-durable commits between checkpoints.
//!
//! It must not know raft or mvcc: it stores bytes whose meaning belongs to the crates above it.

pub mod backend;
pub mod wal;

pub use backend::{Backend, BackendError, ReadTx, Table, WriteTx};
pub use wal::{Wal, WalContents, WalError, WalOptions};
