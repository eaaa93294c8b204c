//! Alarms and the backend quota, as etcd 3.4 keeps them (`etcdserver/api/v3alarm`, `etcdserver/quota.go`, the
//! quota, capped and corrupt appliers of `etcdserver/apply.go`, `api/v3rpc/quota.go`).
//!
//! # Layout
//! - [`Quota`] and the cost functions: what a Put, Txn or LeaseGrant may add to the backend, against
//!   `--quota-backend-bytes` (0: etcd's 2 GiB default; negative: no quota).
//! - [`Alarms`]: the raised alarms (type, member), changed only by applied AlarmRequests and mirrored in the
//!   backend's `alarm` table in the same transaction (reloaded on start and after a snapshot), and the applier
//!   they put in place, as etcd swaps its applyV3: capped while NOSPACE is raised (Put, LeaseGrant and Txn with
//!   puts refused), refusing every write while CORRUPT is.
//! - [`ApplyGate`]: one apply batch's pass through that applier chain: refusals before a request is applied, and
//!   etcd's quota applier, which applies a write that took the backend past the quota but answers NOSPACE.
//! - [`check_quota`] and [`alarm`]: the gRPC edge (etcd's quotaKVServer and quotaLeaseServer, which refuse and
//!   raise NOSPACE for the member that refused; Maintenance.Alarm).
//!
//! The applier is not part of the replicated state's bytes but follows from it: every member applies the same
//! AlarmRequests in the same order, so every member caps at the same entry. Whether a write is over the quota
//! depends on each member's own backend size, so that decision only changes the answer, never what is applied.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_api::cairnpb::internal_request::Request;
use cairn_api::cairnpb::InternalRequest;
use cairn_api::etcdserverpb::alarm_request::AlarmAction;
use cairn_api::etcdserverpb::request_op::Request as Op;
use cairn_api::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType, PutRequest, TxnRequest};
use cairn_api::EtcdError;
use cairn_mvcc::{Batch, Store};
use cairn_storage::Table;
use prost::Message;

use crate::error::ServerError;
use crate::member::MemberState;
use crate::node::{Applied, ApplyResult};

/// etcd's DefaultQuotaBytes: the quota when `--quota-backend-bytes` is 0.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's kvOverhead: the estimated cost of a key's metadata.
const KV_OVERHEAD: u64 = 256;
/// etcd's leaseOverhead: the estimated cost of storing a lease.
pub const LEASE_COST: u64 = 64;

/// The backend quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// None: no quota (a negative `--quota-backend-bytes`, etcd's passthroughQuota).
    limit: Option<u64>,
}

impl Quota {
    /// From `--quota-backend-bytes` as etcd reads it: 0 is the 2 GiB default, negative disables the quota.
    pub fn new(quota_backend_bytes: i64) -> Quota {
        let limit = match u64::try_from(quota_backend_bytes) {
            Err(_) => None,
            Ok(0) => Some(DEFAULT_QUOTA_BYTES),
            Ok(n) => Some(n),
        };
        Quota { limit }
    }

    /// etcd's backendQuota.Available: a request that adds nothing always fits; otherwise the backend size plus
    /// its cost must stay below the quota.
    pub fn available(self, backend_size: u64, cost: u64) -> bool {
        match self.limit {
            Some(limit) if cost > 0 => backend_size.saturating_add(cost) < limit,
            _ => true,
        }
    }
}

/// etcd's costPut: the overhead of a key plus its key and value.
pub fn cost_put(p: &PutRequest) -> u64 {
    KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
}

