//! The Cluster service's changes and MoveLeader, with etcd's checks and errors: bad or duplicate peer URLs,
//! unknown members, one learner at most, never removing the last voter, promoting only a learner that has
//! caught up (checked by the leader: a follower forwards the promotion to it over the peer port, as etcd).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::cluster_client::ClusterClient;
use cairn_api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse, MoveLeaderResponse,
};
use cairn_api::EtcdError;
use cairn_raft::{ConfChange, ConfChangeType};
use tonic::Status;

use crate::member::MemberState;
use crate::membership::valid_peer_urls;
use crate::node::Command;

/// etcd allows one learner at a time (maxLearners).
const MAX_LEARNERS: usize = 1;

fn change(change_type: ConfChangeType, node_id: u64) -> ConfChange {
    ConfChange { change_type, node_id, context: Vec::new() }
}

/// A new member's id as etcd makes it: the peer URLs hashed with the Unix time in seconds (so the same URLs
/// added twice within a second give the same id, and etcd's "member ID already exist").
fn new_member_id(peer_urls: &[String]) -> u64 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    crate::config::member_id(peer_urls, &secs.to_string())
}

pub async fn add(m: &MemberState, req: MemberAddRequest) -> Result<MemberAddResponse, EtcdError> {
    if !valid_peer_urls(&req.peer_ur_ls) {
        return Err(EtcdError::MemberBadUrls);
    }
    let current = m.shared.members();
    // etcd's order of checks: the id, then the URLs, then the learner count.
    let id = new_member_id(&req.peer_ur_ls);
    if current.removed.contains(&id) {
        return Err(EtcdError::MemberNotFound);
    }
    if current.members.contains_key(&id) {
        return Err(EtcdError::MemberExist);
    }
    if current.peer_url_owner(&req.peer_ur_ls, 0).is_some() {
        return Err(EtcdError::PeerUrlExist);
    }
    if req.is_learner && current.members.values().filter(|x| x.is_learner).count() >= MAX_LEARNERS {
        return Err(EtcdError::TooManyLearners);
    }
    let member = Member { id, peer_ur_ls: req.peer_ur_ls, is_learner: req.is_learner, ..Member::default() };
    let kind = if req.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
    m.conf_change(change(kind, id), Some(member.clone())).await?;
    Ok(MemberAddResponse { header: m.header(0), member: Some(member), members: m.shared.members().list() })
}

pub async fn remove(m: &MemberState, id: u64) -> Result<MemberRemoveResponse, EtcdError> {
    let current = m.shared.members();
    let Some(target) = current.members.get(&id) else {
        return Err(EtcdError::MemberNotFound);
    };
    // etcd's IsReadyToRemoveVotingMember: a cluster never loses its last voter.
    if !target.is_learner && current.voters().count() <= 1 {
        return Err(EtcdError::MemberNotEnoughStarted);
    }
    m.conf_change(change(ConfChangeType::RemoveNode, id), None).await?;
    Ok(MemberRemoveResponse { header: m.header(0), members: m.shared.members().list() })
}

pub async fn update(m: &MemberState, req: MemberUpdateRequest) -> Result<MemberUpdateResponse, EtcdError> {
    if !valid_peer_urls(&req.peer_ur_ls) {
        return Err(EtcdError::MemberBadUrls);
    }
    let current = m.shared.members();
    if !current.members.contains_key(&req.id) {
        return Err(EtcdError::MemberNotFound);
    }
    if current.peer_url_owner(&req.peer_ur_ls, req.id).is_some() {
        return Err(EtcdError::PeerUrlExist);
    }
    let member = Member { id: req.id, peer_ur_ls: req.peer_ur_ls, ..Member::default() };
    m.conf_change(change(ConfChangeType::UpdateNode, req.id), Some(member)).await?;
    Ok(MemberUpdateResponse { header: m.header(0), members: m.shared.members().list() })
}

pub async fn promote(m: &MemberState, id: u64) -> Result<MemberPromoteResponse, Status> {
    let current = m.shared.members();
    match current.members.get(&id) {
        None => return Err(EtcdError::MemberNotFound.into()),
        Some(x) if !x.is_learner => return Err(EtcdError::MemberNotLearner.into()),
        Some(_) => {}
    }
    match m.conf_change(change(ConfChangeType::AddNode, id), None).await {
        Ok(()) => Ok(MemberPromoteResponse { header: m.header(0), members: m.shared.members().list() }),
        // Only the leader knows whether the learner caught up: ask it.
        Err(EtcdError::NotLeader) => forward_promote(m, id).await,
        Err(e) => Err(e.into()),
    }
}

async fn forward_promote(m: &MemberState, id: u64) -> Result<MemberPromoteResponse, Status> {
    let leader = m.shared.leader.load(Ordering::SeqCst);
    let urls = m.shared.members().members.get(&leader).map(|l| l.peer_ur_ls.clone()).unwrap_or_default();
    if leader == 0 || leader == m.shared.member_id || urls.is_empty() {
        return Err(EtcdError::NoLeader.into());
    }
    let mut last = Status::from(EtcdError::NoLeader);
    for url in urls {
        let endpoint = match tonic::transport::Endpoint::from_shared(url) {
            Ok(e) => e.connect_timeout(Duration::from_secs(1)).timeout(m.request_timeout),
            Err(_) => continue,
        };
        match endpoint.connect().await {
            Ok(channel) => {
                return ClusterClient::new(channel).member_promote(MemberPromoteRequest { id }).await.map(
                    |r| {
                        let mut r = r.into_inner();
                        r.header = m.header(0);
                        r
                    },
                );
            }
            Err(e) => last = Status::unavailable(e.to_string()),
        }
    }
    Err(last)
}

/// etcd's MoveLeader: only the leader moves leadership, to a voting member; waits until it moved.
pub async fn move_leader(m: &MemberState, target: u64) -> Result<MoveLeaderResponse, EtcdError> {
    let me = m.shared.member_id;
    if m.shared.leader.load(Ordering::SeqCst) != me {
        return Err(EtcdError::NotLeader);
    }
    let is_voter = m.shared.members().members.get(&target).is_some_and(|x| !x.is_learner);
    if !is_voter {
        return Err(EtcdError::BadLeaderTransferee);
    }
    if target != me {
        m.tx.send(Command::TransferLeader(target)).await.map_err(|_| EtcdError::Stopped)?;
        let deadline = Instant::now() + m.request_timeout;
        while m.shared.leader.load(Ordering::SeqCst) != target {
            if Instant::now() > deadline {
                return Err(EtcdError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(MoveLeaderResponse { header: m.header(m.shared.store.current_revision()) })
}
