//! A put learns the lease and the creation/version it replaces from the index, and reads the old value only
//! when somebody needs it: the lease changes it reports, and the key-values it stores, must be the same whether
//! or not prev_kv is asked, within one batch, across batches, and after the store is reopened.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::sync::Arc;

use cairn_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use cairn_api::mvccpb::KeyValue;
use cairn_mvcc::{LeaseChange, LeaseLookup, Store};
use cairn_storage::Backend;

/// Every lease exists.
struct AnyLease;

impl LeaseLookup for AnyLease {
    fn lease_exists(&self, _id: i64) -> bool {
        true
    }
}

fn put(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() }
}

fn change(key: &str, old: i64, new: i64) -> LeaseChange {
    LeaseChange { key: key.into(), old, new }
}

fn get(store: &Store, key: &str) -> Option<KeyValue> {
    store.range(&RangeRequest { key: key.into(), ..Default::default() }).unwrap().kvs.pop()
}

#[test]
fn puts_report_lease_changes_and_keep_creation_and_version_without_reading_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(Arc::new(Backend::open(&path).unwrap())).unwrap();

    let mut b = store.begin_batch();
    b.put(&put("a", "1", 5), &AnyLease).unwrap();
    assert_eq!(b.take_lease_changes(), vec![change("a", 0, 5)]);
    b.put(&put("a", "2", 0), &AnyLease).unwrap();
    assert_eq!(b.take_lease_changes(), vec![change("a", 5, 0)], "a put without a lease detaches the key");
    b.put(&put("a", "3", 7), &AnyLease).unwrap();
    assert_eq!(b.take_lease_changes(), vec![change("a", 0, 7)]);
    b.commit(false).unwrap();

    let mut b = store.begin_batch();
    let kept = PutRequest { ignore_lease: true, ..put("a", "4", 0) };
    b.put(&kept, &AnyLease).unwrap();
    assert!(b.take_lease_changes().is_empty(), "ignore_lease keeps the lease");
    let same_value = PutRequest { ignore_value: true, prev_kv: true, ..put("a", "", 8) };
    let resp = b.put(&same_value, &AnyLease).unwrap();
    assert_eq!(resp.prev_kv.map(|p| (p.value, p.lease, p.version)), Some((b"4".to_vec(), 7, 4)));
    assert_eq!(b.take_lease_changes(), vec![change("a", 7, 8)]);
    b.put(&put("b", "1", 9), &AnyLease).unwrap();
    b.put(&put("c", "1", 3), &AnyLease).unwrap();
    b.delete_range(&DeleteRangeRequest { key: "c".into(), ..Default::default() }).unwrap();
    assert_eq!(b.take_lease_changes(), vec![change("b", 0, 9), change("c", 0, 3), change("c", 3, 0)]);
    b.commit(false).unwrap();

    let a = get(&store, "a").unwrap();
    assert_eq!((a.value, a.lease, a.create_revision, a.mod_revision, a.version), (b"4".to_vec(), 8, 2, 6, 5));

    // Leases come back from the stored values when the store is reopened.
    let mut b = store.begin_batch();
    b.set_consistent_index(1, 1);
    b.commit(true).unwrap();
    drop(store);
    let store = Store::open(Arc::new(Backend::open(&path).unwrap())).unwrap();
    let mut leased = store.leased_keys();
    leased.sort();
    assert_eq!(leased, vec![(b"a".to_vec(), 8), (b"b".to_vec(), 9)]);
    let mut b = store.begin_batch();
    b.put(&put("b", "2", 0), &AnyLease).unwrap();
    b.put(&PutRequest { ignore_lease: true, ..put("a", "5", 0) }, &AnyLease).unwrap();
    assert_eq!(b.take_lease_changes(), vec![change("b", 9, 0)]);
    b.commit(false).unwrap();
    let b_kv = get(&store, "b").unwrap();
    assert_eq!((b_kv.create_revision, b_kv.version, b_kv.lease), (7, 2, 0));
    assert_eq!(get(&store, "a").map(|a| (a.lease, a.version)), Some((8, 6)));
}
