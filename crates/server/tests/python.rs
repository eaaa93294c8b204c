//! Python's etcd clients (etcd3 over gRPC, etcd3gw over the gateway) against cairn, and the same script against
//! the real etcd. `.ci/run` installs them; elsewhere a missing module skips the test.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::{Kind, Server};

fn python_clients_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import etcd3, etcd3gw"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "python etcd3/etcd3gw are not installed but CI is set");
        eprintln!("python clients test skipped: python3 with etcd3 and etcd3gw not installed");
    }
    found
}

async fn run_script(kind: Kind) {
    let server = Server::start(kind);
    server.ready().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/clients.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("127.0.0.1")
        .arg(server.client_port.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{kind:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn python_clients_work_against_cairn() {
    if python_clients_available() {
        run_script(Kind::Cairn).await;
    }
}

#[tokio::test]
async fn python_clients_work_against_etcd() {
    if python_clients_available() && Server::etcd_available("python_clients_work_against_etcd") {
        run_script(Kind::Etcd).await;
    }
}
