//! Auto-compaction (`--auto-compaction-mode=periodic --auto-compaction-retention=2s`) on cairn and on etcd:
//! after a retention has passed, old revisions are compacted away and the newest stays readable.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use cairn_api::EtcdError;
use cairn_client::{ClientError, GetOptions, PutOptions};
use common::{Kind, Server};

async fn periodic(kind: Kind) {
    let server =
        Server::start_with(kind, &["--auto-compaction-mode=periodic", "--auto-compaction-retention=2s"]);
    let c = server.ready().await;
    let first = c.put("ac", "1", PutOptions::default()).await.unwrap().header.unwrap().revision;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Keep writing so there is history to compact.
        c.put("ac", "more", PutOptions::default()).await.unwrap();
        match c.get("ac", GetOptions { revision: first, ..Default::default() }).await {
            Err(ClientError::Etcd(EtcdError::Compacted)) => break,
            Ok(_) => {}
            Err(e) => panic!("{kind:?}: {e}"),
        }
        assert!(Instant::now() < deadline, "{kind:?}: revision {first} was never compacted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = c.get("ac", GetOptions::default()).await.unwrap();
    assert_eq!(now.kvs[0].value, b"more");
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_auto_compaction_on_cairn() {
    periodic(Kind::Cairn).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_auto_compaction_on_etcd_agrees() {
    if Server::etcd_available("periodic_auto_compaction_on_etcd_agrees") {
        periodic(Kind::Etcd).await;
    }
}

#[test]
fn a_bad_retention_is_refused_at_start() {
    let out = std::process::Command::new(Server::binary(Kind::Cairn))
        .args(["--auto-compaction-mode=revision", "--auto-compaction-retention=1h"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auto-compaction-retention"), "{err}");
}
