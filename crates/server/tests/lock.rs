//! The Lock and Election services, written once and run against cairn and the real etcd: mutual exclusion
//! under many contenders, a holder losing the lock when its lease expires, an election's leader, Observe's
//! order, Proclaim, Resign, abandoned waiters leaving no key behind, etcd's errors (all gRPC code Unknown, as
//! etcd's server sends them), the gateway's JSON, and `etcdctl lock` / `etcdctl elect` giving the same output.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/cluster.rs"]
mod harness;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use cairn_api::etcdserverpb::LeaseGrantRequest;
use cairn_api::v3electionpb::election_client::ElectionClient;
use cairn_api::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ResignRequest,
};
use cairn_api::v3lockpb::lock_client::LockClient;
use cairn_api::v3lockpb::{LockRequest, UnlockRequest};
use cairn_client::options::KeyRange;
use cairn_client::stream::ServerStream;
use cairn_client::{Client, ConnectOptions, GetOptions};
use common::{Kind, Server};
use tonic::Code;

/// The most any single blocking call may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.unwrap_or_else(|_| panic!("{what}: no answer within {LIMIT:?}"))
}

async fn grant(c: &Client, ttl: i64) -> i64 {
    c.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await.unwrap().id
}

async fn count(c: &Client, prefix: &str) -> i64 {
    let opts = GetOptions { range: KeyRange::Prefix, count_only: true, ..Default::default() };
    c.get(prefix, opts).await.unwrap().count
}

