//! etcd's Lock service (v3lock), as etcd's server runs clientv3's `concurrency.Mutex` against itself: a lock
//! `name` is held by the key `name/<lease hex>` with the lowest create revision under `name/`; a contender
//! puts its key (or finds its lease's key already there), then waits for the deletion of each older key.
//! Unlock deletes the key; the lease's expiry or revocation does the same for a holder that died.

use std::sync::Arc;

use cairn_api::etcdserverpb::request_op::Request as Op;
use cairn_api::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use cairn_api::v3lockpb::lock_server::Lock;
use cairn_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use cairn_api::EtcdError;
use tonic::{Request, Response, Status};

use crate::concurrency::{self, range_answer, CancelGuard, ConcurrencyError, Result};
use crate::kv;
use crate::member::MemberState;

/// Blocks until the request's lease (a new one if 0) holds the lock `name`; dropping the call while it waits
/// removes its key.
pub async fn lock(m: Arc<MemberState>, r: LockRequest) -> Result<LockResponse> {
    let lease = concurrency::session_lease(&m, r.lease).await?;
    let prefix = concurrency::name_prefix(&r.name);
    let key = concurrency::contender_key(&prefix, lease);
    let owner = RequestOp { request: Some(Op::RequestRange(concurrency::first_created_request(&prefix))) };
    // Enter the queue unless this lease is in it already; read the holder in the same revision.
    let txn = TxnRequest {
        compare: vec![concurrency::created_at(&key, 0)],
        success: vec![
            RequestOp {
                request: Some(Op::RequestPut(PutRequest { key: key.clone(), lease, ..Default::default() })),
            },
            owner.clone(),
        ],
        failure: vec![
            RequestOp {
                request: Some(Op::RequestRange(RangeRequest { key: key.clone(), ..Default::default() })),
            },
            owner,
        ],
    };
    let resp = kv::txn(Arc::clone(&m), txn).await?;
    let mut my_revision = resp.header.as_ref().map_or(0, |h| h.revision);
    if !resp.succeeded {
        // This lease is in the queue already: its place is its key's.
        let existing =
            range_answer(&resp.responses, 0).and_then(|r| r.kvs.first()).ok_or(EtcdError::Corrupt)?;
        my_revision = existing.create_revision;
    }
    let holder = range_answer(&resp.responses, 1).and_then(|r| r.kvs.first()).map(|kv| kv.create_revision);
    if holder.is_none_or(|rev| rev == my_revision) {
        return Ok(LockResponse { header: resp.header, key });
    }

    let guard = {
        let (m, key) = (Arc::clone(&m), key.clone());
        CancelGuard::new(async move {
            if let Err(e) = delete(&m, key).await {
                tracing::warn!(error = %e, "removing an abandoned lock waiter failed");
            }
        })
    };
    // The lease may have expired while waiting: then the key is gone and the lock was never ours.
    let mine = match concurrency::wait_deletes(&m, &prefix, my_revision - 1, &key).await {
        Ok((_, mine)) => mine,
        Err(e) => {
            // As etcd: give up the place in the queue; the check below then reports the session expired.
            tracing::debug!(error = %e, "waiting for the lock failed");
            let _ = delete(&m, key.clone()).await;
            kv::range(Arc::clone(&m), RangeRequest { key: key.clone(), ..Default::default() }).await?
        }
    };
    guard.disarm();
    if mine.kvs.is_empty() {
        return Err(ConcurrencyError::SessionExpired);
    }
    Ok(LockResponse { header: mine.header, key })
}

/// Deletes the lock's key, held or not (etcd answers a key that is not there with success too).
pub async fn unlock(m: Arc<MemberState>, r: UnlockRequest) -> Result<UnlockResponse> {
    let resp = delete(&m, r.key).await?;
    Ok(UnlockResponse { header: resp.header })
}

async fn delete(m: &Arc<MemberState>, key: Vec<u8>) -> std::result::Result<DeleteRangeResponse, EtcdError> {
    kv::delete_range(Arc::clone(m), DeleteRangeRequest { key, ..Default::default() }).await
}

#[derive(Debug, Clone)]
pub struct LockService(pub Arc<MemberState>);

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> std::result::Result<Response<LockResponse>, Status> {
        Ok(Response::new(lock(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> std::result::Result<Response<UnlockResponse>, Status> {
        Ok(Response::new(unlock(Arc::clone(&self.0), req.into_inner()).await?))
    }
}
