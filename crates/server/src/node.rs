//! The raft node loop: one thread owns the RawNode, the WAL and the write side of the store, and takes commands
//! over a bounded channel (proposals, read-index requests, ticks). Per turn it takes up to [`BATCH`] commands,
//! then handles Ready by etcd's contract: append entries and hard state to the WAL with one fsync (group
//! commit), send messages, apply committed entries in one backend transaction with the consistent index, answer
//! the waiters, advance.
//!
//! A plain thread rather than a task: every turn does blocking disk I/O (fsync, redb commit), which must not
//! stall the async runtime serving clients. A WAL or backend failure is fatal: the member stops, every waiter is
//! answered "server stopped", and nothing unpersisted is ever acknowledged.
//!
//! `open` starts the loop from a new or existing WAL; `cluster` holds its membership, leadership and
//! snapshot-install duties.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use cairn_api::cairnpb::{internal_request::Request, InternalRequest};
use cairn_api::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseCheckpointResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, TxnResponse,
};
use cairn_api::EtcdError;
use cairn_mvcc::{MvccError, Store};
use cairn_raft::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, MemStorage, Message, RawNode, Storage,
};
use cairn_storage::wal::{self, SnapshotMarker};
use cairn_storage::Wal;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::ServerError;
use crate::lease::{self, Leases};
use crate::membership::{self, Membership};
use crate::transport::{self, Transport};

mod cluster;
mod open;

use open::{encode_conf_state, to_wal_entry};
pub use open::{start, Started};

/// Commands taken per loop turn before handling Ready: bounds latency while batching proposals into one fsync.
pub const BATCH: usize = 1024;

/// The result of applying one write.
#[derive(Debug)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(LeaseCheckpointResponse),
    Alarm(AlarmResponse),
}

pub type ApplyResult = Result<Applied, EtcdError>;

pub enum Command {
    Propose {
        request: Request,
        reply: oneshot::Sender<ApplyResult>,
    },
    /// Answered once the store has applied everything committed when the read was confirmed.
    ReadIndex {
        reply: oneshot::Sender<Result<(), EtcdError>>,
    },
    Tick,
    /// Raft messages from peers.
    Step(Vec<Message>),
    /// The transport could not deliver to this member.
    Unreachable(u64),
    /// A snapshot stream to `to` ended (raft's report_snapshot).
    SnapshotStatus {
        to: u64,
        failed: bool,
    },
    /// A snapshot received from the leader, staged at `path`, with its raft message.
    Snapshot {
        message: Message,
        path: PathBuf,
    },
    /// A membership change (the context is filled in by the loop); answered once applied. Promoting a learner
    /// (AddNode of a learner) is refused unless this member leads and the learner has caught up, and then with
    /// `refusal` if the caller's strict reconfiguration check failed (etcd checks in that order).
    ConfChange {
        change: ConfChange,
        member: Option<cairn_api::etcdserverpb::Member>,
        refusal: Option<EtcdError>,
        reply: oneshot::Sender<Result<(), EtcdError>>,
    },
    /// Hand leadership to this member (MoveLeader).
    TransferLeader(u64),
    /// A peer says this member was removed from the cluster: stop.
    Removed,
    /// Stop after this turn: make the backend durable and end the loop (connections may outlive the server).
    Shutdown,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Propose { .. } => "Propose",
            Command::ReadIndex { .. } => "ReadIndex",
            Command::Tick => "Tick",
            Command::Step(_) => "Step",
            Command::Unreachable(_) => "Unreachable",
            Command::SnapshotStatus { .. } => "SnapshotStatus",
            Command::Snapshot { .. } => "Snapshot",
            Command::ConfChange { .. } => "ConfChange",
            Command::TransferLeader(_) => "TransferLeader",
            Command::Removed => "Removed",
            Command::Shutdown => "Shutdown",
        })
    }
}

/// State the gRPC side reads without asking the loop.
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<Store>,
    pub member_id: u64,
    pub cluster_id: u64,
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub raft_index: AtomicU64,
    pub applied_index: AtomicU64,
    pub stopped: AtomicBool,
    /// Members with names and URLs, as of the applied index.
    pub membership: RwLock<Membership>,
    pub is_learner: AtomicBool,
    /// Whether this member leads: changes on becoming and on losing leadership (leader-only duties such as
    /// lease expiry subscribe with `is_leader.clone()`; the leader's id is in `leader`).
    pub is_leader: watch::Receiver<bool>,
    /// The lessor: applied to here in log order, read and renewed by the Lease service.
    pub leases: Arc<Leases>,
    /// Raised alarms and the backend quota: applied to here in log order, checked at the gRPC edge.
    pub alarms: Arc<crate::alarm::Alarms>,
}

