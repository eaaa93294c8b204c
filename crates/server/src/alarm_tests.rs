#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use cairn_api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, RangeRequest, RequestOp,
};
use cairn_storage::Backend;

use super::*;

fn put(key: &str, value_len: usize) -> PutRequest {
    PutRequest { key: key.into(), value: vec![b'v'; value_len], ..Default::default() }
}

fn op(r: Op) -> RequestOp {
    RequestOp { request: Some(r) }
}

#[test]
fn a_put_costs_etcds_overhead_plus_key_and_value() {
    assert_eq!(cost_put(&put("", 0)), 256);
    assert_eq!(cost_put(&put("key", 1000)), 256 + 3 + 1000);
    assert_eq!(cost(&Request::Put(put("k", 10))), 256 + 1 + 10);
}

#[test]
fn a_txn_costs_the_puts_of_its_costlier_branch() {
    let t = TxnRequest {
        success: vec![op(Op::RequestPut(put("a", 10))), op(Op::RequestRange(RangeRequest::default()))],
        failure: vec![op(Op::RequestPut(put("b", 5))), op(Op::RequestPut(put("c", 5)))],
        ..Default::default()
    };
    // success: 267; failure: 262 + 262.
    assert_eq!(cost_txn(&t), 2 * 262);
    let reads_and_deletes = TxnRequest {
        success: vec![
            op(Op::RequestRange(RangeRequest::default())),
            op(Op::RequestDeleteRange(DeleteRangeRequest::default())),
        ],
        ..Default::default()
    };
    assert_eq!(cost_txn(&reads_and_deletes), 0);
    // As etcd 3.4: a nested txn's puts are not counted.
    let nested = TxnRequest { success: vec![op(Op::RequestTxn(t))], ..Default::default() };
    assert_eq!(cost_txn(&nested), 0);
}

#[test]
fn a_lease_grant_costs_64_and_other_requests_nothing() {
    assert_eq!(cost(&Request::LeaseGrant(LeaseGrantRequest::default())), 64);
    assert_eq!(cost(&Request::DeleteRange(DeleteRangeRequest::default())), 0);
    assert_eq!(cost(&Request::Compaction(CompactionRequest::default())), 0);
    assert_eq!(cost(&Request::LeaseRevoke(LeaseRevokeRequest::default())), 0);
    assert_eq!(cost(&Request::Alarm(AlarmRequest::default())), 0);
}

#[test]
fn the_quota_flag_reads_as_etcds() {
    assert_eq!(Quota::new(0), Quota { limit: Some(2 * 1024 * 1024 * 1024) });
    assert_eq!(Quota::new(-1), Quota { limit: None });
    assert_eq!(Quota::new(4096), Quota { limit: Some(4096) });
    let q = Quota::new(1000);
    assert!(q.available(700, 299));
    assert!(!q.available(700, 300), "size + cost must stay below the quota");
    assert!(q.available(5000, 0), "a request that adds nothing always fits");
    assert!(Quota::new(-5).available(u64::MAX, u64::MAX));
    // etcd takes a negative quota as a separate argument too.
    let flags = ["cairn", "--quota-backend-bytes", "-1"];
    let cfg = <crate::config::Config as clap::Parser>::try_parse_from(flags).unwrap();
    assert_eq!(Quota::new(cfg.quota_backend_bytes), Quota { limit: None });
}

#[test]
fn status_errors_are_gogoprotos_text() {
    assert_eq!(text(AlarmType::Nospace as i32, 5), "memberID:5 alarm:NOSPACE ");
    assert_eq!(text(AlarmType::Corrupt as i32, 0), "alarm:CORRUPT ");
    assert_eq!(text(AlarmType::None as i32, 6), "memberID:6 ");
    assert_eq!(text(9, 1), "memberID:1 alarm:9 ");
}

fn store(path: &std::path::Path) -> Store {
    Store::open(Arc::new(Backend::open(path).unwrap())).unwrap()
}

fn request(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
    AlarmRequest { action: action as i32, member_id, alarm: alarm as i32 }
}

/// Applies one alarm request in its own committed batch.
fn apply(alarms: &Alarms, store: &Store, r: AlarmRequest) -> Vec<(u64, i32)> {
    let mut batch = store.begin_batch();
    let resp = alarms.apply(&mut batch, &r);
    batch.commit(false).unwrap();
    assert!(resp.header.is_none(), "etcd 3.4 answers alarms without a header");
    resp.alarms.into_iter().map(|a| (a.member_id, a.alarm)).collect()
}

