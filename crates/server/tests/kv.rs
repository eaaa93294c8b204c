//! The KV API through cairn-client, written once and run against cairn and against the real etcd: the same
//! revisions, fields and errors must come back from both.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use cairn_api::etcdserverpb::compare::CompareResult;
use cairn_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_api::etcdserverpb::response_op::Response;
use cairn_api::etcdserverpb::{PutRequest, TxnRequest};
use cairn_api::EtcdError;
use cairn_client::options::{
    compare_create_revision, compare_mod_revision, compare_value, compare_version, KeyRange,
};
use cairn_client::{Client, ClientError, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use common::{Kind, Server};

fn keys(r: &cairn_api::etcdserverpb::RangeResponse) -> Vec<String> {
    r.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

fn etcd_err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> EtcdError {
    match r {
        Err(ClientError::Etcd(e)) => e,
        other => panic!("expected an etcd error, got {other:?}"),
    }
}

async fn put(c: &Client, k: &str, v: &str) -> i64 {
    c.put(k, v, PutOptions::default()).await.unwrap().header.unwrap().revision
}

async fn puts_gets_and_deletes(c: &Client) {
    assert_eq!(
        c.get("nothing", GetOptions::default()).await.unwrap().header.unwrap().revision,
        1,
        "fresh store"
    );
    assert_eq!(put(c, "a", "1").await, 2, "first write is revision 2");
    let r = c.put("a", "2", PutOptions { prev_kv: true, ..Default::default() }).await.unwrap();
    let prev = r.prev_kv.unwrap();
    assert_eq!((prev.value.as_slice(), prev.mod_revision, prev.version), (&b"1"[..], 2, 1));
    let kv = c.get("a", GetOptions::default()).await.unwrap().kvs.remove(0);
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.value.as_slice()), (2, 3, 2, &b"2"[..]));

    // ignore_value keeps the value, ignore_lease the lease; both need the key to exist.
    c.put("a", "", PutOptions { ignore_value: true, ..Default::default() }).await.unwrap();
    assert_eq!(c.get("a", GetOptions::default()).await.unwrap().kvs[0].value, b"2");
    let e = etcd_err(c.put("missing", "", PutOptions { ignore_value: true, ..Default::default() }).await);
    assert_eq!(e, EtcdError::KeyNotFound);

    for k in ["b", "c", "d", "e"] {
        put(c, k, k).await;
    }
    let d =
        c.delete("b", DeleteOptions { range: KeyRange::Until(b"d".to_vec()), prev_kv: true }).await.unwrap();
    assert_eq!(d.deleted, 2);
    assert_eq!(
        d.prev_kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        vec![b"b".to_vec(), b"c".to_vec()]
    );
    let rev = d.header.unwrap().revision;
    let none = c.delete("zzz", DeleteOptions::default()).await.unwrap();
    assert_eq!((none.deleted, none.header.unwrap().revision), (0, rev), "deleting nothing makes no revision");
    // Recreating a deleted key starts a new generation.
    let created = put(c, "b", "again").await;
    let kv = c.get("b", GetOptions::default()).await.unwrap().kvs.remove(0);
    assert_eq!((kv.create_revision, kv.version), (created, 1));
}

async fn range_options(c: &Client) {
    for (k, v) in [("p/1", "c"), ("p/2", "a"), ("p/3", "b"), ("q", "z")] {
        put(c, k, v).await;
    }
    let all = GetOptions { range: KeyRange::Prefix, ..Default::default() };
    assert_eq!(keys(&c.get("p/", all.clone()).await.unwrap()), ["p/1", "p/2", "p/3"]);
    let limited = c.get("p/", GetOptions { limit: 2, ..all.clone() }).await.unwrap();
    assert_eq!(
        (keys(&limited), limited.more, limited.count),
        (vec!["p/1".to_owned(), "p/2".to_owned()], true, 3)
    );
    let from = c.get("p/3", GetOptions { range: KeyRange::FromKey, ..Default::default() }).await.unwrap();
    assert_eq!(keys(&from), ["p/3", "q"]);
    let by_value = c
        .get("p/", GetOptions { sort: Some((SortTarget::Value, SortOrder::Descend)), ..all.clone() })
        .await
        .unwrap();
    assert_eq!(keys(&by_value), ["p/1", "p/3", "p/2"]);
    // A non-key target without an order sorts ascending (etcd's default).
    let by_value_asc = c
        .get("p/", GetOptions { sort: Some((SortTarget::Value, SortOrder::None)), ..all.clone() })
        .await
        .unwrap();
    assert_eq!(keys(&by_value_asc), ["p/2", "p/3", "p/1"]);
    let desc = c
        .get("p/", GetOptions { sort: Some((SortTarget::Key, SortOrder::Descend)), limit: 1, ..all.clone() })
        .await
        .unwrap();
    assert_eq!((keys(&desc), desc.more), (vec!["p/3".to_owned()], true));
    let ko = c.get("p/", GetOptions { keys_only: true, ..all.clone() }).await.unwrap();
    assert!(ko.kvs.iter().all(|kv| kv.value.is_empty()) && ko.kvs.len() == 3);
    let co = c.get("p/", GetOptions { count_only: true, ..all.clone() }).await.unwrap();
    assert_eq!((co.kvs.len(), co.count), (0, 3));
    let p2 = c.get("p/2", GetOptions::default()).await.unwrap().kvs[0].mod_revision;
    let newer = c.get("p/", GetOptions { min_mod_revision: p2, ..all.clone() }).await.unwrap();
    assert_eq!(keys(&newer), ["p/2", "p/3"]);
    let older = c.get("p/", GetOptions { max_create_revision: p2, ..all.clone() }).await.unwrap();
    assert_eq!(keys(&older), ["p/1", "p/2"]);
    let ser = c.get("q", GetOptions { serializable: true, ..Default::default() }).await.unwrap();
    assert_eq!(ser.kvs[0].value, b"z");
}