impl Shared {
    pub fn members(&self) -> Membership {
        self.membership.read().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Everything the loop needs to start.
#[derive(Debug)]
pub struct NodeSetup {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The members of a new cluster (bootstrapped into raft), or of the cluster this member joins.
    pub membership: Membership,
    /// How this member starts when it has no WAL: bootstrap a new cluster, or join an existing one (raft
    /// then learns everything from the leader).
    pub join: bool,
    pub wal_dir: std::path::PathBuf,
    pub backend_path: std::path::PathBuf,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    /// Entries kept behind a raft snapshot for slow followers (etcd's SnapshotCatchUpEntries).
    pub snapshot_catchup_entries: u64,
    pub max_request_bytes: usize,
    pub lease_config: cairn_lease::LessorConfig,
    /// `--quota-backend-bytes` as given (0: etcd's default, negative: no quota).
    pub quota_backend_bytes: i64,
}

struct Node {
    raw: RawNode<MemStorage>,
    wal: Wal,
    shared: Arc<Shared>,
    transport: Transport,
    backend_path: PathBuf,
    conf_state: ConfState,
    membership: Membership,
    is_leader: watch::Sender<bool>,
    waiters: HashMap<u64, oneshot::Sender<ApplyResult>>,
    conf_waiters: HashMap<u64, oneshot::Sender<Result<(), EtcdError>>>,
    /// Waiters proposed before a leader change, by the new leader's term: once an entry of that term is
    /// applied, every entry of an earlier term that will ever commit has been applied, so theirs was lost.
    fences: VecDeque<(u64, Vec<u64>)>,
    /// Received snapshot files by raft index, until raft installs (or ignores) them.
    snapshot_files: BTreeMap<u64, PathBuf>,
    /// A peer told us we were removed from the cluster: the loop stops.
    removed: bool,
    /// Reads waiting for their read index to be confirmed, by context.
    reads_pending: HashMap<Vec<u8>, Vec<oneshot::Sender<Result<(), EtcdError>>>>,
    /// Confirmed reads waiting for the store to apply up to their index.
    reads_confirmed: BTreeMap<u64, Vec<oneshot::Sender<Result<(), EtcdError>>>>,
    /// Reads received this turn: one read index serves them all.
    reads_batch: Vec<oneshot::Sender<Result<(), EtcdError>>>,
    next_id: u64,
    applied: u64,
    snapshot_index: u64,
    snapshot_count: u64,
    snapshot_catchup_entries: u64,
    /// A lone voter campaigns as soon as its membership is applied instead of waiting an election timeout.
    campaign_now: bool,
}

impl Node {
    fn run(mut self, mut rx: mpsc::Receiver<Command>, fatal: oneshot::Sender<String>) {
        let result = self.process_ready().and_then(|()| {
            if self.campaign_now {
                // Applying the membership (the first Ready) makes the node promotable.
                if let Err(e) = self.raw.campaign() {
                    tracing::warn!(error = %e, "could not campaign at start; waiting for the election timeout");
                }
                self.process_ready()?;
            }
            let mut stopping = false;
            while let Some(cmd) = rx.blocking_recv() {
                stopping |= self.handle(cmd);
                for _ in 1..BATCH {
                    match rx.try_recv() {
                        Ok(cmd) => stopping |= self.handle(cmd),
                        Err(_) => break,
                    }
                }
                self.flush_reads();
                self.process_ready()?;
                if self.removed {
                    return Err(ServerError::Fatal(transport::REMOVED.into()));
                }
                if stopping {
                    break;
                }
            }
            // Nothing unapplied is acknowledged past this point; anyone still waiting is told the server stopped.
            self.fail_all(EtcdError::Stopped);
            // A clean stop: make the backend durable so a restart replays little.
            self.shared.store.begin_batch().commit(true).map_err(|e| ServerError::Fatal(format!("backend: {e}")))
        });
        if let Err(e) = result {
            let msg = e.to_string();
            tracing::error!(error = %msg, "stopping the member");
            self.shared.stopped.store(true, Ordering::SeqCst);
            self.fail_all(EtcdError::Stopped);
            let _ = fatal.send(msg);
        }
    }

    /// Takes one command; true if it asks the loop to stop.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Shutdown => return true,
            Command::Tick => self.raw.tick(),
            Command::Propose { request, reply } => {
                self.next_id += 1;
                let id = self.next_id;
                let data = InternalRequest { id, request: Some(request) }.encode_to_vec();
                match self.raw.propose(data) {
                    Ok(()) => {
                        self.waiters.insert(id, reply);
                    }
                    Err(_) => {
                        let _ = reply.send(Err(EtcdError::NoLeader));
                    }
                }
            }
            Command::ReadIndex { reply } => self.reads_batch.push(reply),
            Command::Step(messages) => {
                for m in messages {
                    if let Err(e) = self.raw.step(m) {
                        tracing::debug!(error = %e, "raft message refused");
                    }
                }
            }
            Command::Unreachable(id) => self.raw.report_unreachable(id),
            Command::SnapshotStatus { to, failed } => self.raw.report_snapshot(to, failed),
            Command::Snapshot { message, path } => {
                if let Some(s) = &message.snapshot {
                    self.snapshot_files.insert(s.metadata.index, path);
                }
                if let Err(e) = self.raw.step(message) {
                    tracing::warn!(error = %e, "snapshot message refused");
                }
            }
            Command::ConfChange { change, member, refusal, reply } => {
                self.propose_conf_change(change, member, refusal, reply)
            }
            Command::TransferLeader(to) => self.raw.transfer_leader(to),
            Command::Removed => self.removed = true,
        }
        false
    }

