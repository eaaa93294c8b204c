//! Alarms and the backend quota on cairn and on the real etcd: the same script runs on both and its transcript
//! (errors with their gRPC code, `etcdctl alarm list`/`disarm`, Status errors, the gateway's answer) must be
//! identical, member ids masked (they differ with the peer ports). Then: concurrent puts past the quota, an alarm
//! across a restart, in a 3-member cluster an alarm raised through one member is listed, and caps writes, on all
//! of them, and a member that catches up by snapshot takes the alarms with it.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/cluster.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::alarm_request::AlarmAction;
use cairn_api::etcdserverpb::{
    AlarmRequest, AlarmType, DefragmentRequest, LeaseGrantRequest, LeaseRevokeRequest,
};
use cairn_client::options::{KeyRange, Txn, TxnOp};
use cairn_client::{Client, ClientError, DeleteOptions, GetOptions, PutOptions};
use common::{Kind, Server};
use harness::Cluster;

/// A quota both etcd (bbolt) and cairn (redb) pass within a few puts of 100 kB values.
const QUOTA: &str = "--quota-backend-bytes=1048576";
const VALUE_BYTES: usize = 100_000;
/// The fill loop's bound: etcd reaches the quota after 8 puts, cairn after 5.
const MAX_PUTS: usize = 60;
/// Between two puts of a fill: etcd's backend size (which its quota compares) is updated when its batch commits,
/// every 100 ms, so puts faster than that all pass.
const FILL_PAUSE: Duration = Duration::from_millis(120);

/// An error as the transcript records it: gRPC code and message.
fn err(e: &ClientError) -> String {
    format!("{:?} {e}", e.code())
}

fn outcome<T>(r: Result<T, ClientError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => err(&e),
    }
}

/// etcdctl's output (stdout, or stderr on failure); None when etcdctl is missing (a failure in CI).
fn etcdctl(server: &Server, args: &[&str]) -> Option<String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", server.endpoint()))
        .args(args)
        .output();
    match out {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Some(format!("failed: {}", String::from_utf8_lossy(&out.stderr))),
        Err(_) => {
            assert!(std::env::var("CI").is_err(), "etcdctl is not installed but CI is set");
            None
        }
    }
}

/// What the transcript records of an etcdctl run (a fixed text without etcdctl, so both servers compare).
fn ctl(server: &Server, args: &[&str]) -> String {
    etcdctl(server, args).unwrap_or_else(|| "(etcdctl not installed)".into())
}

fn alarm_request(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
    AlarmRequest { action: action as i32, member_id, alarm: alarm as i32 }
}

async fn member_id(c: &Client) -> u64 {
    c.status().await.unwrap().header.unwrap().member_id
}