async fn transactions(c: &Client) {
    let rev = put(c, "t", "v1").await;
    let ok = c
        .txn(
            Txn::new()
                .when([
                    compare_value(b"t", CompareResult::Equal, b"v1"),
                    compare_version(b"t", CompareResult::Equal, 1),
                ])
                .and_then([
                    TxnOp::Put(b"t".to_vec(), b"v2".to_vec(), PutOptions::default()),
                    TxnOp::Put(b"u".to_vec(), b"x".to_vec(), PutOptions::default()),
                    TxnOp::Get(b"t".to_vec(), GetOptions::default()),
                ])
                .or_else([TxnOp::Delete(b"t".to_vec(), DeleteOptions::default())]),
        )
        .await
        .unwrap();
    assert!(ok.succeeded);
    assert_eq!(ok.header.unwrap().revision, rev + 1, "one revision for the whole txn");
    match &ok.responses[2].response {
        Some(Response::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"v2", "a txn reads its own writes"),
        other => panic!("{other:?}"),
    }
    let u = c.get("u", GetOptions::default()).await.unwrap().kvs.remove(0);
    assert_eq!(u.mod_revision, rev + 1);

    let failed = c
        .txn(
            Txn::new()
                .when([compare_mod_revision(b"t", CompareResult::Less, 1)])
                .and_then([TxnOp::Delete(b"t".to_vec(), DeleteOptions::default())])
                .or_else([TxnOp::Get(b"t".to_vec(), GetOptions::default())]),
        )
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.header.unwrap().revision, rev + 1, "a read-only branch makes no revision");

    // A missing key compares as zero (create revision 0), but never by value.
    let missing =
        c.txn(Txn::new().when([compare_create_revision(b"nope", CompareResult::Equal, 0)])).await.unwrap();
    assert!(missing.succeeded);
    let by_value = c.txn(Txn::new().when([compare_value(b"nope", CompareResult::Equal, b"")])).await.unwrap();
    assert!(!by_value.succeeded);

    // Nested txn.
    let nested = c
        .txn(Txn::new().and_then([TxnOp::Txn(Box::new(
            Txn::new().when([compare_value(b"u", CompareResult::Equal, b"x")]).and_then([TxnOp::Put(
                b"n".to_vec(),
                b"1".to_vec(),
                PutOptions::default(),
            )]),
        ))]))
        .await
        .unwrap();
    assert!(nested.succeeded);
    assert_eq!(c.get("n", GetOptions::default()).await.unwrap().kvs[0].value, b"1");

    // A txn of ranges only is a read: no log entry, linearizable or serializable. With a put in the branch
    // not taken it is a write (etcd decides by the operations, not by the branch).
    let before = raft_index(c).await;
    let read = Txn::new()
        .when([compare_value(b"t", CompareResult::Equal, b"v2")])
        .and_then([TxnOp::Get(b"t".to_vec(), GetOptions::default())])
        .or_else([TxnOp::Get(b"u".to_vec(), GetOptions { serializable: true, ..Default::default() })]);
    let r = c.txn(read).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(
        r.header.unwrap().revision,
        c.get("t", GetOptions::default()).await.unwrap().header.unwrap().revision
    );
    match &r.responses[0].response {
        Some(Response::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"v2"),
        other => panic!("{other:?}"),
    }
    let serializable = Txn::new()
        .and_then([TxnOp::Get(b"u".to_vec(), GetOptions { serializable: true, ..Default::default() })]);
    assert!(c.txn(serializable).await.unwrap().succeeded);
    assert_eq!(raft_index(c).await, before, "read-only txns are not proposed");
    let write_not_taken = Txn::new()
        .when([compare_value(b"t", CompareResult::Equal, b"v2")])
        .and_then([TxnOp::Get(b"t".to_vec(), GetOptions::default())])
        .or_else([TxnOp::Put(b"t".to_vec(), b"v3".to_vec(), PutOptions::default())]);
    assert!(c.txn(write_not_taken).await.unwrap().succeeded);
    assert!(raft_index(c).await > before, "a txn with a put in either branch goes through the log");
}

