//! The driver's interface (etcd's rawnode.go): feed time and messages in, take a [`Ready`] out, do what it says,
//! then [`RawNode::advance`].
//!
//! For every Ready, in this order: persist `snapshot`, `entries` and `hard_state` (one fsync when `must_sync`);
//! send `messages`; apply `committed_entries`; call `advance`. Persisting before sending is what lets a node
//! promise, in a message, something it will remember after a crash.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{
    ConfChange, ConfState, Entry, EntryType, HardState, Message, MessageType, ReadState, Snapshot, SoftState,
};
use crate::Error;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ready {
    /// Set when leader or role changed.
    pub soft_state: Option<SoftState>,
    /// Set when term, vote or commit changed: persist it.
    pub hard_state: Option<HardState>,
    /// Linearizable reads confirmed: serve each once `applied >= index`.
    pub read_states: Vec<ReadState>,
    /// Append to stable storage before sending messages.
    pub entries: Vec<Entry>,
    /// Install (persist and apply) before anything else.
    pub snapshot: Option<Snapshot>,
    /// Apply to the state machine, after persisting `entries`.
    pub committed_entries: Vec<Entry>,
    /// Send after persisting.
    pub messages: Vec<Message>,
    /// Whether `entries`/`hard_state` must be fsynced before sending.
    pub must_sync: bool,
}

/// What the leader knows of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    pub matched: u64,
    pub next: u64,
    pub state: ProgressState,
    pub recent_active: bool,
    pub is_learner: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub hard_state: HardState,
    pub soft_state: SoftState,
    pub applied: u64,
    pub last_index: u64,
    /// Filled on the leader only.
    pub progress: BTreeMap<u64, PeerStatus>,
    pub lead_transferee: u64,
    pub conf_state: ConfState,
}

#[derive(Debug)]
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    max_committed_size: u64,
}

impl<S: Storage> RawNode<S> {
    /// A node over `storage`: a new one starts from the membership in `storage.initial_state()` (e.g.
    /// [`MemStorage::new_with_conf_state`](crate::MemStorage::new_with_conf_state)), a restarted one from its
    /// persisted hard state, log and snapshot.
    pub fn new(config: &Config, storage: S) -> Result<Self, Error> {
        let raft = Raft::new(config, storage)?;
        let prev_hard_state = raft.hard_state();
        Ok(RawNode {
            prev_soft_state: raft.soft_state(),
            prev_hard_state,
            raft,
            max_committed_size: config.max_committed_size_per_ready,
        })
    }