/// etcd's costTxn: the puts of the costlier branch. As etcd 3.4, only the branch's own puts count, not those
/// of a nested txn.
pub fn cost_txn(t: &TxnRequest) -> u64 {
    let branch = |ops: &[cairn_api::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => cost_put(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// The cost of a proposed request: Put, Txn and LeaseGrant are charged, everything else is free.
pub fn cost(request: &Request) -> u64 {
    match request {
        Request::Put(p) => cost_put(p),
        Request::Txn(t) => cost_txn(t),
        Request::LeaseGrant(_) => LEASE_COST,
        _ => 0,
    }
}

/// The applier etcd has in place, which the raised alarms select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Applier {
    Normal = 0,
    /// etcd's applierV3Capped: NOSPACE is raised.
    Capped = 1,
    /// etcd's applierV3Corrupt: CORRUPT is raised.
    Corrupt = 2,
}

impl Applier {
    fn from_u8(v: u8) -> Applier {
        match v {
            1 => Applier::Capped,
            2 => Applier::Corrupt,
            _ => Applier::Normal,
        }
    }

    /// The applier etcd builds on start and after a snapshot (restoreAlarms): capped under NOSPACE, corrupt
    /// (refusing a superset of what capped refuses) under CORRUPT.
    fn restored(raised: &BTreeSet<(i32, u64)>) -> Applier {
        if has_type(raised, AlarmType::Corrupt as i32) {
            Applier::Corrupt
        } else if has_type(raised, AlarmType::Nospace as i32) {
            Applier::Capped
        } else {
            Applier::Normal
        }
    }
}

fn has_type(raised: &BTreeSet<(i32, u64)>, alarm: i32) -> bool {
    raised.range((alarm, 0)..=(alarm, u64::MAX)).next().is_some()
}

/// The applier raising the first alarm of this type puts in place (clearing the last one puts back the
/// normal applier); other types change nothing.
fn applier_for(alarm: i32) -> Option<Applier> {
    match AlarmType::try_from(alarm) {
        Ok(AlarmType::Nospace) => Some(Applier::Capped),
        Ok(AlarmType::Corrupt) => Some(Applier::Corrupt),
        _ => None,
    }
}

/// The raised alarms and the quota, shared by the node loop (which alone changes them, in log order) and the
/// gRPC side (which reads them).
#[derive(Debug)]
pub struct Alarms {
    quota: Quota,
    /// The backend file's size after the last apply commit or defragmentation (etcd's backend.Size(), the
    /// value Status reports as dbSize): an atomic, so the quota check at the edge is one load, not a syscall.
    backend_size: AtomicU64,
    /// Raised alarms by (type, member): the order they are listed in (etcd lists them in Go map order).
    raised: Mutex<BTreeSet<(i32, u64)>>,
    /// The [`Applier`] in place, changed only when an applied AlarmRequest raises the first or clears the last
    /// alarm of its type, exactly as etcd swaps its applier (so clearing CORRUPT uncaps even under NOSPACE).
    applier: AtomicU8,
}

/// The alarms a backend holds: its `alarm` table's keys are etcd's `AlarmMember` bytes. An undecodable key is
/// reported through `corrupt`.
fn load(store: &Store, corrupt: fn(String) -> ServerError) -> Result<BTreeSet<(i32, u64)>, ServerError> {
    let tx = store.backend().begin_read()?;
    let mut raised = BTreeSet::new();
    let mut bad = None;
    tx.for_each(Table::Alarm, .., |k, _| match AlarmMember::decode(k) {
        Ok(m) => {
            raised.insert((m.alarm, m.member_id));
            true
        }
        Err(e) => {
            bad = Some(format!("undecodable alarm table key {k:?}: {e}"));
            false
        }
    })?;
    match bad {
        Some(msg) => Err(corrupt(msg)),
        None => Ok(raised),
    }
}

impl Alarms {
    /// The alarms the store's backend holds (on start).
    pub fn recover(store: &Store, quota: Quota) -> Result<Alarms, ServerError> {
        let raised = load(store, ServerError::Startup)?;
        let applier = Applier::restored(&raised);
        if applier != Applier::Normal {
            tracing::warn!(alarms = ?status_errors(&raised), "starting with alarms raised");
        }
        Ok(Alarms {
            quota,
            backend_size: AtomicU64::new(store.backend().size()?),
            raised: Mutex::new(raised),
            applier: AtomicU8::new(applier as u8),
        })
    }

    /// Replaces the alarms with those of a newly installed snapshot (etcd's restoreAlarms).
    pub fn reload(&self, store: &Store) -> Result<(), ServerError> {
        let raised = load(store, ServerError::Fatal)?;
        self.applier.store(Applier::restored(&raised) as u8, Ordering::SeqCst);
        *self.lock() = raised;
        self.refresh_size(store);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeSet<(i32, u64)>> {
        // Every change to the set completes or changes nothing before it could panic: keep serving.
        self.raised.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn applier(&self) -> Applier {
        Applier::from_u8(self.applier.load(Ordering::SeqCst))
    }

    /// Reads the backend's size again (after a commit or a defragmentation). Free when there is no quota.
    pub fn refresh_size(&self, store: &Store) {
        if self.quota.limit.is_none() {
            return;
        }
        match store.backend().size() {
            Ok(size) => self.backend_size.store(size, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "reading the backend size for the quota"),
        }
    }

    /// Whether a request of this cost fits the quota now (the edge check).
    pub fn available(&self, cost: u64) -> bool {
        self.quota.available(self.backend_size.load(Ordering::Relaxed), cost)
    }

    fn raised_by(&self, alarm: AlarmType, member_id: u64) -> bool {
        self.lock().contains(&(alarm as i32, member_id))
    }

    /// The alarms as Status lists them in `errors` (gogoproto's text form of each `AlarmMember`).
    pub fn status_errors(&self) -> Vec<String> {
        status_errors(&self.lock())
    }

    /// Applies an AlarmRequest on this member (etcd's applierV3backend.Alarm), recording the change in the
    /// batch's transaction.
    pub fn apply(&self, batch: &mut Batch<'_>, r: &AlarmRequest) -> AlarmResponse {
        let mut raised = self.lock();
        let member = AlarmMember { member_id: r.member_id, alarm: r.alarm };
        let key = (r.alarm, r.member_id);
        let alarms = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => list(&raised, r.alarm),
            Ok(AlarmAction::Activate) => {
                let first_of_type = !has_type(&raised, r.alarm);
                if raised.insert(key) {
                    batch.put_raw(Table::Alarm, member.encode_to_vec(), Vec::new());
                    if let Some(applier) = applier_for(r.alarm).filter(|_| first_of_type) {
                        tracing::warn!(alarm = text(r.alarm, r.member_id), "alarm raised");
                        self.applier.store(applier as u8, Ordering::SeqCst);
                    }
                }
                vec![member]
            }
            Ok(AlarmAction::Deactivate) => {
                if raised.remove(&key) {
                    batch.delete_raw(Table::Alarm, member.encode_to_vec());
                    if applier_for(r.alarm).is_some() && !has_type(&raised, r.alarm) {
                        tracing::info!(alarm = text(r.alarm, r.member_id), "alarm disarmed");
                        self.applier.store(Applier::Normal as u8, Ordering::SeqCst);
                    }
                    vec![member]
                } else {
                    Vec::new()
                }
            }
            Err(_) => Vec::new(),
        };
        AlarmResponse { header: None, alarms }
    }

    /// Starts one apply batch's pass through the applier chain.
    pub fn begin_apply(self: &Arc<Self>) -> ApplyGate {
        let size = self.backend_size.load(Ordering::Relaxed);
        ApplyGate { alarms: Arc::clone(self), size, over_quota: HashSet::new() }
    }
}

/// The raised alarms of one type (NONE: all of them), in listing order.
fn list(raised: &BTreeSet<(i32, u64)>, alarm: i32) -> Vec<AlarmMember> {
    raised
        .iter()
        .filter(|(t, _)| alarm == AlarmType::None as i32 || *t == alarm)
        .map(|&(alarm, member_id)| AlarmMember { member_id, alarm })
        .collect()
}

/// gogoproto's compact text of an `AlarmMember` (`memberID:5 alarm:NOSPACE `): fields at their default
/// value are left out, each other one is followed by a space.
fn text(alarm: i32, member_id: u64) -> String {
    let mut s = String::new();
    if member_id != 0 {
        s.push_str(&format!("memberID:{member_id} "));
    }
    if alarm != 0 {
        match AlarmType::try_from(alarm) {
            Ok(t) => s.push_str(&format!("alarm:{} ", t.as_str_name())),
            Err(_) => s.push_str(&format!("alarm:{alarm} ")),
        }
    }
    s
}

fn status_errors(raised: &BTreeSet<(i32, u64)>) -> Vec<String> {
    raised.iter().map(|&(alarm, member_id)| text(alarm, member_id)).collect()
}

/// One apply batch against the alarms and the quota: the backend size is read once, at the start (etcd's
/// backend size changes only when its batch commits).
#[derive(Debug)]
pub struct ApplyGate {
    alarms: Arc<Alarms>,
    size: u64,
    /// Requests applied although they took the backend past the quota: answered NOSPACE.
    over_quota: HashSet<u64>,
}

impl ApplyGate {
    /// Before applying request `id`: the error if the applier in place refuses it (it is then not applied).
    /// Otherwise, under the normal applier, notes whether etcd's quota applier will answer it NOSPACE.
    pub fn admit(&mut self, id: u64, request: Option<&Request>) -> Option<EtcdError> {
        let request = request?;
        match self.alarms.applier() {
            Applier::Corrupt => matches!(
                request,
                Request::Put(_)
                    | Request::DeleteRange(_)
                    | Request::Txn(_)
                    | Request::Compaction(_)
                    | Request::LeaseGrant(_)
                    | Request::LeaseRevoke(_)
            )
            .then_some(EtcdError::Corrupt),
            Applier::Capped => match request {
                Request::Put(_) | Request::LeaseGrant(_) => Some(EtcdError::NoSpace),
                Request::Txn(t) if cost_txn(t) > 0 => Some(EtcdError::NoSpace),
                _ => None,
            },
            Applier::Normal => {
                if !self.alarms.quota.available(self.size, cost(request)) {
                    self.over_quota.insert(id);
                }
                None
            }
        }
    }

    /// After the batch committed: reads the backend size again, answers the over-quota writes NOSPACE, and
    /// says whether this member must now raise NOSPACE (etcd raises it when an applied write exceeded the quota
    /// and no NOSPACE alarm is raised yet).
    pub fn finish(self, store: &Store, results: &mut [(u64, ApplyResult)]) -> bool {
        self.alarms.refresh_size(store);
        if self.over_quota.is_empty() {
            return false;
        }
        for (id, result) in results.iter_mut() {
            if result.is_ok() && self.over_quota.contains(id) {
                *result = Err(EtcdError::NoSpace);
            }
        }
        tracing::warn!("applying raft message exceeded backend quota");
        !has_type(&self.alarms.lock(), AlarmType::Nospace as i32)
    }
}

fn raise_nospace(member_id: u64) -> AlarmRequest {
    AlarmRequest { action: AlarmAction::Activate as i32, member_id, alarm: AlarmType::Nospace as i32 }
}

/// The entry the node loop proposes to raise NOSPACE for `member_id` (request id `id`, no one waits for it).
pub fn nospace_proposal(id: u64, member_id: u64) -> Vec<u8> {
    InternalRequest { id, request: Some(Request::Alarm(raise_nospace(member_id))) }.encode_to_vec()
}

/// etcd's quotaAlarmer check at the gRPC edge, before a Put, Txn or LeaseGrant is proposed: if it would take
/// the backend past the quota, NOSPACE is raised for this member (through raft, waited for) and the request is
/// refused. Once this member's NOSPACE is raised, refusals propose nothing more (raising it again changes
/// nothing; etcd proposes it anyway).
pub async fn check_quota(m: &MemberState, cost: u64) -> Result<(), EtcdError> {
    let alarms = &m.shared.alarms;
    if alarms.available(cost) {
        return Ok(());
    }
    let me = m.shared.member_id;
    if !alarms.raised_by(AlarmType::Nospace, me) {
        if let Err(e) = m.propose(Request::Alarm(raise_nospace(me))).await {
            tracing::warn!(error = %e, "raising the NOSPACE alarm failed");
        }
    }
    Err(EtcdError::NoSpace)
}

/// Maintenance.Alarm as etcd 3.4 serves it: every action, GET included, goes through raft and is answered from
/// the alarms as applied, without a header. An unknown action (which crashes etcd 3.4) lists nothing.
pub async fn alarm(m: Arc<MemberState>, r: AlarmRequest) -> Result<AlarmResponse, EtcdError> {
    if AlarmAction::try_from(r.action).is_err() {
        return Ok(AlarmResponse::default());
    }
    crate::kv::applied(&m, Request::Alarm(r), |a| match a {
        Applied::Alarm(resp) => Ok(resp),
        other => Err(other),
    })
    .await
}

#[cfg(test)]
#[path = "alarm_tests.rs"]
mod tests;
