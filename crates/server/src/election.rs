//! etcd's Election service (v3election), as etcd's server runs clientv3's `concurrency.Election` against
//! itself: a candidate's key is `name/<lease hex>` holding its value; the leader is the key with the lowest
//! create revision under `name/`. A leader key (name, key, create revision, lease) names a term: Proclaim and
//! Resign act only while the key still has that create revision.

use std::sync::Arc;

use cairn_api::etcdserverpb::request_op::Request as Op;
use cairn_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use cairn_api::mvccpb::KeyValue;
use cairn_api::v3electionpb::election_server::Election;
use cairn_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use cairn_api::EtcdError;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::concurrency::{self, range_answer, CancelGuard, ConcurrencyError, Result};
use crate::kv;
use crate::member::MemberState;

/// Blocks until the request's lease (a new one if 0) leads the election `name`, its key holding `value`.
/// Dropping the call while it waits withdraws the candidate.
pub async fn campaign(m: Arc<MemberState>, r: CampaignRequest) -> Result<CampaignResponse> {
    let lease = concurrency::session_lease(&m, r.lease).await?;
    let prefix = concurrency::name_prefix(&r.name);
    let key = concurrency::contender_key(&prefix, lease);
    let put = PutRequest { key: key.clone(), value: r.value.clone(), lease, ..Default::default() };
    let txn = TxnRequest {
        compare: vec![concurrency::created_at(&key, 0)],
        success: vec![RequestOp { request: Some(Op::RequestPut(put)) }],
        failure: vec![RequestOp {
            request: Some(Op::RequestRange(RangeRequest { key: key.clone(), ..Default::default() })),
        }],
    };
    let resp = kv::txn(Arc::clone(&m), txn).await?;
    let mut rev = resp.header.as_ref().map_or(0, |h| h.revision);
    if !resp.succeeded {
        // This lease already campaigns: keep its place, update the value.
        let existing =
            range_answer(&resp.responses, 0).and_then(|r| r.kvs.first()).ok_or(EtcdError::Corrupt)?;
        rev = existing.create_revision;
        if existing.value != r.value {
            if let Err(e) = proclaim_at(&m, &key, rev, lease, r.value.clone()).await {
                let _ = resign_at(&m, &key, rev).await;
                return Err(e);
            }
        }
    }

    let guard = {
        let (m, key) = (Arc::clone(&m), key.clone());
        CancelGuard::new(async move {
            if let Err(e) = resign_at(&m, &key, rev).await {
                tracing::warn!(error = %e, "withdrawing an abandoned candidate failed");
            }
        })
    };
    let waited = concurrency::wait_deletes(&m, &prefix, rev - 1, &key).await;
    guard.disarm();
    waited?;
    Ok(CampaignResponse { header: resp.header, leader: Some(LeaderKey { name: r.name, key, rev, lease }) })
}

/// Sets the leader's value, if the leader key is still the current term's.
pub async fn proclaim(m: Arc<MemberState>, r: ProclaimRequest) -> Result<ProclaimResponse> {
    let leader = r.leader.ok_or(ConcurrencyError::MissingLeaderKey)?;
    let lease = concurrency::session_lease(&m, leader.lease).await?;
    let header = proclaim_at(&m, &leader.key, leader.rev, lease, r.value).await?;
    Ok(ProclaimResponse { header })
}

/// Deletes the leader key if it is still the current term's; a stale key is no error (nothing to give up).
pub async fn resign(m: Arc<MemberState>, r: ResignRequest) -> Result<ResignResponse> {
    let leader = r.leader.ok_or(ConcurrencyError::MissingLeaderKey)?;
    // etcd opens a session here too: a request without a lease grants one, unused.
    concurrency::session_lease(&m, leader.lease).await?;
    let resp = resign_at(&m, &leader.key, leader.rev).await?;
    Ok(ResignResponse { header: resp.header })
}

/// The current leader's key and value.
pub async fn leader(m: Arc<MemberState>, r: LeaderRequest) -> Result<LeaderResponse> {
    let resp = concurrency::first_created(&m, &concurrency::name_prefix(&r.name)).await?;
    let kv = resp.kvs.into_iter().next().ok_or(ConcurrencyError::NoLeader)?;
    Ok(LeaderResponse { header: resp.header, kv: Some(kv) })
}

