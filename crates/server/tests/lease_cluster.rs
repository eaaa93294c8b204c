//! Leases in a 3-member cluster: grants, keep-alives and time-to-live sent to a follower reach the leader;
//! killing the leader does not expire a lease early (the new leader restarts deadlines from the TTL plus an
//! election timeout, as etcd), and a lease nobody keeps alive still expires under the new leader. With lease
//! checkpoints a long lease keeps what it had left across the leader change instead of starting its TTL again;
//! without them it starts again (both are checked, so the first check can fail).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/cluster.rs"]
mod harness;

use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest};
use cairn_client::{Client, GetOptions, PutOptions};
use harness::Cluster;

async fn exists(c: &Client, key: &str) -> bool {
    c.get(key, GetOptions { serializable: true, ..Default::default() }).await.is_ok_and(|r| r.count == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_go_through_followers_and_outlive_a_leader_kill() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    // Forwarding needs the leader's client URL, which members publish once started.
    cluster.wait_published(follower, 3).await;
    let f = cluster.client(follower).await;

    let ttl = 6;
    f.lease_grant(LeaseGrantRequest { id: 0x77, ttl }).await.unwrap();
    f.put("held", "v", PutOptions { lease: 0x77, ..Default::default() }).await.unwrap();
    let mut ka = f.lease_keep_alive(LeaseKeepAliveRequest { id: 0x77 }).await.unwrap();
    assert_eq!(ka.message().await.unwrap().unwrap().ttl, ttl, "keep-alive answered through the follower");
    let left = f.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x77, keys: true }).await.unwrap();
    assert_eq!((left.granted_ttl, left.keys.len()), (ttl, 1));
    assert!(
        (1..=ttl).contains(&left.ttl),
        "the leader's remaining time, not a follower's 'forever': {left:?}"
    );

    // Kept alive right before the leader dies: the new leader counts a whole TTL (plus an election timeout)
    // from its election, so the key is still there well after the old deadline would have passed.
    ka.send(LeaseKeepAliveRequest { id: 0x77 }).await.unwrap();
    ka.message().await.unwrap();
    drop(ka);
    cluster.kill9(leader);
    let survivors = [follower, other];
    cluster.wait_leader_among(&survivors).await;
    let killed_at = Instant::now();
    let c = cluster.client(other).await;
    while killed_at.elapsed() < Duration::from_secs(4) {
        assert!(exists(&c, "held").await, "the lease expired early after the leader change");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Nobody keeps it alive now: the new leader expires it, and every survivor loses the key.
    let deadline = Instant::now() + Duration::from_secs(30);
    while exists(&c, "held").await || exists(&f, "held").await {
        assert!(
            Instant::now() < deadline,
            "the lease never expired under the new leader\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const LONG_TTL: i64 = 30;
/// How long the lease runs under the first leader before it is killed.
const BEFORE_KILL: Duration = Duration::from_secs(5);

/// Grants a long lease on a 3-member cluster started with `extra`, lets it run [`BEFORE_KILL`], kills the
/// leader and returns the TTL the new leader reports.
async fn ttl_after_leader_kill(extra: &[&str]) -> i64 {
    let mut cluster = Cluster::start(3, extra);
    let leader = cluster.wait_leader().await;
    let survivors = [(leader + 1) % 3, (leader + 2) % 3];
    for &s in &survivors {
        cluster.wait_published(s, 3).await;
    }
    let c = cluster.client(leader).await;
    c.lease_grant(LeaseGrantRequest { id: 0x88, ttl: LONG_TTL }).await.unwrap();
    tokio::time::sleep(BEFORE_KILL).await;
    cluster.kill9(leader);
    let new_leader = cluster.wait_leader_among(&survivors).await;
    let c = cluster.client(new_leader).await;
    let left = c.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x88, keys: false }).await.unwrap();
    assert_eq!(left.granted_ttl, LONG_TTL);
    eprintln!("TTL left after the leader change with {extra:?}: {} s", left.ttl);
    left.ttl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_checkpoints_a_long_lease_keeps_its_remaining_ttl_across_a_leader_change() {
    let ttl = ttl_after_leader_kill(&["--experimental-lease-checkpoint-interval=1s"]).await;
    // Checkpointed about a second before the kill: at most TTL - 4 s left, plus the election extension (1 s).
    assert!(
        (10..=LONG_TTL - 2).contains(&ttl),
        "the new leader should count from the checkpointed remaining TTL, got {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checkpoints_a_long_lease_starts_its_ttl_again_under_a_new_leader() {
    let ttl = ttl_after_leader_kill(&["--experimental-enable-lease-checkpoint=false"]).await;
    assert!(ttl > LONG_TTL - 2, "without checkpoints the new leader restarts the whole TTL, got {ttl}");
}
