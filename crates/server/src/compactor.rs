//! Auto-compaction, as etcd's `--auto-compaction-mode` / `--auto-compaction-retention` (etcd
//! `etcdserver/api/v3compactor`): the leader proposes Compaction requests so history does not grow forever.
//!
//! - `periodic` keeps `retention` of history: a revision is sampled every tenth of the compaction interval
//!   (the retention, at most an hour); once the first retention has passed, every interval the revision
//!   sampled one retention ago is compacted.
//! - `revision` keeps the last `retention` revisions: every five minutes, the current revision minus the
//!   retention is compacted (unless it was already).
//!
//! The schedules are plain state machines fed with the time and the current revision, so tests drive them
//! without sleeping; a task runs them on the leader (followers keep sampling, so a new leader has history).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_api::cairnpb::internal_request::Request;
use cairn_api::etcdserverpb::CompactionRequest;
use cairn_api::EtcdError;

use crate::member::MemberState;

/// How often the revision compactor looks (etcd's revision.go checkCompactionInterval).
const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// The periodic compactor samples and retries at a tenth of its interval (etcd's retryDivisor).
const RETRY_DIVISOR: u32 = 10;
const HOUR: Duration = Duration::from_secs(3600);

/// What `--auto-compaction-mode` and `--auto-compaction-retention` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Periodic(Duration),
    Revision(i64),
}

/// Reads the two flags as etcd does: a periodic retention is a Go duration or a whole number of hours; a
/// revision retention a whole number. Retention 0 turns auto-compaction off (None).
pub fn policy(mode: &str, retention: &str) -> Result<Option<Policy>, String> {
    let bad =
        || format!("invalid --auto-compaction-retention {retention:?} for --auto-compaction-mode {mode}");
    match mode {
        "periodic" | "" => {
            let period = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours.saturating_mul(3600)),
                Err(_) => crate::config::parse_go_duration(retention).map_err(|_| bad())?,
            };
            Ok((!period.is_zero()).then_some(Policy::Periodic(period)))
        }
        "revision" => {
            let revisions: i64 = retention.parse().map_err(|_| bad())?;
            if revisions < 0 {
                return Err(bad());
            }
            Ok((revisions != 0).then_some(Policy::Revision(revisions)))
        }
        other => Err(format!("unknown auto-compaction mode {other:?}")),
    }
}

/// The periodic schedule: a sliding window of revisions sampled every retry interval.
#[derive(Debug)]
pub struct Periodic {
    period: Duration,
    /// revs[0] is the revision sampled one period ago.
    revs: VecDeque<i64>,
    last_success: Instant,
    /// The whole period before the first compaction, then the compaction interval.
    wait: Duration,
}

impl Periodic {
    /// Starts at `now`, when the revision is `rev`.
    pub fn new(period: Duration, now: Instant, rev: i64) -> Periodic {
        Periodic { period, revs: VecDeque::from([rev]), last_success: now, wait: period }
    }

    fn interval(&self) -> Duration {
        self.period.min(HOUR)
    }

    /// How often [`Periodic::tick`] should run.
    pub fn retry_interval(&self) -> Duration {
        (self.interval() / RETRY_DIVISOR).max(Duration::from_millis(1))
    }

    fn window(&self) -> usize {
        let per = self.retry_interval().as_nanos().max(1);
        usize::try_from(self.period.as_nanos() / per).unwrap_or(usize::MAX).saturating_add(1)
    }

    /// One retry interval later: on the leader, once due, the revision sampled a period ago to compact; then
    /// `rev` (the revision now) joins the samples. As etcd's loop, which samples before each wait.
    pub fn tick(&mut self, now: Instant, rev: i64, leader: bool) -> Option<i64> {
        let due = leader && now.duration_since(self.last_success) >= self.wait;
        let target = if due {
            self.wait = self.interval();
            self.revs.front().copied()
        } else {
            None
        };
        self.revs.push_back(rev);
        while self.revs.len() > self.window() {
            self.revs.pop_front();
        }
        target
    }

    /// The proposal's outcome: success (or "already compacted") restarts the interval; a failure retries at
    /// the next tick.
    pub fn done(&mut self, now: Instant, ok: bool) {
        if ok {
            self.last_success = now;
        }
    }
}

/// The revision schedule.
#[derive(Debug, Default)]
pub struct Revisions {
    retention: i64,
    last: i64,
}

impl Revisions {
    pub fn new(retention: i64) -> Revisions {
        Revisions { retention, last: 0 }
    }

    /// On the leader, the revision to compact now, if any.
    pub fn tick(&self, rev: i64, leader: bool) -> Option<i64> {
        let target = rev - self.retention;
        (leader && target > 0 && target != self.last).then_some(target)
    }

    pub fn done(&mut self, target: i64, ok: bool) {
        if ok {
            self.last = target;
        }
    }
}

