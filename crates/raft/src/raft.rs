//! The Raft state machine (etcd's raft.go): one `step` per message, role-specific step functions, and the
//! leader's replication logic. It only mutates itself and queues messages; the driver does all I/O.

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

    // ----- sending -----

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

    fn send_append(&mut self, to: u64) {
        self.maybe_send_append(to, true);
    }

    /// Sends entries (or a snapshot) to `to` if its progress allows; returns whether a message went out.
    fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
        let Some(pr) = self.prs.progress.get(&to) else { return false };
        if pr.is_paused() {
            return false;
        }
        let (next, recent_active) = (pr.next, pr.recent_active);
        let term = self.log.term(next - 1);
        let ents = self.log.entries(next, self.max_msg_size);
        if let (Ok(log_term), Ok(entries)) = (term, ents) {
            if entries.is_empty() && !send_if_empty {
                return false;
            }
            let last = entries.last().map(|e| e.index);
            let commit = self.log.committed;
            let Some(pr) = self.prs.progress.get_mut(&to) else { return false };
            if let Some(last) = last {
                match pr.state {
                    ProgressState::Replicate => {
                        pr.optimistic_update(last);
                        pr.inflights.add(last);
                    }
                    ProgressState::Probe => pr.probe_sent = true,
                    ProgressState::Snapshot => {}
                }
            }
            self.send(Message {
                msg_type: MessageType::App,
                to,
                index: next - 1,
                log_term,
                entries,
                commit,
                ..Message::default()
            });
            return true;
        }
        // The entries the follower needs are compacted: send the snapshot instead.
        if !recent_active {
            return false;
        }
        let snapshot = match self.log.snapshot() {
            Ok(s) if !s.is_empty() => s,
            Ok(_) | Err(StorageError::SnapshotTemporarilyUnavailable) => return false,
            Err(e) => {
                tracing::error!(error = %e, to, "cannot read a snapshot to send");
                return false;
            }
        };
        let index = snapshot.metadata.index;
        if let Some(pr) = self.prs.progress.get_mut(&to) {
            pr.become_snapshot(index);
        }
        self.send(Message {
            msg_type: MessageType::Snap,
            to,
            snapshot: Some(snapshot),
            ..Message::default()
        });
        true
    }

    fn peers(&self) -> Vec<u64> {
        self.prs.progress.keys().copied().filter(|&id| id != self.id).collect()
    }

    fn bcast_append(&mut self) {
        for id in self.peers() {
            self.send_append(id);
        }
    }

    fn bcast_heartbeat(&mut self) {
        let ctx = self.read_only.last_pending_ctx().map(<[u8]>::to_vec).unwrap_or_default();
        self.bcast_heartbeat_with_ctx(ctx);
    }

    fn bcast_heartbeat_with_ctx(&mut self, context: Vec<u8>) {
        for id in self.peers() {
            let matched = self.prs.progress.get(&id).map_or(0, |p| p.matched);
            // Never tell a follower to commit past what it is known to have.
            let commit = matched.min(self.log.committed);
            self.send(Message {
                msg_type: MessageType::Heartbeat,
                to: id,
                commit,
                context: context.clone(),
                ..Message::default()
            });
        }
    }

    // ----- role changes -----

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

    fn append_entries(&mut self, mut entries: Vec<Entry>) {
        let mut index = self.log.last_index();
        for e in &mut entries {
            index += 1;
            e.term = self.term;
            e.index = index;
        }
        let last = self.log.append(&entries);
        if let Some(pr) = self.prs.progress.get_mut(&self.id) {
            pr.maybe_update(last);
        }
        self.maybe_commit();
    }

    fn maybe_commit(&mut self) -> bool {
        let mci = self.prs.committed();
        let committed = self.log.maybe_commit(mci, self.term);
        if committed && self.role == StateRole::Leader {
            self.release_pending_read_index_messages();
        }
        committed
    }

    // ----- ticks -----

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

    // ----- elections -----

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

    // ----- step -----

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

    fn step_leader(&mut self, m: Message) -> Result<(), Error> {
        match m.msg_type {
            MessageType::Beat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            MessageType::CheckQuorum => {
                if !self.prs.quorum_active(self.id) {
                    tracing::warn!(id = self.id, term = self.term, "stepping down: quorum not active");
                    let term = self.term;
                    self.become_follower(term, 0);
                }
                let id = self.id;
                for (&pid, pr) in &mut self.prs.progress {
                    if pid != id {
                        pr.recent_active = false;
                    }
                }
                return Ok(());
            }
            MessageType::Prop => return self.propose(m),
            MessageType::ReadIndex => {
                self.leader_read_index(m);
                return Ok(());
            }
            _ => {}
        }
        if !self.prs.progress.contains_key(&m.from) {
            tracing::debug!(from = m.from, "message from unknown member ignored");
            return Ok(());
        }
        match m.msg_type {
            MessageType::AppResp => self.handle_append_response(&m),
            MessageType::HeartbeatResp => self.handle_heartbeat_response(&m),
            MessageType::SnapStatus => {
                if let Some(pr) = self.prs.progress.get_mut(&m.from) {
                    if pr.state == ProgressState::Snapshot {
                        if m.reject {
                            pr.pending_snapshot = 0;
                        }
                        pr.become_probe();
                        // Wait for the next heartbeat response before probing again.
                        pr.probe_sent = true;
                    }
                }
            }
            MessageType::Unreachable => {
                if let Some(pr) = self.prs.progress.get_mut(&m.from) {
                    if pr.state == ProgressState::Replicate {
                        pr.become_probe();
                    }
                }
            }
            MessageType::TransferLeader => self.handle_transfer_leader(m.from),
            _ => {}
        }
        Ok(())
    }

    fn propose(&mut self, mut m: Message) -> Result<(), Error> {
        if m.entries.is_empty() {
            return Err(Error::EmptyProposal);
        }
        if !self.prs.progress.contains_key(&self.id) {
            // Removed from the cluster: cannot lead it.
            return Err(Error::ProposalDropped);
        }
        if self.lead_transferee != 0 {
            return Err(Error::ProposalDropped);
        }
        for (i, e) in m.entries.iter_mut().enumerate() {
            if e.entry_type == EntryType::ConfChange {
                if self.pending_conf_index > self.log.applied {
                    tracing::info!("conf change refused: one is already pending");
                    *e = Entry::default();
                } else {
                    self.pending_conf_index = self.log.last_index() + i as u64 + 1;
                }
            }
        }
        self.append_entries(m.entries);
        if self.quorum_is_self_alone() {
            return Ok(());
        }
        self.pending_bcast = true;
        Ok(())
    }

    pub fn has_pending_bcast(&self) -> bool {
        self.pending_bcast
    }

    /// Sends the appends owed for proposals accepted since the last Ready.
    pub fn flush_pending_bcast(&mut self) {
        if std::mem::take(&mut self.pending_bcast) && self.role == StateRole::Leader {
            self.bcast_append();
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
                data: cc.encode(),
            })
            .collect();
        self.log.append(&entries);
        self.log.committed = entries.len() as u64;
        for cc in &changes {
            self.apply_conf_change(cc);
        }
        Ok(())
    }

    fn leader_read_index(&mut self, m: Message) {
        let ctx = m.entries.first().map(|e| e.data.clone()).unwrap_or_default();
        if self.quorum_is_self_alone() {
            let index = self.log.committed;
            self.respond_read(m, index, ctx);
            return;
        }
        if !self.log.term(self.log.committed).is_ok_and(|t| t == self.term) {
            // The commit index is only trustworthy once an entry of this term committed.
            if self.pending_read_index_messages.len() < MAX_PENDING_READ_INDEX_MESSAGES {
                self.pending_read_index_messages.push(m);
            }
            return;
        }
        let index = self.log.committed;
        if self.read_only.add_request(index, m, ctx.clone(), self.id) {
            self.bcast_heartbeat_with_ctx(ctx);
        }
    }

    fn release_pending_read_index_messages(&mut self) {
        if !self.log.term(self.log.committed).is_ok_and(|t| t == self.term) {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index_messages) {
            self.leader_read_index(m);
        }
    }

    fn respond_read(&mut self, req: Message, index: u64, ctx: Vec<u8>) {
        if req.from == 0 || req.from == self.id {
            self.read_states.push(ReadState { index, request_ctx: ctx });
        } else {
            self.send(Message {
                msg_type: MessageType::ReadIndexResp,
                to: req.from,
                index,
                entries: req.entries,
                ..Message::default()
            });
        }
    }

    fn handle_append_response(&mut self, m: &Message) {
        let last_index = self.log.last_index();
        let Some(pr) = self.prs.progress.get_mut(&m.from) else { return };
        pr.recent_active = true;
        if m.reject {
            let mut next_probe = m.reject_hint;
            if m.log_term > 0 {
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term);
            }
            let Some(pr) = self.prs.progress.get_mut(&m.from) else { return };
            if pr.maybe_decr_to(m.index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(m.from);
            }
            return;
        }
        let old_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched >= pr.pending_snapshot => {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.inflights.free_le(m.index),
            ProgressState::Snapshot => {}
        }
        let matched = pr.matched;
        if self.maybe_commit() {
            self.bcast_append();
        } else if old_paused {
            self.send_append(m.from);
        }
        while self.maybe_send_append(m.from, false) {}
        if m.from == self.lead_transferee && matched == last_index {
            self.send(Message { msg_type: MessageType::TimeoutNow, to: m.from, ..Message::default() });
        }
    }

    fn handle_heartbeat_response(&mut self, m: &Message) {
        let last_index = self.log.last_index();
        let Some(pr) = self.prs.progress.get_mut(&m.from) else { return };
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.state == ProgressState::Replicate && pr.inflights.full() {
            pr.inflights.free_first_one();
        }
        if pr.matched < last_index {
            self.send_append(m.from);
        }
        if m.context.is_empty() {
            return;
        }
        if self.read_only.recv_ack(m.from, &m.context).is_none() || !self.read_confirmed(&m.context) {
            return;
        }
        for rs in self.read_only.advance(&m.context) {
            let ctx = rs.req.entries.first().map(|e| e.data.clone()).unwrap_or_default();
            self.respond_read(rs.req, rs.index, ctx);
        }
    }

    /// A quorum of voters acknowledged the heartbeat round of this read: we were leader when it arrived.
    fn read_confirmed(&self, ctx: &[u8]) -> bool {
        let Some(acks) = self.read_only.acks(ctx) else { return false };
        let voters: Vec<u64> = self.prs.voters().collect();
        voters.iter().filter(|v| acks.contains(v)).count() > voters.len() / 2
    }

    fn handle_transfer_leader(&mut self, transferee: u64) {
        let Some(pr) = self.prs.progress.get(&transferee) else { return };
        if pr.is_learner {
            tracing::debug!(transferee, "cannot transfer leadership to a learner");
            return;
        }
        if self.lead_transferee == transferee || transferee == self.id {
            return;
        }
        let matched = pr.matched;
        self.election_elapsed = 0;
        self.lead_transferee = transferee;
        if matched == self.log.last_index() {
            self.send(Message { msg_type: MessageType::TimeoutNow, to: transferee, ..Message::default() });
        } else {
            self.send_append(transferee);
        }
    }

    fn step_candidate(&mut self, m: Message) -> Result<(), Error> {
        let my_resp = if self.role == StateRole::PreCandidate {
            MessageType::PreVoteResp
        } else {
            MessageType::VoteResp
        };
        match m.msg_type {
            MessageType::Prop => return Err(Error::ProposalDropped),
            MessageType::App => {
                self.become_follower(m.term, m.from);
                self.handle_append(&m);
            }
            MessageType::Heartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(&m);
            }
            MessageType::Snap => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            t if t == my_resp => {
                self.prs.record_vote(m.from, !m.reject);
                match self.prs.tally_votes() {
                    VoteResult::Won => {
                        if self.role == StateRole::PreCandidate {
                            self.campaign(CampaignType::Election);
                        } else {
                            self.become_leader();
                            self.bcast_append();
                        }
                    }
                    VoteResult::Lost => {
                        let term = self.term;
                        self.become_follower(term, 0);
                    }
                    VoteResult::Pending => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn step_follower(&mut self, mut m: Message) -> Result<(), Error> {
        match m.msg_type {
            MessageType::Prop => {
                if self.lead == 0 {
                    return Err(Error::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::App => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append(&m);
            }
            MessageType::Heartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(&m);
            }
            MessageType::Snap => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m);
            }
            MessageType::TransferLeader if self.lead != 0 => {
                m.to = self.lead;
                self.send(m);
            }
            MessageType::TimeoutNow => {
                // The leader handed over: campaign now, even inside a lease.
                self.hup(true);
            }
            MessageType::ReadIndex => {
                if self.lead == 0 {
                    return Err(Error::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::ReadIndexResp => {
                let ctx = m.entries.first().map(|e| e.data.clone()).unwrap_or_default();
                self.read_states.push(ReadState { index: m.index, request_ctx: ctx });
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_append(&mut self, m: &Message) {
        if m.index < self.log.committed {
            let committed = self.log.committed;
            self.send(Message {
                msg_type: MessageType::AppResp,
                to: m.from,
                index: committed,
                ..Message::default()
            });
            return;
        }
        if let Some(last) = self.log.maybe_append(m.index, m.log_term, m.commit, &m.entries) {
            self.send(Message {
                msg_type: MessageType::AppResp,
                to: m.from,
                index: last,
                ..Message::default()
            });
            return;
        }
        // Tell the leader where our log could match, skipping whole terms (etcd's fast back-off).
        let hint = self.log.find_conflict_by_term(m.index.min(self.log.last_index()), m.log_term);
        let hint_term = self.log.term(hint).unwrap_or(0);
        self.send(Message {
            msg_type: MessageType::AppResp,
            to: m.from,
            index: m.index,
            reject: true,
            reject_hint: hint,
            log_term: hint_term,
            ..Message::default()
        });
    }

    fn handle_heartbeat(&mut self, m: &Message) {
        self.log.commit_to(m.commit.min(self.log.last_index()));
        self.send(Message {
            msg_type: MessageType::HeartbeatResp,
            to: m.from,
            context: m.context.clone(),
            ..Message::default()
        });
    }

    fn handle_snapshot(&mut self, m: Message) {
        let Some(snapshot) = m.snapshot else { return };
        let (index, term) = (snapshot.metadata.index, snapshot.metadata.term);
        let resp_index = if self.restore(snapshot) {
            tracing::info!(id = self.id, index, term, "restored snapshot");
            self.log.last_index()
        } else {
            self.log.committed
        };
        self.send(Message {
            msg_type: MessageType::AppResp,
            to: m.from,
            index: resp_index,
            ..Message::default()
        });
    }

    /// Installs a snapshot if it is newer than what we have; false if ignored.
    fn restore(&mut self, s: Snapshot) -> bool {
        if s.metadata.index <= self.log.committed {
            return false;
        }
        if self.role != StateRole::Follower {
            // Only a follower installs snapshots; anything else would be a bug in the sender.
            let term = self.term + 1;
            self.become_follower(term, 0);
            return false;
        }
        let cs = &s.metadata.conf_state;
        if !cs.voters.contains(&self.id) && !cs.learners.contains(&self.id) {
            // Taken anyway: a snapshot made before this node was added is still the state it must start from,
            // and the entries after it add the node exactly as they did on the leader. Until then the node is
            // no member: it neither votes nor campaigns.
            tracing::info!(
                id = self.id,
                index = s.metadata.index,
                "installing a snapshot from before this node joined"
            );
        }
        if self.log.match_term(s.metadata.index, s.metadata.term) {
            // We already have the entries: just fast-forward the commit index.
            self.log.commit_to(s.metadata.index);
            return false;
        }
        let next = s.metadata.index + 1;
        self.prs = ProgressTracker::from_conf_state(cs, next, self.max_inflight);
        if let Some(pr) = self.prs.progress.get_mut(&self.id) {
            pr.matched = s.metadata.index;
        }
        self.log.restore(s);
        true
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
