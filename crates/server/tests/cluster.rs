//! Multi-member cairn: real processes on loopback. Election, writes on any member, failover without losing an
//! acknowledged write, catching up by log and by snapshot, membership changes (learners never vote), a
//! partitioned minority that can neither write nor read linearizably, MoveLeader, and clean restarts.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/cluster.rs"]
mod harness;

use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::{
    MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, MoveLeaderRequest,
};
use cairn_client::options::KeyRange;
use cairn_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use harness::{quick, Cluster};

async fn put(c: &Client, k: &str, v: &str) {
    c.put(k, v, PutOptions::default()).await.unwrap();
}

async fn get(c: &Client, k: &str) -> Option<String> {
    let r = c.get(k, GetOptions::default()).await.unwrap();
    r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_one_leader_and_serve_writes_on_any_member() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let list = cluster.wait_published(0, 3).await;
    let names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"n1") && names.contains(&"n2") && names.contains(&"n3"), "{names:?}");
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = cluster.client(i).await;
        let r = c.put(format!("k{i}"), format!("v{i}"), PutOptions::default()).await.unwrap();
        let h = r.header.unwrap();
        assert!(h.raft_term > 0);
        ids.push(h.member_id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each member answers with its own id");
    for i in 0..3 {
        let c = cluster.client(i).await;
        for k in 0..3 {
            assert_eq!(get(&c, &format!("k{k}")).await.as_deref(), Some(format!("v{k}").as_str()));
        }
    }
    let statuses: Vec<_> = futures::future::join_all((0..3).map(|i| cluster.status(i))).await;
    let leader_id = statuses[leader].as_ref().unwrap().header.unwrap().member_id;
    assert!(statuses.iter().all(|s| s.as_ref().unwrap().leader == leader_id), "one leader for all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_the_leader_and_a_restarted_member_catches_up() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let c = cluster.client(follower).await;
    for i in 0..50 {
        put(&c, &format!("key{i:03}"), &format!("{i}")).await;
    }
    cluster.kill9(leader);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = cluster.wait_leader_among(&survivors).await;
    assert_ne!(new_leader, leader);
    for &i in &survivors {
        let c = cluster.client(i).await;
        let all =
            c.get("key", GetOptions { range: KeyRange::Prefix, ..GetOptions::default() }).await.unwrap();
        assert_eq!(all.kvs.len(), 50, "no acknowledged write lost on {}", cluster.members[i].name);
    }
    // The minority is gone; the majority still writes, and the restarted member catches up by log.
    let c = cluster.client(new_leader).await;
    put(&c, "after", "failover").await;
    cluster.spawn(leader);
    cluster.wait_value(leader, "after", "failover").await;
    cluster.wait_value(leader, "key049", "49").await;
}

/// A clean stop makes the backend durable while the WAL may still hold back a hard state that only moved the
/// commit index (it is synced with the next entries): the member must start again from a backend that is ahead
/// of its WAL's commit index, with everything it had applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_stopped_cleanly_start_again_with_everything_applied() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let c = cluster.client(leader).await;
    for i in 0..30 {
        put(&c, &format!("key{i:03}"), &format!("{i}")).await;
    }
    for i in (0..3).filter(|&i| i != leader) {
        cluster.wait_value(i, "key029", "29").await;
        assert_eq!(cluster.stop(i), Some(0), "{} stops cleanly", cluster.members[i].name);
        cluster.spawn(i);
        cluster.wait_value(i, "key029", "29").await;
    }
    assert_eq!(cluster.stop(leader), Some(0), "the leader stops cleanly");
    cluster.spawn(leader);
    let leader = cluster.wait_leader().await;
    let c = cluster.client(leader).await;
    put(&c, "after", "restarts").await;
    for i in 0..3 {
        cluster.wait_value(i, "after", "restarts").await;
        let c = cluster.client(i).await;
        let all =
            c.get("key", GetOptions { range: KeyRange::Prefix, ..GetOptions::default() }).await.unwrap();
        assert_eq!(all.kvs.len(), 30, "{} has every key", cluster.members[i].name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let flags = ["--snapshot-count=40", "--experimental-snapshot-catchup-entries=5"];
    let mut cluster = Cluster::start(3, &flags);
    let leader = cluster.wait_leader().await;
    let lagging = (leader + 1) % 3;
    cluster.kill9(lagging);
    let c = cluster.client(leader).await;
    for i in 0..200 {
        put(&c, &format!("s{i:03}"), &format!("{i}")).await;
    }
    cluster.spawn(lagging);
    cluster.wait_value(lagging, "s199", "199").await;
    // The data is visible as soon as the backend is swapped in; the log line follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.members[lagging].log().contains("installed a snapshot from the leader") {
        assert!(Instant::now() < deadline, "caught up without a snapshot?\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It serves the whole history it received, and keeps up afterwards by log.
    let opts = GetOptions { serializable: true, range: KeyRange::Prefix, ..GetOptions::default() };
    let r = cluster.client(lagging).await.get("s", opts).await.unwrap();
    assert_eq!(r.kvs.len(), 200);
    put(&c, "later", "x").await;
    cluster.wait_value(lagging, "later", "x").await;
    // After a restart it starts from the installed snapshot.
    cluster.restart(lagging);
    cluster.wait_value(lagging, "s000", "0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_as_learners_promoted_and_removed_and_learners_never_vote() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.wait_leader().await;
    let c = cluster.client(0).await;
    put(&c, "before", "join").await;
    let mut cc = cluster.cluster_client(0).await;

    // etcd's errors for bad requests.
    let bad =
        cc.member_add(MemberAddRequest { peer_ur_ls: vec!["127.0.0.1:1".into()], is_learner: false }).await;
    assert_eq!(bad.unwrap_err().message(), "etcdserver: given member URLs are invalid");
    let dup = MemberAddRequest { peer_ur_ls: vec![cluster.members[0].peer_url()], is_learner: false };
    assert_eq!(cc.member_add(dup).await.unwrap_err().message(), "etcdserver: Peer URLs already exists");
    let last = cluster.member_list(0).await[0].id;
    let refused = cc.member_remove(MemberRemoveRequest { id: last }).await.unwrap_err();
    assert_eq!(refused.message(), "etcdserver: re-configuration failed due to not enough started members");
    let missing = cc.member_remove(MemberRemoveRequest { id: 42 }).await.unwrap_err();
    assert_eq!(missing.message(), "etcdserver: member not found");

    let n2 = cluster.prepare_member("n2");
    let added = cc
        .member_add(MemberAddRequest { peer_ur_ls: vec![cluster.members[n2].peer_url()], is_learner: true })
        .await
        .unwrap()
        .into_inner();
    let learner = added.member.unwrap();
    assert!(learner.is_learner && learner.name.is_empty());
    assert_eq!(added.members.len(), 2);
    // Not started: far behind the leader, so not promotable yet.
    let early = cc.member_promote(MemberPromoteRequest { id: learner.id }).await.unwrap_err();
    assert_eq!(early.message(), "etcdserver: can only promote a learner member which is in sync with leader");

    cluster.spawn(n2);
    cluster.wait_value(n2, "before", "join").await;
    let status = cluster.status(n2).await.unwrap();
    assert!(status.is_learner);
    let on_learner = cluster.client(n2).await;
    let refused = on_learner.put("k", "v", PutOptions::default()).await.unwrap_err();
    assert_eq!(refused.to_string(), "etcdserver: rpc not supported for learner");
    let refused = on_learner.get("before", GetOptions::default()).await.unwrap_err();
    assert_eq!(refused.to_string(), "etcdserver: rpc not supported for learner");
    // Not even a txn that only reads serializably (etcd lets a learner serve serializable Range alone).
    let serializable = GetOptions { serializable: true, ..Default::default() };
    let read = Txn::new().and_then([TxnOp::Get(b"before".to_vec(), serializable.clone())]);
    let refused = on_learner.txn(read).await.unwrap_err();
    assert_eq!(refused.to_string(), "etcdserver: rpc not supported for learner");
    assert_eq!(on_learner.get("before", serializable).await.unwrap().kvs[0].value, b"join");
    // Learners never vote: with the learner stopped the lone voter still commits.
    cluster.kill9(n2);
    put(&c, "learner", "down").await;
    cluster.spawn(n2);
    cluster.wait_value(n2, "learner", "down").await;

    let mut on_learner_cc = cluster.cluster_client(n2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Asked on the learner itself: only the leader can tell it caught up, so the learner forwards it.
        match on_learner_cc.member_promote(MemberPromoteRequest { id: learner.id }).await {
            Ok(r) => {
                assert!(r.into_inner().members.iter().all(|m| !m.is_learner));
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "promote refused: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let not_learner = cc.member_promote(MemberPromoteRequest { id: learner.id }).await.unwrap_err();
    assert_eq!(not_learner.message(), "etcdserver: can only promote a learner member");
    put(&c, "two", "voters").await;
    cluster.wait_value(n2, "two", "voters").await;

    // MemberUpdate changes URLs only; MemberUpdate of an unknown member is refused.
    let unknown = MemberUpdateRequest { id: 42, peer_ur_ls: vec!["http://127.0.0.1:9".into()] };
    assert_eq!(cc.member_update(unknown).await.unwrap_err().message(), "etcdserver: member not found");

    // Remove the new member: it stops itself, the cluster goes on with one voter. Removing a live voter of two
    // needs both connected for etcd's HealthInterval (--strict-reconfig-check): until then it is refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    let left = loop {
        match cc.member_remove(MemberRemoveRequest { id: learner.id }).await {
            Ok(r) => break r.into_inner(),
            Err(e) => {
                assert_eq!(e.message(), "etcdserver: unhealthy cluster");
                assert!(Instant::now() < deadline, "never healthy enough to remove a voter");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(left.members.len(), 1);
    assert!(cluster.members[n2].wait_exit(Duration::from_secs(20)).is_some(), "a removed member stops");
    put(&c, "after", "remove").await;
    assert_eq!(get(&c, "after").await.as_deref(), Some("remove"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_can_neither_write_nor_read_linearizably() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let c = cluster.client(leader).await;
    put(&c, "k", "before").await;
    // Cut the leader off: it steps down (check quorum), the other two elect a leader.
    cluster.isolate(leader, true);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let l = cluster.wait_leader_among(&others).await;
        if l != leader {
            break l;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let majority = cluster.client(new_leader).await;
    put(&majority, "k", "after").await;

    let isolated = Client::connect([cluster.members[leader].client_url()], quick()).await.unwrap();
    let w = isolated.put("k", "lost", PutOptions::default()).await;
    assert!(w.is_err(), "the isolated member accepted a write: {w:?}");
    let r = isolated.get("k", GetOptions::default()).await;
    assert!(r.is_err(), "the isolated member served a linearizable read: {r:?}");
    // A serializable read is local: allowed, and stale.
    let stale = isolated.get("k", GetOptions { serializable: true, ..GetOptions::default() }).await.unwrap();
    assert_eq!(stale.kvs[0].value, b"before");

    cluster.isolate(leader, false);
    cluster.wait_value(leader, "k", "after").await;
    let healed = cluster.client(leader).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match healed.get("k", GetOptions::default()).await {
            Ok(r) => {
                assert_eq!(r.kvs[0].value, b"after", "the write refused while isolated never appears");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_hands_leadership_to_the_target() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let target = (leader + 1) % 3;
    let target_id = cluster.status(target).await.unwrap().header.unwrap().member_id;
    let not_leader =
        cluster.maintenance(target).await.move_leader(MoveLeaderRequest { target_id }).await.unwrap_err();
    assert_eq!(not_leader.message(), "etcdserver: not leader");
    let bad = cluster.maintenance(leader).await.move_leader(MoveLeaderRequest { target_id: 42 }).await;
    assert_eq!(bad.unwrap_err().message(), "etcdserver: bad leader transferee");
    // Leadership may move by itself on a loaded machine: ask whoever leads now.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster.wait_leader().await;
        if leader == target {
            break;
        }
        let moved = cluster.maintenance(leader).await.move_leader(MoveLeaderRequest { target_id }).await;
        match moved {
            Ok(_) => {}
            Err(e) => assert!(Instant::now() < deadline, "move leader failed: {e:?}\n{}", cluster.logs()),
        }
    }
    assert_eq!(cluster.wait_leader().await, target);
    put(&cluster.client(leader).await, "moved", "yes").await;
}
