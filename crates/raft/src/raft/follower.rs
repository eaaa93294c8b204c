//! Candidates and followers: counting votes, taking appends, heartbeats and snapshots from the leader, and
//! forwarding proposals, reads and transfer requests to it.

use super::*;

impl<S: Storage> Raft<S> {
    pub(super) fn step_candidate(&mut self, m: Message) -> Result<(), Error> {
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

    pub(super) fn step_follower(&mut self, mut m: Message) -> Result<(), Error> {
        match m.msg_type {
            // Proposals and reads go to the leader; without one they are dropped and the caller retries.
            MessageType::Prop | MessageType::ReadIndex => {
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
            MessageType::ReadIndexResp => {
                let ctx = m.entries.first().map(|e| e.data.to_vec()).unwrap_or_default();
                self.read_states.push(ReadState { index: m.index, request_ctx: ctx });
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn handle_append(&mut self, m: &Message) {
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

    pub(super) fn handle_heartbeat(&mut self, m: &Message) {
        self.log.commit_to(m.commit.min(self.log.last_index()));
        self.send(Message {
            msg_type: MessageType::HeartbeatResp,
            to: m.from,
            context: m.context.clone(),
            ..Message::default()
        });
    }

    pub(super) fn handle_snapshot(&mut self, m: Message) {
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
    pub(super) fn restore(&mut self, s: Snapshot) -> bool {
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
}
