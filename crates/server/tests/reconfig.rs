//! Membership changes on cairn and on a real etcd 3-member cluster, with the same assertions.
//!
//! --strict-reconfig-check: changes that could cost the cluster its quorum are refused with etcd's errors
//! ("unhealthy cluster" while peers are down, "not enough started members" while voters were added but never
//! started), and pass the check with --strict-reconfig-check=false.
//!
//! A change proposed while another is pending: raft drops it (an empty entry takes its place), so it is never
//! applied and its caller is answered "request timed out", as etcd does (etcd when the client's deadline
//! passes, cairn after its request timeout).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/cluster.rs"]
mod harness;

use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::cluster_client::ClusterClient;
use cairn_api::etcdserverpb::{MemberAddRequest, MemberRemoveRequest};
use common::{Kind, Server};
use harness::Cluster;
use tonic::Code;

const UNHEALTHY: &str = "etcdserver: unhealthy cluster";
const NOT_ENOUGH_STARTED: &str = "etcdserver: re-configuration failed due to not enough started members";

fn add(url: &str, is_learner: bool) -> MemberAddRequest {
    MemberAddRequest { peer_ur_ls: vec![url.to_owned()], is_learner }
}

/// A peer URL nobody listens on (a member added and never started).
fn unused_peer_url() -> String {
    format!("http://127.0.0.1:{}", common::free_port())
}

/// The ids of members n1, n2, n3 (as published).
async fn ids(cluster: &Cluster) -> Vec<u64> {
    let list = cluster.wait_published(0, 3).await;
    (1..=3).map(|i| list.iter().find(|m| m.name == format!("n{i}")).unwrap().id).collect()
}

async fn add_refused(cluster: &Cluster, req: MemberAddRequest, code: Code, message: &str) {
    let e = cluster.cluster_client(0).await.member_add(req).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (code, message));
}

async fn remove_refused(cluster: &Cluster, id: u64, code: Code, message: &str) {
    let e = cluster.cluster_client(0).await.member_remove(MemberRemoveRequest { id }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (code, message));
}