async fn raft_index(c: &Client) -> u64 {
    c.status().await.unwrap().raft_index
}

async fn compaction_and_history(c: &Client) {
    let r1 = put(c, "h", "1").await;
    let r2 = put(c, "h", "2").await;
    let old = c.get("h", GetOptions { revision: r1, ..Default::default() }).await.unwrap();
    assert_eq!(old.kvs[0].value, b"1");
    assert_eq!(old.header.unwrap().revision, r2, "the header carries the current revision");
    let e = etcd_err(c.get("h", GetOptions { revision: r2 + 100, ..Default::default() }).await);
    assert_eq!(e, EtcdError::FutureRev);
    c.compact(r2, true).await.unwrap();
    assert_eq!(
        etcd_err(c.get("h", GetOptions { revision: r1, ..Default::default() }).await),
        EtcdError::Compacted
    );
    assert_eq!(
        c.get("h", GetOptions { revision: r2, ..Default::default() }).await.unwrap().kvs[0].value,
        b"2"
    );
    assert_eq!(etcd_err(c.compact(r1, true).await), EtcdError::Compacted);
    assert_eq!(etcd_err(c.compact(r2 + 100, true).await), EtcdError::FutureRev);
}

fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (tonic::Code, String) {
    match r {
        Err(e) => (e.code(), e.to_string()),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

async fn bad_input(c: &Client) {
    assert_eq!(status(c.put("", "v", PutOptions::default()).await).1, "etcdserver: key is not provided");
    assert_eq!(status(c.get("", GetOptions::default()).await).1, "etcdserver: key is not provided");
    let big = "x".repeat(1_572_864 + 1);
    let (code, msg) = status(c.put("big", big, PutOptions::default()).await);
    assert_eq!((code, msg.as_str()), (tonic::Code::InvalidArgument, "etcdserver: request is too large"));
    // Past gRPC's own limit (--max-request-bytes + 512 KiB) the message is refused before it is decoded, in
    // grpc-go's words.
    let (code, msg) = status(c.put("huge", "x".repeat(3_000_000), PutOptions::default()).await);
    assert_eq!(code, tonic::Code::ResourceExhausted);
    assert!(
        msg.contains("message: \"grpc: received message larger than max (3000011 vs. 2097152)\""),
        "{msg}"
    );
    let mut raw = c.kv_client();
    let many = (0..129).map(|i| TxnOp::Put(format!("k{i}").into_bytes(), vec![], PutOptions::default()));
    assert_eq!(etcd_err(c.txn(Txn::new().and_then(many)).await), EtcdError::TooManyOps);
    let dup = Txn::new().and_then([
        TxnOp::Put(b"d".to_vec(), vec![], PutOptions::default()),
        TxnOp::Put(b"d".to_vec(), vec![], PutOptions::default()),
    ]);
    assert_eq!(etcd_err(c.txn(dup).await), EtcdError::DuplicateKey);
    let e = raw
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: value is provided");
    let e = raw
        .txn(TxnRequest { compare: vec![], success: vec![Default::default()], failure: vec![] })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: key not found");
    let e = etcd_err(c.put("leased", "v", PutOptions { lease: 12345, ..Default::default() }).await);
    assert_eq!(e, EtcdError::LeaseNotFound);
    // After all of that, the server still serves.
    put(c, "still", "fine").await;
}

async fn suite(kind: Kind) {
    let server = Server::start(kind);
    let c = server.ready().await;
    puts_gets_and_deletes(&c).await;
    range_options(&c).await;
    transactions(&c).await;
    compaction_and_history(&c).await;
    bad_input(&c).await;
}

#[tokio::test]
async fn kv_api_on_cairn() {
    suite(Kind::Cairn).await;
}

#[tokio::test]
async fn kv_api_on_etcd_agrees() {
    if Server::etcd_available("kv_api_on_etcd_agrees") {
        suite(Kind::Etcd).await;
    }
}

#[tokio::test]
async fn status_and_member_list_carry_etcds_ids() {
    let server = Server::start(Kind::Cairn);
    let c = server.ready().await;
    let s = c.status().await.unwrap();
    let h = s.header.unwrap();
    assert_eq!(s.leader, h.member_id);
    assert!(s.version.starts_with("3.6"), "{}", s.version);
    assert!(s.db_size > 0 && s.raft_index >= s.raft_applied_index && s.raft_term >= 2);
    let members = c.member_list().await.unwrap().members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].id, h.member_id);
    assert_eq!(members[0].client_ur_ls, vec![server.client_url()]);
}