fn refused(alarms: &Arc<Alarms>, request: &Request) -> Option<EtcdError> {
    alarms.begin_apply().admit(1, Some(request))
}

const NOSPACE: i32 = AlarmType::Nospace as i32;
const CORRUPT: i32 = AlarmType::Corrupt as i32;

#[test]
fn raising_nospace_caps_writes_and_disarming_uncaps_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir.path().join("db"));
    let alarms = Arc::new(Alarms::recover(&store, Quota::new(-1)).unwrap());
    let big_txn =
        Request::Txn(TxnRequest { failure: vec![op(Op::RequestPut(put("a", 1)))], ..Default::default() });
    let delete_txn = Request::Txn(TxnRequest {
        success: vec![op(Op::RequestDeleteRange(DeleteRangeRequest::default()))],
        ..Default::default()
    });
    assert_eq!(refused(&alarms, &Request::Put(put("a", 1))), None);

    assert_eq!(apply(&alarms, &store, request(AlarmAction::Activate, 7, AlarmType::Nospace)), [(7, NOSPACE)]);
    assert_eq!(refused(&alarms, &Request::Put(put("a", 1))), Some(EtcdError::NoSpace));
    assert_eq!(
        refused(&alarms, &Request::LeaseGrant(LeaseGrantRequest::default())),
        Some(EtcdError::NoSpace)
    );
    assert_eq!(refused(&alarms, &big_txn), Some(EtcdError::NoSpace), "a txn with puts, in any branch");
    assert_eq!(refused(&alarms, &delete_txn), None);
    assert_eq!(refused(&alarms, &Request::DeleteRange(DeleteRangeRequest::default())), None);
    assert_eq!(refused(&alarms, &Request::Compaction(CompactionRequest::default())), None);
    assert_eq!(refused(&alarms, &Request::LeaseRevoke(LeaseRevokeRequest::default())), None);
    assert_eq!(alarms.status_errors(), ["memberID:7 alarm:NOSPACE "]);

    // Raising it again answers the alarm and changes nothing.
    assert_eq!(apply(&alarms, &store, request(AlarmAction::Activate, 7, AlarmType::Nospace)), [(7, NOSPACE)]);
    assert_eq!(apply(&alarms, &store, request(AlarmAction::Get, 0, AlarmType::None)), [(7, NOSPACE)]);
    // Disarming one not raised answers nothing and is no error.
    assert_eq!(apply(&alarms, &store, request(AlarmAction::Deactivate, 8, AlarmType::Nospace)), []);
    assert_eq!(refused(&alarms, &Request::Put(put("a", 1))), Some(EtcdError::NoSpace));

    assert_eq!(
        apply(&alarms, &store, request(AlarmAction::Deactivate, 7, AlarmType::Nospace)),
        [(7, NOSPACE)]
    );
    assert_eq!(refused(&alarms, &Request::Put(put("a", 1))), None);
    assert_eq!(apply(&alarms, &store, request(AlarmAction::Get, 0, AlarmType::None)), []);
    assert!(alarms.status_errors().is_empty());
}

#[test]
fn corrupt_refuses_every_write_and_clearing_it_uncaps_as_etcd_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir.path().join("db"));
    let alarms = Arc::new(Alarms::recover(&store, Quota::new(-1)).unwrap());
    apply(&alarms, &store, request(AlarmAction::Activate, 5, AlarmType::Nospace));
    apply(&alarms, &store, request(AlarmAction::Activate, 7, AlarmType::Corrupt));
    for r in [
        Request::Put(put("a", 1)),
        Request::DeleteRange(DeleteRangeRequest::default()),
        Request::Txn(TxnRequest::default()),
        Request::Compaction(CompactionRequest::default()),
        Request::LeaseGrant(LeaseGrantRequest::default()),
        Request::LeaseRevoke(LeaseRevokeRequest::default()),
    ] {
        assert_eq!(refused(&alarms, &r), Some(EtcdError::Corrupt), "{r:?}");
    }
    assert_eq!(refused(&alarms, &Request::Alarm(AlarmRequest::default())), None);
    // Listed by type, then member; GET of one type lists that type only.
    let all = apply(&alarms, &store, request(AlarmAction::Get, 0, AlarmType::None));
    assert_eq!(all, [(5, NOSPACE), (7, CORRUPT)]);
    assert_eq!(apply(&alarms, &store, request(AlarmAction::Get, 0, AlarmType::Corrupt)), [(7, CORRUPT)]);
    // etcd puts the normal applier back when the last CORRUPT goes, although NOSPACE is still raised...
    apply(&alarms, &store, request(AlarmAction::Deactivate, 7, AlarmType::Corrupt));
    assert_eq!(refused(&alarms, &Request::Put(put("a", 1))), None);
    // ...and raising NOSPACE again for a member already listed changes nothing.
    apply(&alarms, &store, request(AlarmAction::Activate, 5, AlarmType::Nospace));
    assert_eq!(refused(&alarms, &Request::Put(put("a", 1))), None);
}