/// Whether the strict check let the request through: any answer but its two refusals (a change that passed may
/// still fail later, e.g. for want of a leader; it may also hang, so the wait is bounded).
fn passed_the_check<T>(answer: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> bool {
    match answer {
        Ok(Err(e)) => e.message() != UNHEALTHY && e.message() != NOT_ENOUGH_STARTED,
        _ => true,
    }
}

/// Peers down: adding a member, or removing a live one, is refused as unhealthy; a member that is down may
/// be removed.
async fn peers_down_make_the_cluster_unhealthy(kind: Kind) {
    let mut cluster = Cluster::start_kind(kind, 3, &[]);
    cluster.wait_leader().await;
    let [n1, n2, n3] = ids(&cluster).await[..] else { unreachable!() };
    // Healthy once every peer has been connected for etcd's HealthInterval (5 s): a learner may be added.
    let deadline = Instant::now() + Duration::from_secs(30);
    let learner = loop {
        match cluster.cluster_client(0).await.member_add(add(&unused_peer_url(), true)).await {
            Ok(r) => break r.into_inner().member.unwrap().id,
            Err(e) => {
                assert_eq!(e.message(), UNHEALTHY);
                assert!(Instant::now() < deadline, "never healthy\n{}", cluster.logs());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // A learner may always be removed, even one that never started.
    cluster.cluster_client(0).await.member_remove(MemberRemoveRequest { id: learner }).await.unwrap();

    cluster.kill9(2);
    // A member notices a peer's death when its connection breaks: allow it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    add_refused(&cluster, add(&unused_peer_url(), false), Code::Unavailable, UNHEALTHY).await;
    add_refused(&cluster, add(&unused_peer_url(), true), Code::Unavailable, UNHEALTHY).await;
    remove_refused(&cluster, n2, Code::Unavailable, UNHEALTHY).await;
    remove_refused(&cluster, n1, Code::Unavailable, UNHEALTHY).await;

    cluster.kill9(1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    add_refused(&cluster, add(&unused_peer_url(), false), Code::Unavailable, UNHEALTHY).await;
    remove_refused(&cluster, n1, Code::Unavailable, UNHEALTHY).await;
    // n3 is down: not part of the active quorum, so its removal passes the check (and then waits for a leader
    // that will not come back).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut cc = cluster.cluster_client(0).await;
        let answer =
            tokio::time::timeout(Duration::from_secs(2), cc.member_remove(MemberRemoveRequest { id: n3 }))
                .await;
        if passed_the_check(answer) {
            break;
        }
        assert!(Instant::now() < deadline, "removing a member that is down was refused\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Voters added but never started: with --strict-reconfig-check=false they are accepted; a member started
/// with the check then refuses to add a voter or remove a started one, as not enough members started.
async fn unstarted_voters_leave_not_enough_started_members(kind: Kind) {
    let mut cluster = Cluster::start_kind(kind, 3, &["--strict-reconfig-check=false"]);
    cluster.wait_leader().await;
    let [_, n2, _] = ids(&cluster).await[..] else { unreachable!() };
    let mut cc = cluster.cluster_client(0).await;
    // The second add would be refused as unhealthy with the check on: the first new voter is down.
    let d = cc.member_add(add(&unused_peer_url(), false)).await.unwrap().into_inner().member.unwrap().id;
    cc.member_add(add(&unused_peer_url(), false)).await.unwrap();

    // n1 again, with the check (5 voters, 3 started: a quorum of 3 still runs).
    cluster.set_extra(0, &[]);
    cluster.restart(0);
    cluster.wait_leader_among(&[0, 1, 2]).await;
    add_refused(&cluster, add(&unused_peer_url(), false), Code::Unknown, NOT_ENOUGH_STARTED).await;
    remove_refused(&cluster, n2, Code::Unknown, NOT_ENOUGH_STARTED).await;
    // Voters that are down make the cluster unhealthy for learners too.
    add_refused(&cluster, add(&unused_peer_url(), true), Code::Unavailable, UNHEALTHY).await;
    // A voter that never started may go: the started ones keep their quorum.
    let left = cluster.cluster_client(0).await.member_remove(MemberRemoveRequest { id: d }).await.unwrap();
    assert_eq!(left.into_inner().members.len(), 4);
}

/// Two additions at once, while the followers are paused so the first cannot commit yet: one is applied, the
/// other dropped.
async fn a_change_proposed_while_another_is_pending_is_dropped(kind: Kind) {
    let extra = ["--strict-reconfig-check=false", "--election-timeout=3000"];
    let mut cluster = Cluster::start_kind(kind, 3, &extra);
    let leader = cluster.wait_leader().await;
    cluster.wait_published(leader, 3).await;
    // etcd answers when the client's deadline passes; cairn after its request timeout (5 s + 2 elections).
    let deadline = if kind == Kind::Etcd { Duration::from_secs(6) } else { Duration::from_secs(20) };
    let channel = tonic::transport::Endpoint::from_shared(cluster.members[leader].client_url())
        .unwrap()
        .timeout(deadline)
        .connect()
        .await
        .unwrap();
    let urls = [unused_peer_url(), unused_peer_url()];
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &f in &followers {
        cluster.pause(f);
    }
    let mut calls = Vec::new();
    for url in &urls {
        let (mut cc, req) = (ClusterClient::new(channel.clone()), add(url, false));
        calls.push(tokio::spawn(async move { cc.member_add(req).await }));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Well within the election timeout: the leader keeps leading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for &f in &followers {
        cluster.resume(f);
    }
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let (applied, dropped) = match (&answers[0], &answers[1]) {
        (Ok(_), Err(e)) => (0, e),
        (Err(e), Ok(_)) => (1, e),
        other => panic!("{kind:?}: one change applied and one dropped, not {other:?}\n{}", cluster.logs()),
    };
    let by_server = dropped.message() == "etcdserver: request timed out";
    let by_deadline =
        kind == Kind::Etcd && matches!(dropped.code(), Code::Cancelled | Code::DeadlineExceeded);
    assert!(by_server || by_deadline, "{kind:?}: {dropped:?}");
    let list = cluster.member_list(leader).await;
    let has = |url: &String| list.iter().any(|m| m.peer_ur_ls.contains(url));
    assert!(has(&urls[applied]) && !has(&urls[1 - applied]), "{kind:?}: {list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_proposed_while_another_is_pending_is_dropped_on_cairn() {
    a_change_proposed_while_another_is_pending_is_dropped(Kind::Cairn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_proposed_while_another_is_pending_is_dropped_on_etcd() {
    if Server::etcd_available("a_change_proposed_while_another_is_pending_is_dropped_on_etcd") {
        a_change_proposed_while_another_is_pending_is_dropped(Kind::Etcd).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_down_make_the_cluster_unhealthy_on_cairn() {
    peers_down_make_the_cluster_unhealthy(Kind::Cairn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_down_make_the_cluster_unhealthy_on_etcd() {
    if Server::etcd_available("peers_down_make_the_cluster_unhealthy_on_etcd") {
        peers_down_make_the_cluster_unhealthy(Kind::Etcd).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstarted_voters_leave_not_enough_started_members_on_cairn() {
    unstarted_voters_leave_not_enough_started_members(Kind::Cairn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstarted_voters_leave_not_enough_started_members_on_etcd() {
    if Server::etcd_available("unstarted_voters_leave_not_enough_started_members_on_etcd") {
        unstarted_voters_leave_not_enough_started_members(Kind::Etcd).await;
    }
}
