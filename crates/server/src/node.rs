//! The raft node loop: one thread owns the RawNode, the WAL and the write side of the store, and takes commands
//! over a bounded channel (proposals, read-index requests, ticks). Per turn it takes up to [`BATCH`] commands,
//! then handles Ready by etcd's contract: append entries and hard state to the WAL with one fsync (group
//! commit), send messages, apply committed entries in one backend transaction with the consistent index, answer
//! the waiters, advance.
//!
//! A plain thread rather than a task: every turn does blocking disk I/O (fsync, redb commit), which must not
//! stall the async runtime serving clients. A WAL or backend failure is fatal: the member stops, every waiter is
//! answered "server stopped", and nothing unpersisted is ever acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cairn_api::cairnpb::{internal_request::Request, InternalRequest};
use cairn_api::etcdserverpb::{CompactionResponse, DeleteRangeResponse, PutResponse, TxnResponse};
use cairn_api::EtcdError;
use cairn_mvcc::{MvccError, NoLeases, Store};
use cairn_raft::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, MemStorage, Message, RawNode,
    Snapshot, SnapshotMetadata, Storage,
};
use cairn_storage::wal::{self, SnapshotMarker};
use cairn_storage::{Wal, WalOptions};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use crate::error::ServerError;

/// Commands taken per loop turn before handling Ready: bounds latency while batching proposals into one fsync.
pub const BATCH: usize = 1024;
/// Entries kept behind a raft snapshot for slow followers (etcd's SnapshotCatchUpEntries).
const CATCH_UP_ENTRIES: u64 = 5000;

/// The result of applying one write.
#[derive(Debug)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
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
    /// Stop after this turn: make the backend durable and end the loop (connections may outlive the server).
    Shutdown,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Propose { .. } => "Propose",
            Command::ReadIndex { .. } => "ReadIndex",
            Command::Tick => "Tick",
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
}

/// Everything the loop needs to start.
#[derive(Debug)]
pub struct NodeSetup {
    pub member_id: u64,
    pub cluster_id: u64,
    pub voters: Vec<u64>,
    pub wal_dir: std::path::PathBuf,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    pub max_request_bytes: usize,
}

struct Node {
    raw: RawNode<MemStorage>,
    wal: Wal,
    shared: Arc<Shared>,
    conf_state: ConfState,
    waiters: HashMap<u64, oneshot::Sender<ApplyResult>>,
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
    /// A lone voter campaigns as soon as its membership is applied instead of waiting an election timeout.
    campaign_now: bool,
}

fn member_metadata(member_id: u64, cluster_id: u64) -> Vec<u8> {
    let mut m = member_id.to_be_bytes().to_vec();
    m.extend_from_slice(&cluster_id.to_be_bytes());
    m
}

fn encode_conf_state(cs: &ConfState) -> Vec<u8> {
    cairn_api::cairnpb::ConfState { voters: cs.voters.clone(), learners: cs.learners.clone() }.encode_to_vec()
}

fn to_wal_entry(e: &Entry) -> wal::Entry {
    wal::Entry {
        index: e.index,
        term: e.term,
        kind: u8::from(e.entry_type == EntryType::ConfChange),
        data: e.data.clone(),
    }
}

fn from_wal_entry(e: wal::Entry) -> Entry {
    let entry_type = if e.kind == 1 { EntryType::ConfChange } else { EntryType::Normal };
    Entry { index: e.index, term: e.term, entry_type, data: e.data }
}

fn apply_conf_change_to(cs: &mut ConfState, cc: &ConfChange) {
    let id = cc.node_id;
    match cc.change_type {
        ConfChangeType::AddNode => {
            cs.learners.retain(|&l| l != id);
            if !cs.voters.contains(&id) {
                cs.voters.push(id);
            }
        }
        ConfChangeType::AddLearnerNode => {
            if !cs.voters.contains(&id) && !cs.learners.contains(&id) {
                cs.learners.push(id);
            }
        }
        ConfChangeType::RemoveNode => {
            cs.voters.retain(|&v| v != id);
            cs.learners.retain(|&l| l != id);
        }
        ConfChangeType::UpdateNode => {}
    }
}

/// A running node loop: where to send commands, what it shares, and a receiver that fires (with the reason) if
/// it stops on a fatal error.
pub type Started =
    (mpsc::Sender<Command>, Arc<Shared>, oneshot::Receiver<String>, std::thread::JoinHandle<()>);

