#![allow(clippy::unwrap_used)]

use super::*;
use crate::KeyValue;

fn put(client: u64, call: u64, ret: u64, key: &str, value: &str, revision: i64) -> Operation {
    Operation::new(client, call, ret, Request::put(key, value), Response::Put { revision })
}

fn get(
    client: u64,
    call: u64,
    ret: u64,
    key: &str,
    kv: Option<(&str, i64, i64, i64)>,
    revision: i64,
) -> Operation {
    let kv = kv.map(|(v, c, m, ver)| KeyValue::new(v, c, m, ver));
    Operation::new(client, call, ret, Request::get(key), Response::Get { revision, kv })
}

fn del(client: u64, call: u64, ret: u64, key: &str, deleted: i64, revision: i64) -> Operation {
    Operation::new(client, call, ret, Request::delete(key), Response::Delete { revision, deleted })
}

fn txn(compares: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> Request {
    Request::Txn(TxnRequest { compares, success, failure })
}

fn value_is(key: &str, value: &str) -> Compare {
    Compare { key: key.into(), target: CompareTarget::Value(value.into()) }
}

fn mod_is(key: &str, revision: i64) -> Compare {
    Compare { key: key.into(), target: CompareTarget::ModRevision(revision) }
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, &Options::default()).unwrap()
}

#[track_caller]
fn assert_ok(history: &[Operation]) {
    let v = verdict(history);
    assert_eq!(
        v,
        Verdict::Ok,
        "{}",
        match &v {
            Verdict::Illegal(violation) => violation.to_string(),
            other => format!("{other:?}"),
        }
    );
}