/// Polls until `prefix` holds `n` keys (bounded).
async fn until_count(c: &Client, prefix: &str, n: i64) {
    for _ in 0..300 {
        if count(c, prefix).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{prefix} never held {n} keys (has {})", count(c, prefix).await);
}

fn lock_req(name: &str, lease: i64) -> LockRequest {
    LockRequest { name: name.into(), lease }
}

fn campaign_req(name: &str, lease: i64, value: &str) -> CampaignRequest {
    CampaignRequest { name: name.into(), lease, value: value.into() }
}

/// A client whose calls may block as long as a lock or campaign waits in these tests.
async fn patient_client(url: String) -> Client {
    Client::connect([url], ConnectOptions { request_timeout: LIMIT, ..Default::default() }).await.unwrap()
}

async fn start(kind: Kind) -> (Server, Client) {
    let server = Server::start(kind);
    server.ready().await;
    let client = patient_client(server.client_url()).await;
    (server, client)
}

/// Runs `f` on cairn, then on etcd when it is installed.
async fn on_both<F, Fut>(test: &str, f: F)
where
    F: Fn(Kind) -> Fut,
    Fut: Future<Output = ()>,
{
    f(Kind::Cairn).await;
    if Server::etcd_available(test) {
        f(Kind::Etcd).await;
    }
}

const CONTENDERS: usize = 20;
const ROUNDS: usize = 5;

/// `CONTENDERS` tasks, spread over `clients`, each taking the lock `ROUNDS` times.
async fn contend(clients: &[Client]) {
    let client = &clients[0];
    let holders = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..CONTENDERS {
        let c = clients[i % clients.len()].clone();
        let (holders, acquired) = (Arc::clone(&holders), Arc::clone(&acquired));
        tasks.push(tokio::spawn(async move {
            let lease = grant(&c, 60).await;
            for _ in 0..ROUNDS {
                let key = within("lock", c.lock(lock_req("mx", lease))).await.unwrap().key;
                assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                // The server agrees: our key is the oldest under the lock's prefix.
                let first = c
                    .get("mx/", GetOptions { range: KeyRange::Prefix, ..Default::default() })
                    .await
                    .unwrap()
                    .kvs
                    .into_iter()
                    .min_by_key(|kv| kv.create_revision)
                    .unwrap();
                assert_eq!(first.key, key);
                tokio::time::sleep(Duration::from_millis(2)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                acquired.fetch_add(1, Ordering::SeqCst);
                c.unlock(UnlockRequest { key }).await.unwrap();
            }
        }));
    }
    for t in tasks {
        within("contender", t).await.unwrap();
    }
    assert_eq!(acquired.load(Ordering::SeqCst), CONTENDERS * ROUNDS);
    assert_eq!(count(client, "mx/").await, 0, "every holder unlocked");
}

async fn mutual_exclusion(kind: Kind) {
    let (_server, client) = start(kind).await;
    contend(&[client]).await;
}

#[tokio::test]
async fn many_contenders_never_hold_the_lock_together() {
    on_both("many_contenders_never_hold_the_lock_together", mutual_exclusion).await;
}

/// Contenders on every member of a 3-member cluster: locks taken through followers exclude each other too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contenders_on_every_member_never_hold_the_lock_together() {
    let cluster = harness::Cluster::start(3, &[]);
    cluster.wait_leader().await;
    let mut clients = Vec::new();
    for i in 0..3 {
        cluster.wait_published(i, 3).await;
        clients.push(patient_client(cluster.members[i].client_url()).await);
    }
    contend(&clients).await;
}

async fn expiry_hands_the_lock_over(kind: Kind) {
    let (_server, client) = start(kind).await;
    let short = grant(&client, 4).await;
    let held = client.lock(lock_req("exp", short)).await.unwrap().key;
    let long = grant(&client, 60).await;
    let c = client.clone();
    let mut waiter = tokio::spawn(async move { c.lock(lock_req("exp", long)).await });
    until_count(&client, "exp/", 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the waiter got the lock while the holder's lease lived");
    // Nobody keeps the short lease alive: it expires, its key goes, the waiter holds the lock.
    let got = within("waiter", &mut waiter).await.unwrap().unwrap();
    assert_eq!(got.key, format!("exp/{long:x}").into_bytes());
    let left = client.get(held, GetOptions::default()).await.unwrap();
    assert!(left.kvs.is_empty(), "the expired holder's key is gone");
}

#[tokio::test]
async fn a_holder_whose_lease_expires_loses_the_lock() {
    on_both("a_holder_whose_lease_expires_loses_the_lock", expiry_hands_the_lock_over).await;
}

/// The next Observe answer's value (its header at least its key's revision and never going back).
async fn next_seen(observer: &mut ServerStream<LeaderResponse>, revision: &mut i64) -> String {
    let resp = within("observe", observer.message()).await.unwrap().unwrap();
    let kv = resp.kv.unwrap();
    let header = resp.header.unwrap().revision;
    assert!(header >= kv.mod_revision && header >= *revision, "{header} {kv:?}");
    *revision = header;
    String::from_utf8(kv.value).unwrap()
}

async fn election(kind: Kind) {
    let (server, client) = start(kind).await;
    let mut raw = ElectionClient::connect(server.client_url()).await.unwrap();
    // etcd answers Observe's headers with its first message: the call completes once there is a leader.
    let c = client.clone();
    let observer = tokio::spawn(async move { c.observe(LeaderRequest { name: "el".into() }).await });
    let (l1, l2, l3) = (grant(&client, 60).await, grant(&client, 60).await, grant(&client, 60).await);
    // Give the observer time to start before the first candidate (it would see it anyway, as the leader).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = Vec::new();
    let mut revision = 0;

    let first = within("campaign 1", client.campaign(campaign_req("el", l1, "v1"))).await.unwrap();
    let mut observer = within("observe", observer).await.unwrap().unwrap();
    seen.push(next_seen(&mut observer, &mut revision).await);
    let lk1 = first.leader.unwrap();
    assert_eq!((lk1.name.as_slice(), lk1.lease), (&b"el"[..], l1));
    assert_eq!(lk1.key, format!("el/{l1:x}").into_bytes());
    assert_eq!(lk1.rev, first.header.unwrap().revision);
    let now = client.leader(LeaderRequest { name: "el".into() }).await.unwrap().kv.unwrap();
    assert_eq!((now.key.as_slice(), now.value.as_slice()), (lk1.key.as_slice(), &b"v1"[..]));

    client.proclaim(ProclaimRequest { leader: Some(lk1.clone()), value: "v1b".into() }).await.unwrap();
    seen.push(next_seen(&mut observer, &mut revision).await);
    let spawn_campaign = |lease, value: &'static str| {
        let c = client.clone();
        tokio::spawn(async move { c.campaign(campaign_req("el", lease, value)).await })
    };
    let mut second = spawn_campaign(l2, "v2");
    until_count(&client, "el/", 2).await;
    let mut third = spawn_campaign(l3, "v3");
    until_count(&client, "el/", 3).await;
    assert!(!second.is_finished() && !third.is_finished(), "one leader at a time");
    let now = client.leader(LeaderRequest { name: "el".into() }).await.unwrap().kv.unwrap();
    assert_eq!(now.value, b"v1b");

    // Resign hands over to the oldest remaining candidate.
    client.resign(ResignRequest { leader: Some(lk1.clone()) }).await.unwrap();
    let lk2 = within("campaign 2", &mut second).await.unwrap().unwrap().leader.unwrap();
    assert_eq!(lk2.key, format!("el/{l2:x}").into_bytes());
    assert!(lk2.rev > lk1.rev);
    assert!(!third.is_finished());
    seen.push(next_seen(&mut observer, &mut revision).await);

    // The old term's key is stale: Proclaim fails as etcd's, Resign is a no-op.
    let stale =
        raw.proclaim(ProclaimRequest { leader: Some(lk1.clone()), value: "late".into() }).await.unwrap_err();
    assert_eq!((stale.code(), stale.message()), (Code::Unknown, "election: not leader"));
    client.resign(ResignRequest { leader: Some(lk1.clone()) }).await.unwrap();
    let now = client.leader(LeaderRequest { name: "el".into() }).await.unwrap().kv.unwrap();
    assert_eq!((now.key.as_slice(), now.value.as_slice()), (lk2.key.as_slice(), &b"v2"[..]));

    client.resign(ResignRequest { leader: Some(lk2) }).await.unwrap();
    let lk3 = within("campaign 3", &mut third).await.unwrap().unwrap().leader.unwrap();
    assert_eq!(lk3.key, format!("el/{l3:x}").into_bytes());
    seen.push(next_seen(&mut observer, &mut revision).await);

    // Campaigning again with the same lease keeps the place and updates the value.
    let again = within("campaign 3 again", client.campaign(campaign_req("el", l3, "v3b"))).await.unwrap();
    assert_eq!(again.leader.unwrap().rev, lk3.rev);
    seen.push(next_seen(&mut observer, &mut revision).await);
    // Observe saw every change, in order, and nothing else.
    assert_eq!(seen, ["v1", "v1b", "v2", "v3", "v3b"]);
}

#[tokio::test]
async fn election_has_one_leader_and_observe_sees_every_change() {
    on_both("election_has_one_leader_and_observe_sees_every_change", election).await;
}

async fn abandoned_waiters(kind: Kind) {
    let (_server, client) = start(kind).await;
    let (a, b) = (grant(&client, 60).await, grant(&client, 60).await);
    client.lock(lock_req("cx", a)).await.unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(500), client.lock(lock_req("cx", b))).await;
    assert!(gave_up.is_err(), "the lock was free: {gave_up:?}");
    until_count(&client, "cx/", 1).await;

    client.campaign(campaign_req("ce", a, "a")).await.unwrap();
    let gave_up =
        tokio::time::timeout(Duration::from_millis(500), client.campaign(campaign_req("ce", b, "b"))).await;
    assert!(gave_up.is_err(), "the election had no leader: {gave_up:?}");
    until_count(&client, "ce/", 1).await;
}

