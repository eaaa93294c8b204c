//! Every acknowledged write survives the process dying at any moment (kill -9 during a write load), and a
//! clean stop (SIGTERM) loses nothing either.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::{GetOptions, PutOptions};
use common::{Kind, Server};

/// A small tmpfs mounted for the test's lifetime (root only); unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

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
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "SIGTERM stops the member cleanly");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wal_disk_stops_the_member_without_losing_acknowledged_writes() {
    let scratch = tempfile::tempdir().unwrap();
    let wal_dir = scratch.path().join("wal");
    let Some(disk) = Tmpfs::mount(&wal_dir, "3M") else {
        assert!(std::env::var("CI").is_err(), "mounting a tmpfs failed, but CI runs as root");
        eprintln!("a_full_wal_disk_stops_the_member: skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let wal_arg = format!("--wal-dir={}", wal_dir.display());
    let mut server = Server::start_with(Kind::Cairn, &[&wal_arg]);
    let c = server.ready().await;
    let value = "v".repeat(64 * 1024);
    let mut acked = Vec::new();
    let mut failed = false;
    // 3 MiB holds fewer than 50 such values: the disk fills well within the bound.
    for i in 0..200 {
        match c.put(format!("big/{i:03}"), value.clone(), PutOptions::default()).await {
            Ok(r) => acked.push((format!("big/{i:03}"), r.header.unwrap().revision)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the WAL disk never filled ({} writes acknowledged)", acked.len());
    let code = server.wait_exit(Duration::from_secs(15));
    assert!(matches!(code, Some(c) if c != 0), "the member must stop with an error, got {code:?}");
    let log = server.log();
    assert!(
        log.contains("stopping the member") && log.contains("No space left on device"),
        "no clear log line:\n{log}"
    );

    // More room, same disk: everything acknowledged is there.
    disk.resize("64M");
    server.restart();
    let c = server.ready().await;
    for (key, rev) in &acked {
        let r = c.get(key.clone(), GetOptions { keys_only: true, ..Default::default() }).await.unwrap();
        assert_eq!(r.kvs.first().map(|kv| kv.mod_revision), Some(*rev), "acknowledged write {key} lost");
    }
    drop(server);
}