/// Fill past the quota, then what still works while NOSPACE is raised, then compact + defragment + disarm.
async fn nospace_script(kind: Kind) -> Vec<String> {
    let server = Server::start_with(kind, &[QUOTA]);
    let c = server.ready().await;
    let me = member_id(&c).await.to_string();
    let mut out = Vec::new();
    let mut note = |line: String| out.push(line.replace(&me, "<member>"));
    let lease = c.lease_grant(LeaseGrantRequest { ttl: 600, id: 0 }).await.unwrap().id;

    let value = vec![b'v'; VALUE_BYTES];
    let mut refused = None;
    for i in 0..MAX_PUTS {
        if let Err(e) = c.put(format!("k{i:02}"), value.clone(), PutOptions::default()).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(FILL_PAUSE).await;
    }
    let refused =
        refused.unwrap_or_else(|| panic!("{kind:?}: no put refused in {MAX_PUTS}\n{}", server.log()));
    note(format!("fill refused: {}", err(&refused)));
    note(format!("alarm list: {}", ctl(&server, &["alarm", "list"])));
    note(format!("alarm list json: {}", ctl(&server, &["-w", "json", "alarm", "list"])));
    note(format!("Alarm GET: {:?}", c.alarm(AlarmRequest::default()).await.unwrap()));
    note(format!("status errors: {:?}", c.status().await.unwrap().errors));
    note(format!("gateway: {:?}", server.http("POST", "/v3/maintenance/alarm", "{}")));

    // Reads, deletes, compaction and revocation go on; everything that writes is refused.
    let got = c.get("k00", GetOptions::default()).await.unwrap();
    note(format!("get: {} bytes", got.kvs[0].value.len()));
    note(format!("put: {}", outcome(c.put("small", "v", PutOptions::default()).await)));
    let put_txn = Txn::new().or_else([TxnOp::Put(b"t".to_vec(), b"v".to_vec(), PutOptions::default())]);
    note(format!("txn with a put: {}", outcome(c.txn(put_txn).await)));
    let read_txn = Txn::new().and_then([TxnOp::Get(b"k00".to_vec(), GetOptions::default())]);
    note(format!("txn reading: {}", outcome(c.txn(read_txn).await)));
    note(format!("lease grant: {}", outcome(c.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await)));
    note(format!("lease revoke: {}", outcome(c.lease_revoke(LeaseRevokeRequest { id: lease }).await)));
    let all_but_first = DeleteOptions { range: KeyRange::Until(b"l".to_vec()), ..Default::default() };
    let deleted = c.delete("k01", all_but_first).await.unwrap().deleted;
    note(format!("deleted some: {}", deleted > 0));
    let rev = c.status().await.unwrap().header.unwrap().revision;
    note(format!("compact: {}", outcome(c.compact(rev, true).await)));
    note(format!("defragment: {}", outcome(c.defragment(DefragmentRequest {}).await)));
    note(format!("put after defragment: {}", outcome(c.put("small", "v", PutOptions::default()).await)));

    match etcdctl(&server, &["alarm", "disarm"]) {
        Some(disarmed) => note(format!("disarm: {disarmed}")),
        None => {
            // Without etcdctl, disarm through the API as etcdctl does.
            let disarm = alarm_request(AlarmAction::Deactivate, me.parse().unwrap(), AlarmType::Nospace);
            c.alarm(disarm).await.unwrap();
            note("disarm: (etcdctl not installed)".into());
        }
    }
    note(format!("Alarm GET: {:?}", c.alarm(AlarmRequest::default()).await.unwrap()));
    note(format!("put after disarm: {}", outcome(c.put("small", "v", PutOptions::default()).await)));
    let not_raised = alarm_request(AlarmAction::Deactivate, 12345, AlarmType::Nospace);
    note(format!("disarm not raised: {:?}", c.alarm(not_raised).await.unwrap()));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn nospace_is_raised_capped_and_disarmed_as_etcd() {
    let cairn = nospace_script(Kind::Cairn).await;
    let expect = [
        "fill refused: ResourceExhausted etcdserver: mvcc: database space exceeded",
        "put: ResourceExhausted etcdserver: mvcc: database space exceeded",
        "txn reading: ok",
        "lease revoke: ok",
        "put after defragment: ResourceExhausted etcdserver: mvcc: database space exceeded",
        "put after disarm: ok",
    ];
    for line in expect {
        assert!(cairn.iter().any(|l| l == line), "missing {line:?} in {cairn:#?}");
    }
    assert!(cairn.iter().any(|l| l.contains("memberID:<member> alarm:NOSPACE")), "{cairn:#?}");
    if Server::etcd_available("nospace_is_raised_capped_and_disarmed_as_etcd") {
        let etcd = nospace_script(Kind::Etcd).await;
        for (c, e) in cairn.iter().zip(&etcd) {
            assert_eq!(c, e, "cairn (left) and etcd (right)");
        }
        assert_eq!(cairn.len(), etcd.len());
    }
}

/// Concurrent puts past the quota: on cairn some pass the edge check and are applied in a later batch, past
/// the quota (the quota applier then answers NOSPACE and the member raises the alarm from its apply path). Each
/// answer is OK or NOSPACE, every acknowledged put is readable, and NOSPACE ends up raised for this member.
async fn concurrent_fill(kind: Kind) {
    let server = Server::start_with(kind, &[QUOTA]);
    let c = server.ready().await;
    let me = member_id(&c).await;
    let puts = (0..30).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            let key = format!("c{i:02}");
            (key.clone(), c.put(key, vec![b'v'; VALUE_BYTES], PutOptions::default()).await)
        })
    });
    let mut refused = 0;
    for put in futures::future::join_all(puts).await {
        let (key, answer) = put.unwrap();
        match answer {
            Ok(_) => assert_eq!(
                c.get(key.clone(), GetOptions::default()).await.unwrap().count,
                1,
                "{kind:?} {key}"
            ),
            Err(e) => {
                assert_eq!(
                    err(&e),
                    "ResourceExhausted etcdserver: mvcc: database space exceeded",
                    "{kind:?} {key}"
                );
                refused += 1;
            }
        }
    }
    // etcd's backend size lags its commits (every 100 ms): the burst may all fit; a few more puts do not.
    for i in 0..MAX_PUTS {
        if refused > 0 {
            break;
        }
        if let Err(e) = c.put(format!("d{i:02}"), vec![b'v'; VALUE_BYTES], PutOptions::default()).await {
            assert_eq!(err(&e), "ResourceExhausted etcdserver: mvcc: database space exceeded", "{kind:?}");
            refused += 1;
        }
        tokio::time::sleep(FILL_PAUSE).await;
    }
    assert!(refused > 0, "{kind:?}: no put refused");
    let listed = c.alarm(AlarmRequest::default()).await.unwrap().alarms;
    assert!(
        listed.iter().any(|a| a.member_id == me && a.alarm == AlarmType::Nospace as i32),
        "{kind:?}: {listed:?}\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_puts_past_the_quota_are_answered_nospace() {
    concurrent_fill(Kind::Cairn).await;
    if Server::etcd_available("concurrent_puts_past_the_quota_are_answered_nospace") {
        concurrent_fill(Kind::Etcd).await;
    }
}

