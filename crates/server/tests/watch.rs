//! The Watch service, through cairn-client and the HTTP gateway: one script of watch requests and writes runs
//! against cairn and against the real etcd, and the two answer streams must be the same (per watcher, revisions,
//! events, prev_kv, filters, cancel reasons, compaction, progress, fragments). Then what only a load shows: a
//! client that never reads does not stall writes and still gets every event once it reads; a watcher resumes
//! without gaps across a restart of its member.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use cairn_api::etcdserverpb::request_op::Request;
use cairn_api::etcdserverpb::watch_create_request::FilterType;
use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::{
    PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest,
    WatchRequest, WatchResponse,
};
use cairn_client::options::KeyRange;
use cairn_client::{Client, DeleteOptions, PutOptions, WatchStream};
use common::{Kind, Server};

fn create(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) }
}

fn cancel(watch_id: i64) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })) }
}

fn progress() -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) }
}

fn key(k: &str) -> WatchCreateRequest {
    WatchCreateRequest { key: k.into(), ..Default::default() }
}

/// Responses until none arrives for `quiet`.
async fn drain(w: &mut WatchStream, quiet: Duration) -> Vec<WatchResponse> {
    let mut out = Vec::new();
    while let Ok(Ok(Some(r))) = tokio::time::timeout(quiet, w.message()).await {
        out.push(r);
    }
    out
}

/// A response as both servers must give it: ids of the cluster and member differ, the rest must not.
fn normalize(r: &WatchResponse) -> String {
    let events: Vec<String> = r
        .events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap_or_default();
            let prev = e.prev_kv.as_ref().map(|p| (p.value.len(), p.mod_revision));
            format!(
                "{}:{}={}@{}/{}/v{} prev={prev:?}",
                e.r#type,
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(&kv.value).len(),
                kv.mod_revision,
                kv.create_revision,
                kv.version
            )
        })
        .collect();
    format!(
        "id={} rev={} created={} canceled={} reason={:?} compact={} fragment={} events={events:?}",
        r.watch_id,
        r.header.as_ref().map_or(-1, |h| h.revision),
        r.created,
        r.canceled,
        r.cancel_reason,
        r.compact_revision,
        r.fragment
    )
}

/// Responses grouped per watch id (the order between watchers of one revision is not specified).
fn per_watcher(rs: &[WatchResponse]) -> Vec<String> {
    let mut v: Vec<(i64, String)> = rs.iter().map(|r| (r.watch_id, normalize(r))).collect();
    v.sort_by_key(|(id, _)| *id);
    v.into_iter().map(|(_, s)| s).collect()
}

async fn put(c: &Client, k: &str, v: &str) {
    c.put(k, v, PutOptions::default()).await.unwrap();
}

