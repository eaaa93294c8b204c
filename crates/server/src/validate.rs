//! Request checks done before anything is proposed, exactly as etcd's `api/v3rpc/key.go`: empty keys, value or
//! lease given with ignore flags, too many txn operations, and puts/deletes overlapping in one txn.

use cairn_api::etcdserverpb::request_op::Request;
use cairn_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use cairn_api::EtcdError;
use std::collections::HashSet;

pub fn range(r: &RangeRequest) -> Result<(), EtcdError> {
    // Unknown sort options are treated as none, as etcd 3.4 does (the store falls back the same way).
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn(r, max_txn_ops)?;
    // Overlaps are checked after the cheap checks, as etcd does, to bound the quadratic work.
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(Request::RequestRange(x)) => range(x)?,
            Some(Request::RequestPut(x)) => put(x)?,
            Some(Request::RequestDeleteRange(x)) => delete_range(x)?,
            Some(Request::RequestTxn(x)) => check_txn(x, max_txn_ops)?,
            // etcd answers an empty op with "key not found".
            None => return Err(EtcdError::KeyNotFound),
        }
    }
    Ok(())
}

/// A delete's keys: one key, `[start, end)`, or everything from `start` ("\0" end).
#[derive(Debug, Clone)]
struct Deleted {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    point: bool,
}

impl Deleted {
    fn contains(&self, k: &[u8]) -> bool {
        if self.point {
            return self.start == k;
        }
        k >= self.start.as_slice() && self.end.as_ref().is_none_or(|e| k < e.as_slice())
    }
}

/// etcd's checkIntervals: no key is put twice, or put and deleted, in one branch (including nested txns; a
/// nested txn's then and else branches are exclusive, so each may put the same key).
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(match d.range_end.as_slice() {
                [] => Deleted { start: d.key.clone(), end: None, point: true },
                [0] => Deleted { start: d.key.clone(), end: None, point: false },
                end => Deleted { start: d.key.clone(), end: Some(end.to_vec()), point: false },
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.iter().any(|d| d.contains(k)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || dels.iter().any(|d| d.contains(k)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else { continue };
        if puts.contains(&p.key) || dels.iter().any(|d| d.contains(&p.key)) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }

    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                prev_kv: false,
            })),
        }
    }

    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(TxnRequest { compare: vec![], success, failure })) }
    }

    #[test]
    fn etcds_put_checks() {
        assert_eq!(put(&PutRequest::default()), Err(EtcdError::EmptyKey));
        let p =
            PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ignore_value: true, ..Default::default() };
        assert_eq!(put(&p), Err(EtcdError::ValueProvided));
        let p = PutRequest { key: b"k".to_vec(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(put(&p), Err(EtcdError::LeaseProvided));
    }

    #[test]
    fn txn_op_limit_counts_the_largest_list() {
        let t = TxnRequest {
            compare: vec![],
            success: (0..3).map(|i| put_op(&i.to_string())).collect(),
            failure: vec![],
        };
        assert_eq!(txn(&t, 2), Err(EtcdError::TooManyOps));
        assert_eq!(txn(&t, 3), Ok(()));
    }

    #[test]
    fn duplicate_keys_as_etcd() {
        let t = |success| TxnRequest { compare: vec![], success, failure: vec![] };
        assert_eq!(txn(&t(vec![put_op("a"), put_op("a")]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(txn(&t(vec![put_op("b"), del_op("a", "c")]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(txn(&t(vec![put_op("z"), del_op("a", "\0")]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(txn(&t(vec![put_op("c"), del_op("a", "c")]), 128), Ok(()), "range end is exclusive");
        assert_eq!(txn(&t(vec![del_op("a", ""), del_op("a", "")]), 128), Ok(()), "deletes may overlap");
        // then/else of a nested txn are exclusive; a nested put against an outer put is not.
        assert_eq!(txn(&t(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]), 128), Ok(()));
        assert_eq!(
            txn(&t(vec![put_op("a"), txn_op(vec![put_op("a")], vec![])]), 128),
            Err(EtcdError::DuplicateKey)
        );
        // success and failure of the top level are checked separately.
        let both = TxnRequest { compare: vec![], success: vec![put_op("a")], failure: vec![put_op("a")] };
        assert_eq!(txn(&both, 128), Ok(()));
    }

    #[test]
    fn an_empty_op_is_key_not_found() {
        let t = TxnRequest { compare: vec![], success: vec![RequestOp { request: None }], failure: vec![] };
        assert_eq!(txn(&t, 128), Err(EtcdError::KeyNotFound));
    }
}
