//! [`Lessor`]: the leases of one member.
//!
//! Two kinds of calls reach it. Applied ones come from committed raft entries, in log order, on every member, and
//! must leave every member in the same state: [`Lessor::grant`], [`Lessor::revoke`], [`Lessor::checkpoint`],
//! [`Lessor::attach`], [`Lessor::detach`]. Local ones depend on this member's clock and role and change only
//! deadlines: [`Lessor::renew`], [`Lessor::promote`], [`Lessor::demote`], [`Lessor::expired`],
//! [`Lessor::checkpoints_due`] (the last four in `primary`).
//!
//! A lease's deadline exists only on the primary (etcd: the raft leader's lessor); elsewhere it is "forever", so a
//! follower never revokes anything on its own. A new primary restarts every deadline from the lease's TTL, or from
//! its last checkpointed remaining TTL, plus an extension covering the election.

mod primary;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use cairn_storage::ReadTx;

use crate::config::LessorConfig;
use crate::queue::TimeQueue;
use crate::record::{record_key, LeaseRecord, TABLE};
use crate::{LeaseError, FOREVER_REMAINING_SECS, MAX_LEASE_TTL, NO_LEASE};

/// One lease.
#[derive(Debug)]
struct Lease {
    /// Granted TTL in seconds, already raised to the minimum.
    ttl: i64,
    /// Remaining TTL from the last applied checkpoint, 0 = none: the next promote counts from it instead of `ttl`.
    remaining_ttl: i64,
    /// When it expires; `None` = never (this member is not primary, or the deadline is past what `Instant` holds).
    expiry: Option<Instant>,
    /// Attached keys; ordered so a revoke deletes them in the same order on every member, as etcd sorts them.
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    fn new(ttl: i64, remaining_ttl: i64) -> Lease {
        Lease { ttl, remaining_ttl, expiry: None, keys: BTreeSet::new() }
    }

    /// The TTL a refresh counts from (etcd's `RemainingTTL()`).
    fn effective_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    /// Restarts the deadline: `now + extend + effective TTL`.
    fn refresh(&mut self, now: Instant, extend: Duration) {
        let ttl = Duration::from_secs(u64::try_from(self.effective_ttl()).unwrap_or(0));
        self.expiry = extend.checked_add(ttl).and_then(|d| now.checked_add(d));
    }

    fn expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }
}

/// What [`Lessor::renew`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// The lease's TTL, the keep-alive response's TTL.
    pub ttl: i64,
    /// The lease had a checkpointed remaining TTL, now cleared here: the server must propose a checkpoint of this
    /// lease with remaining TTL 0 so every member forgets it (etcd does the same), or a later leader would count
    /// from the stale remainder and expire the lease early.
    pub clear_checkpoint: bool,
}

/// What [`Lessor::time_to_live`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    pub id: i64,
    /// The TTL the lease was granted with (after raising it to the minimum).
    pub granted_ttl: i64,
    /// Whole seconds until expiry, rounded toward zero as etcd's `int64(Remaining().Seconds())`: negative once
    /// expired but not yet revoked, [`FOREVER_REMAINING_SECS`] on a member that is not primary.
    pub ttl: i64,
    /// Attached keys in byte order, if asked for.
    pub keys: Vec<Vec<u8>>,
}

/// The leases of one member, their attached keys, and (when primary) their deadlines and checkpoint schedule.
#[derive(Debug)]
pub struct Lessor {
    config: LessorConfig,
    leases: HashMap<i64, Lease>,
    /// Which lease each attached key belongs to (etcd's itemMap): a key is attached to one lease at most.
    key_leases: HashMap<Vec<u8>, i64>,
    /// This member is the raft leader's: it tracks deadlines, renews and hands out expired leases.
    primary: bool,
    /// When primary, every lease with a deadline, at its deadline or, once handed out as expired, at the time it
    /// is handed out again; empty otherwise.
    expiries: TimeQueue,
    /// When primary with checkpointing on, the leases whose remaining TTL is due to be checkpointed.
    checkpoints: TimeQueue,
    /// Queue entries `expired` looked at, so tests can prove it does not scan every lease.
    #[cfg(test)]
    queue_steps: u64,
}

