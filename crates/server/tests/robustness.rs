//! Robustness: concurrent clients doing get/put/delete/txn on a few keys while a fault schedule runs (kill -9
//! and restart a follower, kill -9 the leader, partition a member, move leadership, add and remove a member).
//! Meanwhile watchers follow the keys with prev_kv: one starting on each member (so the killed follower and
//! leader each had one), some with a NOPUT or NODELETE filter or a narrower range; a watcher whose stream
//! breaks resumes on the next member from its last revision + 1, and a canceled watch fails the test (nothing
//! is compacted here).
//!
//! Checked at the end:
//! - the recorded KV history is linearizable (cairn-check's kv checker); a failed or timed-out write counts as
//!   maybe applied;
//! - the ground truth, one fresh watch over every key from the start marker to the end marker, has one event
//!   per revision (every write here changes one key), holds every acknowledged write at its response's
//!   revision with its key and value, and no put of a value no client sent, nor one applied twice;
//! - every watcher, judged against that ground truth by cairn-check's watch checker (ordered, unique, atomic,
//!   reliable, resumable, prev_kv, filters), and at least one watcher resumed.
//!
//! `CAIRN_ROBUSTNESS=long` runs a larger variant: 5 members, more clients and watchers, more rounds of faults.
//! `CAIRN_ROBUSTNESS_SEED` replays a run's choice of operations.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/follow.rs"]
mod follow;
#[path = "common/cluster.rs"]
mod harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::compare::CompareResult;
use cairn_api::etcdserverpb::watch_create_request::FilterType;
use cairn_api::etcdserverpb::{MemberAddRequest, MemberRemoveRequest, MoveLeaderRequest, WatchCreateRequest};
use cairn_check::kv::{self, Operation, Recorder, Request, Response, TxnOpResult, Verdict};
use cairn_check::watch::{self as wcheck, EventKind, GroundTruth};
use cairn_client::options::compare_value;
use cairn_client::{Client, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use follow::{Follow, Followed};
use harness::Cluster;
use tokio::sync::watch;

struct Shape {
    members: usize,
    clients: usize,
    /// Watchers, started on members in turn.
    watchers: usize,
    rounds: usize,
    /// Keys the clients pick from: more keys, smaller per-key histories for the checker.
    keys: u64,
}

fn shape() -> Shape {
    if std::env::var("CAIRN_ROBUSTNESS").is_ok_and(|v| v == "long") {
        Shape { members: 5, clients: 8, watchers: 8, rounds: 3, keys: 32 }
    } else {
        Shape { members: 3, clients: 4, watchers: 4, rounds: 1, keys: 6 }
    }
}

/// Written before the clients start (the first revision watched), deleted by the end marker.
const START_KEY: &str = "k0/start";
/// Written, with the start marker's delete, in the one transaction that ends the run: every watcher (either
/// filter, any of the ranges below) has an event at the last revision.
const END_KEY: &str = "k0/end";

/// Watcher `i`'s request from revision `start`, in turn: every key (`k` to `l`) or `[k0, k3)`, unfiltered or
/// NOPUT or NODELETE, always with prev_kv. Each covers the markers `k0/...`. Also a short description.
fn watch_request(i: usize, start: i64) -> (WatchCreateRequest, &'static str) {
    let (key, range_end, filter, what): (&[u8], &[u8], _, _) = match i % 4 {
        0 => (b"k", b"l", None, "all keys"),
        1 => (b"k", b"l", Some(FilterType::Noput), "all keys, NOPUT"),
        2 => (b"k0", b"k3", Some(FilterType::Nodelete), "[k0, k3), NODELETE"),
        _ => (b"k0", b"k3", None, "[k0, k3)"),
    };
    let request = WatchCreateRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        start_revision: start,
        prev_kv: true,
        filters: filter.map(|f| vec![f as i32]).unwrap_or_default(),
        ..Default::default()
    };
    (request, what)
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

/// A write that changed the store: (revision, key, the value put or None for a delete).
type Write = (i64, Vec<u8>, Option<Vec<u8>>);

/// The writes the history's responses say changed the store: puts, deletes that deleted, a txn's success
/// branch.
fn acknowledged(history: &[Operation]) -> Vec<Write> {
    let mut out = Vec::new();
    for op in history {
        match (&op.request, &op.response) {
            (Request::Put { key, value }, Some(Response::Put { revision })) => {
                out.push((*revision, key.clone(), Some(value.clone())));
            }
            (Request::Delete { key }, Some(Response::Delete { revision, deleted })) if *deleted > 0 => {
                out.push((*revision, key.clone(), None));
            }
            (Request::Txn(txn), Some(Response::Txn { revision, succeeded: true, results })) => {
                for (op, result) in txn.success.iter().zip(results) {
                    match (op, result) {
                        (kv::TxnOp::Put(key, value), _) => {
                            out.push((*revision, key.clone(), Some(value.clone())))
                        }
                        (kv::TxnOp::Delete(key), TxnOpResult::Delete { deleted }) if *deleted > 0 => {
                            out.push((*revision, key.clone(), None));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Every value a client asked to put, acknowledged or not.
fn sent_values(history: &[Operation]) -> HashSet<&[u8]> {
    let mut sent = HashSet::new();
    for op in history {
        match &op.request {
            Request::Put { value, .. } => {
                sent.insert(value.as_slice());
            }
            Request::Txn(txn) => {
                for op in &txn.success {
                    if let kv::TxnOp::Put(_, value) = op {
                        sent.insert(value.as_slice());
                    }
                }
            }
            Request::Get { .. } | Request::Delete { .. } => {}
        }
    }
    sent
}

/// What the ground truth (every event from revision `start` to `end`) and the KV history disagree on. Every
/// write here changes one key (the end marker two), so each revision has one event; every acknowledged write
/// is there as acknowledged; every put carries a value a client sent (the clients' values are unique), once.
fn cross_check(truth: &[wcheck::Event], history: &[Operation], start: i64, end: i64) -> Vec<String> {
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut wrong = Vec::new();
    let mut per_revision: BTreeMap<i64, usize> = BTreeMap::new();
    for e in truth {
        *per_revision.entry(e.revision()).or_default() += 1;
    }
    for rev in start..=end {
        let (got, want) = (per_revision.remove(&rev).unwrap_or(0), if rev == end { 2 } else { 1 });
        if got != want {
            wrong.push(format!("revision {rev} has {got} event(s), expected {want}"));
        }
    }
    wrong.extend(
        per_revision.keys().map(|rev| format!("an event at revision {rev}, outside [{start}, {end}]")),
    );
    let index: HashMap<(i64, &[u8]), &wcheck::Event> =
        truth.iter().map(|e| ((e.revision(), e.key.as_slice()), e)).collect();
    for (rev, key, value) in acknowledged(history) {
        let what = match &value {
            Some(v) => format!("the acknowledged put {}={} at revision {rev}", show(&key), show(v)),
            None => format!("the acknowledged delete of {} at revision {rev}", show(&key)),
        };
        match (index.get(&(rev, key.as_slice())), &value) {
            (None, _) => wrong.push(format!("{what} is not in the ground truth")),
            (Some(e), Some(v)) if e.kind != EventKind::Put || e.kv.value != *v => {
                wrong.push(format!("{what} is in the ground truth as {:?} {}", e.kind, show(&e.kv.value)));
            }
            (Some(e), None) if e.kind != EventKind::Delete => {
                wrong.push(format!("{what} is in the ground truth as a put of {}", show(&e.kv.value)));
            }
            _ => {}
        }
    }
    let sent = sent_values(history);
    let mut applied: HashMap<&[u8], Vec<i64>> = HashMap::new();
    let markers = [START_KEY.as_bytes(), END_KEY.as_bytes()];
    for e in truth.iter().filter(|e| e.kind == EventKind::Put && !markers.contains(&e.key.as_slice())) {
        if !sent.contains(e.kv.value.as_slice()) {
            wrong.push(format!(
                "put {}={} at revision {}: no client sent that value",
                show(&e.key),
                show(&e.kv.value),
                e.revision()
            ));
        }
        applied.entry(e.kv.value.as_slice()).or_default().push(e.revision());
    }
    for (value, revisions) in applied.into_iter().filter(|(_, r)| r.len() > 1) {
        wrong.push(format!("the put of value {} was applied at revisions {revisions:?}", show(value)));
    }
    wrong
}

/// Starts one follower per watcher (watcher `i` on member `i`, modulo the members) from revision `start`.
fn start_watchers(
    count: usize,
    endpoints: &[String],
    start: i64,
    until: &watch::Receiver<i64>,
) -> Vec<(Follow, Arc<Mutex<Followed>>, tokio::task::JoinHandle<()>)> {
    // Only a backstop: the end waits for the watchers with its own, shorter, bound.
    let deadline = Instant::now() + Duration::from_secs(1800);
    (0..count)
        .map(|i| {
            let (request, what) = watch_request(i, start);
            let first = i % endpoints.len();
            let name = format!("w{i} ({what}, started on member {})", first + 1);
            let follow = Follow { name, request, endpoints: endpoints.to_vec(), first };
            let log = Arc::new(Mutex::new(Followed::default()));
            let task = {
                let (f, log, until) = (follow.clone(), Arc::clone(&log), until.clone());
                tokio::spawn(async move { f.run(log, until, deadline).await })
            };
            (follow, log, task)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_history_is_linearizable_and_watches_hold_under_faults() {
    let shape = shape();
    let seed =
        std::env::var("CAIRN_ROBUSTNESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
    eprintln!("robustness seed {seed} (replay with CAIRN_ROBUSTNESS_SEED={seed})");
    // Membership changes happen right after other faults, before peers have been connected for etcd's
    // HealthInterval: without --strict-reconfig-check=false most would be refused as "unhealthy cluster".
    let mut cluster = Cluster::start(shape.members, &["--strict-reconfig-check=false"]);
    let leader = cluster.wait_leader().await;
    let endpoints: Vec<String> = cluster.endpoints();
    let start = {
        let c = cluster.client(leader).await;
        c.put(START_KEY, "start", PutOptions::default()).await.unwrap().header.unwrap().revision
    };
    let (set_until, until) = watch::channel(0i64);
    let mut watchers = start_watchers(shape.watchers, &endpoints, start, &until);
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

    // The end marker: one revision every watcher has an event at.
    let leader = cluster.wait_leader().await;
    let end_txn = Txn::new().and_then([
        TxnOp::Put(END_KEY.into(), b"end".to_vec(), PutOptions::default()),
        TxnOp::Delete(START_KEY.into(), DeleteOptions::default()),
    ]);
    let end = match cluster.client(leader).await.txn(end_txn).await {
        Ok(r) => r.header.unwrap().revision,
        Err(e) => panic!("the end marker failed on a healthy cluster: {e} (seed {seed})\n{}", cluster.logs()),
    };
    set_until.send_replace(end);
    let caught_up = Instant::now() + Duration::from_secs(60);
    for (follow, log, task) in &mut watchers {
        match tokio::time::timeout(caught_up.saturating_duration_since(Instant::now()), task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("watcher {}: {e} (seed {seed})\n{}", follow.name, cluster.logs()),
            Err(_) => {
                let l = log.lock().unwrap();
                panic!(
                    "watcher {} never saw the end marker at revision {end}: still waiting for revision {} on {} \
                     (seed {seed})\n{}",
                    follow.name,
                    l.next,
                    follow.endpoints[l.member],
                    cluster.logs()
                );
            }
        }
    }

    // The ground truth: every key, from the start marker to the end marker, read once more on a healthy member.
    let truth: Vec<wcheck::Event> = {
        let first = cluster.wait_leader().await;
        let (request, _) = watch_request(0, start);
        let f = Follow { name: "ground truth".into(), request, endpoints: endpoints.clone(), first };
        let log = Arc::new(Mutex::new(Followed::default()));
        f.run(Arc::clone(&log), watch::channel(end).1, Instant::now() + Duration::from_secs(60)).await;
        let l = log.lock().unwrap();
        l.events().cloned().collect()
    };
    let wrong = cross_check(&truth, &history, start, end);
    assert!(
        wrong.is_empty(),
        "the watch history and the KV history disagree in {} way(s) (seed {seed}), the first:\n  {}\n{}",
        wrong.len(),
        wrong[..wrong.len().min(50)].join("\n  "),
        cluster.logs()
    );
    let ground = GroundTruth::new(truth).unwrap();
    let judged: Vec<wcheck::Watcher> =
        watchers.iter().map(|(f, log, _)| f.watcher(&log.lock().unwrap())).collect();
    if let Err(violations) = wcheck::check(&ground, &judged) {
        let names: Vec<&str> = watchers.iter().map(|(f, _, _)| f.name.as_str()).collect();
        panic!("{violations}\nwatchers: {names:?} (seed {seed})\n{}", cluster.logs());
    }
    let resumed: usize = watchers.iter().map(|(_, log, _)| log.lock().unwrap().resumes).sum();
    let events: usize =
        judged.iter().flat_map(|w| &w.segments).flat_map(|s| &s.responses).map(|r| r.events.len()).sum();
    eprintln!("{} watchers: {events} events checked, {resumed} resumed streams", judged.len());
    assert!(resumed >= 1, "the faults never broke a watch stream: the test did not test resuming");
}
