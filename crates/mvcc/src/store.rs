//! The store: the key index in memory, key-values in the backend, and the revision counters.
//!
//! Concurrency: one [`Batch`](crate::Batch) at a time holds the state's write lock from its first change until its
//! backend commit, so a reader holding the read lock always sees the index and the backend at the same committed
//! revision. Readers never wait on disk for one another; the applier's batches are short because commits between
//! checkpoints do not fsync.

use std::cell::OnceCell;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cairn_api::etcdserverpb::request_op::Request as Op;
use cairn_api::etcdserverpb::response_op::Response;
use cairn_api::etcdserverpb::{
    RangeRequest, RangeResponse, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use cairn_api::mvccpb::KeyValue;
use cairn_storage::{Backend, ReadTx, Table};
use prost::Message;

use crate::key_index::TreeIndex;
use crate::range::{self, KvSource};
use crate::revision::Revision;
use crate::watch::WatchHub;
use crate::{batch, Batch, MvccError};

/// `meta` table keys (documented in docs/design.md).
pub(crate) mod meta {
    pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
    pub const TERM: &[u8] = b"term";
    pub const SCHEDULED_COMPACT_REV: &[u8] = b"scheduledCompactRev";
    pub const FINISHED_COMPACT_REV: &[u8] = b"finishedCompactRev";
}

#[derive(Debug)]
pub(crate) struct State {
    pub index: TreeIndex,
    /// Revision of the newest committed write transaction.
    pub current_rev: i64,
    /// Reads below this revision fail with `Compacted`.
    pub compact_rev: i64,
    /// Raft index of the last applied entry, committed atomically with the changes it made.
    pub consistent_index: u64,
    pub term: u64,
}

/// An MVCC key-value store over a [`Backend`]. Send + Sync.
#[derive(Debug)]
pub struct Store {
    /// Replaced whole when a raft snapshot is installed; readers clone the Arc and keep their own view.
    backend: RwLock<Arc<Backend>>,
    pub(crate) state: RwLock<State>,
    pub(crate) hub: WatchHub,
}

/// The state a backend holds: its index and counters, and a compaction it had decided but not finished.
fn load_state(backend: &Backend) -> Result<(State, Option<i64>), MvccError> {
    let tx = backend.begin_read()?;
    let read_u64 = |key: &[u8]| -> Result<u64, MvccError> {
        match tx.get(Table::Meta, key)? {
            None => Ok(0),
            Some(v) => Ok(u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| MvccError::Corrupt(format!("meta {key:?} is not 8 bytes")))?,
            )),
        }
    };
    let consistent_index = read_u64(meta::CONSISTENT_INDEX)?;
    let term = read_u64(meta::TERM)?;
    // A revision in meta; -1 (etcd's "never compacted") when absent.
    let read_rev = |key: &[u8]| -> Result<i64, MvccError> {
        if tx.get(Table::Meta, key)?.is_none() {
            return Ok(-1);
        }
        let v = read_u64(key)?;
        i64::try_from(v).map_err(|_| MvccError::Corrupt(format!("revision {v} out of range")))
    };
    let scheduled = read_rev(meta::SCHEDULED_COMPACT_REV)?;
    let finished = read_rev(meta::FINISHED_COMPACT_REV)?;

    let mut index = TreeIndex::default();
    // A fresh store is at revision 1, as etcd's: the first write is revision 2.
    let mut current_rev = scheduled.max(finished).max(1);
    let mut corrupt = None;
    tx.for_each(Table::Key, .., |rev_bytes, value| {
        let parsed = Revision::from_bytes(rev_bytes).zip(KeyValue::decode(value).ok());
        let Some(((rev, tombstone), kv)) = parsed else {
            corrupt = Some(format!("undecodable key table entry at {rev_bytes:?}"));
            return false;
        };
        if tombstone {
            index.restore_tombstone(&kv.key, rev);
        } else {
            index.restore_put(&kv.key, rev, kv.create_revision, kv.version, kv.lease);
        }
        current_rev = current_rev.max(rev.main);
        true
    })?;
    if let Some(msg) = corrupt {
        return Err(MvccError::Corrupt(msg));
    }
    let state = State { index, current_rev, compact_rev: finished, consistent_index, term };
    Ok((state, (scheduled > finished).then_some(scheduled)))
}

impl Store {
    /// Opens the store, rebuilding the key index from the backend's `key` table.
    pub fn open(backend: Arc<Backend>) -> Result<Store, MvccError> {
        let (state, unfinished) = load_state(&backend)?;
        let store = Store {
            backend: RwLock::new(backend),
            hub: WatchHub::new(state.current_rev),
            state: RwLock::new(state),
        };
        store.finish_interrupted_compaction(unfinished)?;
        Ok(store)
    }

    pub(crate) fn finish_interrupted_compaction(&self, unfinished: Option<i64>) -> Result<(), MvccError> {
        if let Some(scheduled) = unfinished {
            // A compaction was decided but the process stopped before it finished: finish it now.
            tracing::info!(scheduled, "resuming interrupted compaction");
            let mut batch = self.begin_batch();
            batch.finish_compaction(scheduled)?;
            batch.commit(true)?;
        }
        Ok(())
    }