    fn flush_reads(&mut self) {
        if self.reads_batch.is_empty() {
            return;
        }
        if self.shared.leader.load(Ordering::SeqCst) == 0 {
            for w in self.reads_batch.drain(..) {
                let _ = w.send(Err(EtcdError::NoLeader));
            }
            return;
        }
        self.next_id += 1;
        let ctx = self.next_id.to_be_bytes().to_vec();
        self.raw.read_index(ctx.clone());
        self.reads_pending.insert(ctx, std::mem::take(&mut self.reads_batch));
    }

    fn process_ready(&mut self) -> Result<(), ServerError> {
        while self.raw.has_ready() {
            let mut rd = self.raw.ready();
            if let Some(ss) = rd.soft_state {
                self.leader_changed(ss);
            }
            if let Some(snapshot) = &rd.snapshot {
                self.install_snapshot(snapshot)?;
            }
            // The leader replicates while it writes its own log (Raft thesis 10.2.1, as etcd does): it counts
            // its own entries toward a commit only through the followers' answers, which this loop steps after
            // the fsync below. Followers and candidates persist first: their answers promise the state is on disk.
            if *self.is_leader.borrow() {
                self.send(std::mem::take(&mut rd.messages));
            }
            // Committed entries this member made durable in an earlier turn are applied before this turn's
            // fsync, so their answers do not wait on a disk write they do not need (etcd applies beside its WAL
            // write). The rest (a lone voter's, committed as they are appended) wait for the fsync below.
            let early = if rd.snapshot.is_none() { self.durable_prefix(&rd) } else { 0 };
            self.apply(&rd.committed_entries[..early])?;
            let hs = rd.hard_state.map(|h| wal::HardState { term: h.term, vote: h.vote, commit: h.commit });
            if !rd.entries.is_empty() || hs.is_some() {
                self.wal.save(hs.as_ref(), rd.entries.iter().map(to_wal_entry))?;
                // A hard state that only moves the commit index waits for the next sync (etcd's MustSync): a
                // lost commit index is learnt again from the leader, and a restart takes it from the backend.
                if rd.must_sync {
                    self.wal.sync()?;
                }
            }
            let storage = self.raw.storage_mut();
            storage.append(&rd.entries).map_err(|e| ServerError::Fatal(format!("raft log: {e}")))?;
            if let Some(h) = rd.hard_state {
                storage.set_hard_state(h);
                self.shared.term.store(h.term, Ordering::SeqCst);
            }
            self.send(std::mem::take(&mut rd.messages));
            self.apply(&rd.committed_entries[early..])?;
            for rs in &rd.read_states {
                if let Some(waiters) = self.reads_pending.remove(&rs.request_ctx) {
                    self.reads_confirmed.entry(rs.index).or_default().extend(waiters);
                }
            }
            self.release_reads();
            self.raw.advance(rd);
            self.shared.raft_index.store(self.raw.status().last_index, Ordering::SeqCst);
            self.maybe_snapshot()?;
        }
        Ok(())
    }

