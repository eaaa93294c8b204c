//! Property test: random put / delete / txn / compact / range sequences against a model that keeps the whole
//! key-value map at every revision. Every response field is compared, including across reopening the store.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_api::etcdserverpb::request_op::Request;
use cairn_api::etcdserverpb::response_op::Response;
use cairn_api::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use cairn_api::mvccpb::KeyValue;
use cairn_mvcc::{MvccError, NoLeases, Store};
use cairn_storage::Backend;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        value: u8,
    },
    Delete {
        key: u8,
        end: Option<u8>,
    },
    /// If `key`'s value equals `value` then put `then_key` else delete `else_key`.
    Txn {
        key: u8,
        value: u8,
        then_key: u8,
        else_key: u8,
    },
    Compact {
        back: u8,
    },
    Range {
        key: u8,
        end: Option<u8>,
        back: u8,
        limit: u8,
    },
    /// Commit what is pending durably, drop the store and open it again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..5;
    prop_oneof![
        4 => (k.clone(), 0u8..3).prop_map(|(key, value)| Op::Put { key, value }),
        2 => (k.clone(), proptest::option::of(0u8..6)).prop_map(|(key, end)| Op::Delete { key, end }),
        2 => (k.clone(), 0u8..3, k.clone(), k.clone())
            .prop_map(|(key, value, then_key, else_key)| Op::Txn { key, value, then_key, else_key }),
        1 => (0u8..6).prop_map(|back| Op::Compact { back }),
        4 => (k.clone(), proptest::option::of(0u8..6), 0u8..8, 0u8..3)
            .prop_map(|(key, end, back, limit)| Op::Range { key, end, back, limit }),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

fn value(v: u8) -> Vec<u8> {
    vec![b'0' + v]
}

/// The whole map at every revision; index = revision.
struct Model {
    history: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compact: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.history.len() as i64 - 1
    }

    fn latest(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        self.history.last().unwrap()
    }

    fn put_in(&self, map: &mut BTreeMap<Vec<u8>, KeyValue>, k: Vec<u8>, v: Vec<u8>, rev: i64) {
        let prev = map.get(&k).cloned();
        map.insert(
            k.clone(),
            KeyValue {
                key: k,
                value: v,
                create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                mod_revision: rev,
                version: prev.map_or(0, |p| p.version) + 1,
                lease: 0,
            },
        );
    }

    fn in_range(k: &[u8], start: &[u8], end: &Option<Vec<u8>>) -> bool {
        match end {
            None => k == start,
            Some(e) => k >= start && k < e.as_slice(),
        }
    }
}

fn end_bytes(end: Option<u8>) -> Option<Vec<u8>> {
    end.map(key)
}