#[test]
fn alarms_survive_a_reopen_and_restore_the_applier() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = store(&path);
        let alarms = Alarms::recover(&store, Quota::new(-1)).unwrap();
        apply(&alarms, &store, request(AlarmAction::Activate, 3, AlarmType::Nospace));
        apply(&alarms, &store, request(AlarmAction::Activate, 1, AlarmType::Nospace));
        apply(&alarms, &store, request(AlarmAction::Activate, 2, AlarmType::None));
        apply(&alarms, &store, request(AlarmAction::Deactivate, 3, AlarmType::Nospace));
        store.begin_batch().commit(true).unwrap();
        // The table holds etcd's bytes: the AlarmMember message as the key, an empty value.
        let tx = store.backend().begin_read().unwrap();
        let key = AlarmMember { member_id: 1, alarm: NOSPACE }.encode_to_vec();
        assert_eq!(key, [0x08, 0x01, 0x10, 0x01]);
        assert_eq!(tx.get(Table::Alarm, &key).unwrap(), Some(Vec::new()));
        assert_eq!(tx.len(Table::Alarm).unwrap(), 2);
    }
    let store = store(&path);
    let alarms = Arc::new(Alarms::recover(&store, Quota::new(-1)).unwrap());
    assert_eq!(alarms.status_errors(), ["memberID:2 ", "memberID:1 alarm:NOSPACE "]);
    assert_eq!(refused(&alarms, &Request::Put(put("a", 1))), Some(EtcdError::NoSpace));
}

#[test]
fn a_write_past_the_quota_is_applied_but_answered_nospace() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir.path().join("db"));
    let size = store.backend().size().unwrap();
    let alarms = Arc::new(Alarms::recover(&store, Quota::new(i64::try_from(size).unwrap() + 300)).unwrap());
    assert!(alarms.available(299));
    assert!(!alarms.available(300));
    let mut gate = alarms.begin_apply();
    assert_eq!(gate.admit(1, Some(&Request::Put(put("k", 10)))), None);
    assert_eq!(gate.admit(2, Some(&Request::Put(put("k", 100)))), None);
    assert_eq!(gate.admit(3, Some(&Request::DeleteRange(DeleteRangeRequest::default()))), None);
    let ok = || Ok(Applied::Alarm(AlarmResponse::default()));
    let mut results = vec![(1, ok()), (2, ok()), (3, ok())];
    assert!(gate.finish(&store, &mut results), "no NOSPACE raised yet: this member raises it");
    assert!(results[0].1.is_ok());
    assert!(matches!(results[1].1, Err(EtcdError::NoSpace)));
    assert!(results[2].1.is_ok());

    apply(&alarms, &store, request(AlarmAction::Activate, 9, AlarmType::Nospace));
    let mut gate = alarms.begin_apply();
    assert_eq!(gate.admit(4, Some(&Request::Put(put("k", 1)))), Some(EtcdError::NoSpace), "capped");
    assert!(!gate.finish(&store, &mut []));
    let proposal = InternalRequest::decode(nospace_proposal(12, 9).as_slice()).unwrap();
    assert_eq!(proposal.id, 12);
    assert_eq!(proposal.request, Some(Request::Alarm(request(AlarmAction::Activate, 9, AlarmType::Nospace))));
}

#[test]
fn an_undecodable_alarm_row_stops_the_start_instead_of_being_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir.path().join("db"));
    let mut batch = store.begin_batch();
    batch.put_raw(Table::Alarm, vec![0xff, 0xff], Vec::new());
    batch.commit(true).unwrap();
    let e = Alarms::recover(&store, Quota::new(0)).unwrap_err().to_string();
    assert!(e.contains("undecodable alarm table key"), "{e}");
}
