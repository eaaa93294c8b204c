//! Leases through cairn-client, written once and run against cairn and against the real etcd: grant (client
//! and server ids, minimum TTL, too large), keys attached by put and removed by revoke or expiry in one revision
//! that watchers see, keep-alive, time-to-live, list, and etcd's errors; then what only cairn's restart shows:
//! leases and their keys survive a restart and still expire afterwards.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    WatchCreateRequest, WatchRequest,
};
use cairn_api::mvccpb::event::EventType;
use cairn_api::EtcdError;
use cairn_client::options::KeyRange;
use cairn_client::{Client, ClientError, GetOptions, PutOptions};
use common::{Kind, Server};

fn etcd_err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> EtcdError {
    match r {
        Err(ClientError::Etcd(e)) => e,
        other => panic!("expected an etcd error, got {other:?}"),
    }
}

async fn grant(c: &Client, id: i64, ttl: i64) -> i64 {
    let r = c.lease_grant(LeaseGrantRequest { id, ttl }).await.unwrap();
    assert_eq!(r.id, id);
    r.ttl
}

async fn count(c: &Client, prefix: &str) -> i64 {
    let opts = GetOptions { range: KeyRange::Prefix, count_only: true, ..Default::default() };
    c.get(prefix, opts).await.unwrap().count
}

async fn put_with(c: &Client, key: &str, lease: i64) -> Result<(), ClientError> {
    c.put(key, "v", PutOptions { lease, ..Default::default() }).await.map(|_| ())
}

async fn grant_revoke_and_errors(c: &Client) {
    assert_eq!(grant(c, 0x100, 60).await, 60);
    assert_eq!(grant(c, 0x101, 1).await, 2, "raised to the minimum TTL of the default election timeout");
    let server_chosen = c.lease_grant(LeaseGrantRequest { id: 0, ttl: 30 }).await.unwrap();
    assert!(server_chosen.id > 0, "{server_chosen:?}");
    assert_eq!(etcd_err(c.lease_grant(LeaseGrantRequest { id: 0x100, ttl: 5 }).await), EtcdError::LeaseExist);
    assert_eq!(
        etcd_err(c.lease_grant(LeaseGrantRequest { id: 0x102, ttl: 9_000_000_001 }).await),
        EtcdError::LeaseTtlTooLarge
    );
    assert_eq!(etcd_err(c.lease_revoke(LeaseRevokeRequest { id: 0x999 }).await), EtcdError::LeaseNotFound);
    assert_eq!(etcd_err(put_with(c, "lk/none", 0x999).await), EtcdError::LeaseNotFound);

    put_with(c, "lk/a", 0x100).await.unwrap();
    put_with(c, "lk/b", 0x100).await.unwrap();
    put_with(c, "lk/c", 0x100).await.unwrap();
    // Moving a key to no lease detaches it.
    c.put("lk/c", "plain", PutOptions::default()).await.unwrap();
    let ttl = c.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x100, keys: true }).await.unwrap();
    assert_eq!(ttl.granted_ttl, 60);
    assert!((55..=60).contains(&ttl.ttl), "{ttl:?}");
    let mut keys = ttl.keys.clone();
    keys.sort_unstable(); // etcd lists them in Go map order
    assert_eq!(keys, vec![b"lk/a".to_vec(), b"lk/b".to_vec()]);
    let unknown = c.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x999, keys: false }).await.unwrap();
    assert_eq!((unknown.id, unknown.ttl), (0x999, -1), "an unknown lease is TTL -1, not an error");
    let mut ids: Vec<i64> =
        c.lease_leases(LeaseLeasesRequest {}).await.unwrap().leases.into_iter().map(|l| l.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, {
        let mut v = vec![0x100, 0x101, server_chosen.id];
        v.sort_unstable();
        v
    });

    // Revoke: both keys go in one revision, the plain one stays.
    let before = c.get("x", GetOptions::default()).await.unwrap().header.unwrap().revision;
    let revoked = c.lease_revoke(LeaseRevokeRequest { id: 0x100 }).await.unwrap();
    assert_eq!(revoked.header.unwrap().revision, before + 1);
    assert_eq!(count(c, "lk/").await, 1);
    assert_eq!(etcd_err(c.lease_revoke(LeaseRevokeRequest { id: 0x100 }).await), EtcdError::LeaseNotFound);
}