fn check(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut store = Store::open(Arc::new(Backend::open(&path).unwrap())).unwrap();
    // Revisions 0 and 1 are both the empty store: etcd starts at 1 and the first write is revision 2.
    let mut model = Model { history: vec![BTreeMap::new(), BTreeMap::new()], compact: -1 };
    assert_eq!(store.current_revision(), 1, "a fresh store is at revision 1, as etcd's");
    assert_eq!(store.compact_revision(), -1);

    for op in ops {
        match op {
            Op::Put { key: k, value: v } => {
                let mut b = store.begin_batch();
                let resp = b
                    .put(
                        &PutRequest { key: key(k), value: value(v), prev_kv: true, ..Default::default() },
                        &NoLeases,
                    )
                    .unwrap();
                b.commit(false).unwrap();
                let prev = model.latest().get(&key(k)).cloned();
                let mut next = model.latest().clone();
                let rev = model.current() + 1;
                model.put_in(&mut next, key(k), value(v), rev);
                model.history.push(next);
                assert_eq!(resp.header.unwrap().revision, rev);
                assert_eq!(resp.prev_kv, prev);
            }
            Op::Delete { key: k, end } => {
                let end = end_bytes(end);
                let mut b = store.begin_batch();
                let resp = b
                    .delete_range(&DeleteRangeRequest {
                        key: key(k),
                        range_end: end.clone().unwrap_or_default(),
                        prev_kv: true,
                    })
                    .unwrap();
                b.commit(false).unwrap();
                let doomed: Vec<KeyValue> = model
                    .latest()
                    .values()
                    .filter(|kv| Model::in_range(&kv.key, &key(k), &end))
                    .cloned()
                    .collect();
                if !doomed.is_empty() {
                    let mut next = model.latest().clone();
                    for kv in &doomed {
                        next.remove(&kv.key);
                    }
                    model.history.push(next);
                }
                assert_eq!(resp.deleted, doomed.len() as i64);
                assert_eq!(resp.prev_kvs, doomed);
                assert_eq!(resp.header.unwrap().revision, model.current());
            }
            Op::Txn { key: k, value: v, then_key, else_key } => {
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Value as i32,
                        key: key(k),
                        range_end: vec![],
                        target_union: Some(TargetUnion::Value(value(v))),
                    }],
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: key(then_key),
                            value: value(v),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![
                        RequestOp {
                            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                                key: key(else_key),
                                ..Default::default()
                            })),
                        },
                        RequestOp {
                            request: Some(Request::RequestRange(RangeRequest {
                                key: key(else_key),
                                ..Default::default()
                            })),
                        },
                    ],
                };
                let mut b = store.begin_batch();
                let resp = b.txn(&req, &NoLeases).unwrap();
                b.commit(false).unwrap();
                let succeeded = model.latest().get(&key(k)).is_some_and(|kv| kv.value == value(v));
                assert_eq!(resp.succeeded, succeeded);
                if succeeded {
                    let mut next = model.latest().clone();
                    let rev = model.current() + 1;
                    model.put_in(&mut next, key(then_key), value(v), rev);
                    model.history.push(next);
                } else if model.latest().contains_key(&key(else_key)) {
                    let mut next = model.latest().clone();
                    next.remove(&key(else_key));
                    model.history.push(next);
                    match &resp.responses[1].response {
                        Some(Response::ResponseRange(r)) => {
                            assert!(r.kvs.is_empty(), "the txn sees its own delete")
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                assert_eq!(resp.header.unwrap().revision, model.current());
            }
            Op::Compact { back } => {
                let rev = model.current() - i64::from(back);
                let mut b = store.begin_batch();
                let result = b.compact(rev);
                b.commit(false).unwrap();
                if rev <= model.compact {
                    assert!(matches!(result, Err(MvccError::Compacted)), "compact {rev}: {result:?}");
                } else {
                    result.unwrap();
                    model.compact = rev;
                }
            }
            Op::Range { key: k, end, back, limit } => {
                let end = end_bytes(end);
                let requested = if back == 0 { 0 } else { model.current() + 2 - i64::from(back) };
                let range = RangeRequest {
                    key: key(k),
                    range_end: end.clone().unwrap_or_default(),
                    revision: requested,
                    limit: i64::from(limit),
                    ..Default::default()
                };
                let result = store.range(&range);
                // The same range as a read-only txn (answered without a batch) reads the same, or fails the same.
                let op = RequestOp { request: Some(Request::RequestRange(range)) };
                let txn = TxnRequest { success: vec![op], ..Default::default() };
                let read = store.txn_read_only(&txn).unwrap();
                match (&result, read) {
                    (Ok(r), Ok(t)) => match &t.responses[0].response {
                        Some(Response::ResponseRange(tr)) => assert_eq!(tr, r),
                        other => panic!("unexpected {other:?}"),
                    },
                    (Err(e), Err(te)) => assert_eq!(e.to_string(), te.to_string()),
                    (r, t) => panic!("range {r:?} but read-only txn {t:?}"),
                }
                if requested > model.current() {
                    assert!(matches!(result, Err(MvccError::FutureRevision)), "{result:?}");
                    continue;
                }
                let at = if requested <= 0 { model.current() } else { requested };
                if at < model.compact {
                    assert!(matches!(result, Err(MvccError::Compacted)), "{result:?}");
                    continue;
                }
                let resp = result.unwrap();
                let all: Vec<KeyValue> = model.history[at as usize]
                    .values()
                    .filter(|kv| Model::in_range(&kv.key, &key(k), &end))
                    .cloned()
                    .collect();
                assert_eq!(resp.count, all.len() as i64);
                let limit = usize::from(limit);
                let expected: Vec<KeyValue> =
                    if limit > 0 { all.iter().take(limit).cloned().collect() } else { all.clone() };
                assert_eq!(resp.kvs, expected, "range at {at}");
                assert_eq!(resp.more, limit > 0 && all.len() > limit);
                assert_eq!(resp.header.unwrap().revision, model.current());
            }
            Op::Reopen => {
                let mut b = store.begin_batch();
                b.set_consistent_index(model.current() as u64, 1);
                b.commit(true).unwrap();
                drop(store);
                store = Store::open(Arc::new(Backend::open(&path).unwrap())).unwrap();
                assert_eq!(store.current_revision(), model.current());
                assert_eq!(store.compact_revision(), model.compact);
                assert_eq!(store.consistent_index(), model.current() as u64);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        check(ops);
    }
}
