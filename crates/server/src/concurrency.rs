//! What the Lock and Election services share, as etcd's clientv3 `concurrency` package (`key.go`,
//! `session.go`) gives them: sessions on leases, contender keys `prefix + lease id in hex`, the key that holds
//! the name (lowest create revision), waiting for the deletion of every older contender, and a guard that
//! removes a waiter's key when its caller goes away.
//!
//! etcd serves these RPCs through a client embedded in the server; its errors reach the caller as plain Go
//! errors, so every failure here is gRPC code Unknown with the error's message (also the etcd errors of the KV
//! and lease calls underneath, e.g. "etcdserver: requested lease not found").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cairn_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_api::etcdserverpb::request_op::Request as Op;
use cairn_api::etcdserverpb::response_op::Response as OpResponse;
use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::{
    Compare, LeaseGrantRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use cairn_api::EtcdError;
use futures::{Stream, StreamExt};
use tonic::Status;

use crate::member::MemberState;
use crate::{kv, lease};

/// The TTL of the lease a request without one gets (clientv3 concurrency's defaultSessionTTL).
pub const SESSION_TTL: i64 = 60;

/// Why a Lock or Election request failed; messages are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConcurrencyError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("election: not leader")]
    NotLeader,
    #[error("election: no leader")]
    NoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    #[error("mutex: session is expired")]
    SessionExpired,
    #[error("lost watcher waiting for delete")]
    LostWatcher,
}

impl From<ConcurrencyError> for Status {
    fn from(e: ConcurrencyError) -> Status {
        Status::unknown(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ConcurrencyError>;

/// The lease a request's session runs on: the given one, or (0) a new lease of [`SESSION_TTL`] seconds that
/// nobody keeps alive, as etcd's server does.
pub async fn session_lease(m: &Arc<MemberState>, lease: i64) -> Result<i64> {
    if lease != 0 {
        return Ok(lease);
    }
    let granted = lease::grant(Arc::clone(m), LeaseGrantRequest { ttl: SESSION_TTL, id: 0 }).await?;
    Ok(granted.id)
}

/// The prefix of a lock's or election's contender keys: its name and "/".
pub fn name_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// `prefix` (ending in "/") followed by the lease id in lower-case hex, as Go's `%x` prints an int64.
pub fn contender_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    let mut key = prefix.to_vec();
    key.extend_from_slice(hex.as_bytes());
    key
}

/// The end of the range holding every key that starts with `prefix` (clientv3's GetPrefixRangeEnd).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

/// The key under `prefix` with the lowest create revision: the lock holder or the election leader.
pub async fn first_created(m: &Arc<MemberState>, prefix: &[u8]) -> Result<RangeResponse> {
    Ok(kv::range(Arc::clone(m), first_created_request(prefix)).await?)
}

/// The read of [`first_created`], for use inside a txn.
pub fn first_created_request(prefix: &[u8]) -> RangeRequest {
    by_create(prefix, SortOrder::Ascend, 0)
}

/// A txn comparison: `key`'s create revision is `revision` (0: the key does not exist).
pub fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        range_end: Vec::new(),
    }
}

/// The `i`th answer of a txn, if it is a range's.
pub fn range_answer(responses: &[ResponseOp], i: usize) -> Option<&RangeResponse> {
    match responses.get(i)?.response.as_ref()? {
        OpResponse::ResponseRange(r) => Some(r),
        _ => None,
    }
}