/// The script: every create/cancel/progress request field and the writes that feed them.
async fn script(kind: Kind) -> Vec<Vec<String>> {
    let server = Server::start_with(kind, &["--max-request-bytes=1000000"]);
    let c = server.ready().await;
    put(&c, "a", "1").await; // 2
    put(&c, "a", "2").await; // 3
    put(&c, "b", "1").await; // 4
    c.compact(3, true).await.unwrap();
    let quiet = Duration::from_millis(400);
    let mut results = Vec::new();

    // Automatic ids skip the ones the client chose.
    let mut ids = c.watch(create(WatchCreateRequest { watch_id: 1, ..key("x") })).await.unwrap();
    ids.send(create(key("y"))).await.unwrap();
    ids.send(create(key("z"))).await.unwrap();
    results.push(per_watcher(&drain(&mut ids, quiet).await));

    // Refusals and compaction.
    let mut w =
        c.watch(create(WatchCreateRequest { watch_id: 20, start_revision: 2, ..key("a") })).await.unwrap();
    w.send(create(WatchCreateRequest { range_end: b"a".to_vec(), ..key("b") })).await.unwrap();
    w.send(create(WatchCreateRequest { watch_id: 21, start_revision: -5, ..key("a") })).await.unwrap();
    w.send(create(WatchCreateRequest { watch_id: 7, prev_kv: true, ..key("a") })).await.unwrap();
    w.send(create(WatchCreateRequest { watch_id: 7, ..key("b") })).await.unwrap();
    w.send(create(WatchCreateRequest {
        watch_id: 10,
        range_end: b"p0".to_vec(),
        filters: vec![FilterType::Nodelete as i32],
        ..key("p/")
    }))
    .await
    .unwrap();
    w.send(create(WatchCreateRequest { watch_id: 11, range_end: vec![0], start_revision: 4, ..key("\0") }))
        .await
        .unwrap();
    w.send(create(WatchCreateRequest {
        watch_id: 12,
        range_end: b"f0".to_vec(),
        fragment: true,
        prev_kv: true,
        ..key("f/")
    }))
    .await
    .unwrap();
    w.send(create(WatchCreateRequest {
        watch_id: 13,
        range_end: b"f0".to_vec(),
        filters: vec![FilterType::Noput as i32],
        ..key("f/")
    }))
    .await
    .unwrap();
    results.push(per_watcher(&drain(&mut w, quiet).await));

    put(&c, "p/x", "1").await;
    let op = |k: &str| RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: k.into(),
            value: vec![b'v'; 1000],
            ..Default::default()
        })),
    };
    let txn = TxnRequest { success: vec![op("p/y"), op("p/z")], ..Default::default() };
    c.kv_client().txn(txn).await.unwrap();
    c.delete("p/x", DeleteOptions::default()).await.unwrap();
    put(&c, "a", "3").await;
    // Nine 95 kB values, then all nine again in one revision: with their previous values that is over the
    // fragment limit (--max-request-bytes plus gRPC's 512 KiB), so watcher 12 gets it in fragments; then one
    // delete of them all for watcher 13.
    let fkeys = ["f/1", "f/2", "f/3", "f/4", "f/5", "f/6", "f/7", "f/8", "f/9"];
    for k in fkeys {
        put(&c, k, &"p".repeat(95_000)).await;
    }
    let big = |k: &str| RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: k.into(),
            value: vec![b'n'; 95_000],
            ..Default::default()
        })),
    };
    let txn = TxnRequest { success: fkeys.map(big).to_vec(), ..Default::default() };
    c.kv_client().txn(txn).await.unwrap();
    c.delete("f/", DeleteOptions { range: KeyRange::Prefix, ..Default::default() }).await.unwrap();
    results.push(per_watcher(&drain(&mut w, quiet).await));

    w.send(progress()).await.unwrap();
    w.send(cancel(7)).await.unwrap();
    w.send(cancel(99)).await.unwrap();
    put(&c, "a", "4").await;
    results.push(per_watcher(&drain(&mut w, quiet).await));
    results
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_answers_match_etcds() {
    let cairn = script(Kind::Cairn).await;
    assert!(cairn[1].iter().any(|r| r.contains("compact=3")), "{cairn:#?}");
    assert!(cairn[2].iter().any(|r| r.contains("fragment=true")), "{cairn:#?}");
    if Server::etcd_available("watch_answers_match_etcds") {
        let etcd = script(Kind::Etcd).await;
        for (step, (c, e)) in cairn.iter().zip(&etcd).enumerate() {
            let only_cairn: Vec<&String> = c.iter().filter(|r| !e.contains(r)).collect();
            let only_etcd: Vec<&String> = e.iter().filter(|r| !c.contains(r)).collect();
            assert_eq!(c, e, "step {step}: only cairn: {only_cairn:#?}\nonly etcd: {only_etcd:#?}");
        }
    }
}