#[tokio::test]
async fn a_waiter_that_gives_up_leaves_no_key() {
    on_both("a_waiter_that_gives_up_leaves_no_key", abandoned_waiters).await;
}

async fn errors(kind: Kind) {
    let (server, client) = start(kind).await;
    let mut lock = LockClient::connect(server.client_url()).await.unwrap();
    let mut election = ElectionClient::connect(server.client_url()).await.unwrap();
    let unknown = |s: tonic::Status| (s.code(), s.message().to_owned());
    let expect = |m: &str| (Code::Unknown, m.to_owned());

    let e = lock.lock(lock_req("er", 0x1234)).await.unwrap_err();
    assert_eq!(unknown(e), expect("etcdserver: requested lease not found"));
    let e = election.campaign(campaign_req("er", 0x1234, "v")).await.unwrap_err();
    assert_eq!(unknown(e), expect("etcdserver: requested lease not found"));
    let e = election.leader(LeaderRequest { name: "nobody".into() }).await.unwrap_err();
    assert_eq!(unknown(e), expect("election: no leader"));
    let e = election.proclaim(ProclaimRequest { leader: None, value: "v".into() }).await.unwrap_err();
    assert_eq!(unknown(e), expect("\"leader\" field must be provided"));
    let e = election.resign(ResignRequest { leader: None }).await.unwrap_err();
    assert_eq!(unknown(e), expect("\"leader\" field must be provided"));
    let e = lock.unlock(UnlockRequest { key: Vec::new() }).await.unwrap_err();
    assert_eq!(unknown(e), expect("etcdserver: key is not provided"));

    // Unlock of a key nobody holds is a success, as etcd's delete of a missing key.
    let before = client.get("x", GetOptions::default()).await.unwrap().header.unwrap().revision;
    let r = lock.unlock(UnlockRequest { key: b"er/1234".to_vec() }).await.unwrap().into_inner();
    assert_eq!(r.header.unwrap().revision, before);

    // A request without a lease gets a session lease of 60 s.
    let held = lock.lock(lock_req("er", 0)).await.unwrap().into_inner();
    let kv = client.get(held.key, GetOptions::default()).await.unwrap().kvs.remove(0);
    let ttl = client
        .lease_time_to_live(cairn_api::etcdserverpb::LeaseTimeToLiveRequest { id: kv.lease, keys: false })
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl, 60);
    let stale = LeaderKey { name: "er".into(), key: b"er/1".to_vec(), rev: 2, lease: 0 };
    let e = election.proclaim(ProclaimRequest { leader: Some(stale), value: "v".into() }).await.unwrap_err();
    assert_eq!(unknown(e), expect("election: not leader"));
}

