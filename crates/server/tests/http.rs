//! HTTP on the client port: /health, /version and the JSON gateway, checked against etcd's answers.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::{Kind, Server};

async fn gateway(kind: Kind) {
    let server = Server::start(kind);
    server.ready().await;
    let (code, body) = server.http("GET", "/health", "");
    assert_eq!((code, body.as_str()), (200, r#"{"health":"true"}"#));

    // Keys and values are base64, int64 fields are strings, names are the proto field names.
    let (code, body) = server.http("POST", "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["header"]["revision"], "2");
    assert!(v["header"]["member_id"].as_str().is_some_and(|id| id.parse::<u64>().is_ok()), "{body}");
    let (_, body) = server.http("POST", "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kvs"][0]["value"], "YmFy");
    assert_eq!(v["kvs"][0]["create_revision"], "2");
    assert_eq!(v["count"], "1");
    let (_, body) = server.http(
        "POST",
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],"success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}"#,
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["succeeded"], true, "{body}");
    let (_, body) = server.http("POST", "/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["deleted"].as_str(), v["prev_kvs"][0]["value"].as_str()), (Some("1"), Some("YmF6")));
    let (code, _) = server.http("POST", "/v3/kv/compaction", r#"{"revision":"3"}"#);
    assert_eq!(code, 200);

    // Errors: etcd's message and gRPC code in grpc-gateway's shape.
    let (code, body) = server.http("POST", "/v3/kv/put", r#"{"key":""}"#);
    assert_eq!(code, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "etcdserver: key is not provided");
    assert_eq!(v["message"], "etcdserver: key is not provided");
    assert_eq!(v["code"], 3);
    let (code, body) = server.http("POST", "/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((code, v["code"].as_i64()), (400, Some(11)), "{body}");
    assert_eq!(v["error"], "etcdserver: mvcc: required revision has been compacted");
    let (code, body) = server.http("POST", "/v3/kv/put", r#"{"key":12"#);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((code, v["code"].as_i64()), (400, Some(3)), "malformed JSON: {body}");
}

#[tokio::test]
async fn gateway_on_cairn() {
    gateway(Kind::Cairn).await;
}

#[tokio::test]
async fn gateway_on_etcd_agrees() {
    if Server::etcd_available("gateway_on_etcd_agrees") {
        gateway(Kind::Etcd).await;
    }
}

#[tokio::test]
async fn version_reports_a_3_6_server() {
    let server = Server::start(Kind::Cairn);
    server.ready().await;
    let (code, body) = server.http("GET", "/version", "");
    assert_eq!(code, 200);
    assert_eq!(body, r#"{"etcdcluster":"3.6.0","etcdserver":"3.6.0"}"#);
}
