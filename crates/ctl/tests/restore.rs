//! `cairnctl snapshot restore`: a snapshot saved from cairn or from etcd, restored into new data dirs, starts
//! `cairn` as a new cluster (one member, and three) holding every key, revision, version, compaction and lease;
//! and restore's output and errors equal etcdctl's for the same file and flags.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cairn_available, etcd_available, free_port, Kind, Server};
use serde_json::Value;

fn cairnctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairnctl"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ETCDCTL_")) {
        c.env_remove(k);
    }
    c
}

/// Runs cairnctl against `endpoint`; stdout of a successful run.
fn ctl(endpoint: &str, args: &[&str]) -> String {
    let out = cairnctl().arg("--endpoints").arg(endpoint).args(args).output().unwrap();
    assert!(out.status.success(), "cairnctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn json(endpoint: &str, args: &[&str]) -> Value {
    let mut all = vec!["-w", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ctl(endpoint, &all)).unwrap()
}

/// Every key with its revisions and versions, and the store's revision: what a restore must keep.
fn state(endpoint: &str) -> (Value, Value) {
    let all = json(endpoint, &["get", "", "--from-key"]);
    (all["kvs"].clone(), all["header"]["revision"].clone())
}

/// Writes keys (overwritten, deleted, leased) and compacts; returns the lease id in hex.
fn fill(endpoint: &str) -> String {
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("a", "5")] {
        ctl(endpoint, &["put", k, v]);
    }
    ctl(endpoint, &["del", "b"]);
    ctl(endpoint, &["compaction", "3"]);
    let granted = ctl(endpoint, &["lease", "grant", "600"]);
    let lease = granted.split_whitespace().nth(1).unwrap().to_owned();
    ctl(endpoint, &["put", "leased", "x", "--lease", &lease]);
    ctl(endpoint, &["put", "c", "6"]);
    lease
}

fn save(endpoint: &str, file: &Path) {
    ctl(endpoint, &["snapshot", "save", file.to_str().unwrap()]);
}

/// A `cairn` member started on a restored data dir, killed on drop.
struct Member {
    child: Option<Child>,
    endpoint: String,
    log: PathBuf,
}

impl Member {
    fn start(dir: &Path, name: &str, client_port: u16, peer_port: u16, cluster: &str) -> Member {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(common::cairn_binary().unwrap())
            .args(common::launch::member_args(name, &dir.join(name), &client, &peer, cluster))
            .arg("--initial-cluster-token=restored")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Member { child: Some(child), endpoint: format!("127.0.0.1:{client_port}"), log }
    }

    /// Serving linearizable reads (a leader exists).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = cairnctl()
                .args([
                    "--endpoints",
                    &self.endpoint,
                    "--dial-timeout=300ms",
                    "--command-timeout=1s",
                    "get",
                    "x",
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("restored member {} never served; its log:\n{log}", self.endpoint);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn restore(snapshot: &Path, dir: &Path, name: &str, peer_port: u16, cluster: &str) {
    let out = cairnctl()
        .current_dir(dir)
        .args(["snapshot", "restore", snapshot.to_str().unwrap(), "--name", name, "--data-dir", name])
        .arg(format!("--initial-cluster={cluster}"))
        .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"))
        .arg("--initial-cluster-token=restored")
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
}

/// Saves a snapshot of a filled `kind` server, restores it into `members` new members, starts them and checks
/// each serves the same keys, revisions, versions, compaction and lease.
fn round_trip(kind: Kind, members: usize) {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snap.db");
    let (before, lease) = {
        let source = Server::start(kind, free_port(), free_port());
        let lease = fill(&source.endpoint());
        save(&source.endpoint(), &snapshot);
        (state(&source.endpoint()), lease)
    };
    let ports: Vec<(u16, u16)> = (0..members).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
    let cluster = cluster.join(",");
    for (i, (_, peer)) in ports.iter().enumerate() {
        restore(&snapshot, dir.path(), &format!("m{i}"), *peer, &cluster);
    }
    let running: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer))| Member::start(dir.path(), &format!("m{i}"), *client, *peer, &cluster))
        .collect();
    for m in &running {
        m.wait_ready();
    }
    for m in &running {
        assert_eq!(state(&m.endpoint), before, "{kind:?} snapshot restored on {}", m.endpoint);
        let compacted =
            cairnctl().args(["--endpoints", &m.endpoint, "get", "a", "--rev=2"]).output().unwrap();
        assert!(String::from_utf8_lossy(&compacted.stderr).contains("required revision has been compacted"));
        let ttl = json(&m.endpoint, &["lease", "timetolive", &lease, "--keys"]);
        assert_eq!(ttl["granted-ttl"], 600, "{ttl}");
        assert_eq!(ttl["keys"], serde_json::json!(["bGVhc2Vk"]), "the lease still holds its key: {ttl}");
        let members = json(&m.endpoint, &["member", "list"]);
        assert_eq!(members["members"].as_array().unwrap().len(), running.len());
    }
    // The restored cluster writes on from the snapshot's revision.
    let put = json(&running[0].endpoint, &["put", "after", "restore"]);
    assert_eq!(put["header"]["revision"].as_i64(), before.1.as_i64().map(|r| r + 1));
}