#[tokio::test]
async fn errors_are_etcds() {
    on_both("errors_are_etcds", errors).await;
}

/// The gateway's answers with the ids of the cluster and member masked.
fn gateway_transcript(server: &Server) -> Vec<(u16, serde_json::Value)> {
    let steps = [
        ("/v3/lease/grant", r#"{"ID":"4660","TTL":"60"}"#),
        ("/v3/lock/lock", r#"{"name":"Z2w=","lease":"4660"}"#),
        ("/v3/lock/lock", r#"{"name":"Z2w=","lease":"4661"}"#),
        ("/v3/election/leader", r#"{"name":"Z2U="}"#),
        ("/v3/election/campaign", r#"{"name":"Z2U=","lease":"4660","value":"dg=="}"#),
        ("/v3/election/leader", r#"{"name":"Z2U="}"#),
        (
            "/v3/election/proclaim",
            r#"{"leader":{"name":"Z2U=","key":"Z2UvMTIzNA==","rev":"3","lease":"4660"},"value":"dzI="}"#,
        ),
        (
            "/v3/election/proclaim",
            r#"{"leader":{"name":"Z2U=","key":"Z2UvMTIzNA==","rev":"2","lease":"4660"},"value":"dzI="}"#,
        ),
        ("/v3/election/leader", r#"{"name":"Z2U="}"#),
        (
            "/v3/election/resign",
            r#"{"leader":{"name":"Z2U=","key":"Z2UvMTIzNA==","rev":"3","lease":"4660"}}"#,
        ),
        ("/v3/election/resign", r#"{}"#),
        ("/v3/lock/unlock", r#"{"key":"Z2wvMTIzNA=="}"#),
        ("/v3/election/campaign", r#"{"name":"Z2U=","lease":"4660","value":"djM="}"#),
    ];
    let mask = |code: u16, body: &str| {
        let mut v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        let header =
            if v.get("result").is_some() { v["result"].get_mut("header") } else { v.get_mut("header") };
        if let Some(h) = header {
            h["cluster_id"] = "C".into();
            h["member_id"] = "M".into();
        }
        (code, v)
    };
    let mut out: Vec<_> = steps
        .iter()
        .map(|(path, body)| {
            let (code, body) = server.http("POST", path, body);
            mask(code, &body)
        })
        .collect();
    // Observe streams: its first line names the leader.
    let line = first_streamed_line(server.client_port, "/v3/election/observe", r#"{"name":"Z2U="}"#);
    out.push(mask(200, &line));
    out
}

/// The first JSON line of a streamed HTTP answer (the connection is dropped afterwards).
fn first_streamed_line(port: u16, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&received);
        let line = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| b.lines().find(|l| l.starts_with('{') && l.ends_with('}')).map(str::to_owned));
        if let Some(line) = line {
            return line;
        }
    }
    panic!("no line in {}", String::from_utf8_lossy(&received));
}

#[tokio::test]
async fn gateway_lock_and_election_json_is_etcds() {
    let (cairn_server, _c) = start(Kind::Cairn).await;
    let cairn = gateway_transcript(&cairn_server);
    // The lock key is name/lease in hex, the leader's value and revisions as the steps made them.
    assert_eq!(cairn[1].1["key"], "Z2wvMTIzNA==", "{:?}", cairn[1]);
    assert_eq!(cairn[3].0, 500);
    assert_eq!(cairn[3].1["error"], "election: no leader");
    assert_eq!(cairn[3].1["code"], 2);
    assert_eq!(cairn[8].1["kv"]["value"], "dzI=", "{:?}", cairn[8]);
    let observed = &cairn.last().unwrap().1["result"]["kv"];
    assert_eq!((observed["key"].as_str(), observed["value"].as_str()), (Some("Z2UvMTIzNA=="), Some("djM=")));
    if !Server::etcd_available("gateway_lock_and_election_json_is_etcds") {
        return;
    }
    let (etcd_server, _e) = start(Kind::Etcd).await;
    let etcd = gateway_transcript(&etcd_server);
    assert_eq!(cairn.len(), etcd.len());
    if std::env::var("CAIRN_SHOW_TRANSCRIPT").is_ok() {
        eprintln!("{cairn:?}");
    }
    for (i, (c, e)) in cairn.iter().zip(&etcd).enumerate() {
        assert_eq!(c, e, "step {i}: cairn (left) and etcd (right) differ");
    }
}

fn etcdctl_available() -> bool {
    let found = Command::new("etcdctl").arg("version").env("ETCDCTL_API", "3").output().is_ok();
    if !found {
        assert!(std::env::var("CI").is_err(), "etcdctl is not installed but CI is set");
        eprintln!("etcdctl lock/elect test skipped: etcdctl not installed");
    }
    found
}

/// A running etcdctl whose stdout lines arrive on a channel; killed on drop.
struct Ctl {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Ctl {
    fn spawn(endpoint: &str, args: &[&str]) -> Ctl {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ctl { child, lines }
    }

    /// The next `n` lines (fails after [`LIMIT`]).
    fn lines(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.lines.recv_timeout(LIMIT).expect("etcdctl printed nothing")).collect()
    }

    /// SIGINT: etcdctl elect resigns and exits.
    fn interrupt(&mut self) {
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("etcdctl did not stop on SIGINT");
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name/<lease hex>` written as `name/L<n>` by order of first appearance.
fn mask_leases(lines: Vec<String>, seen: &mut Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| match l.split_once('/') {
            Some((name, hex)) if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                let n = seen.iter().position(|h| h == hex).unwrap_or_else(|| {
                    seen.push(hex.to_owned());
                    seen.len() - 1
                });
                format!("{name}/L{n}")
            }
            _ => l,
        })
        .collect()
}

async fn etcdctl_transcript(kind: Kind) -> Vec<String> {
    let (server, _client) = start(kind).await;
    let ep = server.endpoint();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    let run = |args: &[&str]| {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={ep}"))
            .args(args)
            .output();
        let o = o.unwrap();
        format!("[exit {}] {}", o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout))
    };
    out.push(run(&["lock", "mylock", "--", "echo", "held"]));
    out.push(run(&["lock", "mylock", "--", "sh", "-c", "exit 3"]));

    // A holder prints its key; a second locker waits until the first is interrupted.
    let mut holder = Ctl::spawn(&ep, &["lock", "l2"]);
    out.extend(mask_leases(holder.lines(1), &mut seen));
    let second = Ctl::spawn(&ep, &["lock", "l2"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder.interrupt();
    out.extend(mask_leases(second.lines(1), &mut seen));
    drop(second);

    // elect: an observer, a leader, a second candidate that takes over when the leader resigns.
    let observer = Ctl::spawn(&ep, &["elect", "-l", "e1"]);
    let mut first = Ctl::spawn(&ep, &["elect", "e1", "v1"]);
    out.extend(mask_leases(first.lines(2), &mut seen));
    let mut next = Ctl::spawn(&ep, &["elect", "e1", "v2"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.interrupt();
    out.extend(mask_leases(next.lines(2), &mut seen));
    out.push("-- observer".to_owned());
    out.extend(mask_leases(observer.lines(4), &mut seen));
    next.interrupt();
    out.push(run(&["get", "e1", "--prefix", "--keys-only"]));
    out
}

#[tokio::test]
async fn etcdctl_lock_and_elect_agree_with_etcd() {
    if !Server::etcd_available("etcdctl_lock_and_elect_agree_with_etcd") || !etcdctl_available() {
        return;
    }
    let cairn = etcdctl_transcript(Kind::Cairn).await;
    let etcd = etcdctl_transcript(Kind::Etcd).await;
    if std::env::var("CAIRN_SHOW_TRANSCRIPT").is_ok() {
        eprintln!("{}", cairn.join("\n"));
    }
    assert_eq!(cairn, etcd, "cairn (left) and etcd (right) differ");
    assert!(cairn.contains(&"[exit 0] held\n".to_owned()), "{cairn:?}");
}
