//! etcdctl (v3, Go clientv3) against cairn and against the real etcd: the same command sequence, one server after
//! the other on the same ports and flags (so member and cluster ids match), and the outputs must be equal. Only
//! what legitimately differs is masked: timings, database sizes, raft indexes and the version string.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{free_port, Kind, Server};

/// (arguments, stdin)
const SCRIPT: &[(&[&str], &str)] = &[
    (&["put", "foo", "bar"], ""),
    (&["put", "foo", "baz", "--prev-kv"], ""),
    (&["get", "foo"], ""),
    (&["get", "foo", "-w", "json"], ""),
    (&["put", "a/1", "x"], ""),
    (&["put", "a/2", "y"], ""),
    (&["put", "b", "z"], ""),
    (&["get", "a", "--prefix"], ""),
    (&["get", "a", "--prefix", "--keys-only"], ""),
    (&["get", "a", "--prefix", "--keys-only", "-w", "json"], ""),
    (&["get", "", "--from-key", "--limit", "2"], ""),
    (&["get", "a", "--prefix", "--sort-by=VALUE", "--order=DESCEND"], ""),
    (&["get", "a", "--prefix", "--limit", "1", "-w", "json"], ""),
    (&["get", "foo", "--rev", "2"], ""),
    (&["get", "foo", "--rev", "99"], ""),
    (&["del", "a", "--prefix", "--prev-kv"], ""),
    (&["del", "nothing"], ""),
    (&["txn"], "value(\"foo\") = \"baz\"\n\nput foo qux\nget foo\n\ndel b\n\n"),
    (&["txn", "-w", "json"], "mod(\"foo\") > \"1000\"\n\nput x 1\n\nget foo\nput y 2\n\n"),
    (&["compaction", "3"], ""),
    (&["get", "foo", "--rev", "2"], ""),
    (&["compaction", "2"], ""),
    (&["put", "", "empty"], ""),
    (&["get", "", "--prefix", "-w", "json"], ""),
    (&["endpoint", "health"], ""),
    (&["endpoint", "status", "-w", "json"], ""),
    (&["member", "list"], ""),
    (&["member", "list", "-w", "json"], ""),
];

fn etcdctl_available() -> bool {
    let found = Command::new("etcdctl").arg("version").env("ETCDCTL_API", "3").output().is_ok();
    if !found {
        assert!(std::env::var("CI").is_err(), "etcdctl is not installed but CI is set");
        eprintln!("etcdctl test skipped: etcdctl not installed");
    }
    found
}

/// Masks what may differ between two correct servers.
fn normalize(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        // clientv3's retry warnings carry timestamps and random ids; the "Error:" line says what failed.
        if line.starts_with("{\"level\":") {
            continue;
        }
        let line = mask_number_after(line, "took = ");
        let line = mask_json_field(&line, "\"dbSize\":");
        let line = mask_json_field(&line, "\"dbSizeInUse\":");
        let line = mask_json_field(&line, "\"raftIndex\":");
        let line = mask_json_field(&line, "\"raftAppliedIndex\":");
        // The server's version string (in endpoint status), not a key's version.
        let line = if line.contains("\"Endpoint\"") { mask_json_field(&line, "\"version\":") } else { line };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn mask_json_field(line: &str, field: &str) -> String {
    let Some(start) = line.find(field) else { return line.to_owned() };
    let value_start = start + field.len();
    let end = line[value_start..].find([',', '}']).map_or(line.len(), |i| value_start + i);
    format!("{}{field}_{}", &line[..start], &line[end..])
}

fn mask_number_after(line: &str, marker: &str) -> String {
    match line.find(marker) {
        Some(i) => format!("{}{marker}_", &line[..i]),
        None => line.to_owned(),
    }
}

async fn run_script(kind: Kind, dir: &std::path::Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let server = Server::start_at(kind, dir, client_port, peer_port);
    server.ready().await;
    let endpoint = server.endpoint();
    let mut transcript = Vec::new();
    for (args, stdin) in SCRIPT {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(*args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        transcript.push(format!(
            "$ etcdctl {}\n[exit {}]\n{}{}",
            args.join(" "),
            out.status.code().unwrap_or(-1),
            normalize(&String::from_utf8_lossy(&out.stdout)),
            normalize(&String::from_utf8_lossy(&out.stderr)),
        ));
    }
    transcript
}

#[tokio::test]
async fn etcdctl_gets_the_same_answers_from_cairn_and_etcd() {
    if !Server::etcd_available("etcdctl_gets_the_same_answers_from_cairn_and_etcd") || !etcdctl_available() {
        return;
    }
    let (client_port, peer_port) = (free_port(), free_port());
    let etcd_dir = tempfile::tempdir().unwrap();
    let cairn_dir = tempfile::tempdir().unwrap();
    let etcd = run_script(Kind::Etcd, etcd_dir.path(), client_port, peer_port).await;
    let cairn = run_script(Kind::Cairn, cairn_dir.path(), client_port, peer_port).await;
    if std::env::var("CAIRN_SHOW_TRANSCRIPT").is_ok() {
        eprintln!("{}", cairn.join("\n"));
    }
    assert_eq!(etcd.len(), cairn.len());
    for (e, c) in etcd.iter().zip(&cairn) {
        assert_eq!(c, e, "cairn (left) and etcd (right) differ");
    }
}
