//! A batch: the writes of several applied raft entries, committed to the backend as one transaction together with
//! the consistent index (DESIGN.md: "one backend write transaction per batch").
//!
//! Each request inside a batch is one etcd write transaction: it takes the next main revision if it changes
//! anything, its changes are numbered by sub revision, and it sees its own earlier changes and those of earlier
//! requests in the batch. A request is checked completely before it changes anything, so a failed request leaves
//! no trace. The index is updated in place under the store's write lock, which the batch holds until it commits:
//! readers never see a half-applied batch. A failed commit leaves memory ahead of disk; the caller must stop.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLockWriteGuard;

use cairn_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_api::etcdserverpb::request_op::Request;
use cairn_api::etcdserverpb::response_op::Response;
use cairn_api::etcdserverpb::{
    CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use cairn_api::mvccpb::event::EventType;
use cairn_api::mvccpb::{Event, KeyValue};
use cairn_storage::Table;
use prost::Message;

use crate::key_index::KeyRange;
use crate::range::{self, KvSource};
use crate::revision::Revision;
use crate::store::{meta, Committed, State, Store};
use crate::MvccError;

/// Whether a lease exists; the lessor lives elsewhere (cairn-mvcc does not know leases).
pub trait LeaseLookup {
    fn lease_exists(&self, id: i64) -> bool;
}

/// For a server without leases: every lease id is unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLeases;

impl LeaseLookup for NoLeases {
    fn lease_exists(&self, _id: i64) -> bool {
        false
    }
}

/// A key whose lease changed: the server keeps its lessor's attachments in step (0 = no lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseChange {
    pub key: Vec<u8>,
    pub old: i64,
    pub new: i64,
}

/// One etcd write transaction inside the batch.
#[derive(Debug, Clone, Copy)]
struct WriteTxn {
    begin: i64,
    changes: i64,
}

impl WriteTxn {
    /// The revision reads inside the transaction see: its own changes count once it has made one.
    fn read_rev(self) -> i64 {
        if self.changes > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    fn next_rev(&mut self) -> Revision {
        let rev = Revision::new(self.begin + 1, self.changes);
        self.changes += 1;
        rev
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

#[derive(Debug)]
pub struct Batch<'a> {
    store: &'a Store,
    state: RwLockWriteGuard<'a, State>,
    /// Values written by this batch, readable before commit.
    pending: HashMap<Revision, KeyValue>,
    /// `key` table writes (puts and tombstones) by encoded revision.
    key_puts: BTreeMap<Vec<u8>, Vec<u8>>,
    /// `key` table entries compaction removes.
    key_deletes: Vec<Vec<u8>>,
    meta_puts: BTreeMap<&'static [u8], Vec<u8>>,
    /// Writes to tables other than `key` and `meta` (leases, members), committed in the same transaction.
    other_puts: Vec<(Table, Vec<u8>, Vec<u8>)>,
    other_deletes: Vec<(Table, Vec<u8>)>,
    /// The batch's events, for watchers; None when nobody watches (decided at the start: watchers register
    /// under the store's read lock, so none can appear while the batch holds the write lock).
    events: Option<Vec<Event>>,
    lease_changes: Vec<LeaseChange>,
}

/// The batch's view of values: its own writes over the committed backend.
struct Overlay<'b> {
    pending: &'b HashMap<Revision, KeyValue>,
    committed: &'b Committed,
}

impl KvSource for Overlay<'_> {
    fn kv(&self, rev: Revision) -> Result<KeyValue, MvccError> {
        match self.pending.get(&rev) {
            Some(kv) => Ok(kv.clone()),
            None => self.committed.kv(rev),
        }
    }
}

impl<'a> Batch<'a> {
    pub(crate) fn new(store: &'a Store, state: RwLockWriteGuard<'a, State>) -> Self {
        Batch {
            store,
            state,
            pending: HashMap::new(),
            key_puts: BTreeMap::new(),
            key_deletes: Vec::new(),
            meta_puts: BTreeMap::new(),
            other_puts: Vec::new(),
            other_deletes: Vec::new(),
            events: (!store.hub.is_empty()).then(Vec::new),
            lease_changes: Vec::new(),
        }
    }

    pub fn consistent_index(&self) -> u64 {
        self.state.consistent_index
    }

    pub fn term(&self) -> u64 {
        self.state.term
    }

    /// Writes `key` -> `value` into another crate's table (not `key` or `meta`) in this batch's transaction.
    pub fn put_raw(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        debug_assert!(!matches!(table, Table::Key | Table::Meta), "mvcc owns the key and meta tables");
        self.other_puts.push((table, key, value));
    }

    /// Deletes `key` from another crate's table in this batch's transaction.
    pub fn delete_raw(&mut self, table: Table, key: Vec<u8>) {
        debug_assert!(!matches!(table, Table::Key | Table::Meta), "mvcc owns the key and meta tables");
        self.other_deletes.push((table, key));
    }