#[track_caller]
fn assert_illegal(history: &[Operation]) -> Violation {
    match verdict(history) {
        Verdict::Illegal(v) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_ok(&[]);
}

#[test]
fn sequential_put_get_delete() {
    assert_ok(&[
        get(1, 0, 1, "x", None, 1),
        put(1, 2, 3, "x", "a", 2),
        get(1, 4, 5, "x", Some(("a", 2, 2, 1)), 2),
        put(1, 6, 7, "x", "b", 3),
        get(1, 8, 9, "x", Some(("b", 2, 3, 2)), 3),
        del(1, 10, 11, "x", 1, 4),
        del(1, 12, 13, "x", 0, 4),
        get(1, 14, 15, "x", None, 4),
        put(1, 16, 17, "x", "c", 5),
        get(1, 18, 19, "x", Some(("c", 5, 5, 1)), 5),
    ]);
}

#[test]
fn stale_read_at_the_same_revision() {
    let v = assert_illegal(&[put(1, 0, 10, "x", "a", 2), get(2, 20, 30, "x", None, 2)]);
    assert_eq!(v.keys, vec![b"x".to_vec()]);
    assert!(v.ops.contains(&1), "{v}");
    assert!(v.explanation.contains("#1"), "{v}");
}

#[test]
fn stale_read_at_an_older_revision() {
    let v = assert_illegal(&[put(1, 0, 10, "x", "a", 2), get(2, 20, 30, "x", None, 1)]);
    assert!(v.explanation.contains("went back in real time"), "{v}");
}

#[test]
fn stale_read_of_another_key_is_caught_through_revisions() {
    // y was written at 3 before the read of x started, so the read's header revision cannot be 2.
    assert_illegal(&[
        put(1, 0, 5, "x", "a", 2),
        put(1, 6, 10, "y", "b", 3),
        get(2, 20, 30, "x", Some(("a", 2, 2, 1)), 2),
    ]);
}

#[test]
fn concurrent_read_sees_old_or_new() {
    let w = put(1, 0, 100, "x", "a", 2);
    assert_ok(&[w.clone(), get(2, 10, 20, "x", None, 1)]);
    assert_ok(&[w, get(2, 10, 20, "x", Some(("a", 2, 2, 1)), 2)]);
}

#[test]
fn lost_write() {
    assert_illegal(&[
        put(1, 0, 10, "x", "a", 2),
        put(1, 11, 20, "x", "b", 3),
        get(2, 30, 40, "x", Some(("a", 2, 2, 1)), 3),
    ]);
}

#[test]
fn read_of_a_value_never_written() {
    let v = assert_illegal(&[put(1, 0, 10, "x", "a", 2), get(2, 20, 30, "x", Some(("zz", 2, 2, 1)), 2)]);
    assert!(v.explanation.contains("\"zz\""), "{v}");
}

#[test]
fn wrong_version_or_revisions() {
    let w = put(1, 0, 10, "x", "a", 2);
    assert_illegal(&[w.clone(), get(2, 20, 30, "x", Some(("a", 2, 2, 2)), 2)]);
    assert_illegal(&[w.clone(), get(2, 20, 30, "x", Some(("a", 1, 2, 1)), 2)]);
    assert_illegal(&[w, get(2, 20, 30, "x", Some(("a", 2, 3, 1)), 3)]);
}

#[test]
fn concurrent_puts_in_either_order() {
    // Both overlap; the revisions decide which came last, and the read must agree.
    let a = put(1, 0, 10, "x", "a", 2);
    let b = put(2, 0, 10, "x", "b", 3);
    assert_ok(&[a.clone(), b.clone(), get(3, 20, 30, "x", Some(("b", 2, 3, 2)), 3)]);
    assert_illegal(&[a.clone(), b.clone(), get(3, 20, 30, "x", Some(("a", 2, 2, 1)), 3)]);
    let a3 = put(1, 0, 10, "x", "a", 3);
    let b2 = put(2, 0, 10, "x", "b", 2);
    assert_ok(&[a3, b2, get(3, 20, 30, "x", Some(("a", 2, 3, 2)), 3)]);
}

#[test]
fn reads_in_real_time_order_cannot_go_back() {
    // Two concurrent puts; one reader sees b then a later reader sees a at the older revision.
    assert_illegal(&[
        put(1, 0, 100, "x", "a", 2),
        put(2, 0, 100, "x", "b", 3),
        get(3, 10, 20, "x", Some(("b", 2, 3, 2)), 3),
        get(4, 30, 40, "x", Some(("a", 2, 2, 1)), 2),
    ]);
}

#[test]
fn two_writes_with_one_revision() {
    let v = assert_illegal(&[put(1, 0, 10, "x", "a", 2), put(2, 0, 10, "y", "b", 2)]);
    assert!(v.explanation.contains("same revision 2"), "{v}");
    assert_eq!(v.ops, vec![0, 1]);
}

#[test]
fn write_revisions_must_grow_in_real_time() {
    assert_illegal(&[put(1, 0, 10, "x", "a", 5), put(2, 20, 30, "y", "b", 4)]);
    assert_illegal(&[get(1, 0, 10, "x", None, 5), put(2, 20, 30, "y", "b", 5)]);
    assert_ok(&[get(1, 0, 10, "x", None, 5), put(2, 20, 30, "y", "b", 6)]);
}

#[test]
fn writes_to_one_key_need_growing_revisions() {
    // Sequential on the same key, but the second put's revision is lower: caught even when concurrent with
    // nothing else, since the read in between pins the order.
    assert_illegal(&[
        put(1, 0, 100, "x", "a", 3),
        put(2, 0, 100, "x", "b", 2),
        get(3, 110, 120, "x", Some(("b", 2, 2, 2)), 3),
    ]);
}

#[test]
fn unknown_write_that_appears_later() {
    assert_ok(&[
        Operation::unknown(1, 0, Request::put("x", "a")),
        get(2, 50, 60, "x", None, 1),
        get(2, 70, 80, "x", Some(("a", 2, 2, 1)), 2),
        get(2, 90, 95, "x", Some(("a", 2, 2, 1)), 4),
    ]);
}

#[test]
fn unknown_write_that_never_appears() {
    assert_ok(&[Operation::unknown(1, 0, Request::put("x", "a")), get(2, 50, 60, "x", None, 1)]);
}

#[test]
fn unknown_write_cannot_appear_before_its_call() {
    assert_illegal(&[
        get(2, 0, 5, "x", Some(("a", 2, 2, 1)), 2),
        Operation::unknown(1, 10, Request::put("x", "a")),
    ]);
}

#[test]
fn unknown_write_cannot_disappear_once_seen() {
    assert_illegal(&[
        Operation::unknown(1, 0, Request::put("x", "a")),
        get(2, 50, 60, "x", Some(("a", 2, 2, 1)), 2),
        get(2, 70, 80, "x", None, 2),
    ]);
}

#[test]
fn unknown_write_revision_is_bound_by_the_first_read() {
    assert_illegal(&[
        Operation::unknown(1, 0, Request::put("x", "a")),
        get(2, 50, 60, "x", Some(("a", 2, 2, 1)), 2),
        get(2, 70, 80, "x", Some(("a", 3, 3, 1)), 3),
    ]);
}

#[test]
fn unknown_delete() {
    let w = put(1, 0, 10, "x", "a", 2);
    let d = Operation::unknown(2, 20, Request::delete("x"));
    assert_ok(&[w.clone(), d.clone(), get(3, 30, 40, "x", None, 3)]);
    assert_ok(&[w.clone(), d.clone(), get(3, 30, 40, "x", Some(("a", 2, 2, 1)), 2)]);
    assert_illegal(&[w, d, get(3, 30, 40, "x", None, 3), get(3, 50, 60, "x", Some(("a", 2, 2, 1)), 3)]);
}

#[test]
fn failed_reads_are_dropped() {
    assert_ok(&[put(1, 0, 10, "x", "a", 2), Operation::unknown(2, 20, Request::get("x"))]);
}

#[test]
fn delete_counts_must_match_existence() {
    assert_illegal(&[del(1, 0, 10, "x", 1, 2)]);
    assert_illegal(&[put(1, 0, 10, "x", "a", 2), del(1, 20, 30, "x", 0, 2)]);
    // A delete of nothing does not take a revision: the put after it cannot reuse its header revision.
    assert_ok(&[put(1, 0, 10, "y", "a", 2), del(2, 20, 30, "z", 0, 2), put(1, 40, 50, "w", "a", 3)]);
    assert_illegal(&[put(1, 0, 10, "y", "a", 2), del(2, 20, 30, "z", 0, 3), put(1, 40, 50, "w", "a", 3)]);
}

fn cas(from: &str, to: &str) -> Request {
    txn(vec![value_is("x", from)], vec![TxnOp::Put("x".into(), to.into())], vec![TxnOp::Get("x".into())])
}

#[test]
fn compare_and_swap_race_has_one_winner() {
    let init = put(1, 0, 10, "x", "0", 2);
    let a_wins = Operation::new(
        2,
        20,
        40,
        cas("0", "a"),
        Response::Txn { revision: 3, succeeded: true, results: vec![TxnOpResult::Put] },
    );
    let b_loses = Operation::new(
        3,
        20,
        40,
        cas("0", "b"),
        Response::Txn {
            revision: 3,
            succeeded: false,
            results: vec![TxnOpResult::Get(Some(KeyValue::new("a", 2, 3, 2)))],
        },
    );
    assert_ok(&[init.clone(), a_wins.clone(), b_loses]);
    let b_wins_too = Operation::new(
        3,
        20,
        40,
        cas("0", "b"),
        Response::Txn { revision: 4, succeeded: true, results: vec![TxnOpResult::Put] },
    );
    assert_illegal(&[init, a_wins, b_wins_too]);
}

#[test]
fn txn_branch_must_match_compares() {
    let init = put(1, 0, 10, "x", "0", 2);
    let fails_wrongly = Operation::new(
        2,
        20,
        30,
        cas("0", "a"),
        Response::Txn {
            revision: 2,
            succeeded: false,
            results: vec![TxnOpResult::Get(Some(KeyValue::new("0", 2, 2, 1)))],
        },
    );
    let v = assert_illegal(&[init, fails_wrongly]);
    assert!(v.explanation.contains("succeeded=false"), "{v}");
}

#[test]
fn txn_across_keys_is_atomic() {
    let swap =
        txn(vec![], vec![TxnOp::Put("x".into(), "1".into()), TxnOp::Put("y".into(), "1".into())], vec![]);
    let t = Operation::new(
        1,
        0,
        10,
        swap,
        Response::Txn { revision: 2, succeeded: true, results: vec![TxnOpResult::Put, TxnOpResult::Put] },
    );
    assert_ok(&[
        t.clone(),
        get(2, 20, 30, "x", Some(("1", 2, 2, 1)), 2),
        get(2, 40, 50, "y", Some(("1", 2, 2, 1)), 2),
    ]);
    // A concurrent reader may not see x from the txn and y from before it at one revision.
    let read_both = txn(vec![], vec![TxnOp::Get("x".into()), TxnOp::Get("y".into())], vec![]);
    let torn = Operation::new(
        2,
        5,
        15,
        read_both,
        Response::Txn {
            revision: 2,
            succeeded: true,
            results: vec![TxnOpResult::Get(Some(KeyValue::new("1", 2, 2, 1))), TxnOpResult::Get(None)],
        },
    );
    assert_illegal(&[t, torn]);
}

#[test]
fn unknown_txn_compare_on_unknown_revision() {
    // x's put has an unknown outcome; a txn comparing x's value (which shows the put took effect) and mod
    // revision with 2 succeeds, which binds the put's revision.
    let h = vec![
        Operation::unknown(1, 0, Request::put("x", "a")),
        Operation::new(
            2,
            10,
            20,
            txn(vec![value_is("x", "a"), mod_is("x", 2)], vec![TxnOp::Put("x".into(), "b".into())], vec![]),
            Response::Txn { revision: 3, succeeded: true, results: vec![TxnOpResult::Put] },
        ),
        get(3, 30, 40, "x", Some(("b", 2, 3, 2)), 3),
    ];
    assert_ok(&h);
    let mut wrong = h.clone();
    wrong[2] = get(3, 30, 40, "x", Some(("b", 3, 3, 1)), 3);
    assert_illegal(&wrong);
}

#[test]
fn unseen_puts_make_versions_lax_but_not_values() {
    // A put nobody saw the value of may have taken effect before b's put: version 2 and create 2 are fine...
    let h = |read: Operation| {
        vec![Operation::unknown(1, 0, Request::put("x", "a")), put(2, 10, 20, "x", "b", 3), read]
    };
    assert_ok(&h(get(3, 30, 40, "x", Some(("b", 2, 3, 2)), 3)));
    assert_ok(&h(get(3, 30, 40, "x", Some(("b", 3, 3, 1)), 3)));
    // ... but a lower version, another value or another mod revision are not.
    assert_illegal(&h(get(3, 30, 40, "x", Some(("b", 3, 3, 0)), 3)));
    assert_illegal(&h(get(3, 30, 40, "x", Some(("a", 2, 2, 1)), 3)));
    assert_illegal(&h(get(3, 30, 40, "x", Some(("b", 3, 2, 1)), 3)));
}

#[test]
fn unknown_txn_may_take_either_branch() {
    // An unknown put then an unknown CAS on its revision: later reads may show the CAS applied or not.
    let h = |read: Operation| {
        vec![
            Operation::unknown(1, 0, Request::put("x", "a")),
            Operation::unknown(
                2,
                10,
                txn(vec![mod_is("x", 2)], vec![TxnOp::Put("x".into(), "b".into())], vec![]),
            ),
            get(3, 30, 40, "x", Some(("a", 2, 2, 1)), 2),
            read,
        ]
    };
    assert_ok(&h(get(3, 50, 60, "x", Some(("b", 2, 3, 2)), 3)));
    assert_ok(&h(get(3, 50, 60, "x", Some(("a", 2, 2, 1)), 3)));
    assert_illegal(
        &h(get(3, 50, 60, "x", Some(("b", 2, 4, 2)), 4))
            .into_iter()
            .chain([get(3, 70, 80, "x", Some(("a", 2, 2, 1)), 4)])
            .collect::<Vec<_>>(),
    );
}

#[test]
fn malformed_histories_are_errors() {
    let backwards = put(1, 10, 5, "x", "a", 2);
    assert!(matches!(
        check(&[backwards], &Options::default()),
        Err(Error::InvalidOperation { index: 0, .. })
    ));
    let zero = put(1, 0, 5, "x", "a", 0);
    assert!(check(&[zero], &Options::default()).is_err());
    let mismatched = Operation::new(1, 0, 5, Request::get("x"), Response::Put { revision: 2 });
    assert!(check(&[mismatched], &Options::default()).is_err());
}

#[test]
fn budget_exhaustion_is_unknown() {
    let h = vec![put(1, 0, 10, "x", "a", 2), get(2, 20, 30, "x", Some(("a", 2, 2, 1)), 2)];
    let tiny = Options { max_states: 0, ..Options::default() };
    assert!(matches!(check(&h, &tiny).unwrap(), Verdict::Unknown(_)));
}

#[test]
fn recorder_brackets_operations() {
    let rec = Recorder::new();
    let t = rec.now();
    rec.record(1, t, Request::put("x", "a"), Some(Response::Put { revision: 2 }));
    let t = rec.now();
    rec.record(
        2,
        t,
        Request::get("x"),
        Some(Response::Get { revision: 2, kv: Some(KeyValue::new("a", 2, 2, 1)) }),
    );
    let h = rec.history();
    assert_eq!(h.len(), 2);
    assert!(h[0].ret < h[1].call);
    assert_ok(&h);
}

#[test]
fn conversions_from_wire_types() {
    use cairn_api::etcdserverpb as pb;
    let header = Some(pb::ResponseHeader { revision: 7, ..Default::default() });
    let resp = pb::TxnResponse {
        header,
        succeeded: true,
        responses: vec![pb::ResponseOp {
            response: Some(pb::response_op::Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                header,
                deleted: 1,
                prev_kvs: vec![],
            })),
        }],
    };
    assert_eq!(
        Response::from_txn(&resp).unwrap(),
        Response::Txn { revision: 7, succeeded: true, results: vec![TxnOpResult::Delete { deleted: 1 }] }
    );
    let req = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            target_union: Some(pb::compare::TargetUnion::ModRevision(3)),
            range_end: vec![],
        }],
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    assert_eq!(
        TxnRequest::try_from(&req).unwrap(),
        TxnRequest {
            compares: vec![mod_is("k", 3)],
            success: vec![TxnOp::Put(b"k".to_vec(), b"v".to_vec())],
            failure: vec![]
        }
    );
    let mut greater = req.clone();
    greater.compare[0].result = pb::compare::CompareResult::Greater as i32;
    assert!(TxnRequest::try_from(&greater).is_err());
}

#[test]
fn chain_of_unknown_compare_and_swaps() {
    // Each swap of unknown outcome needs the previous one's value; only the last value is read.
    let cas = |from: &str, to: &str| {
        txn(vec![value_is("x", from)], vec![TxnOp::Put("x".into(), to.into())], vec![TxnOp::Get("x".into())])
    };
    let h = vec![
        Operation::unknown(5, 2799, Request::delete("x")),
        put(7, 5970, 5976, "x", "a", 806),
        Operation::unknown(4, 6174, cas("a", "b")),
        Operation::unknown(7, 6201, cas("b", "c")),
        Operation::new(
            1,
            6481,
            6485,
            cas("c", "d"),
            Response::Txn { revision: 880, succeeded: true, results: vec![TxnOpResult::Put] },
        ),
    ];
    assert_ok(&h);
}
