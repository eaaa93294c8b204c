//! etcdctl (v3, Go clientv3) against cairn and against the real etcd: the same command sequence, one server after
//! the other on the same ports and flags (so member and cluster ids match), and the outputs must be equal. Only
//! what legitimately differs is masked: timings, database sizes, raft indexes, the version string, the
//! server-chosen lease id (captured from `lease grant` and written `{LEASE}`, also in later arguments) and a
//! lease's remaining seconds. Arguments starting with `@` name a streaming command (watch) that is stopped after
//! [`STREAM_FOR`].

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
    (&["lease", "grant", "60"], ""),
    (&["put", "lk/1", "v", "--lease={LEASE}"], ""),
    (&["put", "lk/2", "v", "--lease={LEASE}"], ""),
    (&["lease", "timetolive", "{LEASE}"], ""),
    (&["lease", "timetolive", "{LEASE}", "--keys"], ""),
    (&["lease", "timetolive", "{LEASE}", "--keys", "-w", "json"], ""),
    (&["lease", "list"], ""),
    (&["lease", "keep-alive", "--once", "{LEASE}"], ""),
    (&["get", "lk/", "--prefix", "--keys-only"], ""),
    (&["lease", "revoke", "{LEASE}"], ""),
    (&["get", "lk/", "--prefix", "--keys-only"], ""),
    (&["lease", "revoke", "{LEASE}"], ""),
    (&["lease", "timetolive", "1234"], ""),
    (&["lease", "grant", "9000000001"], ""),
    (&["put", "nolease", "v", "--lease=1234"], ""),
    (&["@watch", "foo", "--rev", "4"], ""),
    (&["@watch", "lk/", "--prefix", "--rev", "4", "--prev-kv"], ""),
    (&["@watch", "lk/", "--prefix", "--rev", "4", "-w", "json"], ""),
    (&["@watch", "foo", "--rev", "2"], ""),
    (&["@watch", "-i"], "watch foo --rev 4\nwatch x --rev 4\n"),
];

/// How long a streaming command runs before it is stopped.
const STREAM_FOR: std::time::Duration = std::time::Duration::from_millis(1500);

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
        let line = mask_number_after(&line, "remaining(");
        let line = mask_json_field(&line, "\"ttl\":");
        // etcd lists a lease's keys in Go map order, which changes from run to run.
        let line = sort_list_after(&line, "attached keys([", ' ', ']');
        let line = sort_list_after(&line, "\"keys\":[", ',', ']');
        // The server's version string (in endpoint status), not a key's version.
        let line = if line.contains("\"Endpoint\"") { mask_json_field(&line, "\"version\":") } else { line };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Sorts the `sep`-separated items between `open` and the next `close`.
fn sort_list_after(line: &str, open: &str, sep: char, close: char) -> String {
    let Some(i) = line.find(open) else { return line.to_owned() };
    let start = i + open.len();
    let Some(len) = line[start..].find(close) else { return line.to_owned() };
    let mut items: Vec<&str> = line[start..start + len].split(sep).collect();
    items.sort_unstable();
    format!("{}{}{}", &line[..start], items.join(&sep.to_string()), &line[start + len..])
}

/// The lease id as JSON output prints it (decimal).
fn lease_decimal(hex: &str) -> String {
    i64::from_str_radix(hex, 16).map_or_else(|_| "no lease".to_owned(), |id| id.to_string())
}

fn mask_json_field(line: &str, field: &str) -> String {
    let Some(start) = line.find(field) else { return line.to_owned() };
    let value_start = start + field.len();
    let end = line[value_start..].find([',', '}']).map_or(line.len(), |i| value_start + i);
    format!("{}{field}_{}", &line[..start], &line[end..])
}

/// Masks the number (digits, '.', and a unit such as ms or µs) that follows `marker`, keeping the rest.
fn mask_number_after(line: &str, marker: &str) -> String {
    let Some(i) = line.find(marker) else { return line.to_owned() };
    let start = i + marker.len();
    let rest = &line[start..];
    let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let unit = rest[digits..].find(|c: char| !c.is_alphabetic() || c == 'µ').unwrap_or(rest.len() - digits);
    let unit = if rest[digits..].starts_with('µ') { 'µ'.len_utf8() + 1 } else { unit };
    format!("{}_{}", &line[..start], &rest[(digits + unit).min(rest.len())..])
}

async fn run_script(kind: Kind, dir: &std::path::Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let server = Server::start_at(kind, dir, client_port, peer_port);
    server.ready().await;
    let endpoint = server.endpoint();
    let mut transcript = Vec::new();
    let mut lease = String::from("none");
    for (args, stdin) in SCRIPT {
        let streaming = args[0].starts_with('@');
        let args: Vec<String> =
            args.iter().map(|a| a.trim_start_matches('@').replace("{LEASE}", &lease)).collect();
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        if streaming {
            // Interactive watch reads further commands from stdin: keep it open until it is stopped.
            tokio::time::sleep(STREAM_FOR).await;
            let _ = child.kill();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some((id, _)) = stdout.strip_prefix("lease ").and_then(|r| r.split_once(" granted")) {
            id.clone_into(&mut lease);
        }
        let mask =
            |s: &str| normalize(&s.replace(&lease, "{LEASE}").replace(&lease_decimal(&lease), "{LEASE}"));
        transcript.push(format!(
            "$ etcdctl {}\n[exit {}]\n{}{}",
            args.join(" ").replace(&lease, "{LEASE}"),
            if streaming { 0 } else { out.status.code().unwrap_or(-1) },
            mask(&stdout),
            mask(&String::from_utf8_lossy(&out.stderr)),
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