    /// How many of the Ready's committed entries are already in the durable log: at or below the persisted
    /// last index, and below the first entry this Ready writes (which may replace uncommitted ones).
    fn durable_prefix(&self, rd: &cairn_raft::Ready) -> usize {
        let persisted = self.raw.storage().last_index().unwrap_or(0);
        let durable = rd.entries.first().map_or(persisted, |e| persisted.min(e.index.saturating_sub(1)));
        rd.committed_entries.partition_point(|e| e.index <= durable)
    }

    /// Hands messages to the transport, which never blocks; what it could not queue is reported to raft.
    fn send(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let (unreachable, snapshots_failed) = self.transport.send(messages);
        for id in unreachable {
            self.raw.report_unreachable(id);
        }
        for id in snapshots_failed {
            self.raw.report_snapshot(id, true);
        }
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<(), ServerError> {
        let Some(last) = entries.last() else { return Ok(()) };
        let store = Arc::clone(&self.shared.store);
        // Entries an installed snapshot already holds are not applied twice (etcd's consistent index check).
        let already_applied = store.consistent_index();
        let mut batch = store.begin_batch();
        let mut quota = self.shared.alarms.begin_apply();
        let mut results = Vec::new();
        let mut conf_applied = Vec::new();
        let mut removed_self = false;
        for e in entries {
            match e.entry_type {
                EntryType::Normal if e.data.is_empty() || e.index <= already_applied => {}
                EntryType::Normal => {
                    let req = match InternalRequest::decode(&e.data[..]) {
                        Ok(r) => r,
                        Err(err) => {
                            tracing::error!(index = e.index, error = %err, "undecodable entry skipped");
                            continue;
                        }
                    };
                    // The applier in place (capped, corrupt) may refuse the request before it is applied.
                    if let Some(refused) = quota.admit(req.id, req.request.as_ref()) {
                        results.push((req.id, Err(refused)));
                        continue;
                    }
                    let leases = &self.shared.leases;
                    let result = match req.request {
                        Some(Request::Put(p)) => {
                            lease::with_leases(leases, &mut batch, |b, l| b.put(&p, l)).map(Applied::Put)
                        }
                        Some(Request::DeleteRange(d)) => {
                            lease::with_leases(leases, &mut batch, |b, _| b.delete_range(&d))
                                .map(Applied::DeleteRange)
                        }
                        Some(Request::Txn(t)) => {
                            lease::with_leases(leases, &mut batch, |b, l| b.txn(&t, l)).map(Applied::Txn)
                        }
                        Some(Request::Compaction(c)) => batch.compact(c.revision).map(Applied::Compaction),
                        Some(Request::LeaseGrant(g)) => {
                            results.push((req.id, lease::apply_grant(leases, &mut batch, &g)));
                            continue;
                        }
                        Some(Request::LeaseRevoke(r)) => {
                            results.push((req.id, lease::apply_revoke(leases, &mut batch, &r)?));
                            continue;
                        }
                        Some(Request::LeaseCheckpoint(c)) => {
                            results.push((req.id, Ok(lease::apply_checkpoint(leases, &mut batch, &c))));
                            continue;
                        }
                        Some(Request::Alarm(a)) => {
                            let resp = self.shared.alarms.apply(&mut batch, &a);
                            results.push((req.id, Ok(Applied::Alarm(resp))));
                            continue;
                        }
                        None => {
                            results.push((req.id, Err(EtcdError::NotCapable)));
                            continue;
                        }
                    };
                    let result = match result {
                        Ok(r) => Ok(r),
                        Err(MvccError::Backend(b)) => {
                            return Err(ServerError::Fatal(format!("backend: {b}")))
                        }
                        Err(MvccError::Corrupt(c)) => return Err(ServerError::Fatal(format!("store: {c}"))),
                        Err(other) => Err(crate::error::mvcc_to_etcd(&other)),
                    };
                    results.push((req.id, result));
                }
                EntryType::ConfChange => {
                    if let Some(cc) = ConfChange::decode(&e.data) {
                        self.conf_state = self.raw.apply_conf_change(&cc);
                        if let Some(w) = self.membership.apply(&cc) {
                            membership::write(&mut batch, w);
                        }
                        conf_applied.push(membership::decode_context(&cc.context).0);
                        removed_self |= cc.change_type == ConfChangeType::RemoveNode
                            && cc.node_id == self.shared.member_id;
                    }
                }
            }
        }
        batch.set_consistent_index(last.index, last.term);
        batch.commit(false).map_err(|e| ServerError::Fatal(format!("backend: {e}")))?;
        // Writes past the quota are answered NOSPACE; the first one raises the alarm (no one waits for it).
        if quota.finish(&store, &mut results) {
            self.next_id += 1;
            let _ = self.raw.propose(crate::alarm::nospace_proposal(self.next_id, self.shared.member_id));
        }
        self.applied = last.index;
        self.shared.applied_index.store(last.index, Ordering::SeqCst);
        for (id, result) in results {
            if let Some(w) = self.waiters.remove(&id) {
                let _ = w.send(result);
            }
        }
        if !conf_applied.is_empty() {
            self.membership_changed();
            // Callers that gave up (their change was dropped as a second pending one) wait no more.
            self.conf_waiters.retain(|_, w| !w.is_closed());
            for id in conf_applied {
                if let Some(w) = self.conf_waiters.remove(&id) {
                    let _ = w.send(Ok(()));
                }
            }
        }
        while self.fences.front().is_some_and(|(term, _)| *term <= last.term) {
            for id in self.fences.pop_front().map(|(_, ids)| ids).unwrap_or_default() {
                if let Some(w) = self.waiters.remove(&id) {
                    let _ = w.send(Err(EtcdError::LeaderChanged));
                }
                if let Some(w) = self.conf_waiters.remove(&id) {
                    let _ = w.send(Err(EtcdError::LeaderChanged));
                }
            }
        }
        if removed_self {
            return Err(ServerError::Fatal(transport::REMOVED.into()));
        }
        Ok(())
    }

    fn release_reads(&mut self) {
        let ready: Vec<u64> = self.reads_confirmed.range(..=self.applied).map(|(&i, _)| i).collect();
        for i in ready {
            for w in self.reads_confirmed.remove(&i).unwrap_or_default() {
                let _ = w.send(Ok(()));
            }
        }
    }

    /// Every --snapshot-count applied entries: make the backend durable, mark the WAL, and drop older log.
    fn maybe_snapshot(&mut self) -> Result<(), ServerError> {
        if self.applied < self.snapshot_index + self.snapshot_count {
            return Ok(());
        }
        let index = self.applied;
        let term =
            self.raw.storage().term(index).map_err(|e| ServerError::Fatal(format!("raft log: {e}")))?;
        // The marker promises the state up to `index` is on disk: make it so first.
        self.shared
            .store
            .begin_batch()
            .commit(true)
            .map_err(|e| ServerError::Fatal(format!("backend: {e}")))?;
        let data = encode_conf_state(&self.conf_state);
        self.wal.save_snapshot(SnapshotMarker { index, term, data })?;
        self.wal.sync()?;
        let storage = self.raw.storage_mut();
        storage
            .create_snapshot(index, Some(self.conf_state.clone()), Vec::new())
            .map_err(|e| ServerError::Fatal(format!("raft log: {e}")))?;
        let compact_to = index.saturating_sub(self.snapshot_catchup_entries);
        if compact_to > storage.first_index().unwrap_or(1) {
            storage.compact(compact_to).map_err(|e| ServerError::Fatal(format!("raft log: {e}")))?;
            self.wal.release_to(compact_to)?;
        }
        self.snapshot_index = index;
        tracing::info!(index, term, "saved snapshot marker and compacted the raft log");
        Ok(())
    }

    fn fail_all(&mut self, e: EtcdError) {
        for (_, w) in self.waiters.drain() {
            let _ = w.send(Err(e));
        }
        for (_, w) in self.conf_waiters.drain() {
            let _ = w.send(Err(e));
        }
        let pending = self.reads_pending.drain().flat_map(|(_, w)| w);
        let confirmed = std::mem::take(&mut self.reads_confirmed).into_values().flatten();
        for w in pending.chain(confirmed).chain(self.reads_batch.drain(..)).collect::<Vec<_>>() {
            let _ = w.send(Err(e));
        }
    }
}
