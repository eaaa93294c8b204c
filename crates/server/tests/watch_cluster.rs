//! Watch under faults in a 3-member cluster: one watcher on each member while writers run and the leader is
//! killed and restarted and a watcher's own member is restarted. A watcher whose stream breaks resumes on
//! another member from its last revision + 1. Every watcher must end with exactly the cluster's history
//! (ordered, no duplicate, no gap, right prev_kv), each revision delivered whole; and cairn-check's watch
//! checker judges every stream of every watcher against that history.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/cluster.rs"]
mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::{WatchCreateRequest, WatchRequest};
use cairn_api::mvccpb::Event;
use cairn_check::watch as check;
use cairn_client::{Client, DeleteOptions, PutOptions};
use harness::Cluster;
use tokio::sync::Mutex;

const KEYS: usize = 8;
const WRITES: usize = 240;

fn create_request(rev: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: b"w/".to_vec(),
        range_end: b"w0".to_vec(),
        start_revision: rev,
        prev_kv: true,
        ..Default::default()
    }
}

fn watch_from(rev: i64) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(create_request(rev))) }
}

/// (revision, key, delete?, value, prev value) of an event.
type Seen = (i64, Vec<u8>, bool, Vec<u8>, Option<Vec<u8>>);

fn seen(e: &Event) -> Seen {
    let kv = e.kv.clone().unwrap_or_default();
    (kv.mod_revision, kv.key, e.r#type == 1, kv.value, e.prev_kv.as_ref().map(|p| p.value.clone()))
}

/// What one watcher received: every event, the revisions each response carried, and each stream's responses
/// as cairn-check reads them.
#[derive(Default)]
struct Log {
    events: Vec<Seen>,
    responses: Vec<Vec<i64>>,
    resumes: usize,
    segments: Vec<check::Segment>,
}

/// Follows `w/` from revision `from` until `stop` says so, starting on member `first` and moving to the next
/// member whenever the stream breaks (resuming from the last revision seen + 1).
async fn follow(
    cluster: Arc<Mutex<Cluster>>,
    first: usize,
    from: i64,
    log: Arc<Mutex<Log>>,
    until: Arc<Mutex<i64>>,
) {
    let mut member = first;
    let mut next = from;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "watcher starting on member {first} never caught up");
        let target = *until.lock().await;
        if target != 0 && next > target {
            return;
        }
        let client = {
            let c = cluster.lock().await;
            Client::connect([c.members[member].client_url()], harness::quick()).await
        };
        let stream = match client {
            Ok(c) => c.watch(watch_from(next)).await.ok().map(|w| (c, w)),
            Err(_) => None,
        };
        let Some((_client, mut w)) = stream else {
            member = (member + 1) % 3;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        log.lock().await.segments.push(check::Segment { start_revision: next, responses: Vec::new() });
        loop {
            let target = *until.lock().await;
            if target != 0 && next > target {
                return;
            }
            match tokio::time::timeout(Duration::from_secs(1), w.message()).await {
                Err(_) => continue, // quiet: check whether we are done
                Ok(Ok(Some(r))) => {
                    assert!(!r.canceled, "watch canceled: {r:?}");
                    let mut l = log.lock().await;
                    if let Some(segment) = l.segments.last_mut() {
                        segment.responses.push(check::WatchResponse::from(&r));
                    }
                    if r.events.is_empty() {
                        continue;
                    }
                    l.responses.push(r.events.iter().map(|e| seen(e).0).collect());
                    for e in &r.events {
                        l.events.push(seen(e));
                    }
                    next = l.events.last().map_or(next, |e| e.0 + 1);
                }
                Ok(_) => break, // the member went away
            }
        }
        log.lock().await.resumes += 1;
        member = (member + 1) % 3;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_the_whole_history_across_leader_kill_and_member_restart() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let endpoints = cluster.endpoints();
    let start = {
        let c = cluster.client(leader).await;
        c.put("w/start", "0", PutOptions::default()).await.unwrap().header.unwrap().revision
    };
    let cluster = Arc::new(Mutex::new(cluster));
    let until = Arc::new(Mutex::new(0i64));
    let logs: Vec<Arc<Mutex<Log>>> = (0..3).map(|_| Arc::new(Mutex::new(Log::default()))).collect();
    let watchers: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(follow(Arc::clone(&cluster), i, start, Arc::clone(&logs[i]), Arc::clone(&until)))
        })
        .collect();

    let writer = Client::connect(endpoints, harness::quick()).await.unwrap();
    for n in 0..WRITES {
        let key = format!("w/{}", n % KEYS);
        if n == WRITES / 3 {
            let mut c = cluster.lock().await;
            let l = c.wait_leader().await;
            c.kill9(l);
            c.restart(l);
        }
        if n == 2 * WRITES / 3 {
            let mut c = cluster.lock().await;
            c.restart(1); // the member the second watcher started on
        }
        // Retried until acknowledged: a write that failed may still have applied, and the watchers' view is
        // compared with the cluster's own history below, not with this loop.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = if n % 5 == 4 {
                writer.delete(key.clone(), DeleteOptions::default()).await.map(|_| ())
            } else {
                writer.put(key.clone(), n.to_string(), PutOptions::default()).await.map(|_| ())
            };
            if r.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "writes never resumed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let last = writer.put("w/end", "0", PutOptions::default()).await.unwrap().header.unwrap().revision;
    *until.lock().await = last;
    for w in watchers {
        w.await.unwrap();
    }

    // The cluster's history of w/ from `start`, read once more from a healthy member.
    let truth = {
        let log = Arc::new(Mutex::new(Log::default()));
        let done = Arc::new(Mutex::new(last));
        let l = cluster.lock().await.wait_leader().await;
        follow(Arc::clone(&cluster), l, start, Arc::clone(&log), done).await;
        let l = log.lock().await;
        let events: Vec<check::Event> =
            l.segments.iter().flat_map(|s| &s.responses).flat_map(|r| r.events.clone()).collect();
        (l.events.clone(), events)
    };
    let (truth, truth_events) = truth;
    assert_eq!(truth.first().map(|e| e.0), Some(start));
    assert_eq!(truth.last().map(|e| e.0), Some(last));
    let by_revision: BTreeMap<i64, usize> = truth.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.0).or_default() += 1;
        m
    });
    let ground = check::GroundTruth::new(truth_events).unwrap();
    let mut watchers = Vec::new();
    for log in &logs {
        let l = log.lock().await;
        let request = check::WatchRequest::from(&create_request(start));
        watchers.push(check::Watcher { request, segments: l.segments.clone() });
    }
    if let Err(violations) = check::check(&ground, &watchers) {
        panic!("{violations}");
    }
    let mut resumed = 0;
    for (i, log) in logs.iter().enumerate() {
        let l = log.lock().await;
        assert!(l.events == truth, "watcher {i}: its events differ from the cluster's history");
        for r in &l.responses {
            for rev in r {
                let in_response = r.iter().filter(|x| *x == rev).count();
                assert_eq!(
                    in_response, by_revision[rev],
                    "watcher {i}: revision {rev} split across responses"
                );
            }
        }
        resumed += l.resumes;
    }
    assert!(resumed >= 1, "the faults never broke a watch stream: the test did not test resuming");
}