    /// Keys whose lease changed since the last call (puts with another lease, deletes of leased keys).
    pub fn take_lease_changes(&mut self) -> Vec<LeaseChange> {
        std::mem::take(&mut self.lease_changes)
    }

    /// The revision of the last change in the batch (or of the store, if none).
    pub fn current_revision(&self) -> i64 {
        self.state.current_rev
    }

    pub fn put(&mut self, req: &PutRequest, leases: &dyn LeaseLookup) -> Result<PutResponse, MvccError> {
        let committed = self.committed();
        let begin = self.state.current_rev;
        self.check_put(req, begin, leases)?;
        let mut w = WriteTxn { begin, changes: 0 };
        let resp = self.do_put(&committed, &mut w, req)?;
        self.finish(w);
        Ok(resp)
    }

    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        let committed = self.committed();
        let mut w = WriteTxn { begin: self.state.current_rev, changes: 0 };
        let resp = self.do_delete(&committed, &mut w, req)?;
        self.finish(w);
        Ok(resp)
    }

    /// An etcd Txn: compares evaluated at the start, then the chosen branch, all at one revision.
    pub fn txn(&mut self, req: &TxnRequest, leases: &dyn LeaseLookup) -> Result<TxnResponse, MvccError> {
        let committed = self.committed();
        let begin = self.state.current_rev;
        let path = self.compare_path(&committed, req, begin)?;
        self.check_txn(req, &path, begin, leases)?;
        let mut w = WriteTxn { begin, changes: 0 };
        let mut path_iter = path.iter().copied();
        let mut resp = self.do_txn(&committed, &mut w, req, &mut path_iter)?;
        self.finish(w);
        resp.header = header(w.read_rev());
        Ok(resp)
    }

    /// Compacts history up to `rev`: reads below it fail afterwards and its superseded values are deleted.
    pub fn compact(&mut self, rev: i64) -> Result<CompactionResponse, MvccError> {
        if rev <= self.state.compact_rev {
            return Err(MvccError::Compacted);
        }
        if rev > self.state.current_rev {
            return Err(MvccError::FutureRevision);
        }
        self.meta_puts.insert(meta::SCHEDULED_COMPACT_REV, rev_to_meta(rev));
        self.finish_compaction(rev)?;
        Ok(CompactionResponse { header: header(self.state.current_rev) })
    }

    /// Records the raft position this batch brings the store to, committed with its changes.
    pub fn set_consistent_index(&mut self, index: u64, term: u64) {
        debug_assert!(index >= self.state.consistent_index, "consistent index never goes back");
        self.state.consistent_index = index;
        self.state.term = term;
        self.meta_puts.insert(meta::CONSISTENT_INDEX, index.to_be_bytes().to_vec());
        self.meta_puts.insert(meta::TERM, term.to_be_bytes().to_vec());
    }

    /// Writes the batch to the backend (`durable` waits for fsync) and hands its events to watchers.
    pub fn commit(self, durable: bool) -> Result<(), MvccError> {
        self.commit_then(durable, || Ok(()))
    }

    /// As [`Batch::commit`], then runs `then` before writers may start again.
    pub(crate) fn commit_then(
        self,
        durable: bool,
        then: impl FnOnce() -> Result<(), MvccError>,
    ) -> Result<(), MvccError> {
        let mut tx = self.store.backend().begin_write()?;
        tx.delete_all(Table::Key, self.key_deletes.iter().map(Vec::as_slice))?;
        tx.put_all(Table::Key, self.key_puts.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))?;
        tx.put_all(Table::Meta, self.meta_puts.iter().map(|(k, v)| (*k, v.as_slice())))?;
        for (table, k, v) in &self.other_puts {
            tx.put_all(*table, [(k.as_slice(), v.as_slice())])?;
        }
        for (table, k) in &self.other_deletes {
            tx.delete_all(*table, [k.as_slice()])?;
        }
        tx.commit(durable)?;
        // Still under the write lock: watchers get batches in commit order.
        match &self.events {
            Some(events) => self.store.hub.notify(events, self.state.current_rev),
            None => self.store.hub.advance(self.state.current_rev),
        }
        then()
    }

    pub(crate) fn finish_compaction(&mut self, at: i64) -> Result<(), MvccError> {
        let available = self.state.index.compact(at);
        let end = Revision::new(at.saturating_add(1), 0).to_bytes(false);
        let committed = self.committed();
        let mut corrupt = None;
        committed.tx()?.for_each(Table::Key, ..end.as_slice(), |k, _| {
            match Revision::from_bytes(k) {
                Some((rev, _)) if !available.contains(&rev) => self.key_deletes.push(k.to_vec()),
                Some(_) => {}
                None => {
                    corrupt = Some(format!("undecodable key table entry {k:?}"));
                    return false;
                }
            }
            true
        })?;
        if let Some(msg) = corrupt {
            return Err(MvccError::Corrupt(msg));
        }
        // Values this batch wrote and already superseded at or below `at` go too.
        let pending = &mut self.pending;
        self.key_puts.retain(|k, _| match Revision::from_bytes(k) {
            Some((rev, _)) if rev.main <= at && !available.contains(&rev) => {
                pending.remove(&rev);
                false
            }
            _ => true,
        });
        self.state.compact_rev = at;
        self.meta_puts.insert(meta::FINISHED_COMPACT_REV, rev_to_meta(at));
        Ok(())
    }

    fn committed(&self) -> Committed {
        Committed::new(self.store.backend())
    }

    fn finish(&mut self, w: WriteTxn) {
        if w.changes > 0 {
            self.state.current_rev = w.begin + 1;
        }
    }

    fn range_in(
        &self,
        committed: &Committed,
        req: &RangeRequest,
        at: i64,
    ) -> Result<RangeResponseT, MvccError> {
        let source = Overlay { pending: &self.pending, committed };
        range::range(&self.state, &source, req, at)
    }

    /// etcd's checkRequestPut: a put's preconditions, checked before anything changes.
    fn check_put(&self, req: &PutRequest, at: i64, leases: &dyn LeaseLookup) -> Result<(), MvccError> {
        if (req.ignore_value || req.ignore_lease) && self.state.index.get(&req.key, at).is_none() {
            return Err(MvccError::KeyNotFound);
        }
        if req.lease != 0 && !req.ignore_lease && !leases.lease_exists(req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        Ok(())
    }

    fn do_put(
        &mut self,
        committed: &Committed,
        w: &mut WriteTxn,
        req: &PutRequest,
    ) -> Result<PutResponse, MvccError> {
        let rev = w.next_rev();
        let lease = (!req.ignore_lease).then_some(req.lease);
        // What the put replaces comes from the index; its value is read only when somebody needs it (prev_kv,
        // ignore_value, watchers' prev_kv), as etcd reads it only then.
        let before = self.state.index.put(&req.key, rev, lease);
        let needs_value = req.prev_kv || req.ignore_value || self.events.is_some();
        let prev = match before {
            Some((at, _)) if needs_value => {
                Some(Overlay { pending: &self.pending, committed }.kv(at.modified)?)
            }
            _ => None,
        };
        let old_lease = before.map_or(0, |(_, l)| l);
        let lease = lease.unwrap_or(old_lease);
        let value = match &prev {
            Some(p) if req.ignore_value => p.value.clone(),
            _ => req.value.clone(),
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: before.map_or(rev.main, |(at, _)| at.created.main),
            mod_revision: rev.main,
            version: before.map_or(0, |(at, _)| at.version) + 1,
            value,
            lease,
        };
        self.key_puts.insert(rev.to_bytes(false), kv.encode_to_vec());
        if old_lease != lease {
            self.lease_changes.push(LeaseChange { key: req.key.clone(), old: old_lease, new: lease });
        }
        if let Some(events) = &mut self.events {
            events.push(Event { r#type: EventType::Put.into(), kv: Some(kv.clone()), prev_kv: prev.clone() });
        }
        self.pending.insert(rev, kv);
        Ok(PutResponse { header: header(rev.main), prev_kv: if req.prev_kv { prev } else { None } })
    }

    fn do_delete(
        &mut self,
        committed: &Committed,
        w: &mut WriteTxn,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let mut keys = Vec::new();
        self.state.index.visit(KeyRange::new(&req.key, &req.range_end), w.read_rev(), |k, at| {
            keys.push((k.to_vec(), at.modified));
            true
        });
        // The deleted values: for prev_kv, for watchers, and to detach leased keys.
        let mut prev_kvs = Vec::with_capacity(keys.len());
        {
            let source = Overlay { pending: &self.pending, committed };
            for (_, rev) in &keys {
                prev_kvs.push(source.kv(*rev)?);
            }
        }
        for ((key, _), prev) in keys.iter().zip(&prev_kvs) {
            let rev = w.next_rev();
            let tombstoned = self.state.index.tombstone(key, rev);
            debug_assert!(tombstoned, "a key visible at the read revision is alive");
            let tombstone = KeyValue { key: key.clone(), ..Default::default() };
            self.key_puts.insert(rev.to_bytes(true), tombstone.encode_to_vec());
            if prev.lease != 0 {
                self.lease_changes.push(LeaseChange { key: key.clone(), old: prev.lease, new: 0 });
            }
            if let Some(events) = &mut self.events {
                let kv = KeyValue { key: key.clone(), mod_revision: rev.main, ..Default::default() };
                let ev =
                    Event { r#type: EventType::Delete.into(), kv: Some(kv), prev_kv: Some(prev.clone()) };
                events.push(ev);
            }
        }
        if !req.prev_kv {
            prev_kvs.clear();
        }
        let deleted =
            i64::try_from(keys.len()).map_err(|_| MvccError::Corrupt("delete count overflow".into()))?;
        Ok(DeleteRangeResponse { header: header(w.read_rev()), deleted, prev_kvs })
    }

    /// Evaluates the compares of `req` and of every nested txn on the chosen path, all at `at` (etcd's
    /// compareToPath): one bool per txn in execution order.
    fn compare_path(&self, committed: &Committed, req: &TxnRequest, at: i64) -> Result<Vec<bool>, MvccError> {
        let source = Overlay { pending: &self.pending, committed };
        let mut path = Vec::new();
        compare_path(&self.state, &source, req, at, &mut path)?;
        Ok(path)
    }

    /// etcd's checkRequests over the chosen path: puts' preconditions (write txns only) and ranges' revisions.
    fn check_txn(
        &self,
        req: &TxnRequest,
        path: &[bool],
        at: i64,
        leases: &dyn LeaseLookup,
    ) -> Result<(), MvccError> {
        let write = is_write(req);
        let mut path_iter = path.iter().copied();
        self.check_ops(req, &mut path_iter, at, write, leases)
    }

    fn check_ops(
        &self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
        at: i64,
        write: bool,
        leases: &dyn LeaseLookup,
    ) -> Result<(), MvccError> {
        let succeeded = path.next().unwrap_or(false);
        for op in if succeeded { &req.success } else { &req.failure } {
            match &op.request {
                Some(Request::RequestPut(p)) if write => self.check_put(p, at, leases)?,
                Some(Request::RequestRange(r)) if r.revision != 0 => {
                    range::check_revision(&self.state, r.revision, at)?;
                }
                Some(Request::RequestTxn(nested)) => self.check_ops(nested, path, at, write, leases)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn do_txn(
        &mut self,
        committed: &Committed,
        w: &mut WriteTxn,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse, MvccError> {
        let succeeded = path.next().unwrap_or(false);
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    Response::ResponseRange(self.range_in(committed, r, w.read_rev())?)
                }
                Some(Request::RequestPut(p)) => Response::ResponsePut(self.do_put(committed, w, p)?),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(self.do_delete(committed, w, d)?)
                }
                Some(Request::RequestTxn(t)) => {
                    let mut nested = self.do_txn(committed, w, t, path)?;
                    nested.header = header(w.read_rev());
                    Response::ResponseTxn(nested)
                }
                None => continue,
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }
}

type RangeResponseT = cairn_api::etcdserverpb::RangeResponse;

/// Appends to `path` whether `req`'s compares hold at `at`, then the same for every nested txn on the branch
/// they choose (etcd's compareToPath).
pub(crate) fn compare_path(
    state: &State,
    source: &dyn KvSource,
    req: &TxnRequest,
    at: i64,
    path: &mut Vec<bool>,
) -> Result<(), MvccError> {
    let mut succeeded = true;
    for c in &req.compare {
        if !compare(state, source, c, at)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    for op in if succeeded { &req.success } else { &req.failure } {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            compare_path(state, source, nested, at, path)?;
        }
    }
    Ok(())
}

fn compare(state: &State, source: &dyn KvSource, c: &Compare, at: i64) -> Result<bool, MvccError> {
    let req = RangeRequest { key: c.key.clone(), range_end: c.range_end.clone(), ..Default::default() };
    let kvs = range::range(state, source, &req, at)?.kvs;
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    if kvs.is_empty() {
        // A missing key has no value to compare; for other targets it is the zero key-value.
        return Ok(target != CompareTarget::Value && compare_kv(c, target, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, target, kv)))
}

fn is_write(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).any(|op| match &op.request {
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => true,
        Some(Request::RequestTxn(t)) => is_write(t),
        _ => false,
    })
}

/// etcd's compareKV: the key-value's target field against the compare's operand.
fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let int_operand = |f: fn(&TargetUnion) -> Option<i64>| c.target_union.as_ref().and_then(f).unwrap_or(0);
    let ordering = match target {
        CompareTarget::Value => {
            let operand = match &c.target_union {
                Some(TargetUnion::Value(v)) => v.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(operand)
        }
        CompareTarget::Create => kv.create_revision.cmp(&int_operand(|t| match t {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Mod => kv.mod_revision.cmp(&int_operand(|t| match t {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Version => kv.version.cmp(&int_operand(|t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Lease => kv.lease.cmp(&int_operand(|t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

fn rev_to_meta(rev: i64) -> Vec<u8> {
    rev.to_be_bytes().to_vec()
}
