//! The leader: replicating the log to each follower within its flow-control state, committing by quorum, taking
//! proposals (batched into one append per follower per Ready), confirming reads, handing over leadership.

use super::*;

impl<S: Storage> Raft<S> {
    pub(super) fn send_append(&mut self, to: u64) {
        self.maybe_send_append(to, true);
    }

    /// Sends entries (or a snapshot) to `to` if its progress allows; returns whether a message went out.
    pub(super) fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
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

    pub(super) fn peers(&self) -> Vec<u64> {
        self.prs.progress.keys().copied().filter(|&id| id != self.id).collect()
    }

    pub(super) fn bcast_append(&mut self) {
        for id in self.peers() {
            self.send_append(id);
        }
    }

    pub(super) fn bcast_heartbeat(&mut self) {
        let ctx = self.read_only.last_pending_ctx().map(<[u8]>::to_vec).unwrap_or_default();
        self.bcast_heartbeat_with_ctx(ctx);
    }

    pub(super) fn bcast_heartbeat_with_ctx(&mut self, context: Vec<u8>) {
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

    pub(super) fn append_entries(&mut self, mut entries: Vec<Entry>) {
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

    pub(super) fn maybe_commit(&mut self) -> bool {
        let mci = self.prs.committed();
        let committed = self.log.maybe_commit(mci, self.term);
        if committed && self.role == StateRole::Leader {
            self.release_pending_read_index_messages();
        }
        committed
    }

    pub(super) fn step_leader(&mut self, m: Message) -> Result<(), Error> {
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

    pub(super) fn propose(&mut self, mut m: Message) -> Result<(), Error> {
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

    pub(super) fn leader_read_index(&mut self, m: Message) {
        let ctx = m.entries.first().map(|e| e.data.to_vec()).unwrap_or_default();
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

    pub(super) fn release_pending_read_index_messages(&mut self) {
        if !self.log.term(self.log.committed).is_ok_and(|t| t == self.term) {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index_messages) {
            self.leader_read_index(m);
        }
    }

    pub(super) fn respond_read(&mut self, req: Message, index: u64, ctx: Vec<u8>) {
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

    pub(super) fn handle_append_response(&mut self, m: &Message) {
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

    pub(super) fn handle_heartbeat_response(&mut self, m: &Message) {
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
            let ctx = rs.req.entries.first().map(|e| e.data.to_vec()).unwrap_or_default();
            self.respond_read(rs.req, rs.index, ctx);
        }
    }

    /// A quorum of voters acknowledged the heartbeat round of this read: we were leader when it arrived.
    pub(super) fn read_confirmed(&self, ctx: &[u8]) -> bool {
        let Some(acks) = self.read_only.acks(ctx) else { return false };
        let voters: Vec<u64> = self.prs.voters().collect();
        voters.iter().filter(|v| acks.contains(v)).count() > voters.len() / 2
    }

    pub(super) fn handle_transfer_leader(&mut self, transferee: u64) {
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
}
