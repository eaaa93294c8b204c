//! A Txn of ranges only is answered from the store without a batch commit: the same answer a batch gives, at the
//! current revision, changing nothing; any other Txn is refused to this path (it must go through the log).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::sync::Arc;

use cairn_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_api::etcdserverpb::request_op::Request as Op;
use cairn_api::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use cairn_mvcc::store::{txn_is_read_only, txn_is_serializable};
use cairn_mvcc::{NoLeases, Store};
use cairn_storage::Backend;

fn range(key: &str, serializable: bool) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest { key: key.into(), serializable, ..Default::default() })),
    }
}

fn value_is(key: &str, value: &str) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: key.into(),
        target_union: Some(TargetUnion::Value(value.into())),
        range_end: Vec::new(),
    }
}

#[test]
fn a_txn_of_ranges_reads_the_current_revision_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Arc::new(Backend::open(&dir.path().join("db")).unwrap())).unwrap();
    let mut b = store.begin_batch();
    for (k, v) in [("a", "1"), ("b", "2")] {
        b.put(&PutRequest { key: k.into(), value: v.into(), ..Default::default() }, &NoLeases).unwrap();
    }
    b.commit(false).unwrap();
    let rev = store.current_revision();

    for (compare, succeeded, value) in [(value_is("a", "1"), true, b"1"), (value_is("a", "x"), false, b"2")] {
        let txn = TxnRequest {
            compare: vec![compare],
            success: vec![range("a", false)],
            failure: vec![range("b", false)],
        };
        assert!(txn_is_read_only(&txn) && !txn_is_serializable(&txn));
        let read = store.txn_read_only(&txn).unwrap().unwrap();
        assert_eq!(read.succeeded, succeeded);
        assert_eq!(read.header.as_ref().map(|h| h.revision), Some(rev));
        match &read.responses[0].response {
            Some(cairn_api::etcdserverpb::response_op::Response::ResponseRange(r)) => {
                assert_eq!(r.kvs[0].value, value)
            }
            other => panic!("{other:?}"),
        }
        // The applied path gives the same answer, and neither makes a revision.
        let mut b = store.begin_batch();
        assert_eq!(b.txn(&txn, &NoLeases).unwrap(), read);
        b.commit(false).unwrap();
        assert_eq!(store.current_revision(), rev);
    }
}

#[test]
fn a_txn_with_any_other_operation_is_not_read_here() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Arc::new(Backend::open(&dir.path().join("db")).unwrap())).unwrap();
    let put =
        RequestOp { request: Some(Op::RequestPut(PutRequest { key: "p".into(), ..Default::default() })) };
    let nested = RequestOp {
        request: Some(Op::RequestTxn(TxnRequest { success: vec![range("a", true)], ..Default::default() })),
    };
    // A put in the branch not taken still makes it a write, and so does a nested txn (etcd's isTxnReadonly).
    for txn in [
        TxnRequest {
            compare: vec![value_is("a", "nope")],
            success: vec![put],
            failure: vec![range("a", true)],
        },
        TxnRequest { success: vec![nested], ..Default::default() },
    ] {
        assert!(!txn_is_read_only(&txn));
        assert!(store.txn_read_only(&txn).is_none());
    }
    assert_eq!(store.current_revision(), 1);
    assert!(store.range(&RangeRequest { key: "p".into(), ..Default::default() }).unwrap().kvs.is_empty());
    // Serializable when every range is (a txn without operations too).
    assert!(txn_is_serializable(&TxnRequest { success: vec![range("a", true)], ..Default::default() }));
    assert!(txn_is_serializable(&TxnRequest::default()));
    let mixed = TxnRequest {
        success: vec![range("a", true)],
        failure: vec![range("b", false)],
        ..Default::default()
    };
    assert!(!txn_is_serializable(&mixed));
}
