//! Opening a member's raft state: a new WAL (bootstrapping a new cluster, or joining one empty), or an
//! existing one replayed over the backend from its consistent index, then starting the loop's thread.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};

use cairn_mvcc::Store;
use cairn_raft::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, MemStorage, RawNode, Snapshot,
    SnapshotMetadata,
};
use cairn_storage::{member, wal};
use cairn_storage::{Wal, WalOptions};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Command, Node, NodeSetup, Shared, BATCH};
use crate::alarm::{Alarms, Quota};
use crate::error::ServerError;
use crate::lease::Leases;
use crate::membership::{self, Membership};
use crate::transport::{self, Faults, PeerContext, Transport};

pub(super) fn encode_conf_state(cs: &ConfState) -> Vec<u8> {
    member::conf_state_data(&cs.voters, &cs.learners)
}

pub(super) fn to_wal_entry(e: &Entry) -> wal::EntryRef<'_> {
    wal::EntryRef {
        index: e.index,
        term: e.term,
        kind: u8::from(e.entry_type == EntryType::ConfChange),
        data: &e.data,
    }
}

fn from_wal_entry(e: wal::Entry) -> Entry {
    let entry_type = if e.kind == 1 { EntryType::ConfChange } else { EntryType::Normal };
    Entry { index: e.index, term: e.term, entry_type, data: e.data.into() }
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

/// A running node loop: where to send commands, what it shares, a receiver that fires (with the reason) if
/// it stops on a fatal error, its thread, and what the peer service needs.
pub type Started =
    (mpsc::Sender<Command>, Arc<Shared>, oneshot::Receiver<String>, std::thread::JoinHandle<()>, PeerContext);

/// Opens (or creates) the WAL and raft state and starts the loop on its own thread. Must be called inside the
/// tokio runtime (the peer transport's tasks run there).
pub fn start(setup: NodeSetup, store: Arc<Store>) -> Result<Started, ServerError> {
    let opts = WalOptions::default();
    let mut storage = MemStorage::new();
    let mut snapshot_index = 0;
    let fresh = !Wal::exists(&setup.wal_dir);
    let (member_id, cluster_id) = (setup.member_id, setup.cluster_id);
    let snap_dir =
        setup.backend_path.parent().map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    let (wal, member_id, cluster_id, membership) = if fresh {
        let consistent_index = store.consistent_index();
        if consistent_index != 0 {
            return Err(ServerError::Startup(format!(
                "the backend has applied up to index {consistent_index} but there is no WAL in {}",
                setup.wal_dir.display()
            )));
        }
        // The members' names and URLs, durable before the WAL says this member exists.
        let mut batch = store.begin_batch();
        for m in setup.membership.members.values() {
            membership::write(&mut batch, membership::MemberWrite::Put(m.clone()));
        }
        batch.commit(true).map_err(|e| ServerError::Fatal(format!("backend: {e}")))?;
        let wal = Wal::create(&setup.wal_dir, &member::wal_metadata(member_id, cluster_id), opts)?;
        (wal, member_id, cluster_id, setup.membership.clone())
    } else {
        let (wal, contents) = Wal::open(&setup.wal_dir, opts)?;
        let Some((wal_member, wal_cluster)) = member::decode_wal_metadata(&contents.metadata) else {
            return Err(ServerError::Startup("the WAL's metadata is unreadable".into()));
        };
        // A restarted member keeps the ids it was created with; a member told to bootstrap a new cluster
        // must find that cluster's ids in its WAL.
        if !setup.join && (wal_member, wal_cluster) != (member_id, cluster_id) {
            return Err(ServerError::Startup(format!(
                "the WAL in {} belongs to member {wal_member:x} of cluster {wal_cluster:x}, but --initial-cluster \
                 and --initial-cluster-token give member {member_id:x} of cluster {cluster_id:x} \
                 (member or cluster id mismatch)",
                setup.wal_dir.display()
            )));
        }
        let mut conf_state = ConfState::default();
        if let Some(s) = contents.snapshot {
            let cs = cairn_api::cairnpb::ConfState::decode(s.data.as_slice())
                .map_err(|e| ServerError::Startup(format!("WAL snapshot marker: {e}")))?;
            conf_state = ConfState { voters: cs.voters, learners: cs.learners };
            snapshot_index = s.index;
            // A snapshot from the leader was recorded but the member stopped before installing it.
            let received = transport::received_snapshot_path(&snap_dir, s.index);
            if store.consistent_index() < s.index && received.exists() {
                tracing::info!(index = s.index, "installing the snapshot received before the restart");
                store.restore_from(&received, &setup.backend_path)?;
            }
            let snap = Snapshot {
                metadata: SnapshotMetadata { index: s.index, term: s.term, conf_state: conf_state.clone() },
                data: Vec::new(),
            };
            storage.apply_snapshot(snap).map_err(|e| ServerError::Startup(e.to_string()))?;
        }
        let consistent_index = store.consistent_index();
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
        // Entries already durable are applied beside the fsync of the hard state that records their commit
        // (node.rs, `durable_prefix`): the backend may be ahead of that commit index, never of the log.
        let last = entries.last().map_or(snapshot_index, |e| e.index);
        let commit = hs.commit.max(consistent_index.min(last));
        storage.set_hard_state(HardState { term: hs.term, vote: hs.vote, commit });
        let mut membership = Membership::load(&store.backend())?;
        if membership.members.is_empty() {
            membership = setup.membership.clone();
        }
        (wal, wal_member, wal_cluster, membership)
    };
    let consistent_index = store.consistent_index();
    let config = cairn_raft::Config {
        id: member_id,
        election_tick: setup.election_ticks.max(2),
        heartbeat_tick: 1,
        applied: consistent_index,
        max_size_per_msg: (setup.max_request_bytes as u64).max(1024 * 1024),
        check_quorum: true,
        pre_vote: true,
        seed: member_id,
        ..cairn_raft::Config::default()
    };
    let mut raw = RawNode::new(&config, storage).map_err(|e| ServerError::Startup(format!("raft: {e}")))?;
    let initial = ConfState { voters: membership.voters().map(|m| m.id).collect(), learners: vec![] };
    let bootstrap = fresh && !setup.join;
    if bootstrap {
        raw.bootstrap(&initial).map_err(|e| ServerError::Startup(format!("raft: {e}")))?;
    }
    let conf_state = if bootstrap { initial } else { raw.status().conf_state };
    let campaign_now = conf_state.voters == [member_id];
    let (is_leader_tx, is_leader_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        store: Arc::clone(&store),
        member_id,
        cluster_id,
        term: AtomicU64::new(0),
        leader: AtomicU64::new(0),
        raft_index: AtomicU64::new(0),
        applied_index: AtomicU64::new(consistent_index),
        stopped: AtomicBool::new(false),
        is_learner: AtomicBool::new(membership.members.get(&member_id).is_some_and(|m| m.is_learner)),
        membership: RwLock::new(membership.clone()),
        is_leader: is_leader_rx,
        leases: Arc::new(Leases::recover(&store, setup.lease_config.clone())?),
        alarms: Arc::new(Alarms::recover(&store, Quota::new(setup.quota_backend_bytes))?),
    });
    let (tx, rx) = mpsc::channel(16 * BATCH);
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| ServerError::Startup(format!("the node needs a tokio runtime: {e}")))?;
    let peer_ctx = PeerContext {
        cluster_id,
        member_id,
        node: tx.clone(),
        store,
        snap_dir,
        faults: Faults::from_env(&runtime),
        activity: Arc::default(),
    };
    let mut transport = Transport::new(peer_ctx.clone(), runtime);
    transport.set_peers(&membership);
    let node = Node {
        raw,
        wal,
        shared: Arc::clone(&shared),
        transport,
        backend_path: setup.backend_path,
        conf_state,
        membership,
        is_leader: is_leader_tx,
        waiters: HashMap::new(),
        conf_waiters: HashMap::new(),
        fences: VecDeque::new(),
        snapshot_files: BTreeMap::new(),
        removed: false,
        reads_pending: HashMap::new(),
        reads_confirmed: BTreeMap::new(),
        reads_batch: Vec::new(),
        next_id: first_request_id(member_id),
        applied: consistent_index,
        snapshot_index,
        snapshot_count: setup.snapshot_count.max(1),
        snapshot_catchup_entries: setup.snapshot_catchup_entries,
        campaign_now,
    };
    let (fatal_tx, fatal_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("raft-node".into())
        .spawn(move || node.run(rx, fatal_tx))
        .map_err(|e| ServerError::Startup(format!("spawning the raft thread: {e}")))?;
    Ok((tx, shared, fatal_rx, thread, peer_ctx))
}

/// Request ids as etcd's idutil makes them: the member id's low 16 bits, then milliseconds since the epoch and
/// a counter, so ids never repeat across members or restarts and a replayed entry never matches a new waiter.
fn first_request_id(member_id: u64) -> u64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    ((member_id & 0xffff) << 48) | ((millis << 8) & 0x0000_ffff_ffff_ffff)
}
