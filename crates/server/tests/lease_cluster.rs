//! Leases in a 3-member cluster: grants, keep-alives and time-to-live sent to a follower reach the leader;
//! killing the leader does not expire a lease early (the new leader restarts deadlines from the TTL plus an
//! election timeout, as etcd), and a lease nobody keeps alive still expires under the new leader.

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