async fn proclaim_at(
    m: &Arc<MemberState>,
    key: &[u8],
    rev: i64,
    lease: i64,
    value: Vec<u8>,
) -> Result<Option<ResponseHeader>> {
    let put = PutRequest { key: key.to_vec(), value, lease, ..Default::default() };
    let txn = TxnRequest {
        compare: vec![concurrency::created_at(key, rev)],
        success: vec![RequestOp { request: Some(Op::RequestPut(put)) }],
        failure: Vec::new(),
    };
    let resp = kv::txn(Arc::clone(m), txn).await?;
    if !resp.succeeded {
        return Err(ConcurrencyError::NotLeader);
    }
    Ok(resp.header)
}

async fn resign_at(m: &Arc<MemberState>, key: &[u8], rev: i64) -> Result<TxnResponse> {
    let delete = DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
    let txn = TxnRequest {
        compare: vec![concurrency::created_at(key, rev)],
        success: vec![RequestOp { request: Some(Op::RequestDeleteRange(delete)) }],
        failure: Vec::new(),
    };
    Ok(kv::txn(Arc::clone(m), txn).await?)
}

/// The leader now (or the first one to come), then every change: a new value of the leader's key, and after
/// its deletion the next leader. Ends when the client goes away or a read or watch fails, as etcd's.
pub fn observe(m: Arc<MemberState>, r: LeaderRequest) -> impl Stream<Item = LeaderResponse> + Send + 'static {
    // One response in flight, as etcd's unbuffered channel: a slow client slows only its own observer.
    let (tx, rx) = mpsc::channel(1);
    let prefix = concurrency::name_prefix(&r.name);
    tokio::spawn(async move {
        tokio::select! {
            () = tx.closed() => {}
            () = observe_into(&m, &prefix, &tx) => {}
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|resp| (resp, rx)) })
}

async fn observe_into(m: &Arc<MemberState>, prefix: &[u8], tx: &mpsc::Sender<LeaderResponse>) {
    loop {
        let Ok(resp) = concurrency::first_created(m, prefix).await else {
            return;
        };
        let found = match resp.kvs.into_iter().next() {
            Some(kv) => Some((resp.header, kv)),
            // Nothing was under the prefix at the read's revision: the first put can only come after it (a
            // watch from the next revision starts synced, with no catch-up round to wait for).
            None => first_put(m, prefix, resp.header.as_ref().map_or(0, |h| h.revision) + 1).await,
        };
        let Some((header, kv)) = found else {
            return;
        };
        let next = header.as_ref().map_or(0, |h| h.revision) + 1;
        let key = kv.key.clone();
        if tx.send(LeaderResponse { header, kv: Some(kv) }).await.is_err() {
            return;
        }
        let mut events = concurrency::watch(m, key, Vec::new(), next);
        'term: loop {
            let Some(wr) = events.next().await else {
                return;
            };
            if wr.canceled {
                return;
            }
            for ev in wr.events {
                if concurrency::is_delete(&ev) {
                    break 'term;
                }
                if tx.send(LeaderResponse { header: wr.header, kv: ev.kv }).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Waits for the first candidate under an empty `prefix`: the first put from `revision` on, with the
/// header's revision set to that put's.
async fn first_put(
    m: &Arc<MemberState>,
    prefix: &[u8],
    revision: i64,
) -> Option<(Option<ResponseHeader>, KeyValue)> {
    let mut events = concurrency::watch(m, prefix.to_vec(), concurrency::prefix_end(prefix), revision);
    while let Some(wr) = events.next().await {
        if wr.canceled {
            return None;
        }
        if let Some(kv) = wr.events.into_iter().find(|ev| !concurrency::is_delete(ev)).and_then(|ev| ev.kv) {
            let header = wr.header.map(|h| ResponseHeader { revision: kv.mod_revision, ..h });
            return Some((header, kv));
        }
    }
    None
}

#[derive(Debug, Clone)]
pub struct ElectionService(pub Arc<MemberState>);

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> std::result::Result<Response<CampaignResponse>, Status> {
        Ok(Response::new(campaign(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> std::result::Result<Response<ProclaimResponse>, Status> {
        Ok(Response::new(proclaim(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> std::result::Result<Response<LeaderResponse>, Status> {
        Ok(Response::new(leader(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> std::result::Result<Response<BoxStream<LeaderResponse>>, Status> {
        let responses = observe(Arc::clone(&self.0), req.into_inner());
        Ok(Response::new(Box::pin(responses.map(Ok))))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> std::result::Result<Response<ResignResponse>, Status> {
        Ok(Response::new(resign(Arc::clone(&self.0), req.into_inner()).await?))
    }
}