    pub fn backend(&self) -> Arc<Backend> {
        Arc::clone(&self.backend.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Swaps in another backend (a received raft snapshot) and rebuilds the index from it. The caller holds the
    /// state's write lock, so no reader sees a mix of the two. Returns a compaction to finish, as [`Store::open`].
    pub(crate) fn replace_backend(
        &self,
        state: &mut State,
        backend: Arc<Backend>,
    ) -> Result<Option<i64>, MvccError> {
        let (new_state, unfinished) = load_state(&backend)?;
        *state = new_state;
        *self.backend.write().unwrap_or_else(std::sync::PoisonError::into_inner) = backend;
        self.hub.reset(state.current_rev);
        Ok(unfinished)
    }

    pub fn consistent_index(&self) -> u64 {
        self.read_state().consistent_index
    }

    pub fn term(&self) -> u64 {
        self.read_state().term
    }

    pub fn current_revision(&self) -> i64 {
        self.read_state().current_rev
    }

    pub fn compact_revision(&self) -> i64 {
        self.read_state().compact_rev
    }

    /// Number of keys with any history in the index (live or not yet compacted away).
    pub fn indexed_keys(&self) -> usize {
        self.read_state().index.len()
    }

    /// A Range as etcd answers it; the header carries only the revision (the server fills in the rest).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let state = self.read_state();
        let source = Committed::new(self.backend());
        range::range(&state, &source, req, state.current_rev)
    }

    /// A Txn whose every operation is a Range (etcd's isTxnReadonly), answered from the current state instead of
    /// through the log, under the read lock like a Range (its compares and ranges see one revision); None for
    /// any other Txn, which must be applied. The caller makes the read linearizable first unless every range is
    /// serializable (etcd's isTxnSerializable, see [`txn_is_serializable`]).
    pub fn txn_read_only(&self, req: &TxnRequest) -> Option<Result<TxnResponse, MvccError>> {
        if !txn_is_read_only(req) {
            return None;
        }
        let state = self.read_state();
        let source = Committed::new(self.backend());
        let at = state.current_rev;
        let answer = || {
            let mut path = Vec::new();
            batch::compare_path(&state, &source, req, at, &mut path)?;
            let succeeded = path.first().copied().unwrap_or(false);
            let ranges = || {
                let ops = if succeeded { &req.success } else { &req.failure };
                ops.iter().filter_map(|op| match &op.request {
                    Some(Op::RequestRange(r)) => Some(r),
                    _ => None,
                })
            };
            // Every range's revision is checked before any is read, as for an applied Txn.
            for r in ranges().filter(|r| r.revision != 0) {
                range::check_revision(&state, r.revision, at)?;
            }
            let responses = ranges()
                .map(|r| {
                    let resp = range::range(&state, &source, r, at)?;
                    Ok(ResponseOp { response: Some(Response::ResponseRange(resp)) })
                })
                .collect::<Result<Vec<_>, MvccError>>()?;
            let header = Some(ResponseHeader { revision: at, ..Default::default() });
            Ok(TxnResponse { header, succeeded, responses })
        };
        Some(answer())
    }

    /// Every live key that has a lease, with the lease (the server rebuilds its lessor's attachments from
    /// this on start), from the index alone.
    pub fn leased_keys(&self) -> Vec<(Vec<u8>, i64)> {
        self.read_state().index.leased_keys()
    }

    /// Starts a batch of writes applied as one backend transaction.
    pub fn begin_batch(&self) -> Batch<'_> {
        Batch::new(self, self.write_state())
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated: batches change the index only
        // after validating, and a failed commit stops the member. Keep serving rather than cascade the panic.
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether every operation of a Txn is a Range (etcd's isTxnReadonly; a nested Txn counts as a write).
pub fn txn_is_read_only(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).all(|op| matches!(op.request, Some(Op::RequestRange(_))))
}

/// Whether a read-only Txn may skip the linearizable read (etcd's isTxnSerializable): every operation is a
/// serializable Range (a Txn without operations counts as one).
pub fn txn_is_serializable(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| matches!(&op.request, Some(Op::RequestRange(r)) if r.serializable))
}

/// Key-values as committed in the backend, through one read transaction opened when first needed (a put that
/// reads no value opens none).
pub(crate) struct Committed {
    backend: Arc<Backend>,
    tx: OnceCell<ReadTx>,
}

impl Committed {
    pub fn new(backend: Arc<Backend>) -> Self {
        Committed { backend, tx: OnceCell::new() }
    }

    pub fn tx(&self) -> Result<&ReadTx, MvccError> {
        if let Some(tx) = self.tx.get() {
            return Ok(tx);
        }
        let tx = self.backend.begin_read()?;
        Ok(self.tx.get_or_init(|| tx))
    }
}

impl KvSource for Committed {
    fn kv(&self, rev: Revision) -> Result<KeyValue, MvccError> {
        let bytes = self
            .tx()?
            .get(Table::Key, &rev.to_bytes(false))?
            .ok_or_else(|| MvccError::Corrupt(format!("revision {rev:?} is indexed but not stored")))?;
        KeyValue::decode(bytes.as_slice()).map_err(|e| MvccError::Corrupt(format!("revision {rev:?}: {e}")))
    }
}
