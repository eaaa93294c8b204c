//! cairn-lease: etcd's lessor, the owner of leases (etcd `server/lease/lessor.go`).
//!
//! A lease is granted with a TTL; keys put with it are attached to it; when it is revoked (by a client or because
//! it expired) the server deletes its keys. Grant, revoke, checkpoint, attach and detach are applied from raft
//! entries on every member and are deterministic. Expiry is local: only the primary lessor (the raft leader's)
//! tracks deadlines, renews leases (keep-alive) and hands out the ids of expired leases, which the server then
//! proposes as revoke requests. Followers hold every lease as "never expires" until they are promoted.
//!
//! The lessor never reads a clock and never spawns anything: every time-dependent method takes
//! `now: std::time::Instant`, so the server's loop drives it (etcd's runLoop: every 500 ms
//! `expired(now, LEASE_REVOKE_RATE / 2)` and `checkpoints_due(now, MAX_LEASE_CHECKPOINT_BATCH)`) and tests
//! build instants as `base + Duration`.
//!
//! # Layout
//! - [`config`]: [`LessorConfig`] (minimum TTL, checkpoint and retry intervals, revoke rate) and
//!   [`min_lease_ttl`], etcd's ceil(1.5 x election timeout).
//! - [`record`]: the persisted form, etcd's `leasepb.Lease` in the backend's `lease` table, keyed by the id as 8
//!   big-endian bytes.
//! - `queue`: a time-ordered queue of lease ids with one slot per id (expiry and checkpoint schedules), so finding
//!   what is due costs O(k log n), not a scan of every lease.
//! - [`lessor`]: [`Lessor`]: leases, attached keys, grant/revoke/renew/checkpoint, promote/demote, expiry and
//!   checkpoint scheduling, recovery from the backend.
//!
//! It must not know raft, mvcc or the network: it returns the keys a revoke must delete and the ids to revoke or
//! checkpoint, and the server proposes, applies and answers. Error strings are etcd's lease package's; the gRPC
//! status a client sees is chosen at the server's edge.

pub mod config;
pub mod lessor;
mod queue;
pub mod record;

pub use config::{min_lease_ttl, LessorConfig};
pub use lessor::{Lessor, Renewal, TimeToLive};
pub use record::{record_key, LeaseRecord};

/// The id meaning "no lease" (a key put without one).
pub const NO_LEASE: i64 = 0;

/// The largest TTL a lease may be granted with, in seconds (etcd's MaxLeaseTTL).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// What `time_to_live` reports as the remaining seconds of a lease that never expires on this member: etcd's
/// `Remaining()` is `math.MaxInt64` nanoseconds then, which its server truncates to whole seconds.
pub const FOREVER_REMAINING_SECS: i64 = i64::MAX / 1_000_000_000;

/// Why a lease operation was refused, or recovery failed. Messages are etcd's lease package's.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Unknown id, id 0, or (on renew) a lease already past its expiry.
    #[error("lease not found")]
    NotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("too large lease TTL")]
    TtlTooLarge,
    /// Renew on a member that is not the leader: the server forwards the request to the leader.
    #[error("not a primary lessor")]
    NotPrimary,
    /// The backend holds a lease record cairn never writes: stop rather than guess.
    #[error("lease: corrupt record: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Backend(#[from] cairn_storage::BackendError),
}
