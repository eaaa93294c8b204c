//! The Maintenance and Cluster services: what etcdctl's endpoint, member and move-leader commands need.
//! Membership changes are validated here with etcd's errors, then proposed as raft conf changes and answered
//! once applied. The rest of Maintenance (defragment, hash, snapshot) answers Unimplemented until its issue
//! lands.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cairn_api::etcdserverpb::alarm_request::AlarmAction;
use cairn_api::etcdserverpb::cluster_server::Cluster;
use cairn_api::etcdserverpb::maintenance_server::Maintenance;
use cairn_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, MoveLeaderRequest, MoveLeaderResponse, StatusRequest,
    StatusResponse,
};
use cairn_api::EtcdError;
use tonic::{Request, Response, Status};

use crate::member::{MemberState, SERVER_VERSION, STORAGE_VERSION};

pub fn status(m: &MemberState) -> Result<StatusResponse, EtcdError> {
    let backend = m.shared.store.backend();
    let size = backend.size().map_err(|_| EtcdError::Stopped)?;
    let in_use = backend.size_in_use().map_err(|_| EtcdError::Stopped)?;
    Ok(StatusResponse {
        header: m.header(m.shared.store.current_revision()),
        version: SERVER_VERSION.into(),
        db_size: i64::try_from(size).unwrap_or(i64::MAX),
        leader: m.shared.leader.load(Ordering::SeqCst),
        raft_index: m.shared.raft_index.load(Ordering::SeqCst),
        raft_term: m.shared.term.load(Ordering::SeqCst),
        raft_applied_index: m.shared.applied_index.load(Ordering::SeqCst),
        errors: Vec::new(),
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

#[derive(Debug, Clone)]
pub struct MaintenanceService(pub Arc<MemberState>);

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status(&self.0)?))
    }

    /// Alarm listing; no alarm is ever raised yet (the quota issue will), so the list is empty.
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        match AlarmAction::try_from(req.get_ref().action) {
            Ok(AlarmAction::Get) => Ok(Response::new(AlarmResponse {
                header: self.0.header(self.0.shared.store.current_revision()),
                alarms: Vec::new(),
            })),
            _ => Err(Status::unimplemented("alarm activation and deactivation are not implemented yet")),
        }
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
