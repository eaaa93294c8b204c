//! The primary's side of the lessor: becoming and ceasing to be primary, handing out expired leases, and the
//! checkpoint schedule (etcd's Promote, Demote, revokeExpiredLeases and checkpointScheduledLeases).

use std::time::{Duration, Instant};

use super::Lessor;

const NANOS_PER_SEC: i128 = 1_000_000_000;

impl Lessor {
    /// Local: this member became leader. Every lease's deadline restarts at `now + extend + ttl`, counting from
    /// the last checkpointed remaining TTL when there is one; `extend` (etcd: the election timeout) keeps leases
    /// alive across the election that just happened. With as many leases as the revoke rate or more, deadlines
    /// that would pile up are spread as etcd does, so that at most 3/4 of the revoke rate fall in any second.
    /// Checkpoints are scheduled for every lease that needs them.
    pub fn promote(&mut self, extend: Duration, now: Instant) {
        self.primary = true;
        let ids: Vec<i64> = self.leases.keys().copied().collect();
        for &id in &ids {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.refresh(now, extend);
            }
            self.queue_expiry(id);
            self.schedule_checkpoint(id, now);
        }
        if self.leases.len() >= self.config.revoke_rate {
            self.spread_expiries(extend, now);
        }
    }

    /// etcd's pile-up refinement: walk the leases by time left; within a one-second window beyond the first 3/4
    /// revoke-rate leases, push each further lease back by how far the window is over its rate, and widen the
    /// window accordingly.
    fn spread_expiries(&mut self, extend: Duration, now: Instant) {
        let mut by_remaining: Vec<(i128, i64)> = self
            .leases
            .iter()
            .filter_map(|(&id, l)| {
                let left = l.expiry?.saturating_duration_since(now);
                Some((i128::try_from(left.as_nanos()).unwrap_or(i128::MAX), id))
            })
            .collect();
        by_remaining.sort_unstable();
        let Some(&(first, _)) = by_remaining.first() else {
            return;
        };
        let target = i128::try_from((3 * self.config.revoke_rate / 4).max(1)).unwrap_or(i128::MAX);
        let mut base = first;
        let mut next = base + NANOS_PER_SEC;
        let mut expires: i128 = 0;
        let mut spread = 0usize;
        for (remaining, id) in by_remaining {
            if remaining > next {
                base = remaining;
                next = base + NANOS_PER_SEC;
                expires = 1;
                continue;
            }
            expires += 1;
            if expires <= target {
                continue;
            }
            // A lease n seconds past the window's start is delayed n seconds less.
            let delay = (NANOS_PER_SEC * expires / target - (remaining - base)).max(0);
            next = base + delay;
            let delay = Duration::from_nanos(u64::try_from(delay).unwrap_or(u64::MAX));
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.refresh(now, extend.saturating_add(delay));
            }
            self.queue_expiry(id);
            self.schedule_checkpoint(id, now);
            spread += 1;
        }
        tracing::debug!(leases = self.leases.len(), spread, "spread lease expiries on promote");
    }

    /// Local: this member is no longer leader. No lease expires here any more; the schedules are dropped.
    pub fn demote(&mut self) {
        self.primary = false;
        for lease in self.leases.values_mut() {
            lease.expiry = None;
        }
        self.expiries.clear();
        self.checkpoints.clear();
    }

    /// Local, primary only: up to `limit` expired leases for the server to propose revoking, earliest first. A
    /// lease handed out is not handed out again for the retry interval (the revoke is on its way); if it is still
    /// here after that, the proposal was lost (say, in a leader change) and it is handed out again. Renewing or
    /// re-promoting resets that. Costs O(k log n) for k leases handed out: only due queue entries are visited.
    pub fn expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((_, id)) = self.expiries.pop_due(now) else {
                break;
            };
            #[cfg(test)]
            {
                self.queue_steps += 1;
            }
            let Some(lease) = self.leases.get(&id) else {
                continue;
            };
            debug_assert!(lease.expired(now), "a lease is queued before its deadline");
            if let Some(retry) = now.checked_add(self.config.expired_retry_interval) {
                self.expiries.set(id, retry);
            }
            out.push(id);
        }
        debug_assert!(self.expiries.len() <= self.leases.len());
        out
    }

    /// Local, primary only, when checkpointing is on: up to `limit` `(id, remaining_ttl)` pairs whose scheduled
    /// checkpoint is due, for the server to propose as one LeaseCheckpoint request (limit:
    /// [`crate::config::MAX_LEASE_CHECKPOINT_BATCH`]). `remaining_ttl` is the whole seconds left, rounded up;
    /// leases already expired, or with their full TTL still left, are skipped. The next checkpoint of a lease is
    /// scheduled when this one is applied ([`Lessor::checkpoint`]).
    pub fn checkpoints_due(&mut self, now: Instant, limit: usize) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((_, id)) = self.checkpoints.pop_due(now) else {
                break;
            };
            let Some(lease) = self.leases.get(&id) else {
                continue;
            };
            let Some(left) = lease.expiry.and_then(|e| e.checked_duration_since(now)) else {
                continue;
            };
            if left.is_zero() {
                continue;
            }
            let remaining = i64::try_from(left.as_nanos().div_ceil(1_000_000_000)).unwrap_or(i64::MAX);
            if remaining >= lease.ttl {
                continue;
            }
            out.push((id, remaining));
        }
        out
    }
}
