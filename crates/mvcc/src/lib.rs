//! cairn-mvcc: etcd's multi-version key-value store over the backend.
//!
//! Every change gets a revision; reads may ask for any revision not yet compacted; the request-level semantics
//! of Range, Put, DeleteRange, Txn and Compact are etcd's, answer for answer, so a request sequence gives the same
//! responses on cairn and on etcd.
//!
//! # Layout
//! - [`revision`]: main/sub revisions and their byte encoding, the keys of the backend's `key` table.
//! - [`key_index`]: the in-memory index from user keys to their generations of revisions.
//! - `range`: etcd's Range (filters, sort, limit, count) over the index and a source of values.
//! - [`store`]: [`Store`]: opening (rebuilding the index), concurrent reads, revision counters.
//! - [`batch`]: [`Batch`]: the write path (put, delete, txn, compact) applied as one backend transaction
//!   together with the consistent index; it collects the events watchers get and the keys whose lease changed.
//! - [`watch`]: the watchers (synced / unsynced groups, delivery through non-blocking [`WatchSink`]s).
//! - `watchable`: the store's watch API and catch-up from the backend's history.
//! - `snapshot`: consistent backend copies for raft snapshots, and installing a received one.
//! - [`restore`]: snapshot restore: a store made from a snapshot (cairn's or etcd's buckets) starts a new raft
//!   log.
//! - `hash`: etcd's HashKV (same bytes as etcd's, so the same hash), a whole-backend hash, defragmentation.
//!
//! It must not know raft, leases or the network: the server decides what to apply and when, leases are asked
//! through [`LeaseLookup`], and request validation (empty keys, sizes, duplicate keys) happens at the gRPC edge.

pub mod batch;
mod hash;
pub mod key_index;
mod range;
pub mod restore;
pub mod revision;
mod snapshot;
pub mod store;
pub mod watch;
mod watchable;

pub use batch::{Batch, LeaseChange, LeaseLookup, NoLeases};
pub use hash::KvHash;
pub use revision::Revision;
pub use snapshot::SnapshotPoint;
pub use store::Store;
pub use watch::{WatchMessage, WatchSink, WatchSpec, WatcherId};

/// Why a read or write was refused, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// ignore_value / ignore_lease on a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error(transparent)]
    Backend(#[from] cairn_storage::BackendError),
    /// Copying or installing a snapshot file.
    #[error("mvcc: {0}")]
    Io(String),
    /// The backend holds something cairn never writes: stop rather than serve it.
    #[error("mvcc: corrupt store: {0}")]
    Corrupt(String),
}