async fn expiry_and_keep_alive(c: &Client) {
    grant(c, 0x200, 2).await; // expires
    grant(c, 0x201, 2).await; // kept alive
    put_with(c, "ex/a", 0x200).await.unwrap();
    put_with(c, "ex/b", 0x200).await.unwrap();
    put_with(c, "ka/a", 0x201).await.unwrap();
    let create =
        WatchCreateRequest { key: b"ex/".to_vec(), range_end: b"ex0".to_vec(), ..Default::default() };
    let mut w =
        c.watch(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
    assert!(w.message().await.unwrap().unwrap().created);
    let mut ka = c.lease_keep_alive(LeaseKeepAliveRequest { id: 0x201 }).await.unwrap();
    let first = ka.message().await.unwrap().unwrap();
    assert_eq!((first.id, first.ttl), (0x201, 2));
    // Both keys of the expired lease vanish together; watchers see one revision of two DELETEs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let gone = loop {
        ka.send(LeaseKeepAliveRequest { id: 0x201 }).await.unwrap();
        assert_eq!(ka.message().await.unwrap().unwrap().ttl, 2);
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(500), w.message()).await {
            break r.unwrap().unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "the lease never expired");
    };
    assert_eq!(gone.events.len(), 2, "{gone:?}");
    assert!(gone.events.iter().all(|e| e.r#type == EventType::Delete as i32));
    assert_eq!(count(c, "ex/").await, 0);
    assert_eq!(count(c, "ka/").await, 1, "the kept-alive lease's key is still there after 2+ TTLs");
    // Keep-alive for a lease that is gone answers TTL 0.
    ka.send(LeaseKeepAliveRequest { id: 0x200 }).await.unwrap();
    assert_eq!(ka.message().await.unwrap().unwrap().ttl, 0);
}

async fn suite(kind: Kind) {
    let server = Server::start(kind);
    let c = server.ready().await;
    grant_revoke_and_errors(&c).await;
    expiry_and_keep_alive(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_on_cairn() {
    suite(Kind::Cairn).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_on_etcd_agree() {
    if Server::etcd_available("leases_on_etcd_agree") {
        suite(Kind::Etcd).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_and_their_keys_survive_a_restart_and_still_expire() {
    let mut server = Server::start(Kind::Cairn);
    let c = server.ready().await;
    grant(&c, 0x300, 4).await;
    grant(&c, 0x301, 600).await;
    put_with(&c, "rs/short", 0x300).await.unwrap();
    put_with(&c, "rs/long", 0x301).await.unwrap();
    server.restart();
    let c = server.ready().await;
    let ttl = c.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x301, keys: true }).await.unwrap();
    assert_eq!((ttl.granted_ttl, ttl.keys), (600, vec![b"rs/long".to_vec()]));
    // The short one expires after the restart (its deadline restarted with the new leader) and takes its key.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(&c, "rs/short").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the lease never expired after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&c, "rs/long").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_storm_does_not_block_writes() {
    let server = Server::start(Kind::Cairn);
    let c = server.ready().await;
    grant(&c, 0x400, 60).await;
    let storms: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut ka = c.lease_keep_alive(LeaseKeepAliveRequest { id: 0x400 }).await.unwrap();
                for _ in 0..200 {
                    ka.send(LeaseKeepAliveRequest { id: 0x400 }).await.unwrap();
                    assert_eq!(ka.message().await.unwrap().unwrap().ttl, 60);
                }
            })
        })
        .collect();
    for i in 0..200 {
        c.put(format!("storm/{i}"), "v", PutOptions { lease: 0x400, ..Default::default() }).await.unwrap();
    }
    for s in storms {
        s.await.unwrap();
    }
    assert_eq!(count(&c, "storm/").await, 200);
}