    /// Starts a brand-new cluster member with `conf_state` as the initial membership, written into the log as
    /// committed conf change entries (they come out of the first Ready to persist and apply, as any entry).
    pub fn bootstrap(&mut self, conf_state: &ConfState) -> Result<(), Error> {
        self.raft.bootstrap(conf_state)
    }

    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election now instead of waiting for the election timeout.
    pub fn campaign(&mut self) -> Result<(), Error> {
        self.raft.step(Message { msg_type: MessageType::Hup, ..Message::default() })
    }

    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), Error> {
        let id = self.raft.id;
        self.raft.step(Message {
            msg_type: MessageType::Prop,
            from: id,
            entries: vec![Entry { data: data.into(), ..Entry::default() }],
            ..Message::default()
        })
    }

    pub fn propose_conf_change(&mut self, cc: &ConfChange) -> Result<(), Error> {
        let id = self.raft.id;
        self.raft.step(Message {
            msg_type: MessageType::Prop,
            from: id,
            entries: vec![Entry {
                entry_type: EntryType::ConfChange,
                data: cc.encode().into(),
                ..Entry::default()
            }],
            ..Message::default()
        })
    }

    /// Applies a committed conf change (call when its entry is applied); returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        self.raft.apply_conf_change(cc)
    }

    /// Feeds a message from a peer. Malformed or misdirected messages are refused, never acted on.
    pub fn step(&mut self, m: Message) -> Result<(), Error> {
        if m.msg_type.is_local() {
            return Err(Error::StepLocalMsg);
        }
        if m.from == 0 || (m.to != 0 && m.to != self.raft.id) {
            return Err(Error::MalformedMessage(format!(
                "from {} to {} at node {}",
                m.from, m.to, self.raft.id
            )));
        }
        // A response from a node we do not track answers nothing we asked. Other messages are taken even from a
        // sender missing from our (possibly stale) membership: a node that missed a conf change must still hear
        // the leader that tells it about it. Dropping messages of removed members is the transport's job.
        if m.msg_type.is_response() && !self.raft.prs.progress.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound);
        }
        validate_entries(&m)?;
        self.raft.step(m)
    }

    /// Requests a linearizable read; a [`ReadState`] with the same `ctx` comes out in a later Ready.
    pub fn read_index(&mut self, ctx: Vec<u8>) {
        let m = Message {
            msg_type: MessageType::ReadIndex,
            entries: vec![Entry { data: ctx.into(), ..Entry::default() }],
            ..Message::default()
        };
        if let Err(e) = self.raft.step(m) {
            tracing::debug!(error = %e, "read index dropped");
        }
    }

    /// Asks the leader to hand leadership to `transferee` (etcd's MoveLeader).
    pub fn transfer_leader(&mut self, transferee: u64) {
        let m = Message { msg_type: MessageType::TransferLeader, from: transferee, ..Message::default() };
        if let Err(e) = self.raft.step(m) {
            tracing::debug!(error = %e, "transfer leader dropped");
        }
    }

    pub fn report_unreachable(&mut self, id: u64) {
        let m = Message { msg_type: MessageType::Unreachable, from: id, ..Message::default() };
        if let Err(e) = self.raft.step(m) {
            tracing::debug!(error = %e, "unreachable report dropped");
        }
    }

    pub fn report_snapshot(&mut self, id: u64, failed: bool) {
        let m = Message { msg_type: MessageType::SnapStatus, from: id, reject: failed, ..Message::default() };
        if let Err(e) = self.raft.step(m) {
            tracing::debug!(error = %e, "snapshot report dropped");
        }
    }

    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.soft_state() != self.prev_soft_state
            || (r.hard_state() != self.prev_hard_state && !r.hard_state().is_empty())
            || r.log.unstable_snapshot().is_some()
            || !r.log.unstable_entries().is_empty()
            || !r.msgs.is_empty()
            || r.has_pending_bcast()
            || !r.read_states.is_empty()
            || r.log.has_next_committed()
    }

    /// What to do now. Call [`RawNode::advance`] with it before the next call.
    pub fn ready(&mut self) -> Ready {
        self.raft.flush_pending_bcast();
        let soft = self.raft.soft_state();
        let hard = self.raft.hard_state();
        let soft_state = (soft != self.prev_soft_state).then_some(soft);
        if soft_state.is_some() {
            self.prev_soft_state = soft;
        }
        let hard_state = (hard != self.prev_hard_state && !hard.is_empty()).then_some(hard);
        let entries = self.raft.log.unstable_entries().to_vec();
        let must_sync = !entries.is_empty()
            || hard.term != self.prev_hard_state.term
            || hard.vote != self.prev_hard_state.vote;
        Ready {
            soft_state,
            hard_state,
            read_states: std::mem::take(&mut self.raft.read_states),
            snapshot: self.raft.log.unstable_snapshot().cloned(),
            committed_entries: self.raft.log.next_committed(self.max_committed_size),
            messages: std::mem::take(&mut self.raft.msgs),
            entries,
            must_sync,
        }
    }

    /// The Ready was handled: its entries are persisted, its committed entries applied.
    pub fn advance(&mut self, rd: Ready) {
        if let Some(hs) = rd.hard_state {
            self.prev_hard_state = hs;
        }
        let log = &mut self.raft.log;
        if let Some(last) = rd.committed_entries.last() {
            log.applied_to(last.index);
        } else if let Some(s) = &rd.snapshot {
            log.applied_to(s.metadata.index);
        }
        if let Some(last) = rd.entries.last() {
            log.stable_to(last.index, last.term);
        }
        if let Some(s) = &rd.snapshot {
            log.stable_snap_to(s.metadata.index);
        }
    }

    pub fn status(&self) -> Status {
        let r = &self.raft;
        let progress = if r.role == crate::StateRole::Leader {
            r.prs
                .progress
                .iter()
                .map(|(&id, p)| {
                    (
                        id,
                        PeerStatus {
                            matched: p.matched,
                            next: p.next,
                            state: p.state,
                            recent_active: p.recent_active,
                            is_learner: p.is_learner,
                        },
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Status {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.log.applied,
            last_index: r.log.last_index(),
            progress,
            lead_transferee: r.lead_transferee,
            conf_state: r.prs.conf_state(),
        }
    }

    pub fn storage(&self) -> &S {
        &self.raft.log.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.log.storage
    }
}

/// Entries in an append must follow its (index, log_term) consecutively with non-decreasing terms no newer
/// than the message: anything else could corrupt the log.
fn validate_entries(m: &Message) -> Result<(), Error> {
    if m.msg_type != MessageType::App {
        return Ok(());
    }
    let mut prev_term = m.log_term;
    for (i, e) in m.entries.iter().enumerate() {
        if e.index != m.index + 1 + i as u64 || e.term < prev_term || e.term > m.term {
            return Err(Error::MalformedMessage(format!(
                "append from {} at index {} has entry {}/{} out of sequence",
                m.from, m.index, e.index, e.term
            )));
        }
        prev_term = e.term;
    }
    Ok(())
}
