//! Every acknowledged write survives the process dying at any moment (kill -9 during a write load), and a
//! clean stop (SIGTERM) loses nothing either.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::{GetOptions, PutOptions};
use common::{Kind, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_mid_load() {
    let mut server = Server::start(Kind::Cairn);
    let client = server.ready().await;
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (c, acked) = (client.clone(), Arc::clone(&acked));
        writers.push(tokio::spawn(async move {
            for n in 0..5_000 {
                let key = format!("w{w}/{n:05}");
                match c.put(key.clone(), format!("v{n}"), PutOptions::default()).await {
                    Ok(r) => acked.lock().unwrap().push((key, r.header.unwrap().revision)),
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 500, "the load ran: {} writes acknowledged", acked.len());

    server.restart();
    let c = server.ready().await;
    for (key, rev) in &acked {
        let r = c.get(key.clone(), GetOptions::default()).await.unwrap();
        assert_eq!(r.kvs.len(), 1, "acknowledged write {key} (revision {rev}) lost");
        assert_eq!(r.kvs[0].mod_revision, *rev, "{key}");
    }
    let max = acked.iter().map(|(_, r)| *r).max().unwrap();
    let next = c.put("after", "restart", PutOptions::default()).await.unwrap().header.unwrap().revision;
    assert!(next > max, "revisions continue after the restart: {next} after {max}");
}

#[tokio::test]
async fn a_clean_stop_keeps_everything_and_history() {
    let mut server = Server::start_with(Kind::Cairn, &["--snapshot-count=50"]);
    let c = server.ready().await;
    let mut last = 0;
    for i in 0..200 {
        last = c
            .put(format!("k{}", i % 20), format!("{i}"), PutOptions::default())
            .await
            .unwrap()
            .header
            .unwrap()
            .revision;
    }
    c.compact(last - 30, true).await.unwrap();
    let pid = server.pid();
    let status = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
    assert!(server.wait_exit(Duration::from_secs(10)), "SIGTERM stops the member");
    server.restart();
    let c = server.ready().await;
    let r = c
        .get("k", GetOptions { range: cairn_client::options::KeyRange::Prefix, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(r.count, 20);
    assert_eq!(r.header.unwrap().revision, last);
    let e = c.get("k1", GetOptions { revision: last - 31, ..Default::default() }).await.unwrap_err();
    assert_eq!(e.to_string(), "etcdserver: mvcc: required revision has been compacted");
    let old = c.get("k1", GetOptions { revision: last - 30, ..Default::default() }).await.unwrap();
    assert_eq!(old.kvs.len(), 1, "history at the compaction revision is kept");
}
