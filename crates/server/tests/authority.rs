//! Go clients that send a malformed HTTP/2 `:authority` (clientv3 3.4 dialing a member's `http://` URL,
//! as `etcdctl endpoint status --cluster` does) get the same answers from cairn as from etcd, and the
//! clients that send a valid one (tonic, HTTP/1.1 gateway) still work. A raw HTTP/2 connection checks that
//! requests after a rewritten one, whose headers refer to the client's HPACK dynamic table, are still
//! understood.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_api::etcdserverpb::RangeRequest;
use cairn_client::GetOptions;
use common::{free_port, Kind, Server};
use loona_hpack::{Decoder, Encoder};
use prost::Message;

/// etcdctl arguments (after `--endpoints=http://127.0.0.1:PORT`); `@` marks a watch stopped after a while.
const SCRIPT: &[&[&str]] = &[
    &["put", "foo", "bar"],
    &["get", "foo", "-w", "json"],
    &["@watch", "foo", "--rev", "1"],
    &["endpoint", "status", "-w", "json"],
    &["endpoint", "status", "--cluster", "-w", "json"],
    &["endpoint", "health", "--cluster"],
    &["member", "list"],
];

fn etcdctl_available(test: &str) -> bool {
    let found = Command::new("etcdctl").arg("version").env("ETCDCTL_API", "3").output().is_ok();
    if !found {
        assert!(std::env::var("CI").is_err(), "{test}: etcdctl is not installed but CI is set");
        eprintln!("{test}: skipped: etcdctl not installed");
    }
    found
}

/// Masks what may differ between two correct servers (sizes, indexes, timings, the version string).
fn normalize(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines().filter(|l| !l.starts_with("{\"level\":")) {
        let mut line = line.to_owned();
        for field in
            ["\"dbSize\":", "\"dbSizeInUse\":", "\"raftIndex\":", "\"raftAppliedIndex\":", "\"version\":"]
        {
            line = mask_json_field(&line, field);
        }
        if let Some(i) = line.find("took = ") {
            line.truncate(i + "took = ".len());
        }
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

async fn transcript(kind: Kind, dir: &std::path::Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let server = Server::start_at(kind, dir, client_port, peer_port);
    server.ready().await;
    let mut out = Vec::new();
    for args in SCRIPT {
        let streaming = args[0].starts_with('@');
        let args: Vec<&str> = args.iter().map(|a| a.trim_start_matches('@')).collect();
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", server.client_url()))
            .arg("--command-timeout=10s")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if streaming {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = child.kill();
        }
        let result = child.wait_with_output().unwrap();
        out.push(format!(
            "$ etcdctl {}\n[exit {}]\n{}{}",
            args.join(" "),
            if streaming { 0 } else { result.status.code().unwrap_or(-1) },
            normalize(&String::from_utf8_lossy(&result.stdout)),
            normalize(&String::from_utf8_lossy(&result.stderr)),
        ));
    }
    out
}

#[tokio::test]
async fn etcdctl_with_scheme_endpoints_gets_the_same_answers_from_cairn_and_etcd() {
    let test = "etcdctl_with_scheme_endpoints_gets_the_same_answers_from_cairn_and_etcd";
    if !Server::etcd_available(test) || !etcdctl_available(test) {
        return;
    }
    let (client_port, peer_port) = (free_port(), free_port());
    let etcd_dir = tempfile::tempdir().unwrap();
    let cairn_dir = tempfile::tempdir().unwrap();
    let etcd = transcript(Kind::Etcd, etcd_dir.path(), client_port, peer_port).await;
    let cairn = transcript(Kind::Cairn, cairn_dir.path(), client_port, peer_port).await;
    for (c, e) in cairn.iter().zip(&etcd) {
        assert!(!c.contains("PROTOCOL_ERROR"), "{c}");
        assert_eq!(c, e, "cairn (left) and etcd (right) differ");
    }
    assert_eq!(cairn.len(), etcd.len());
}

#[tokio::test]
async fn tonic_and_http1_clients_still_work() {
    let server = Server::start(Kind::Cairn);
    let client = server.ready().await;
    client.put("k", "v", Default::default()).await.unwrap();
    let got = client.get("k", GetOptions::default()).await.unwrap();
    assert_eq!(got.kvs.len(), 1);
    let (status, body) = server.http("POST", "/v3/kv/range", r#"{"key":"aw=="}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"count\":\"1\""), "{body}");
    let (status, body) = server.http("GET", "/health", "");
    assert_eq!((status, body.as_str()), (200, r#"{"health":"true"}"#));
}

fn frame(frame_type: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], frame_type, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads frames until both requests' responses ended; the `grpc-status` of each stream.
fn read_responses(conn: &mut TcpStream, streams: &[u32]) -> Vec<(u32, String)> {
    let mut decoder = Decoder::new();
    let mut statuses = Vec::new();
    for _ in 0..1000 {
        if statuses.len() == streams.len() {
            break;
        }
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).unwrap();
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        conn.read_exact(&mut payload).unwrap();
        match head[3] {
            // SETTINGS (not an ack): acknowledge.
            0x4 if head[4] & 0x1 == 0 => conn.write_all(&frame(0x4, 0x1, 0, &[])).unwrap(),
            // GOAWAY or RST_STREAM: the server rejected something.
            0x7 | 0x3 => panic!("server sent frame type {} on stream {stream}: {payload:?}", head[3]),
            // HEADERS (the server does not pad, prioritize or continue here).
            0x1 => {
                assert_ne!(head[4] & 0x4, 0, "response headers without END_HEADERS");
                for (name, value) in decoder.decode(&payload).unwrap() {
                    if name == b"grpc-status" {
                        statuses.push((stream, String::from_utf8(value).unwrap()));
                    }
                }
            }
            _ => {}
        }
    }
    statuses
}

#[tokio::test]
async fn requests_after_a_rewritten_one_keep_their_indexed_headers() {
    let server = Server::start(Kind::Cairn);
    server.ready().await;
    let mut conn = TcpStream::connect(("127.0.0.1", server.client_port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut message = RangeRequest { key: b"k".to_vec(), ..Default::default() }.encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.append(&mut message);
    let bad = format!("http://127.0.0.1:{}", server.client_port);
    let good = format!("127.0.0.1:{}", server.client_port);
    let mut encoder = Encoder::new();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    // The bad one first (rewritten), then requests whose headers are references into the client's dynamic
    // table, which the shim re-encodes.
    let streams = [1, 3, 5, 7];
    for (stream, authority) in streams.iter().zip([&bad, &bad, &good, &good]) {
        let headers: [(&[u8], &[u8]); 6] = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.KV/Range"),
            (b":authority", authority.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ];
        bytes.extend(frame(0x1, 0x4, *stream, &encoder.encode(headers)));
        bytes.extend(frame(0x0, 0x1, *stream, &body));
    }
    conn.write_all(&bytes).unwrap();
    let mut statuses = read_responses(&mut conn, &streams);
    statuses.sort_unstable();
    let want: Vec<(u32, String)> = streams.iter().map(|s| (*s, "0".to_owned())).collect();
    assert_eq!(statuses, want, "{}", server.log());
}
