//! Untrusted bodies through the gateway decoder: whatever the bytes, an answer and never a panic, and the Go
//! scanner accepts exactly the JSON that serde_json accepts.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use cairn_api::etcdserverpb::{LeaseKeepAliveRequest, PutRequest, RangeRequest, TxnRequest, WatchRequest};
use cairn_api::gateway::{decode, Requests};
use proptest::prelude::*;

/// Bodies that are valid, to mutate.
const SEEDS: &[&str] = &[
    r#"{"key":"YQ==","value":"Yg==","lease":"7","prev_kv":true}"#,
    r#"{"key":"YQ==","range_end":"AA==","sort_order":"DESCEND","sort_target":2,"limit":"10"}"#,
    r#"{"compare":[{"key":"YQ==","target":"MOD","result":"LESS","mod_revision":"5"}],"success":[{"request_put":{"key":"YQ==","value":[1,2]}}],"failure":[{"request_txn":{"success":[{"request_range":{"key":"YQ=="}}]}}]}"#,
    r#"{"create_request":{"key":"YQ==","filters":["NOPUT",1],"start_revision":"3","prev_kv":true}}"#,
    r#"{"ID":"5"} {"ID":6}"#,
];

/// Bytes that matter to the scanner, base64 and the Go texts.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![prop::sample::select(b"{}[]\":,\\/ \t\n-+.eE0123456789truefalsnYQ=ubx".to_vec()), any::<u8>(),]
}

/// A seed with a few bytes replaced, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(SEEDS),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, interesting_byte()), 1..4),
    )
        .prop_map(|(seed, edits)| {
            let mut body = seed.as_bytes().to_vec();
            for (at, op, byte) in edits {
                let i = at.index(body.len() + 1);
                match op {
                    0 if i < body.len() => body[i] = byte,
                    1 => body.insert(i, byte),
                    _ if i < body.len() => {
                        body.remove(i);
                    }
                    _ => body.push(byte),
                }
            }
            body
        })
}

fn decode_all(body: &[u8]) {
    let _ = decode::<PutRequest>(body).map_err(|e| e.to_string());
    let _ = decode::<RangeRequest>(body).map_err(|e| e.to_string());
    let _ = decode::<TxnRequest>(body).map_err(|e| e.to_string());
    let _ = Requests::<WatchRequest>::new(body).count();
    let _ = Requests::<LeaseKeepAliveRequest>::new(body).count();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_bodies_never_panic(body in mutated()) {
        decode_all(&body);
    }

    #[test]
    fn random_bodies_never_panic(body in prop::collection::vec(interesting_byte(), 0..48)) {
        decode_all(&body);
    }

    /// A body whose first value is valid JSON never gets a syntax answer; one that is not never gets past it.
    #[test]
    fn syntax_verdict_agrees_with_serde_json(body in prop::collection::vec(interesting_byte(), 0..24)) {
        let serde_ok = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
        let answer = decode::<PutRequest>(&body);
        let syntax = match &answer {
            Err(e) => {
                let text = e.to_string();
                text.starts_with("invalid character") || text == "unexpected EOF"
            }
            Ok(_) => false,
        };
        if serde_ok {
            prop_assert!(!syntax, "{:?}: {:?}", String::from_utf8_lossy(&body), answer);
        }
    }
}
