//! The Raft state machine (etcd's raft.go): one `step` per message, then the role's step function. It only
//! mutates itself and queues messages; the driver does all I/O.
//!
//! - this file: the node's state, term and vote handling, elections (pre-vote, check-quorum), membership.
//! - `leader`: replication (probe/replicate/snapshot), commit, proposals, ReadIndex, leader transfer.
//! - `follower`: candidates and followers: appends, heartbeats, snapshots, forwarding.

use crate::config::Config;
use crate::log::RaftLog;
use crate::progress::{ProgressState, ProgressTracker, VoteResult};
use crate::read_only::ReadOnly;
use crate::rng::SplitMix64;
use crate::storage::{Storage, StorageError};
use crate::types::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType, ReadState,
    Snapshot, SoftState, StateRole,
};
use crate::Error;

mod follower;
mod leader;

/// Context marking a vote request sent because of a leader transfer: it may disturb a live leader's lease.
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// Bound on read requests waiting for the leader's first commit in its term.
const MAX_PENDING_READ_INDEX_MESSAGES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CampaignType {
    PreElection,
    Election,
    Transfer,
}

#[derive(Debug)]
pub struct Raft<S: Storage> {
    pub id: u64,
    pub term: u64,
    pub vote: u64,
    pub log: RaftLog<S>,
    pub prs: ProgressTracker,
    pub role: StateRole,
    pub lead: u64,
    /// Leader transfer in progress to this node (0: none).
    pub lead_transferee: u64,
    /// Index of the newest conf change proposed; another may not be proposed until it is applied.
    pub pending_conf_index: u64,
    pub msgs: Vec<Message>,
    pub read_states: Vec<ReadState>,
    /// Proposals appended since the last Ready: broadcast once, so a burst goes out as one append per follower.
    pending_bcast: bool,
    read_only: ReadOnly,
    /// Reads that arrived before the leader committed an entry of its term.
    pending_read_index_messages: Vec<Message>,
    election_elapsed: usize,
    heartbeat_elapsed: usize,
    randomized_election_timeout: usize,
    election_timeout: usize,
    heartbeat_timeout: usize,
    check_quorum: bool,
    pre_vote: bool,
    max_msg_size: u64,
    max_inflight: usize,
    rng: SplitMix64,
}

impl<S: Storage> Raft<S> {
    pub fn new(config: &Config, storage: S) -> Result<Self, Error> {
        config.validate()?;
        let (hs, cs) = storage.initial_state()?;
        let log = RaftLog::new(storage)?;
        let last = log.last_index();
        let mut r = Raft {
            id: config.id,
            term: 0,
            vote: 0,
            log,
            prs: ProgressTracker::from_conf_state(&cs, last + 1, config.max_inflight_msgs),
            role: StateRole::Follower,
            lead: 0,
            lead_transferee: 0,
            pending_conf_index: 0,
            msgs: Vec::new(),
            read_states: Vec::new(),
            pending_bcast: false,
            read_only: ReadOnly::default(),
            pending_read_index_messages: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: config.election_tick,
            election_timeout: config.election_tick,
            heartbeat_timeout: config.heartbeat_tick,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            max_msg_size: config.max_size_per_msg,
            max_inflight: config.max_inflight_msgs,
            rng: SplitMix64::new(config.seed ^ config.id.wrapping_mul(0x2545_f491_4f6c_dd1d)),
        };
        if !hs.is_empty() {
            if hs.commit < r.log.committed || hs.commit > r.log.last_index() {
                return Err(Error::Storage(StorageError::Corrupt(format!(
                    "hard state commit {} out of range [{}, {}]",
                    hs.commit,
                    r.log.committed,
                    r.log.last_index()
                ))));
            }
            r.log.committed = hs.commit;
            r.term = hs.term;
            r.vote = hs.vote;
        }
        if config.applied > 0 {
            if config.applied > r.log.committed {
                return Err(Error::InvalidConfig(format!(
                    "applied {} is past the commit index {}",
                    config.applied, r.log.committed
                )));
            }
            r.log.applied = config.applied.max(r.log.applied);
        }
        let term = r.term;
        r.become_follower(term, 0);
        Ok(r)
    }

