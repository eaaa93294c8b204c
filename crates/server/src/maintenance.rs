//! The Maintenance and Cluster services: what etcdctl's endpoint, member and move-leader commands need.
//! Membership changes are validated here with etcd's errors, then proposed as raft conf changes and answered
//! once applied. Snapshot, Hash, HashKV and Defragment work on this member's store, as etcd's do.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cairn_api::etcdserverpb::cluster_server::Cluster;
use cairn_api::etcdserverpb::maintenance_server::Maintenance;
use cairn_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, MoveLeaderRequest, MoveLeaderResponse, StatusRequest,
    StatusResponse,
};
use cairn_api::etcdserverpb::{
    DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    SnapshotRequest, SnapshotResponse,
};
use cairn_api::EtcdError;
use sha2::Digest;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::error::mvcc_to_etcd;

use crate::member::{MemberState, SERVER_VERSION, STORAGE_VERSION};

pub fn status(m: &MemberState) -> Result<StatusResponse, EtcdError> {
    let backend = m.shared.store.backend();
    let size = backend.size().map_err(|_| EtcdError::Stopped)?;
    let in_use = backend.size_in_use().map_err(|_| EtcdError::Stopped)?;
    let leader = m.shared.leader.load(Ordering::SeqCst);
    // As etcd: "no leader" first, then each raised alarm.
    let no_leader = (leader == 0).then(|| EtcdError::NoLeader.message().to_owned());
    let errors = no_leader.into_iter().chain(m.shared.alarms.status_errors()).collect();
    Ok(StatusResponse {
        header: m.header(m.shared.store.current_revision()),
        version: SERVER_VERSION.into(),
        db_size: i64::try_from(size).unwrap_or(i64::MAX),
        leader,
        raft_index: m.shared.raft_index.load(Ordering::SeqCst),
        raft_term: m.shared.term.load(Ordering::SeqCst),
        raft_applied_index: m.shared.applied_index.load(Ordering::SeqCst),
        errors,
        db_size_in_use: i64::try_from(in_use).unwrap_or(i64::MAX),
        is_learner: m.shared.is_learner.load(Ordering::SeqCst),
        storage_version: STORAGE_VERSION.into(),
        db_size_quota: m.quota_bytes,
        downgrade_info: None,
    })
}

/// Status as the gateway calls it.
pub async fn status_request(m: Arc<MemberState>, _req: StatusRequest) -> Result<StatusResponse, EtcdError> {
    status(&m)
}

pub async fn member_list(
    m: Arc<MemberState>,
    req: MemberListRequest,
) -> Result<MemberListResponse, EtcdError> {
    // A learner answers from its own view, as etcd serves MemberList on learners.
    if req.linearizable && !m.shared.is_learner.load(Ordering::SeqCst) {
        m.read_index().await?;
    }
    // etcd's member list header carries no revision.
    Ok(MemberListResponse { header: m.header(0), members: m.shared.members().list() })
}

/// Snapshot blobs are sent in pieces of this size (etcd's snapshotSendBufferSize).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

pub async fn hash_kv(m: Arc<MemberState>, req: HashKvRequest) -> Result<HashKvResponse, EtcdError> {
    let store = Arc::clone(&m.shared.store);
    let h = tokio::task::spawn_blocking(move || store.hash_kv(req.revision))
        .await
        .map_err(|_| EtcdError::Stopped)?
        .map_err(|e| mvcc_to_etcd(&e))?;
    Ok(HashKvResponse {
        header: m.header(h.current_revision),
        hash: h.hash,
        compact_revision: h.compact_revision,
        hash_revision: h.hash_revision,
    })
}

pub async fn hash(m: Arc<MemberState>, _req: HashRequest) -> Result<HashResponse, EtcdError> {
    let store = Arc::clone(&m.shared.store);
    let hash = tokio::task::spawn_blocking(move || store.hash_all())
        .await
        .map_err(|_| EtcdError::Stopped)?
        .map_err(|e| mvcc_to_etcd(&e))?;
    Ok(HashResponse { header: m.header(m.shared.store.current_revision()), hash })
}

pub async fn defragment(
    m: Arc<MemberState>,
    _req: DefragmentRequest,
) -> Result<DefragmentResponse, EtcdError> {
    let store = Arc::clone(&m.shared.store);
    tokio::task::spawn_blocking(move || store.defragment()).await.map_err(|_| EtcdError::Stopped)?.map_err(
        |e| {
            tracing::error!(error = %e, "defragmenting failed");
            mvcc_to_etcd(&e)
        },
    )?;
    // The quota compares the backend's new, smaller size from now on.
    m.shared.alarms.refresh_size(&m.shared.store);
    Ok(DefragmentResponse { header: m.header(m.shared.store.current_revision()) })
}

/// A consistent copy of the backend, streamed in pieces and followed by its SHA-256 (the integrity check
/// etcd's restore reads), as etcd's Snapshot. The copy lives in a temp file next to the backend while it is
/// sent.
fn snapshot_stream(m: &Arc<MemberState>) -> BoxStream<SnapshotResponse> {
    let store = Arc::clone(&m.shared.store);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SnapshotResponse, Status>>(4);
    tokio::task::spawn_blocking(move || {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "snapshot: {what}");
            Status::unavailable(format!("snapshot: {what}: {e}"))
        };
        let dir = store.backend().path().parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let file = match tempfile::NamedTempFile::new_in(&dir) {
            Ok(f) => f,
            Err(e) => return drop(tx.blocking_send(Err(fail("temp file", &e)))),
        };
        if let Err(e) = store.snapshot_to(file.path()) {
            return drop(tx.blocking_send(Err(fail("copying the backend", &e))));
        }
        let mut f = file.as_file();
        let total = match f.metadata() {
            Ok(md) => md.len(),
            Err(e) => return drop(tx.blocking_send(Err(fail("reading the copy", &e)))),
        };
        let mut digest = sha2::Sha256::new();
        let mut sent = 0u64;
        let mut buf = vec![0u8; SNAPSHOT_CHUNK];
        while sent < total {
            let n = match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return drop(tx.blocking_send(Err(fail("reading the copy", &e)))),
            };
            sent += n as u64;
            digest.update(&buf[..n]);
            let piece = SnapshotResponse {
                remaining_bytes: total - sent,
                blob: buf[..n].to_vec(),
                ..Default::default()
            };
            if tx.blocking_send(Ok(piece)).is_err() {
                return; // the client went away
            }
        }
        let sha =
            SnapshotResponse { remaining_bytes: 0, blob: digest.finalize().to_vec(), ..Default::default() };
        let _ = tx.blocking_send(Ok(sha));
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[derive(Debug, Clone)]
pub struct MaintenanceService(pub Arc<MemberState>);

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status(&self.0)?))
    }

    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(crate::alarm::alarm(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Ok(Response::new(hash(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Ok(Response::new(hash_kv(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Ok(Response::new(defragment(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<BoxStream<SnapshotResponse>>, Status> {
        Ok(Response::new(snapshot_stream(&self.0)))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        Ok(Response::new(crate::membership_api::move_leader(&self.0, req.into_inner().target_id).await?))
    }
}

#[derive(Debug, Clone)]
pub struct ClusterService(pub Arc<MemberState>);

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(member_list(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Ok(Response::new(crate::membership_api::add(&self.0, req.into_inner()).await?))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Ok(Response::new(crate::membership_api::remove(&self.0, req.into_inner().id).await?))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Ok(Response::new(crate::membership_api::update(&self.0, req.into_inner()).await?))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        crate::membership_api::promote(&self.0, req.into_inner().id).await.map(Response::new)
    }
}