/// `POST /v3/watch` with a JSON body streams `{"result": ...}` lines; the first says created.
fn gateway_lines(server: &Server, body: &str, want: usize) -> Vec<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.client_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        // Chunk-size lines of the chunked body are hex, and some (`10`, `99`) parse as JSON numbers.
        if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str::<serde_json::Value>(line.trim()) {
            lines.push(v);
            if lines.len() == want {
                break;
            }
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_streams_watch_results_as_etcds() {
    for kind in [Kind::Cairn, Kind::Etcd] {
        if kind == Kind::Etcd && !Server::etcd_available("the_gateway_streams_watch_results_as_etcds") {
            continue;
        }
        let server = Server::start(kind);
        let c = server.ready().await;
        put(&c, "g", "1").await;
        // base64("g") = "Zw=="; from revision 2: the put above, then nothing more.
        let lines = gateway_lines(&server, r#"{"create_request":{"key":"Zw==","start_revision":2}}"#, 2);
        assert_eq!(lines.len(), 2, "{kind:?}: {lines:?}");
        assert_eq!(lines[0]["result"]["created"], true, "{kind:?}");
        let ev = &lines[1]["result"]["events"][0]["kv"];
        assert_eq!(
            (ev["key"].as_str(), ev["value"].as_str(), ev["mod_revision"].as_str()),
            (Some("Zw=="), Some("MQ=="), Some("2")),
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_stalls_no_write_and_later_gets_every_event() {
    let server = Server::start(Kind::Cairn);
    let c = server.ready().await;
    let mut w = c.watch(create(WatchCreateRequest { range_end: b"l0".to_vec(), ..key("l/") })).await.unwrap();
    let first = w.message().await.unwrap().unwrap();
    assert!(first.created);
    let start = first.header.unwrap().revision + 1;
    // 2,000 writes of 8 KiB (16 MB of events) while the watcher reads nothing: they all complete.
    let value = "x".repeat(8192);
    for i in 0..2000 {
        put(&c, &format!("l/{}", i % 50), &value).await;
    }
    let last = start + 1999;
    let mut next = start;
    while next <= last {
        let r = tokio::time::timeout(Duration::from_secs(20), w.message()).await.unwrap().unwrap().unwrap();
        for e in r.events {
            assert_eq!(e.kv.unwrap().mod_revision, next, "every revision once, in order");
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_resumes_without_gaps_after_its_member_restarts() {
    let mut server = Server::start(Kind::Cairn);
    let c = server.ready().await;
    let mut w = c.watch(create(key("r"))).await.unwrap();
    assert!(w.message().await.unwrap().unwrap().created);
    put(&c, "r", "1").await;
    let seen = w.message().await.unwrap().unwrap().events[0].kv.clone().unwrap().mod_revision;
    put(&c, "r", "2").await;
    server.restart();
    let c = server.ready().await;
    put(&c, "r", "3").await;
    let mut w = c.watch(create(WatchCreateRequest { start_revision: seen + 1, ..key("r") })).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = tokio::time::timeout(Duration::from_secs(10), w.message()).await.unwrap().unwrap().unwrap();
        got.extend(r.events.into_iter().map(|e| {
            let kv = e.kv.unwrap();
            (kv.mod_revision, String::from_utf8(kv.value).unwrap())
        }));
    }
    assert_eq!(got, vec![(seen + 1, "2".to_owned()), (seen + 2, "3".to_owned())]);
}

/// The first periodic progress notification a `progress_notify` watcher gets, normalized.
async fn periodic_progress(kind: Kind) -> String {
    let server = Server::start_with(kind, &["--experimental-watch-progress-notify-interval=1s"]);
    let c = server.ready().await;
    put(&c, "pn", "1").await;
    let req = WatchCreateRequest { watch_id: 5, progress_notify: true, ..key("pn") };
    let mut w = c.watch(create(req)).await.unwrap();
    assert!(w.message().await.unwrap().unwrap().created);
    put(&c, "pn", "2").await;
    let event = w.message().await.unwrap().unwrap();
    assert_eq!(event.events.len(), 1);
    let progress = tokio::time::timeout(Duration::from_secs(5), w.message()).await.unwrap().unwrap().unwrap();
    normalize(&progress)
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_progress_notifications_match_etcds() {
    let cairn = periodic_progress(Kind::Cairn).await;
    assert!(cairn.contains("id=5 rev=3") && cairn.contains("events=[]"), "{cairn}");
    if Server::etcd_available("periodic_progress_notifications_match_etcds") {
        assert_eq!(cairn, periodic_progress(Kind::Etcd).await);
    }
}

/// A watch request over gRPC's size limit ends the stream with grpc-go's refusal, after the answers before it.
async fn oversized_request(kind: Kind) -> (Vec<String>, tonic::Code, String) {
    let server = Server::start(kind);
    let c = server.ready().await;
    let mut w = c.watch(create(WatchCreateRequest { watch_id: 3, ..key("small") })).await.unwrap();
    let first = w.message().await.unwrap().unwrap();
    w.send(create(key(&"k".repeat(3_000_000)))).await.unwrap();
    let mut answers = vec![normalize(&first)];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), w.message()).await.unwrap() {
            Ok(Some(r)) => answers.push(normalize(&r)),
            Ok(None) => panic!("{kind:?}: the stream ended without an error"),
            Err(e) => break e,
        }
    };
    (answers, end.code(), end.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_watch_request_ends_the_stream_in_grpc_gos_words() {
    let cairn = oversized_request(Kind::Cairn).await;
    assert_eq!(cairn.1, tonic::Code::ResourceExhausted, "{cairn:?}");
    assert!(cairn.2.contains("grpc: received message larger than max (3000010 vs. 2097152)"), "{cairn:?}");
    if Server::etcd_available("an_oversized_watch_request_ends_the_stream_in_grpc_gos_words") {
        assert_eq!(cairn, oversized_request(Kind::Etcd).await);
    }
}