impl Lessor {
    /// An empty lessor, not primary.
    pub fn new(config: LessorConfig) -> Lessor {
        Lessor {
            config,
            leases: HashMap::new(),
            key_leases: HashMap::new(),
            primary: false,
            expiries: TimeQueue::default(),
            checkpoints: TimeQueue::default(),
            #[cfg(test)]
            queue_steps: 0,
        }
    }

    /// Rebuilds the leases persisted in the backend's `lease` table (on start, or after installing a snapshot):
    /// not primary, so none expires until [`Lessor::promote`]; keys are attached afterwards by the server from
    /// the key-value store. TTLs below the configured minimum are raised to it, as etcd does.
    pub fn recover(config: LessorConfig, tx: &ReadTx) -> Result<Lessor, LeaseError> {
        let mut records = Vec::new();
        let mut failed = None;
        tx.for_each(TABLE, .., |key, value| match LeaseRecord::decode_entry(key, value) {
            Ok(r) => {
                records.push(r);
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Lessor::from_records(config, records)
    }

    /// [`Lessor::recover`] from records already read.
    pub fn from_records(
        config: LessorConfig,
        records: impl IntoIterator<Item = LeaseRecord>,
    ) -> Result<Lessor, LeaseError> {
        let mut lessor = Lessor::new(config);
        for r in records {
            if r.id == NO_LEASE {
                return Err(LeaseError::Corrupt("a lease record with id 0".to_owned()));
            }
            let ttl = r.ttl.max(lessor.config.min_ttl);
            if lessor.leases.insert(r.id, Lease::new(ttl, r.remaining_ttl)).is_some() {
                return Err(LeaseError::Corrupt(format!("two lease records with id {:x}", r.id)));
            }
        }
        tracing::debug!(leases = lessor.leases.len(), "recovered leases");
        Ok(lessor)
    }

    pub fn config(&self) -> &LessorConfig {
        &self.config
    }

    /// Whether this member manages deadlines (it is the leader's lessor).
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Every lease id, ascending.
    pub fn leases(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The lease `key` is attached to, if any.
    pub fn lease_for_key(&self, key: &[u8]) -> Option<i64> {
        self.key_leases.get(key).copied()
    }

    /// Applied: grants lease `id` (chosen by the server before proposing) and returns its TTL, raised to the
    /// configured minimum. On the primary it expires at `now + ttl`; elsewhere never, until promoted. The server
    /// writes [`Lessor::record`] into the same backend transaction.
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant) -> Result<i64, LeaseError> {
        if id == NO_LEASE {
            return Err(LeaseError::NotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::LeaseExists);
        }
        let mut lease = Lease::new(ttl.max(self.config.min_ttl), 0);
        let granted = lease.ttl;
        if self.primary {
            lease.refresh(now, Duration::ZERO);
        }
        self.leases.insert(id, lease);
        if self.primary {
            self.queue_expiry(id);
            self.schedule_checkpoint(id, now);
        }
        Ok(granted)
    }

    /// Applied: removes lease `id` and returns its keys in byte order, for the server to delete in the same
    /// transaction that deletes the lease's record ([`record_key`]).
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Vec<u8>>, LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        self.expiries.remove(id);
        self.checkpoints.remove(id);
        for key in &lease.keys {
            let owner = self.key_leases.remove(key);
            debug_assert_eq!(owner, Some(id), "key attached to a lease it is not indexed under");
        }
        Ok(lease.keys.into_iter().collect())
    }

    /// Local, primary only: restarts lease `id`'s deadline at `now + ttl` (a keep-alive) and returns its TTL.
    /// `NotPrimary` on other members (the server forwards to the leader); `NotFound` for an unknown lease and for
    /// one already past its deadline: that one is on its way to being revoked (etcd waits for the revoke and then
    /// answers not found; this lessor cannot wait, so it answers at once).
    pub fn renew(&mut self, id: i64, now: Instant) -> Result<Renewal, LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if lease.expired(now) {
            return Err(LeaseError::NotFound);
        }
        let clear_checkpoint = lease.remaining_ttl > 0;
        lease.remaining_ttl = 0;
        lease.refresh(now, Duration::ZERO);
        let ttl = lease.ttl;
        self.queue_expiry(id);
        Ok(Renewal { ttl, clear_checkpoint })
    }

    /// Applied: records lease `id`'s remaining TTL (0 clears it), which the next promote counts from. The current
    /// deadline is left alone, as etcd does: on the primary that deadline is where the remainder came from. On the
    /// primary the next checkpoint is scheduled. Returns false (and does nothing) for an unknown lease, which etcd
    /// ignores too. Whether the server also persists the record (etcd 3.5's checkpoint-persist) is its choice.
    pub fn checkpoint(&mut self, id: i64, remaining_ttl: i64, now: Instant) -> bool {
        let Some(lease) = self.leases.get_mut(&id) else {
            return false;
        };
        lease.remaining_ttl = remaining_ttl;
        if self.primary {
            self.schedule_checkpoint(id, now);
        }
        true
    }

    /// Applied: attaches `keys` to lease `id` (a put with that lease). A key attached to another lease moves.
    pub fn attach<K: AsRef<[u8]>>(
        &mut self,
        id: i64,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<(), LeaseError> {
        if !self.leases.contains_key(&id) {
            return Err(LeaseError::NotFound);
        }
        for key in keys {
            let key = key.as_ref();
            match self.key_leases.insert(key.to_vec(), id) {
                Some(old) if old == id => {}
                Some(old) => {
                    if let Some(l) = self.leases.get_mut(&old) {
                        l.keys.remove(key);
                    }
                    self.attach_key(id, key);
                }
                None => self.attach_key(id, key),
            }
        }
        Ok(())
    }

    fn attach_key(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    /// Applied: detaches `keys` from lease `id` (the key was deleted, or put with another lease or none). Keys
    /// not attached to `id` are left as they are.
    pub fn detach<K: AsRef<[u8]>>(
        &mut self,
        id: i64,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<(), LeaseError> {
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        for key in keys {
            let key = key.as_ref();
            if self.key_leases.get(key) == Some(&id) {
                self.key_leases.remove(key);
                lease.keys.remove(key);
            }
        }
        Ok(())
    }

    /// Lease `id`'s granted TTL, remaining seconds at `now` and, if `with_keys`, its keys. Only the leader's
    /// answer is meaningful (followers report [`FOREVER_REMAINING_SECS`]); etcd forwards the request there.
    pub fn time_to_live(&self, id: i64, now: Instant, with_keys: bool) -> Result<TimeToLive, LeaseError> {
        let lease = self.leases.get(&id).ok_or(LeaseError::NotFound)?;
        let ttl = match lease.expiry {
            None => FOREVER_REMAINING_SECS,
            Some(e) => match e.checked_duration_since(now) {
                Some(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                None => -i64::try_from(now.duration_since(e).as_secs()).unwrap_or(i64::MAX),
            },
        };
        let keys = if with_keys { lease.keys.iter().cloned().collect() } else { Vec::new() };
        Ok(TimeToLive { id, granted_ttl: lease.ttl, ttl, keys })
    }

    /// Lease `id`'s backend entry (key, value) as etcd writes it, for the server to put after a grant (and, if it
    /// persists checkpoints, after a checkpoint); `None` if there is no such lease.
    pub fn record(&self, id: i64) -> Option<(Vec<u8>, Vec<u8>)> {
        let lease = self.leases.get(&id)?;
        let value = LeaseRecord { id, ttl: lease.ttl, remaining_ttl: lease.remaining_ttl }.encode_value();
        Some((record_key(id).to_vec(), value))
    }

    /// Puts lease `id` in the expiry queue at its deadline (or out of it when it has none).
    fn queue_expiry(&mut self, id: i64) {
        match self.leases.get(&id).and_then(|l| l.expiry) {
            Some(at) => self.expiries.set(id, at),
            None => self.expiries.remove(id),
        }
    }

    /// When checkpointing is on and lease `id` has more left than one interval, makes sure a checkpoint is
    /// scheduled within an interval from `now` (an earlier one already scheduled stays).
    fn schedule_checkpoint(&mut self, id: i64, now: Instant) {
        let Some(interval) = self.config.checkpoint_interval else {
            return;
        };
        let Some(lease) = self.leases.get(&id) else {
            return;
        };
        let interval_secs = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
        if lease.effective_ttl() <= interval_secs {
            return;
        }
        let Some(at) = now.checked_add(interval) else {
            return;
        };
        if self.checkpoints.get(id).is_none_or(|scheduled| at < scheduled) {
            self.checkpoints.set(id, at);
        }
    }
}

#[cfg(test)]
mod tests;
