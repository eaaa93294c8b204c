//! Robustness: concurrent clients doing get/put/delete/txn on a few keys while a fault schedule runs (kill -9
//! and restart a follower, kill -9 the leader, partition a member, move leadership, add and remove a member).
//! The recorded history must be linearizable (crates/check); a failed or timed-out write counts as maybe
//! applied. `CAIRN_ROBUSTNESS=long` runs a larger variant: 5 members, more clients, more rounds of faults.
//! `CAIRN_ROBUSTNESS_SEED` replays a run's choice of operations.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/cluster.rs"]
mod harness;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::compare::CompareResult;
use cairn_api::etcdserverpb::{MemberAddRequest, MemberRemoveRequest, MoveLeaderRequest};
use cairn_check::kv::{self, Recorder, Request, Response, Verdict};
use cairn_client::options::compare_value;
use cairn_client::{Client, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use harness::Cluster;

struct Shape {
    members: usize,
    clients: usize,
    rounds: usize,
    /// Keys the clients pick from: more keys, smaller per-key histories for the checker.
    keys: u64,
}

fn shape() -> Shape {
    if std::env::var("CAIRN_ROBUSTNESS").is_ok_and(|v| v == "long") {
        Shape { members: 5, clients: 8, rounds: 3, keys: 32 }
    } else {
        Shape { members: 3, clients: 4, rounds: 1, keys: 6 }
    }
}

/// splitmix64: one seed reproduces every client's choices.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const OP_TIMEOUT: Duration = Duration::from_secs(3);

async fn connect(endpoints: &[String]) -> Option<Client> {
    let opts =
        ConnectOptions { dial_timeout: Duration::from_secs(1), request_timeout: OP_TIMEOUT, user: None };
    Client::connect(endpoints, opts).await.ok()
}

/// One client: random operations until told to stop; every call and return goes into the recorder.
async fn run_client(
    id: u64,
    seed: u64,
    keys: u64,
    endpoints: Vec<String>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    writes_ok: Arc<AtomicU64>,
) {
    let mut rng = seed ^ (id.wrapping_mul(0x1234_5678_9abc_def1));
    let mut client: Option<Client> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some(c) = client.clone() else {
            client = connect(&endpoints).await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        n += 1;
        let k = next(&mut rng) % keys;
        let key = format!("k{k}");
        let value = format!("c{id}-{n}");
        let call = rec.now();
        let (request, response) = match next(&mut rng) % 10 {
            0..=3 => {
                let r = tokio::time::timeout(OP_TIMEOUT, c.get(key.clone(), GetOptions::default())).await;
                let resp = r.ok().and_then(Result::ok).map(|r| Response::from_range(&r));
                if resp.is_none() {
                    // A failed read changed nothing: leave it out.
                    client = None;
                    continue;
                }
                (Request::get(key), resp)
            }
            4..=6 => {
                let r = tokio::time::timeout(
                    OP_TIMEOUT,
                    c.put(key.clone(), value.clone(), PutOptions::default()),
                )
                .await;
                (Request::put(key, value), r.ok().and_then(Result::ok).map(|r| Response::from_put(&r)))
            }
            7 => {
                let r =
                    tokio::time::timeout(OP_TIMEOUT, c.delete(key.clone(), DeleteOptions::default())).await;
                (Request::delete(key), r.ok().and_then(Result::ok).map(|r| Response::from_delete(&r)))
            }
            _ => {
                // A txn spans a pair of keys (k, k^1): keys a txn links are checked together, so pairs keep
                // the checker's partitions small.
                let other = format!("k{}", if next(&mut rng).is_multiple_of(2) { k } else { (k ^ 1) % keys });
                let expect = format!("c{}-{}", next(&mut rng) % 4, next(&mut rng) % 20);
                let txn = Txn::new()
                    .when([compare_value(key.as_bytes(), CompareResult::Equal, expect.as_bytes())])
                    .and_then([TxnOp::Put(
                        other.clone().into_bytes(),
                        value.into_bytes(),
                        PutOptions::default(),
                    )])
                    .or_else([TxnOp::Get(key.clone().into_bytes(), GetOptions::default())]);
                let checked = kv::TxnRequest::try_from(&txn.clone().into_request()).unwrap();
                let r = tokio::time::timeout(OP_TIMEOUT, c.txn(txn)).await;
                let resp = r.ok().and_then(Result::ok).map(|r| Response::from_txn(&r).unwrap());
                (Request::Txn(checked), resp)
            }
        };
        if response.is_some() {
            if !matches!(request, Request::Get { .. }) {
                writes_ok.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            client = None;
        }
        rec.record(id, call, request, response);
    }
}

async fn pause(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The fault schedule: each step waits for the cluster to have a leader again before the next.
async fn faults(cluster: &mut Cluster, rounds: usize) {
    let gap = Duration::from_millis(1500);
    for round in 0..rounds {
        pause(gap).await;
        let leader = cluster.wait_leader().await;
        let follower =
            (0..cluster.members.len()).find(|&i| i != leader && cluster.members[i].running()).unwrap();
        eprintln!("fault: kill -9 follower {}", cluster.members[follower].name);
        cluster.kill9(follower);
        pause(gap).await;
        cluster.spawn(follower);
        pause(gap).await;

        let leader = cluster.wait_leader().await;
        eprintln!("fault: kill -9 leader {}", cluster.members[leader].name);
        cluster.kill9(leader);
        pause(gap).await;
        cluster.spawn(leader);
        pause(gap).await;

        let leader = cluster.wait_leader().await;
        eprintln!("fault: partition leader {}", cluster.members[leader].name);
        cluster.isolate(leader, true);
        pause(gap * 2).await;
        cluster.isolate(leader, false);
        pause(gap).await;

        let leader = cluster.wait_leader().await;
        let target =
            (0..cluster.members.len()).find(|&i| i != leader && cluster.members[i].running()).unwrap();
        let target_id = cluster.status(target).await.map_or(0, |s| s.header.unwrap().member_id);
        eprintln!("fault: move leader to {}", cluster.members[target].name);
        let moved = cluster.maintenance(leader).await.move_leader(MoveLeaderRequest { target_id }).await;
        eprintln!("fault: move leader: {:?}", moved.map(|_| ()));
        pause(gap).await;

        let leader = cluster.wait_leader().await;
        let name = format!("x{round}");
        let joined = cluster.prepare_member(&name);
        let add =
            MemberAddRequest { peer_ur_ls: vec![cluster.members[joined].peer_url()], is_learner: false };
        eprintln!("fault: add member {name}");
        let added = cluster.cluster_client(leader).await.member_add(add).await;
        match added {
            Ok(r) => {
                let id = r.into_inner().member.unwrap().id;
                cluster.spawn(joined);
                pause(gap * 2).await;
                let leader = cluster.wait_leader().await;
                eprintln!("fault: remove member {name}");
                let removed =
                    cluster.cluster_client(leader).await.member_remove(MemberRemoveRequest { id }).await;
                eprintln!("fault: remove member: {:?}", removed.map(|_| ()));
                cluster.members[joined].wait_exit(Duration::from_secs(10));
                cluster.kill9(joined);
            }
            Err(e) => eprintln!("fault: add member failed: {e}"),
        }
        pause(gap).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_faults_are_linearizable() {
    let shape = shape();
    let seed =
        std::env::var("CAIRN_ROBUSTNESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
    eprintln!("robustness seed {seed} (replay with CAIRN_ROBUSTNESS_SEED={seed})");
    // Membership changes happen right after other faults, before peers have been connected for etcd's
    // HealthInterval: without --strict-reconfig-check=false most would be refused as "unhealthy cluster".
    let mut cluster = Cluster::start(shape.members, &["--strict-reconfig-check=false"]);
    cluster.wait_leader().await;
    let endpoints: Vec<String> = cluster.endpoints();
    let rec = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let writes_ok = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..shape.clients as u64)
        .map(|id| {
            // Each client starts at a different member.
            let mut eps = endpoints.clone();
            let n = eps.len();
            eps.rotate_left(id as usize % n);
            tokio::spawn(run_client(
                id,
                seed,
                shape.keys,
                eps,
                Arc::clone(&rec),
                Arc::clone(&stop),
                Arc::clone(&writes_ok),
            ))
        })
        .collect();
    let started = Instant::now();
    faults(&mut cluster, shape.rounds).await;
    // Let the cluster settle and the clients work on a healthy cluster too.
    cluster.wait_leader().await;
    pause(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let history = rec.history();
    let ok = writes_ok.load(Ordering::Relaxed);
    eprintln!("{} operations ({ok} acknowledged writes) in {:?}", history.len(), started.elapsed());
    assert!(ok > 50, "too few writes succeeded under faults ({ok})\n{}", cluster.logs());
    let options = kv::Options { time_budget: Duration::from_secs(120), ..kv::Options::default() };
    match kv::check(&history, &options).unwrap() {
        Verdict::Ok => {}
        Verdict::Unknown(why) => eprintln!("robustness: the checker gave up ({why}); seed {seed}"),
        Verdict::Illegal(v) => {
            panic!("history is not linearizable (seed {seed}): {}\n{}", v.explanation, cluster.logs())
        }
    }
}