    pub fn soft_state(&self) -> SoftState {
        SoftState { leader_id: self.lead, role: self.role }
    }

    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed }
    }

    fn promotable(&self) -> bool {
        self.prs.is_voter(self.id)
    }

    fn quorum_is_self_alone(&self) -> bool {
        self.prs.voters().count() == 1 && self.prs.is_voter(self.id)
    }

    fn send(&mut self, mut m: Message) {
        // Forwarded proposals, reads and transfer requests keep their original sender.
        if m.from == 0 {
            m.from = self.id;
        }
        match m.msg_type {
            MessageType::Vote | MessageType::PreVote | MessageType::VoteResp | MessageType::PreVoteResp => {
                debug_assert!(m.term != 0, "campaign messages carry their term");
            }
            // Forwarded proposals and reads travel without a term, like local messages.
            MessageType::Prop | MessageType::ReadIndex => {}
            _ => m.term = self.term,
        }
        self.msgs.push(m);
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = 0;
        }
        self.lead = 0;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_election_timeout =
            self.election_timeout + self.rng.below(self.election_timeout as u64) as usize;
        self.lead_transferee = 0;
        self.prs.reset_votes();
        let last = self.log.last_index();
        let id = self.id;
        for (&pid, pr) in &mut self.prs.progress {
            let learner = pr.is_learner;
            *pr = crate::progress::Progress::new(last + 1, self.max_inflight, learner);
            if pid == id {
                pr.matched = last;
            }
        }
        self.pending_conf_index = 0;
        self.read_only.reset();
    }

    pub fn become_follower(&mut self, term: u64, lead: u64) {
        self.reset(term);
        self.lead = lead;
        self.role = StateRole::Follower;
    }

    fn become_candidate(&mut self) {
        debug_assert!(self.role != StateRole::Leader, "leader to candidate");
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.id;
        self.role = StateRole::Candidate;
    }

    fn become_pre_candidate(&mut self) {
        debug_assert!(self.role != StateRole::Leader, "leader to pre-candidate");
        // Pre-candidates keep their term and vote: they only ask whether they could win.
        self.prs.reset_votes();
        self.role = StateRole::PreCandidate;
        self.lead = 0;
    }

    fn become_leader(&mut self) {
        debug_assert!(self.role != StateRole::Follower, "follower to leader");
        let term = self.term;
        self.reset(term);
        self.lead = self.id;
        self.role = StateRole::Leader;
        if let Some(pr) = self.prs.progress.get_mut(&self.id) {
            pr.become_replicate();
            pr.recent_active = true;
        }
        // Conservatively treat every unapplied entry as a possible conf change.
        self.pending_conf_index = self.log.last_index();
        // An empty entry of the new term lets earlier entries commit (§5.4.2) and reads be served.
        self.append_entries(vec![Entry::default()]);
        tracing::debug!(id = self.id, term = self.term, "became leader");
    }

    pub fn tick(&mut self) {
        match self.role {
            StateRole::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.step_local(MessageType::Hup);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                self.step_local(MessageType::CheckQuorum);
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if self.role == StateRole::Leader && self.lead_transferee != 0 {
                self.lead_transferee = 0;
            }
        }
        if self.role != StateRole::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            self.step_local(MessageType::Beat);
        }
    }

    fn step_local(&mut self, msg_type: MessageType) {
        let from = self.id;
        // Local messages cannot fail: their handlers only queue messages.
        if let Err(e) = self.step(Message { msg_type, from, ..Message::default() }) {
            tracing::debug!(error = %e, ?msg_type, "local step failed");
        }
    }

    fn hup(&mut self, transfer: bool) {
        if self.role == StateRole::Leader || !self.promotable() {
            return;
        }
        // A conf change committed but not applied may remove us; campaigning now could split the cluster.
        let unapplied =
            self.log.slice(self.log.applied + 1, self.log.committed + 1, u64::MAX).unwrap_or_default();
        if unapplied.iter().any(|e| e.entry_type == EntryType::ConfChange) {
            tracing::warn!(id = self.id, "cannot campaign: pending conf change not applied");
            return;
        }
        if transfer {
            self.campaign(CampaignType::Transfer);
        } else if self.pre_vote {
            self.campaign(CampaignType::PreElection);
        } else {
            self.campaign(CampaignType::Election);
        }
    }

    fn campaign(&mut self, t: CampaignType) {
        let (vote_msg, term) = if t == CampaignType::PreElection {
            self.become_pre_candidate();
            (MessageType::PreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::Vote, self.term)
        };
        let id = self.id;
        self.prs.record_vote(id, true);
        match self.prs.tally_votes() {
            VoteResult::Won => {
                if t == CampaignType::PreElection {
                    self.campaign(CampaignType::Election);
                } else {
                    self.become_leader();
                }
                return;
            }
            VoteResult::Lost | VoteResult::Pending => {}
        }
        let (index, log_term) = (self.log.last_index(), self.log.last_term());
        let context = if t == CampaignType::Transfer { CAMPAIGN_TRANSFER.to_vec() } else { Vec::new() };
        let voters: Vec<u64> = self.prs.voters().filter(|&v| v != id).collect();
        for to in voters {
            self.send(Message {
                msg_type: vote_msg,
                to,
                term,
                index,
                log_term,
                context: context.clone(),
                ..Message::default()
            });
        }
    }

    pub fn step(&mut self, m: Message) -> Result<(), Error> {
        if m.term == 0 {
            // Local message.
        } else if m.term > self.term {
            if matches!(m.msg_type, MessageType::Vote | MessageType::PreVote) {
                let force = m.context == CAMPAIGN_TRANSFER;
                let in_lease =
                    self.check_quorum && self.lead != 0 && self.election_elapsed < self.election_timeout;
                if !force && in_lease {
                    // We heard from a leader within the election timeout: don't let a disruptive node depose it.
                    return Ok(());
                }
            }
            match m.msg_type {
                MessageType::PreVote => {}
                MessageType::PreVoteResp if !m.reject => {}
                MessageType::App | MessageType::Heartbeat | MessageType::Snap => {
                    self.become_follower(m.term, m.from)
                }
                _ => self.become_follower(m.term, 0),
            }
        } else if m.term < self.term {
            if (self.check_quorum || self.pre_vote)
                && matches!(m.msg_type, MessageType::Heartbeat | MessageType::App)
            {
                // A stale leader: tell it the term so it steps down instead of sitting in a partition.
                self.send(Message { msg_type: MessageType::AppResp, to: m.from, ..Message::default() });
            } else if m.msg_type == MessageType::PreVote {
                let term = self.term;
                self.send(Message {
                    msg_type: MessageType::PreVoteResp,
                    to: m.from,
                    term,
                    reject: true,
                    ..Message::default()
                });
            }
            return Ok(());
        }

        match m.msg_type {
            MessageType::Hup => {
                self.hup(false);
                Ok(())
            }
            MessageType::Vote | MessageType::PreVote => {
                self.handle_vote_request(&m);
                Ok(())
            }
            _ => match self.role {
                StateRole::Leader => self.step_leader(m),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m),
                StateRole::Follower => self.step_follower(m),
            },
        }
    }

    fn handle_vote_request(&mut self, m: &Message) {
        // Answered whatever our own view of the membership: the candidate asks only its voters and counts only
        // them, so a learner's answer never counts. But a learner promoted by a committed change it has not
        // received yet is a voter, and refusing would leave the cluster without a quorum (as etcd's raft notes).
        let resp_type =
            if m.msg_type == MessageType::Vote { MessageType::VoteResp } else { MessageType::PreVoteResp };
        let can_vote = self.vote == m.from
            || (self.vote == 0 && self.lead == 0)
            || (m.msg_type == MessageType::PreVote && m.term > self.term);
        if can_vote && self.log.is_up_to_date(m.index, m.log_term) {
            // Pre-votes are answered in the candidate's future term; real votes in ours (just adopted).
            self.send(Message { msg_type: resp_type, to: m.from, term: m.term, ..Message::default() });
            if m.msg_type == MessageType::Vote {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            let term = self.term;
            self.send(Message { msg_type: resp_type, to: m.from, term, reject: true, ..Message::default() });
        }
    }

    /// Writes the initial membership into an empty log as committed conf change entries at term 1 (etcd's
    /// Bootstrap), so that members joining later learn it by replaying the log.
    pub fn bootstrap(&mut self, cs: &ConfState) -> Result<(), Error> {
        if self.log.last_index() != 0 {
            return Err(Error::InvalidConfig("cannot bootstrap a non-empty log".into()));
        }
        self.become_follower(1, 0);
        let changes: Vec<ConfChange> = cs
            .voters
            .iter()
            .map(|&node_id| ConfChange { change_type: ConfChangeType::AddNode, node_id, context: Vec::new() })
            .chain(cs.learners.iter().map(|&node_id| ConfChange {
                change_type: ConfChangeType::AddLearnerNode,
                node_id,
                context: Vec::new(),
            }))
            .collect();
        let entries: Vec<Entry> = changes
            .iter()
            .enumerate()
            .map(|(i, cc)| Entry {
                term: 1,
                index: i as u64 + 1,
                entry_type: EntryType::ConfChange,
                data: cc.encode().into(),
            })
            .collect();
        self.log.append(&entries);
        self.log.committed = entries.len() as u64;
        for cc in &changes {
            self.apply_conf_change(cc);
        }
        Ok(())
    }

    /// Applies a committed membership change.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        let next = self.log.last_index() + 1;
        match cc.change_type {
            ConfChangeType::AddNode => match self.prs.progress.get_mut(&cc.node_id) {
                Some(pr) => pr.is_learner = false,
                None => self.prs.insert(cc.node_id, next, false),
            },
            ConfChangeType::AddLearnerNode => match self.prs.progress.get(&cc.node_id) {
                Some(pr) if !pr.is_learner => {
                    tracing::warn!(
                        node = cc.node_id,
                        "demoting a voter to learner is not supported; ignored"
                    );
                }
                Some(_) => {}
                None => self.prs.insert(cc.node_id, next, true),
            },
            ConfChangeType::RemoveNode => {
                self.prs.progress.remove(&cc.node_id);
                self.prs.votes.remove(&cc.node_id);
                if self.role == StateRole::Leader {
                    if cc.node_id == self.id {
                        // A removed leader steps down; the others elect a new one.
                        let term = self.term;
                        self.become_follower(term, 0);
                    } else {
                        if self.lead_transferee == cc.node_id {
                            self.lead_transferee = 0;
                        }
                        // The quorum shrank: entries may now be committed.
                        if self.maybe_commit() {
                            self.bcast_append();
                        }
                    }
                }
            }
            ConfChangeType::UpdateNode => {}
        }
        self.prs.conf_state()
    }
}
