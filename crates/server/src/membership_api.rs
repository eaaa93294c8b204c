//! The Cluster service's changes and MoveLeader, with etcd's checks and errors: bad or duplicate peer URLs,
//! unknown members, one learner at most, never removing the last voter, promoting only a learner that has
//! caught up (checked by the leader: a follower forwards the promotion to it over the peer port, as etcd).
//!
//! With --strict-reconfig-check (on by default, as etcd), a change that could cost the cluster its quorum is
//! refused before it is proposed, by etcd's rules (server.go mayAddMember, mayRemoveMember, mayPromoteMember):
//! too few started voters gives "re-configuration failed due to not enough started members"; adding a member
//! while this member is not connected to every voter, or removing a live voter while too few are connected,
//! gives "unhealthy cluster". A peer counts as connected once its connection has been up for
//! [`HEALTH_INTERVAL`]; a voter that is down may always be removed.

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
use crate::membership::{valid_peer_urls, Membership};
use crate::node::Command;

/// etcd allows one learner at a time (maxLearners).
const MAX_LEARNERS: usize = 1;

/// etcd's HealthInterval: a peer counts as connected once its connection has been up this long.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// What the strict reconfiguration checks look at: the membership, this member, and since when each peer
/// has been connected.
struct Health<'a, F: Fn(u64) -> Option<Instant>> {
    members: &'a Membership,
    me: u64,
    active_since: F,
    now: Instant,
}

fn health<'a>(
    m: &'a MemberState,
    members: &'a Membership,
) -> Health<'a, impl Fn(u64) -> Option<Instant> + 'a> {
    Health {
        members,
        me: m.shared.member_id,
        active_since: |id| m.peers.active_since(id),
        now: Instant::now(),
    }
}

