//! What the leader knows of each follower's log and how it sends to it (etcd's tracker package): probe (one
//! append at a time until the match is found), replicate (pipelined appends within a bounded window) and snapshot
//! (waiting for a snapshot to land).

use std::collections::{BTreeMap, VecDeque};

use crate::types::ConfState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressState {
    #[default]
    Probe,
    Replicate,
    Snapshot,
}

/// The last indexes of appends in flight to one follower; bounded so a slow follower cannot make the leader
/// buffer without limit.
#[derive(Debug, Clone, Default)]
pub struct Inflights {
    cap: usize,
    queue: VecDeque<u64>,
}

impl Inflights {
    pub fn new(cap: usize) -> Self {
        Inflights { cap, queue: VecDeque::with_capacity(cap) }
    }

    pub fn full(&self) -> bool {
        self.queue.len() >= self.cap
    }

    pub fn add(&mut self, last: u64) {
        debug_assert!(!self.full(), "inflight window overflow");
        self.queue.push_back(last);
    }

    /// Frees every append acknowledged by an ack of `to`.
    pub fn free_le(&mut self, to: u64) {
        while self.queue.front().is_some_and(|&i| i <= to) {
            self.queue.pop_front();
        }
    }

    pub fn free_first_one(&mut self) {
        self.queue.pop_front();
    }

    pub fn reset(&mut self) {
        self.queue.clear();
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known to match the leader's log.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    pub state: ProgressState,
    /// In Snapshot state: the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// In Probe state: an append is out, wait for its answer (or a heartbeat response).
    pub probe_sent: bool,
    pub inflights: Inflights,
    pub is_learner: bool,
}

impl Progress {
    pub fn new(next: u64, max_inflight: usize, is_learner: bool) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            recent_active: false,
            probe_sent: false,
            inflights: Inflights::new(max_inflight),
            is_learner,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next = self.matched + 1;
        }
    }

    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next = self.matched + 1;
    }

    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// An ack of `n`: returns whether the match advanced.
    pub fn maybe_update(&mut self, n: u64) -> bool {
        let updated = self.matched < n;
        if updated {
            self.matched = n;
            self.probe_sent = false;
        }
        self.next = self.next.max(n + 1);
        updated
    }

    pub fn optimistic_update(&mut self, n: u64) {
        self.next = n + 1;
    }

    /// A rejection of an append at `rejected`; `match_hint` is where the follower suggests probing.
    /// Returns false for a stale rejection (one about an append already superseded).
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next == 0 || self.next - 1 != rejected {
            return false;
        }
        self.next = rejected.min(match_hint + 1).max(1);
        self.probe_sent = false;
        true
    }

    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

/// Every member's progress, the membership, and the votes of an election.
#[derive(Debug, Clone, Default)]
pub struct ProgressTracker {
    pub progress: BTreeMap<u64, Progress>,
    pub votes: BTreeMap<u64, bool>,
    max_inflight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    Pending,
    Won,
    Lost,
}

impl ProgressTracker {
    pub fn new(max_inflight: usize) -> Self {
        ProgressTracker { progress: BTreeMap::new(), votes: BTreeMap::new(), max_inflight }
    }

    pub fn from_conf_state(cs: &ConfState, next: u64, max_inflight: usize) -> Self {
        let mut t = ProgressTracker::new(max_inflight);
        for &id in &cs.voters {
            t.progress.insert(id, Progress::new(next, max_inflight, false));
        }
        for &id in &cs.learners {
            t.progress.entry(id).or_insert_with(|| Progress::new(next, max_inflight, true));
        }
        t
    }

    pub fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.progress.iter().filter(|(_, p)| !p.is_learner).map(|(&id, _)| id).collect(),
            learners: self.progress.iter().filter(|(_, p)| p.is_learner).map(|(&id, _)| id).collect(),
        }
    }

    pub fn insert(&mut self, id: u64, next: u64, is_learner: bool) {
        let mut p = Progress::new(next, self.max_inflight, is_learner);
        // A new member counts as active so that check-quorum does not depose the leader before it answers.
        p.recent_active = true;
        self.progress.insert(id, p);
    }

    pub fn voters(&self) -> impl Iterator<Item = u64> + '_ {
        self.progress.iter().filter(|(_, p)| !p.is_learner).map(|(&id, _)| id)
    }

    pub fn is_voter(&self, id: u64) -> bool {
        self.progress.get(&id).is_some_and(|p| !p.is_learner)
    }

    fn quorum(&self) -> usize {
        self.voters().count() / 2 + 1
    }

    /// The highest index replicated on a majority of voters (§5.3, §5.4).
    pub fn committed(&self) -> u64 {
        let mut matched: Vec<u64> =
            self.progress.values().filter(|p| !p.is_learner).map(|p| p.matched).collect();
        if matched.is_empty() {
            // No voters (every one removed): nothing can be committed by counting.
            return 0;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched[self.quorum() - 1]
    }

    pub fn record_vote(&mut self, id: u64, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    pub fn tally_votes(&self) -> VoteResult {
        let voters: Vec<u64> = self.voters().collect();
        let granted = voters.iter().filter(|id| self.votes.get(id) == Some(&true)).count();
        let rejected = voters.iter().filter(|id| self.votes.get(id) == Some(&false)).count();
        let quorum = voters.len() / 2 + 1;
        if granted >= quorum {
            VoteResult::Won
        } else if rejected > voters.len() - quorum {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    /// Check-quorum: a majority of voters was heard from recently (`self_id` always counts).
    pub fn quorum_active(&self, self_id: u64) -> bool {
        let active = self
            .progress
            .iter()
            .filter(|(&id, p)| !p.is_learner && (id == self_id || p.recent_active))
            .count();
        active >= self.quorum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_is_the_majority_match() {
        let mut t =
            ProgressTracker::from_conf_state(&ConfState { voters: vec![1, 2, 3], learners: vec![4] }, 1, 8);
        for (id, m) in [(1, 5), (2, 4), (3, 1), (4, 9)] {
            t.progress.get_mut(&id).unwrap().matched = m;
        }
        assert_eq!(t.committed(), 4, "learner 4's match does not count");
    }

    #[test]
    fn votes_are_won_or_lost_by_majority_of_voters() {
        let mut t =
            ProgressTracker::from_conf_state(&ConfState { voters: vec![1, 2, 3], learners: vec![4] }, 1, 8);
        t.record_vote(1, true);
        t.record_vote(4, true);
        assert_eq!(t.tally_votes(), VoteResult::Pending, "a learner's vote is not counted");
        t.record_vote(2, false);
        assert_eq!(t.tally_votes(), VoteResult::Pending);
        t.record_vote(3, false);
        assert_eq!(t.tally_votes(), VoteResult::Lost);
    }

    #[test]
    fn probe_and_replicate_pause_differently() {
        let mut p = Progress::new(5, 2, false);
        assert!(!p.is_paused());
        p.probe_sent = true;
        assert!(p.is_paused());
        assert!(p.maybe_update(4));
        assert!(!p.is_paused(), "an ack unpauses a probe");
        p.become_replicate();
        p.inflights.add(6);
        p.inflights.add(7);
        assert!(p.is_paused(), "window full");
        p.inflights.free_le(6);
        assert!(!p.is_paused());
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut p = Progress::new(10, 8, false);
        assert!(!p.maybe_decr_to(5, 5), "rejection of an append we did not just send");
        assert!(p.maybe_decr_to(9, 3));
        assert_eq!(p.next, 4);
    }
}