/// Opens (or creates) the WAL and raft state and starts the loop on its own thread. Returns the command sender
/// and a receiver that fires if the loop stops on a fatal error.
pub fn start(setup: NodeSetup, store: Arc<Store>) -> Result<Started, ServerError> {
    let metadata = member_metadata(setup.member_id, setup.cluster_id);
    let opts = WalOptions::default();
    let consistent_index = store.consistent_index();
    let mut storage = MemStorage::new();
    let mut snapshot_index = 0;
    let fresh = !Wal::exists(&setup.wal_dir);
    let wal = if fresh {
        if consistent_index != 0 {
            return Err(ServerError::Startup(format!(
                "the backend has applied up to index {consistent_index} but there is no WAL in {}",
                setup.wal_dir.display()
            )));
        }
        Wal::create(&setup.wal_dir, &metadata, opts)?
    } else {
        let (wal, contents) = Wal::open(&setup.wal_dir, opts)?;
        if contents.metadata != metadata {
            return Err(ServerError::Startup(
                "the WAL belongs to another member or cluster (member or cluster id mismatch)".into(),
            ));
        }
        let mut conf_state = ConfState::default();
        if let Some(s) = contents.snapshot {
            let cs = cairn_api::cairnpb::ConfState::decode(s.data.as_slice())
                .map_err(|e| ServerError::Startup(format!("WAL snapshot marker: {e}")))?;
            conf_state = ConfState { voters: cs.voters, learners: cs.learners };
            snapshot_index = s.index;
            let snap = Snapshot {
                metadata: SnapshotMetadata { index: s.index, term: s.term, conf_state: conf_state.clone() },
                data: Vec::new(),
            };
            storage.apply_snapshot(snap).map_err(|e| ServerError::Startup(e.to_string()))?;
        }
        if consistent_index < snapshot_index {
            return Err(ServerError::Startup(format!(
                "the backend (applied index {consistent_index}) is behind the WAL's snapshot at {snapshot_index}"
            )));
        }
        let entries: Vec<Entry> = contents.entries.into_iter().map(from_wal_entry).collect();
        // The membership as of the applied index: raft re-applies only what comes after it.
        for e in
            entries.iter().filter(|e| e.entry_type == EntryType::ConfChange && e.index <= consistent_index)
        {
            if let Some(cc) = ConfChange::decode(&e.data) {
                apply_conf_change_to(&mut conf_state, &cc);
            }
        }
        storage.set_conf_state(conf_state);
        storage.append(&entries).map_err(|e| ServerError::Startup(e.to_string()))?;
        let hs = contents.hard_state;
        storage.set_hard_state(HardState { term: hs.term, vote: hs.vote, commit: hs.commit });
        wal
    };
    let config = cairn_raft::Config {
        id: setup.member_id,
        election_tick: setup.election_ticks.max(2),
        heartbeat_tick: 1,
        applied: consistent_index,
        max_size_per_msg: (setup.max_request_bytes as u64).max(1024 * 1024),
        check_quorum: true,
        pre_vote: true,
        seed: setup.member_id,
        ..cairn_raft::Config::default()
    };
    let mut raw = RawNode::new(&config, storage).map_err(|e| ServerError::Startup(format!("raft: {e}")))?;
    let initial = ConfState { voters: setup.voters.clone(), learners: vec![] };
    if fresh {
        raw.bootstrap(&initial).map_err(|e| ServerError::Startup(format!("raft: {e}")))?;
    }
    let conf_state = if fresh { initial } else { raw.status().conf_state };
    let campaign_now = conf_state.voters == [setup.member_id];
    let shared = Arc::new(Shared {
        store,
        member_id: setup.member_id,
        cluster_id: setup.cluster_id,
        term: AtomicU64::new(0),
        leader: AtomicU64::new(0),
        raft_index: AtomicU64::new(0),
        applied_index: AtomicU64::new(consistent_index),
        stopped: AtomicBool::new(false),
    });
    let now_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let node = Node {
        raw,
        wal,
        shared: Arc::clone(&shared),
        conf_state,
        waiters: HashMap::new(),
        reads_pending: HashMap::new(),
        reads_confirmed: BTreeMap::new(),
        reads_batch: Vec::new(),
        // Unique across restarts: replayed entries never match a new waiter.
        next_id: now_nanos,
        applied: consistent_index,
        snapshot_index,
        snapshot_count: setup.snapshot_count.max(1),
        campaign_now,
    };
    let (tx, rx) = mpsc::channel(16 * BATCH);
    let (fatal_tx, fatal_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("raft-node".into())
        .spawn(move || node.run(rx, fatal_tx))
        .map_err(|e| ServerError::Startup(format!("spawning the raft thread: {e}")))?;
    Ok((tx, shared, fatal_rx, thread))
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
            tracing::error!(error = %msg, "stopping the member: a write could not be persisted");
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
        }
        false
    }

    fn flush_reads(&mut self) {
        if self.reads_batch.is_empty() {
            return;
        }
        self.next_id += 1;
        let ctx = self.next_id.to_be_bytes().to_vec();
        self.raw.read_index(ctx.clone());
        self.reads_pending.insert(ctx, std::mem::take(&mut self.reads_batch));
    }

    fn process_ready(&mut self) -> Result<(), ServerError> {
        while self.raw.has_ready() {
            let rd = self.raw.ready();
            if let Some(ss) = rd.soft_state {
                self.shared.leader.store(ss.leader_id, Ordering::SeqCst);
                if ss.leader_id == 0 {
                    // Reads waiting for a leader that is gone will never be confirmed: let clients retry.
                    for (_, waiters) in self.reads_pending.drain() {
                        for w in waiters {
                            let _ = w.send(Err(EtcdError::LeaderChanged));
                        }
                    }
                }
            }
            let entries: Vec<wal::Entry> = rd.entries.iter().map(to_wal_entry).collect();
            let hs = rd.hard_state.map(|h| wal::HardState { term: h.term, vote: h.vote, commit: h.commit });
            if !entries.is_empty() || hs.is_some() {
                self.wal.save(hs.as_ref(), &entries)?;
                self.wal.sync()?;
            }
            let storage = self.raw.storage_mut();
            storage.append(&rd.entries).map_err(|e| ServerError::Fatal(format!("raft log: {e}")))?;
            if let Some(h) = rd.hard_state {
                storage.set_hard_state(h);
                self.shared.term.store(h.term, Ordering::SeqCst);
            }
            self.send(&rd.messages);
            self.apply(&rd.committed_entries)?;
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

    /// Peers are issue 4's: a single member has no one to send to.
    fn send(&mut self, messages: &[Message]) {
        for m in messages {
            tracing::debug!(to = m.to, ?m.msg_type, "no transport to peers yet; message dropped");
            self.raw.report_unreachable(m.to);
        }
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<(), ServerError> {
        let Some(last) = entries.last() else { return Ok(()) };
        let store = Arc::clone(&self.shared.store);
        let mut batch = store.begin_batch();
        let mut results = Vec::new();
        for e in entries {
            match e.entry_type {
                EntryType::Normal if e.data.is_empty() => {}
                EntryType::Normal => {
                    let req = match InternalRequest::decode(e.data.as_slice()) {
                        Ok(r) => r,
                        Err(err) => {
                            tracing::error!(index = e.index, error = %err, "undecodable entry skipped");
                            continue;
                        }
                    };
                    let result = match req.request {
                        Some(Request::Put(p)) => batch.put(&p, &NoLeases).map(Applied::Put),
                        Some(Request::DeleteRange(d)) => batch.delete_range(&d).map(Applied::DeleteRange),
                        Some(Request::Txn(t)) => batch.txn(&t, &NoLeases).map(Applied::Txn),
                        Some(Request::Compaction(c)) => batch.compact(c.revision).map(Applied::Compaction),
                        // Leases, alarms: proposed only once their services land.
                        _ => {
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
                    }
                }
            }
        }
        batch.set_consistent_index(last.index, last.term);
        batch.commit(false).map_err(|e| ServerError::Fatal(format!("backend: {e}")))?;
        self.applied = last.index;
        self.shared.applied_index.store(last.index, Ordering::SeqCst);
        for (id, result) in results {
            if let Some(w) = self.waiters.remove(&id) {
                let _ = w.send(result);
            }
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
        let compact_to = index.saturating_sub(CATCH_UP_ENTRIES);
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
        let pending = self.reads_pending.drain().flat_map(|(_, w)| w);
        let confirmed = std::mem::take(&mut self.reads_confirmed).into_values().flatten();
        for w in pending.chain(confirmed).chain(self.reads_batch.drain(..)).collect::<Vec<_>>() {
            let _ = w.send(Err(e));
        }
    }
}
