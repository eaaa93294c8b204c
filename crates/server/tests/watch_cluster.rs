//! Watch under faults in a 3-member cluster: one watcher on each member while writers run and the leader is
//! killed and restarted and a watcher's own member is restarted. A watcher whose stream breaks resumes on
//! another member from its last revision + 1. Every watcher must end with exactly the cluster's history
//! (ordered, no duplicate, no gap, right prev_kv), each revision delivered whole; and cairn-check's watch
//! checker judges every stream of every watcher against that history.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/follow.rs"]
mod follow;
#[path = "common/cluster.rs"]
mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::WatchCreateRequest;
use cairn_check::watch as check;
use cairn_client::{Client, DeleteOptions, PutOptions};
use follow::{Follow, Followed};
use harness::Cluster;
use tokio::sync::watch;

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

/// (revision, key, delete?, value, prev value) of an event.
type Seen = (i64, Vec<u8>, bool, Vec<u8>, Option<Vec<u8>>);

fn seen(e: &check::Event) -> Seen {
    (
        e.revision(),
        e.key.clone(),
        e.kind == check::EventKind::Delete,
        e.kv.value.clone(),
        e.prev.as_ref().map(|p| p.value.clone()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_the_whole_history_across_leader_kill_and_member_restart() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let endpoints = cluster.endpoints();
    let start = {
        let c = cluster.client(leader).await;
        c.put("w/start", "0", PutOptions::default()).await.unwrap().header.unwrap().revision
    };
    let (set_until, until) = watch::channel(0i64);
    let deadline = Instant::now() + Duration::from_secs(90);
    let follows: Vec<Follow> = (0..3)
        .map(|i| Follow {
            name: format!("w{i}"),
            request: create_request(start),
            endpoints: endpoints.clone(),
            first: i,
        })
        .collect();
    let logs: Vec<Arc<Mutex<Followed>>> = follows.iter().map(|_| Arc::default()).collect();
    let watchers: Vec<_> = follows
        .iter()
        .zip(&logs)
        .map(|(f, log)| {
            let (f, log, until) = (f.clone(), Arc::clone(log), until.clone());
            tokio::spawn(async move { f.run(log, until, deadline).await })
        })
        .collect();

    let writer = Client::connect(endpoints.clone(), harness::quick()).await.unwrap();
    for n in 0..WRITES {
        let key = format!("w/{}", n % KEYS);
        if n == WRITES / 3 {
            let l = cluster.wait_leader().await;
            cluster.kill9(l);
            cluster.restart(l);
        }
        if n == 2 * WRITES / 3 {
            cluster.restart(1); // the member the second watcher started on
        }
        // Retried until acknowledged: a write that failed may still have applied, and the watchers' view is
        // compared with the cluster's own history below, not with this loop.
        let write_deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = if n % 5 == 4 {
                writer.delete(key.clone(), DeleteOptions::default()).await.map(|_| ())
            } else {
                writer.put(key.clone(), n.to_string(), PutOptions::default()).await.map(|_| ())
            };
            if r.is_ok() {
                break;
            }
            assert!(Instant::now() < write_deadline, "writes never resumed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let last = writer.put("w/end", "0", PutOptions::default()).await.unwrap().header.unwrap().revision;
    set_until.send_replace(last);
    for w in watchers {
        w.await.unwrap();
    }

    // The cluster's history of w/ from `start`, read once more from a healthy member.
    let truth: Vec<check::Event> = {
        let first = cluster.wait_leader().await;
        let f = Follow { name: "truth".into(), request: create_request(start), endpoints, first };
        let log = Arc::new(Mutex::new(Followed::default()));
        let done = watch::channel(last).1;
        f.run(Arc::clone(&log), done, Instant::now() + Duration::from_secs(30)).await;
        let l = log.lock().unwrap();
        l.events().cloned().collect()
    };
    assert_eq!(truth.first().map(check::Event::revision), Some(start));
    assert_eq!(truth.last().map(check::Event::revision), Some(last));
    let by_revision: BTreeMap<i64, usize> = truth.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.revision()).or_default() += 1;
        m
    });
    let truth_seen: Vec<Seen> = truth.iter().map(seen).collect();
    let ground = check::GroundTruth::new(truth).unwrap();
    let watchers: Vec<check::Watcher> =
        follows.iter().zip(&logs).map(|(f, log)| f.watcher(&log.lock().unwrap())).collect();
    if let Err(violations) = check::check(&ground, &watchers) {
        panic!("{violations}");
    }
    let mut resumed = 0;
    for (i, log) in logs.iter().enumerate() {
        let l = log.lock().unwrap();
        let events: Vec<Seen> = l.events().map(seen).collect();
        assert!(events == truth_seen, "watcher {i}: its events differ from the cluster's history");
        for r in l.segments.iter().flat_map(|s| &s.responses) {
            let revisions: Vec<i64> = r.events.iter().map(check::Event::revision).collect();
            for rev in &revisions {
                let in_response = revisions.iter().filter(|x| *x == rev).count();
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
