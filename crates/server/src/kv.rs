//! etcd's KV service: validation, then reads from the local store (after ReadIndex unless serializable) and
//! writes through raft. The functions are shared by gRPC and the HTTP gateway.

use std::sync::Arc;

use cairn_api::cairnpb::internal_request::Request;
use cairn_api::etcdserverpb::kv_server::Kv;
use cairn_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RangeStreamResponse,
    ResponseHeader, TxnRequest, TxnResponse,
};
use cairn_api::EtcdError;
use cairn_mvcc::store::{txn_is_read_only, txn_is_serializable};
use tonic::codegen::BoxStream;
use tonic::{Request as GrpcRequest, Response, Status};

use crate::error::mvcc_to_etcd;
use crate::member::MemberState;
use crate::node::Applied;
use crate::{alarm, validate};

pub async fn range(m: Arc<MemberState>, r: RangeRequest) -> Result<RangeResponse, EtcdError> {
    validate::range(&r)?;
    if !r.serializable {
        m.read_index().await?;
    }
    let mut resp = m.shared.store.range(&r).map_err(|e| mvcc_to_etcd(&e))?;
    resp.header = m.header(resp.header.map_or(0, |h| h.revision));
    Ok(resp)
}

pub async fn put(m: Arc<MemberState>, r: PutRequest) -> Result<PutResponse, EtcdError> {
    // As etcd's quotaKVServer, the quota is checked before anything else.
    alarm::check_quota(&m, alarm::cost_put(&r)).await?;
    validate::put(&r)?;
    write(&m, Request::Put(r), |a| match a {
        Applied::Put(x) => Ok(x),
        other => Err(other),
    })
    .await
}

pub async fn delete_range(
    m: Arc<MemberState>,
    r: DeleteRangeRequest,
) -> Result<DeleteRangeResponse, EtcdError> {
    validate::delete_range(&r)?;
    write(&m, Request::DeleteRange(r), |a| match a {
        Applied::DeleteRange(x) => Ok(x),
        other => Err(other),
    })
    .await
}

pub async fn txn(m: Arc<MemberState>, r: TxnRequest) -> Result<TxnResponse, EtcdError> {
    alarm::check_quota(&m, alarm::cost_txn(&r)).await?;
    validate::txn(&r, m.max_txn_ops)?;
    // A Txn of ranges only is a read, as etcd serves it: after a linearizable read unless every range is
    // serializable, from this member's store, without a log entry. A learner serves no Txn.
    if txn_is_read_only(&r) {
        m.check_voter()?;
        if !txn_is_serializable(&r) {
            m.read_index().await?;
        }
        if let Some(read) = m.shared.store.txn_read_only(&r) {
            let mut resp = read.map_err(|e| mvcc_to_etcd(&e))?;
            resp.header = m.header(resp.header.map_or(0, |h| h.revision));
            return Ok(resp);
        }
    }
    write(&m, Request::Txn(r), |a| match a {
        Applied::Txn(x) => Ok(x),
        other => Err(other),
    })
    .await
}

pub async fn compact(m: Arc<MemberState>, r: CompactionRequest) -> Result<CompactionResponse, EtcdError> {
    write(&m, Request::Compaction(r), |a| match a {
        Applied::Compaction(x) => Ok(x),
        other => Err(other),
    })
    .await
}

/// A response whose header the server completes (the store fills in only the revision).
pub(crate) trait WithHeader {
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! with_header {
    ($($t:ty),*) => {$(
        impl WithHeader for $t {
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        }
    )*};
}
with_header!(
    PutResponse,
    DeleteRangeResponse,
    TxnResponse,
    CompactionResponse,
    LeaseGrantResponse,
    LeaseRevokeResponse
);

/// Proposes a request, waits for it to apply, and takes its result of the kind `pick` expects.
pub(crate) async fn applied<T>(
    m: &MemberState,
    request: Request,
    pick: impl FnOnce(Applied) -> Result<T, Applied>,
) -> Result<T, EtcdError> {
    pick(m.propose(request).await?).map_err(|other| {
        // The applier answered with another kind of result: a bug, reported rather than panicked on.
        tracing::error!(applied = ?other, "applier returned a result of the wrong kind");
        EtcdError::Corrupt
    })
}

/// Proposes a write, waits for it to apply, and completes the header of its response.
pub(crate) async fn write<T: WithHeader>(
    m: &MemberState,
    request: Request,
    pick: impl FnOnce(Applied) -> Result<T, Applied>,
) -> Result<T, EtcdError> {
    let mut resp = applied(m, request, pick).await?;
    let header = resp.header_mut();
    *header = m.header(header.as_ref().map_or(0, |h| h.revision));
    Ok(resp)
}

#[derive(Debug, Clone)]
pub struct KvService(pub Arc<MemberState>);

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: GrpcRequest<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Ok(Response::new(range(Arc::clone(&self.0), req.into_inner()).await?))
    }

    /// etcd 3.7's RangeStream: the whole range, pinned to one revision, as one chunk (merging the chunks of a
    /// stream gives the Range answer; one chunk is the degenerate case clients handle).
    async fn range_stream(
        &self,
        req: GrpcRequest<RangeRequest>,
    ) -> Result<Response<BoxStream<RangeStreamResponse>>, Status> {
        let resp = range(Arc::clone(&self.0), req.into_inner()).await?;
        let chunk = RangeStreamResponse { range_response: Some(resp) };
        Ok(Response::new(Box::pin(futures::stream::once(async move { Ok(chunk) }))))
    }

    async fn put(&self, req: GrpcRequest<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Ok(Response::new(put(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn delete_range(
        &self,
        req: GrpcRequest<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Ok(Response::new(delete_range(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn txn(&self, req: GrpcRequest<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Ok(Response::new(txn(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn compact(
        &self,
        req: GrpcRequest<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Ok(Response::new(compact(Arc::clone(&self.0), req.into_inner()).await?))
    }
}
