//! The lessor's settings, with etcd's defaults.

use std::time::Duration;

/// How often the primary checkpoints a lease's remaining TTL when checkpointing is on (etcd's
/// `--experimental-lease-checkpoint-interval`, default 5 minutes).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// How long an expired lease handed out for revocation waits before it is handed out again, in case the revoke
/// proposal was lost (etcd's defaultExpiredleaseRetryInterval).
pub const DEFAULT_EXPIRED_RETRY_INTERVAL: Duration = Duration::from_secs(3);

/// Leases the server should revoke per second at most (etcd's leaseRevokeRate); etcd's loop asks for half of it
/// every 500 ms. Promote also uses it to spread expiries that would pile up.
pub const LEASE_REVOKE_RATE: usize = 1000;

/// Checkpoints per raft entry at most (etcd's maxLeaseCheckpointBatchSize): the `limit` for
/// [`crate::Lessor::checkpoints_due`].
pub const MAX_LEASE_CHECKPOINT_BATCH: usize = 1000;

/// How the lessor behaves; every member of a cluster must use the same `min_ttl`, since grant is applied
/// everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessorConfig {
    /// Shorter TTLs are raised to this many seconds (etcd's minLeaseTTL, see [`min_lease_ttl`]).
    pub min_ttl: i64,
    /// `Some` turns on checkpointing (etcd's `--experimental-enable-lease-checkpoint`): the primary persists the
    /// remaining TTL of leases longer than the interval, so a leader change does not restart them from full.
    pub checkpoint_interval: Option<Duration>,
    /// See [`DEFAULT_EXPIRED_RETRY_INTERVAL`].
    pub expired_retry_interval: Duration,
    /// See [`LEASE_REVOKE_RATE`].
    pub revoke_rate: usize,
}

impl LessorConfig {
    /// etcd's defaults for the given minimum TTL: checkpointing off, 3 s retry, 1000 revokes per second.
    pub fn new(min_ttl: i64) -> LessorConfig {
        LessorConfig {
            min_ttl,
            checkpoint_interval: None,
            expired_retry_interval: DEFAULT_EXPIRED_RETRY_INTERVAL,
            revoke_rate: LEASE_REVOKE_RATE,
        }
    }
}

/// etcd's minimum lease TTL in seconds: `ceil((3 * election_ticks / 2) * heartbeat)`, where
/// `election_ticks = election_timeout / heartbeat` in whole ticks, both divisions rounding down as etcd's integer
/// arithmetic does. The defaults (100 ms, 1000 ms) give 2.
pub fn min_lease_ttl(heartbeat_interval: Duration, election_timeout: Duration) -> i64 {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let heartbeat = heartbeat_interval.as_nanos();
    let ticks = election_timeout.as_nanos().checked_div(heartbeat).unwrap_or(0);
    let min = (3 * ticks / 2) * heartbeat;
    i64::try_from(min.div_ceil(NANOS_PER_SEC)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_lease_ttl_is_etcds() {
        let ms = Duration::from_millis;
        assert_eq!(min_lease_ttl(ms(100), ms(1000)), 2);
        assert_eq!(min_lease_ttl(ms(100), ms(2000)), 3);
        assert_eq!(min_lease_ttl(ms(100), ms(2100)), 4);
        // 3 ticks of 1 s: (3 * 3) / 2 = 4 ticks, not 4.5.
        assert_eq!(min_lease_ttl(ms(1000), ms(3000)), 4);
        // An election timeout that is not a whole number of ticks is cut to whole ticks.
        assert_eq!(min_lease_ttl(ms(300), ms(1000)), 2);
        assert_eq!(min_lease_ttl(Duration::ZERO, ms(1000)), 0);
    }
}