/// Proposes one compaction; "already compacted" counts as done, as etcd's compactors treat it.
async fn compact(m: &MemberState, revision: i64) -> bool {
    match m.propose(Request::Compaction(CompactionRequest { revision, physical: false })).await {
        Ok(_) | Err(EtcdError::Compacted) => {
            tracing::info!(revision, "completed auto compaction");
            true
        }
        Err(e) => {
            tracing::warn!(revision, error = %e, "auto compaction failed; will retry");
            false
        }
    }
}

/// Runs the policy until the member stops.
pub fn start_background(m: &Arc<MemberState>, policy: Policy) {
    let m = Arc::clone(m);
    tokio::spawn(async move {
        let leading = m.shared.is_leader.clone();
        match policy {
            Policy::Periodic(period) => {
                let mut schedule = Periodic::new(period, Instant::now(), m.shared.store.current_revision());
                let mut tick = tokio::time::interval(schedule.retry_interval());
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let rev = m.shared.store.current_revision();
                    let leader = *leading.borrow();
                    if let Some(target) = schedule.tick(Instant::now(), rev, leader) {
                        let ok = compact(&m, target).await;
                        schedule.done(Instant::now(), ok);
                    }
                }
            }
            Policy::Revision(retention) => {
                let mut schedule = Revisions::new(retention);
                let mut tick = tokio::time::interval(REVISION_CHECK_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let rev = m.shared.store.current_revision();
                    // Not held across the proposal below: a watch guard is not Send.
                    let leader = *leading.borrow();
                    if let Some(target) = schedule.tick(rev, leader) {
                        let ok = compact(&m, target).await;
                        schedule.done(target, ok);
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_etcds() {
        assert_eq!(policy("periodic", "0"), Ok(None));
        assert_eq!(policy("periodic", "1"), Ok(Some(Policy::Periodic(HOUR))));
        assert_eq!(policy("periodic", "90m"), Ok(Some(Policy::Periodic(Duration::from_secs(5400)))));
        assert_eq!(policy("revision", "1000"), Ok(Some(Policy::Revision(1000))));
        assert_eq!(policy("revision", "0"), Ok(None));
        assert!(policy("revision", "1h").is_err());
        assert!(policy("periodic", "soon").is_err());
        assert!(policy("sometimes", "1").is_err());
    }

    /// Drives a periodic schedule every retry interval for `steps`, the revision growing by 10 each time;
    /// returns the compactions (step, revision).
    fn run(period: Duration, steps: u32, leader_from: u32) -> Vec<(u32, i64)> {
        let t0 = Instant::now();
        let mut s = Periodic::new(period, t0, 1);
        let step = s.retry_interval();
        let mut out = Vec::new();
        for i in 1..=steps {
            let now = t0 + step * i;
            if let Some(rev) = s.tick(now, i64::from(i) * 10, i >= leader_from) {
                out.push((i, rev));
                s.done(now, true);
            }
        }
        out
    }

    #[test]
    fn periodic_waits_one_period_then_compacts_what_it_saw_a_period_ago_every_period() {
        // 5 s: samples every 0.5 s; first compaction after 5 s at the revision sampled 5 s before.
        let c = run(Duration::from_secs(5), 30, 0);
        assert_eq!(c, vec![(10, 1), (20, 90), (30, 190)]);
    }

    #[test]
    fn periodic_compacts_every_hour_at_most_while_keeping_the_whole_retention() {
        // 2 h retention: samples every 6 min, first compaction after 2 h, then hourly, keeping 2 h.
        let c = run(Duration::from_secs(7200), 40, 0);
        assert_eq!(c, vec![(20, 1), (30, 90), (40, 190)]);
    }

    #[test]
    fn only_the_leader_compacts_but_every_member_samples() {
        let c = run(Duration::from_secs(5), 30, 25);
        assert_eq!(c.first(), Some(&(25, 140)), "a new leader compacts what was seen a period ago");
    }

    #[test]
    fn a_failed_compaction_is_retried_at_the_next_tick() {
        let t0 = Instant::now();
        let mut s = Periodic::new(Duration::from_secs(1), t0, 5);
        let step = s.retry_interval();
        let mut tries = Vec::new();
        for i in 1..=12u32 {
            let now = t0 + step * i;
            if let Some(rev) = s.tick(now, 100 + i64::from(i), true) {
                tries.push((i, rev));
                s.done(now, i >= 11);
            }
        }
        assert_eq!(tries, vec![(10, 5), (11, 5)], "retried at once, then the interval starts again");
    }

    #[test]
    fn revision_mode_keeps_the_last_retention_revisions_and_never_repeats() {
        let mut s = Revisions::new(100);
        assert_eq!(s.tick(50, true), None);
        assert_eq!(s.tick(150, false), None, "followers do not compact");
        assert_eq!(s.tick(150, true), Some(50));
        s.done(50, true);
        assert_eq!(s.tick(150, true), None, "nothing new since");
        assert_eq!(s.tick(400, true), Some(300));
        s.done(300, false);
        assert_eq!(s.tick(400, true), Some(300), "retried after a failure");
    }
}