impl<F: Fn(u64) -> Option<Instant>> Health<'_, F> {
    /// etcd's isConnectedSince(now - HealthInterval); this member always is.
    fn connected(&self, id: u64) -> bool {
        id == self.me
            || (self.active_since)(id)
                .is_some_and(|t| self.now.saturating_duration_since(t) > HEALTH_INTERVAL)
    }

    /// etcd's mayAddMember: a voter only if the started voters keep a quorum; any member only while this
    /// member is connected to every voter.
    fn may_add(&self, learner: bool) -> Result<(), EtcdError> {
        if !learner && !self.members.ready_to_add_voter() {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        if !self.members.voters().all(|v| self.connected(v.id)) {
            return Err(EtcdError::Unhealthy);
        }
        Ok(())
    }

    /// etcd's mayRemoveMember: a learner always; a voter if the started voters keep a quorum without it, and
    /// it is down or the connected voters keep a quorum without it.
    fn may_remove(&self, id: u64) -> Result<(), EtcdError> {
        if self.members.members.get(&id).is_some_and(|m| m.is_learner) {
            return Ok(());
        }
        if !self.members.ready_to_remove_voter(id) {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        // A voter that is down is not part of the active quorum: removing it costs nothing.
        if id != self.me && (self.active_since)(id).is_none() {
            return Ok(());
        }
        let voters = self.members.voters().count();
        let active = self.members.voters().filter(|v| self.connected(v.id)).count();
        // etcd: refused when (active - 1) < 1 + (voters - 1) / 2.
        if active < 2 + voters.saturating_sub(1) / 2 {
            return Err(EtcdError::Unhealthy);
        }
        Ok(())
    }

    /// etcd's mayPromoteMember after isLearnerReady: the started voters, the learner counted, make a quorum.
    fn may_promote(&self) -> Result<(), EtcdError> {
        if self.members.ready_to_promote() {
            Ok(())
        } else {
            Err(EtcdError::MemberNotEnoughStarted)
        }
    }
}

/// Logs a refused change as etcd does, and passes the refusal on.
pub(crate) fn refused(what: &str, e: EtcdError) -> EtcdError {
    tracing::warn!(request = what, error = %e, "rejecting member request; reconfiguration could break the quorum");
    e
}

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
    if m.strict_reconfig_check {
        health(m, &current).may_add(req.is_learner).map_err(|e| refused("member add", e))?;
    }
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
    if m.strict_reconfig_check {
        health(m, &current).may_remove(id).map_err(|e| refused("member remove", e))?;
    }
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
    // The leader decides (a follower forwards the promotion). etcd checks the learner's progress first, which
    // the node loop does when the promotion is proposed, and then the strict check made here.
    let refusal = if m.strict_reconfig_check && m.shared.leader.load(Ordering::SeqCst) == m.shared.member_id {
        health(m, &current).may_promote().err()
    } else {
        None
    };
    match m.conf_change_unless(change(ConfChangeType::AddNode, id), None, refusal).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(id: u64) -> Member {
        Member { id, name: format!("n{id}"), peer_ur_ls: vec![format!("http://p:{id}")], ..Member::default() }
    }

    /// A 3-voter cluster seen from member 1: `up` peers have been connected for `for_secs` seconds.
    fn check<T>(
        members: &Membership,
        up: &[u64],
        for_secs: u64,
        f: impl Fn(&Health<'_, &dyn Fn(u64) -> Option<Instant>>) -> T,
    ) -> T {
        let now = Instant::now() + Duration::from_secs(60);
        let since = now - Duration::from_secs(for_secs);
        let active = |id: u64| up.contains(&id).then_some(since);
        let h = Health { members, me: 1, active_since: &active as &dyn Fn(u64) -> Option<Instant>, now };
        f(&h)
    }

    #[test]
    fn a_healthy_cluster_may_change() {
        let ms = Membership::from_members([voter(1), voter(2), voter(3)]);
        check(&ms, &[2, 3], 10, |h| {
            assert_eq!(h.may_add(false), Ok(()));
            assert_eq!(h.may_add(true), Ok(()));
            assert_eq!(h.may_remove(2), Ok(()));
            assert_eq!(h.may_remove(1), Ok(()));
            assert_eq!(h.may_promote(), Ok(()));
        });
    }

    #[test]
    fn a_peer_down_or_just_connected_makes_the_cluster_unhealthy() {
        let ms = Membership::from_members([voter(1), voter(2), voter(3)]);
        check(&ms, &[2], 10, |h| {
            assert_eq!(h.may_add(false), Err(EtcdError::Unhealthy));
            assert_eq!(h.may_add(true), Err(EtcdError::Unhealthy), "learners too");
            assert_eq!(h.may_remove(2), Err(EtcdError::Unhealthy), "a live voter while another is down");
            assert_eq!(h.may_remove(1), Err(EtcdError::Unhealthy), "this member while another is down");
            assert_eq!(h.may_remove(3), Ok(()), "the voter that is down");
        });
        check(&ms, &[2, 3], 2, |h| {
            assert_eq!(h.may_add(false), Err(EtcdError::Unhealthy), "connected less than HealthInterval");
            assert_eq!(h.may_remove(2), Err(EtcdError::Unhealthy));
        });
        check(&ms, &[], 10, |h| {
            assert_eq!(h.may_remove(1), Err(EtcdError::Unhealthy), "alone");
            assert_eq!(h.may_remove(2), Ok(()), "down");
        });
    }

    #[test]
    fn unstarted_voters_leave_not_enough_started_members() {
        let mut ms = Membership::from_members([voter(1), voter(2), voter(3)]);
        ms.members.insert(4, Member { id: 4, ..Member::default() });
        ms.members.insert(5, Member { id: 5, ..Member::default() });
        check(&ms, &[2, 3, 4, 5], 10, |h| {
            assert_eq!(h.may_add(false), Err(EtcdError::MemberNotEnoughStarted));
            assert_eq!(h.may_add(true), Ok(()), "a learner does not count toward the quorum");
            assert_eq!(h.may_remove(2), Err(EtcdError::MemberNotEnoughStarted));
            assert_eq!(h.may_remove(4), Ok(()));
        });
        let mut ms = Membership::from_members([voter(1)]);
        ms.members.insert(2, Member { id: 2, ..Member::default() });
        ms.members.insert(3, Member { id: 3, ..Member::default() });
        check(&ms, &[2, 3], 10, |h| assert_eq!(h.may_promote(), Err(EtcdError::MemberNotEnoughStarted)));
    }

    #[test]
    fn learners_may_always_be_removed() {
        let mut ms = Membership::from_members([voter(1), voter(2), voter(3)]);
        ms.members.insert(4, Member { is_learner: true, ..voter(4) });
        check(&ms, &[4], 10, |h| {
            assert_eq!(h.may_remove(4), Ok(()));
            assert_eq!(h.may_add(true), Err(EtcdError::Unhealthy), "voters 2 and 3 are down");
        });
    }
}