#[test]
fn a_cairn_snapshot_restores_into_a_new_single_member_cluster() {
    if !cairn_available("a_cairn_snapshot_restores_into_a_new_single_member_cluster") {
        return;
    }
    round_trip(Kind::Cairn, 1);
}

#[test]
fn a_cairn_snapshot_restores_into_a_new_three_member_cluster() {
    if !cairn_available("a_cairn_snapshot_restores_into_a_new_three_member_cluster") {
        return;
    }
    round_trip(Kind::Cairn, 3);
}

#[test]
fn an_etcd_snapshot_restores_into_cairn() {
    if !cairn_available("an_etcd_snapshot_restores_into_cairn")
        || !etcd_available("an_etcd_snapshot_restores_into_cairn")
    {
        return;
    }
    round_trip(Kind::Etcd, 1);
}

/// stdout, stderr with zap's timestamps masked, and the exit code of a restore run in `cwd`.
fn transcript(tool: &str, cwd: &Path, args: &[&str]) -> (String, String, Option<i32>) {
    let mut c = if tool == "etcdctl" { Command::new("etcdctl") } else { cairnctl() };
    let Output { stdout, stderr, status } =
        c.current_dir(cwd).env("ETCDCTL_API", "3").args(["snapshot", "restore"]).args(args).output().unwrap();
    let stderr: Vec<String> = String::from_utf8_lossy(&stderr)
        .lines()
        .map(|l| match (l.find("\"ts\":"), l.find(",\"caller\"")) {
            (Some(a), Some(b)) if a < b => format!("{}\"ts\":<TS>{}", &l[..a], &l[b..]),
            _ => l.to_owned(),
        })
        .collect();
    (String::from_utf8_lossy(&stdout).into_owned(), stderr.join("\n"), status.code())
}

#[test]
fn restore_prints_and_fails_as_etcdctl() {
    let test = "restore_prints_and_fails_as_etcdctl";
    if !cairn_available(test) || !etcd_available(test) {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let snapshot = files.path().join("snap.db");
    {
        let etcd = Server::start(Kind::Etcd, free_port(), free_port());
        fill(&etcd.endpoint());
        save(&etcd.endpoint(), &snapshot);
    }
    let bytes = std::fs::read(&snapshot).unwrap();
    let mut corrupt = bytes.clone();
    corrupt[100] ^= 0xff;
    std::fs::write(files.path().join("corrupt.db"), &corrupt).unwrap();
    // 32 bytes past a multiple of 512: taken as having a hash, which does not match.
    std::fs::write(files.path().join("short.db"), &bytes[..512 + 32]).unwrap();
    std::fs::write(files.path().join("nohash.db"), &bytes[..bytes.len() - 32]).unwrap();
    let f = |name: &str| files.path().join(name).display().to_string();
    let (snap, corrupt, short, nohash) = (f("snap.db"), f("corrupt.db"), f("short.db"), f("nohash.db"));
    let three = "--initial-cluster=a=http://127.0.0.1:1,b=http://127.0.0.1:2,c=http://127.0.0.1:3";
    let cases: Vec<Vec<&str>> = vec![
        vec![&snap, "--data-dir", "out"],
        vec![
            &snap,
            "--name",
            "b",
            three,
            "--initial-advertise-peer-urls=http://127.0.0.1:2",
            "--data-dir=o3",
        ],
        vec![&snap, "--name", "b", three, "--initial-advertise-peer-urls=http://127.0.0.1:2", "--wal-dir=w"],
        vec![&snap, "--data-dir", "exists"],
        vec![&snap, "--data-dir", "x", "--wal-dir", "exists"],
        vec![&nohash, "--data-dir", "x"],
        vec![&nohash, "--data-dir", "skipped", "--skip-hash-check"],
        vec![&corrupt, "--data-dir", "x"],
        vec![&short, "--data-dir", "x"],
        vec!["missing.db", "--data-dir", "x"],
        vec![&snap, "--name", "nobody"],
        vec![&snap, "--name", "a", three],
        vec![&snap, "--initial-cluster", "default=127.0.0.1:1"],
        vec![&snap, "--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:1", "--name", "a"],
        vec![],
        vec![&snap, "extra"],
    ];
    for case in cases {
        let mut got = Vec::new();
        for tool in ["etcdctl", "cairnctl"] {
            let cwd = tempfile::tempdir().unwrap();
            std::fs::create_dir(cwd.path().join("exists")).unwrap();
            got.push(transcript(tool, cwd.path(), &case));
        }
        assert_eq!(got[0], got[1], "snapshot restore {case:?}: etcdctl (left) and cairnctl (right) differ");
    }
}