/// One key under `prefix` sorted by create revision, at most `max_create_revision` when not 0.
fn by_create(prefix: &[u8], order: SortOrder, max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

/// Waits until no key under `prefix` has a create revision at most `max_create_revision`: each time for the
/// youngest such key to be deleted (etcd's waitDeletes). Returns the read that found none, and `own` (the
/// caller's contender key) as that same read saw it: one linearizable read where etcd's Mutex makes two in a
/// row (waitDeletes, then a Get of its key) before a lock changes hands.
pub async fn wait_deletes(
    m: &Arc<MemberState>,
    prefix: &[u8],
    max_create_revision: i64,
    own: &[u8],
) -> Result<(Option<ResponseHeader>, RangeResponse)> {
    let range = |r: RangeRequest| RequestOp { request: Some(Op::RequestRange(r)) };
    loop {
        let read = TxnRequest {
            compare: Vec::new(),
            success: vec![
                range(by_create(prefix, SortOrder::Descend, max_create_revision)),
                range(RangeRequest { key: own.to_vec(), ..Default::default() }),
            ],
            failure: Vec::new(),
        };
        let resp = kv::txn(Arc::clone(m), read).await?;
        let older = range_answer(&resp.responses, 0).ok_or(EtcdError::Corrupt)?;
        let Some(last) = older.kvs.first() else {
            let own = range_answer(&resp.responses, 1).cloned().ok_or(EtcdError::Corrupt)?;
            return Ok((resp.header, own));
        };
        wait_delete(m, &last.key, last.create_revision).await?;
    }
}

/// Waits until `key`, created at `create_revision`, is deleted.
///
/// etcd watches from the revision of the read that found the key; such a watcher usually starts behind the
/// store and waits for a catch-up round. Watching from now and then reading the key once is equivalent (a
/// deletion before the watcher shows in the read, one after it in the watcher) and hands a lock over at once.
async fn wait_delete(m: &Arc<MemberState>, key: &[u8], create_revision: i64) -> Result<()> {
    let mut events = watch(m, key.to_vec(), Vec::new(), 0);
    match events.next().await {
        Some(created) if created.created && !created.canceled => {}
        _ => return Err(ConcurrencyError::LostWatcher),
    }
    let now = kv::range(Arc::clone(m), RangeRequest { key: key.to_vec(), ..Default::default() }).await?;
    if now.kvs.first().is_none_or(|kv| kv.create_revision != create_revision) {
        return Ok(());
    }
    while let Some(resp) = events.next().await {
        if resp.compact_revision != 0 {
            return Err(EtcdError::Compacted.into());
        }
        if resp.canceled {
            break;
        }
        if resp.events.iter().any(is_delete) {
            return Ok(());
        }
    }
    Err(ConcurrencyError::LostWatcher)
}

pub fn is_delete(ev: &cairn_api::mvccpb::Event) -> bool {
    ev.r#type == cairn_api::mvccpb::event::EventType::Delete as i32
}

/// The responses of one watcher on `[key, range_end)` from `revision`, through the Watch service's own path.
/// The watcher lives as long as the returned stream.
pub fn watch(
    m: &Arc<MemberState>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    revision: i64,
) -> impl Stream<Item = WatchResponse> + Send + Unpin + 'static {
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            range_end,
            start_revision: revision,
            ..Default::default()
        })),
    };
    // The request side ends after the create; the watcher stays until the response side is dropped.
    Box::pin(crate::watch::serve(Arc::clone(m), futures::stream::iter([create])))
}

/// Undo work (remove a waiter's key) if the request is dropped before [`CancelGuard::disarm`]: a client that
/// gives up on a Lock or Campaign leaves no contender behind, as etcd's cleanup on context cancellation.
pub struct CancelGuard {
    undo: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for CancelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelGuard").field("armed", &self.undo.is_some()).finish()
    }
}

impl CancelGuard {
    pub fn new(undo: impl Future<Output = ()> + Send + 'static) -> CancelGuard {
        CancelGuard { undo: Some(Box::pin(undo)) }
    }

    pub fn disarm(mut self) {
        self.undo = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            // The request's task is going away: the undo runs on its own.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(undo);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contender_keys_are_gos_hex_of_the_lease() {
        assert_eq!(contender_key(b"l/", 0x694d_77a1_c2b3), b"l/694d77a1c2b3".to_vec());
        assert_eq!(contender_key(b"/", 255), b"/ff".to_vec());
        assert_eq!(contender_key(b"e/", -1), b"e/-1".to_vec());
        assert_eq!(contender_key(b"e/", i64::MIN), b"e/-8000000000000000".to_vec());
    }

    #[test]
    fn prefix_end_is_clientv3s() {
        assert_eq!(prefix_end(b"l/"), b"l0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn every_error_is_code_unknown_with_etcds_message() {
        let cases = [
            (ConcurrencyError::NotLeader, "election: not leader"),
            (ConcurrencyError::NoLeader, "election: no leader"),
            (ConcurrencyError::MissingLeaderKey, "\"leader\" field must be provided"),
            (ConcurrencyError::SessionExpired, "mutex: session is expired"),
            (EtcdError::LeaseNotFound.into(), "etcdserver: requested lease not found"),
            (EtcdError::EmptyKey.into(), "etcdserver: key is not provided"),
        ];
        for (e, message) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (tonic::Code::Unknown, message));
        }
    }

    #[tokio::test]
    async fn a_dropped_guard_runs_its_undo_and_a_disarmed_one_does_not() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        drop(CancelGuard::new(async move {
            let _ = tx.send(());
        }));
        assert!(rx.await.is_ok());
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        CancelGuard::new(async move {
            let _ = tx.send(());
        })
        .disarm();
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err());
    }
}