/// An alarm raised (here through the API) is kept across a kill -9 and still caps writes.
async fn restart_script(kind: Kind) -> Vec<String> {
    let mut server = Server::start(kind);
    let c = server.ready().await;
    let id = member_id(&c).await;
    let me = id.to_string();
    let mut out = Vec::new();
    let mut note = |line: String| out.push(line.replace(&me, "<member>"));
    let raise = alarm_request(AlarmAction::Activate, id, AlarmType::Nospace);
    note(format!("activate: {:?}", c.alarm(raise).await.unwrap()));
    note(format!("activate again: {:?}", c.alarm(raise).await.unwrap()));
    let other = alarm_request(AlarmAction::Activate, 42, AlarmType::Nospace);
    note(format!("activate for another member: {:?}", c.alarm(other).await.unwrap()));
    drop(c);
    server.restart();
    let c = server.ready().await;
    let mut listed = c.alarm(AlarmRequest::default()).await.unwrap();
    // etcd lists alarms in Go map order.
    listed.alarms.sort_by_key(|a| (a.alarm, a.member_id));
    note(format!("after restart: {listed:?}"));
    note(format!("put: {}", outcome(c.put("k", "v", PutOptions::default()).await)));
    note(format!(
        "deactivate: {:?}",
        c.alarm(alarm_request(AlarmAction::Deactivate, 42, AlarmType::Nospace)).await
    ));
    note(format!("put: {}", outcome(c.put("k", "v", PutOptions::default()).await)));
    note(format!(
        "deactivate: {:?}",
        c.alarm(alarm_request(AlarmAction::Deactivate, id, AlarmType::Nospace)).await
    ));
    note(format!("put: {}", outcome(c.put("k", "v", PutOptions::default()).await)));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_survives_a_restart() {
    let cairn = restart_script(Kind::Cairn).await;
    assert!(
        cairn.iter().any(|l| l.starts_with("after restart") && l.contains("member_id: 42")),
        "{cairn:#?}"
    );
    assert_eq!(cairn.last().map(String::as_str), Some("put: ok"), "{cairn:#?}");
    if Server::etcd_available("an_alarm_survives_a_restart") {
        assert_eq!(cairn, restart_script(Kind::Etcd).await, "cairn (left) and etcd (right)");
    }
}

/// Polls (bounded) until member `i` lists exactly `want` as (member, alarm type).
async fn wait_alarms(cluster: &Cluster, i: usize, want: &[(u64, i32)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = cluster.client(i).await;
        let listed = c
            .alarm(AlarmRequest::default())
            .await
            .map(|r| r.alarms.into_iter().map(|a| (a.member_id, a.alarm)).collect::<Vec<_>>());
        let errors = c.status().await.map(|s| s.errors.len());
        if listed.as_deref().is_ok_and(|l| l == want) && errors.as_ref().is_ok_and(|&n| n == want.len()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} lists {listed:?} (status errors {errors:?}), want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_raised_on_one_member_is_listed_and_caps_writes_on_all() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let leader_id = member_id(&cluster.client(leader).await).await;
    // Raised through a follower, for the leader (as a member whose backend outgrew the quota would).
    let raise = alarm_request(AlarmAction::Activate, leader_id, AlarmType::Nospace);
    cluster.client(follower).await.alarm(raise).await.unwrap();
    let raised = [(leader_id, AlarmType::Nospace as i32)];
    for i in 0..3 {
        wait_alarms(&cluster, i, &raised).await;
        let refused = cluster.client(i).await.put("k", "v", PutOptions::default()).await;
        assert_eq!(
            outcome(refused),
            "ResourceExhausted etcdserver: mvcc: database space exceeded",
            "member {i}"
        );
    }
    let disarm = alarm_request(AlarmAction::Deactivate, leader_id, AlarmType::Nospace);
    cluster.client(other).await.alarm(disarm).await.unwrap();
    for i in 0..3 {
        wait_alarms(&cluster, i, &[]).await;
        let put = cluster.client(i).await.put("k", format!("v{i}"), PutOptions::default()).await;
        assert_eq!(outcome(put), "ok", "member {i}\n{}", cluster.logs());
    }
    // A member without a leader says so in Status's errors, before the alarms.
    let raise = alarm_request(AlarmAction::Activate, 42, AlarmType::Nospace);
    cluster.client(leader).await.alarm(raise).await.unwrap();
    wait_alarms(&cluster, leader, &[(42, AlarmType::Nospace as i32)]).await;
    cluster.kill9(follower);
    cluster.kill9(other);
    let want = ["etcdserver: no leader", "memberID:42 alarm:NOSPACE "];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let errors = cluster.status(leader).await.map(|s| s.errors);
        if errors.as_ref().is_some_and(|e| e == &want) {
            break;
        }
        assert!(Instant::now() < deadline, "status errors {errors:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_catching_up_by_snapshot_gets_the_alarms_and_caps() {
    let flags = ["--snapshot-count=40", "--experimental-snapshot-catchup-entries=5"];
    let mut cluster = Cluster::start(3, &flags);
    let leader = cluster.wait_leader().await;
    let lagging = (leader + 1) % 3;
    let leader_id = member_id(&cluster.client(leader).await).await;
    cluster.kill9(lagging);
    let c = cluster.client(leader).await;
    c.alarm(alarm_request(AlarmAction::Activate, leader_id, AlarmType::Nospace)).await.unwrap();
    // Deletes still go through: enough entries that the log the lagging member needs is compacted away.
    for i in 0..100 {
        c.delete(format!("gone{i}"), DeleteOptions::default()).await.unwrap();
    }
    cluster.spawn(lagging);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.members[lagging].log().contains("installed a snapshot from the leader") {
        assert!(Instant::now() < deadline, "caught up without a snapshot?\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_alarms(&cluster, lagging, &[(leader_id, AlarmType::Nospace as i32)]).await;
    // The answer comes from the lagging member's own applier: capped by the snapshot's alarms.
    let refused = cluster.client(lagging).await.put("k", "v", PutOptions::default()).await;
    assert_eq!(outcome(refused), "ResourceExhausted etcdserver: mvcc: database space exceeded");
}
