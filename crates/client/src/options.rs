//! Request options in clientv3's spirit: `GetOptions { prefix: true, limit: 10, .. }` becomes a RangeRequest.

use cairn_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_api::etcdserverpb::request_op::Request;
use cairn_api::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// The range end that makes `key` a prefix (clientv3's GetPrefixRangeEnd): the key with its last byte below
/// 0xff incremented and the rest dropped; "\0" (every key) when there is none.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            if let Some(b) = end.last_mut() {
                *b += 1;
            }
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// Which keys, beyond the one given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyRange {
    #[default]
    Single,
    Prefix,
    /// Every key >= the key.
    FromKey,
    /// `[key, end)`.
    Until(Vec<u8>),
}

impl KeyRange {
    fn range_end(&self, key: &[u8]) -> Vec<u8> {
        match self {
            KeyRange::Single => Vec::new(),
            KeyRange::Prefix => prefix_end(key),
            KeyRange::FromKey => vec![0],
            KeyRange::Until(end) => end.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    pub range: KeyRange,
    pub limit: i64,
    pub revision: i64,
    pub sort: Option<(SortTarget, SortOrder)>,
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

impl GetOptions {
    pub fn into_request(self, key: Vec<u8>) -> RangeRequest {
        let (sort_target, sort_order) = self.sort.unwrap_or((SortTarget::Key, SortOrder::None));
        RangeRequest {
            range_end: self.range.range_end(&key),
            key,
            limit: self.limit,
            revision: self.revision,
            sort_order: sort_order as i32,
            sort_target: sort_target as i32,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision,
            max_mod_revision: self.max_mod_revision,
            min_create_revision: self.min_create_revision,
            max_create_revision: self.max_create_revision,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

impl PutOptions {
    pub fn into_request(self, key: Vec<u8>, value: Vec<u8>) -> PutRequest {
        PutRequest {
            key,
            value,
            lease: self.lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub range: KeyRange,
    pub prev_kv: bool,
}

impl DeleteOptions {
    pub fn into_request(self, key: Vec<u8>) -> DeleteRangeRequest {
        DeleteRangeRequest { range_end: self.range.range_end(&key), key, prev_kv: self.prev_kv }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone)]
pub enum TxnOp {
    Get(Vec<u8>, GetOptions),
    Put(Vec<u8>, Vec<u8>, PutOptions),
    Delete(Vec<u8>, DeleteOptions),
    Txn(Box<Txn>),
}

impl TxnOp {
    fn into_request_op(self) -> RequestOp {
        let request = match self {
            TxnOp::Get(k, o) => Request::RequestRange(o.into_request(k)),
            TxnOp::Put(k, v, o) => Request::RequestPut(o.into_request(k, v)),
            TxnOp::Delete(k, o) => Request::RequestDeleteRange(o.into_request(k)),
            TxnOp::Txn(t) => Request::RequestTxn(t.into_request()),
        };
        RequestOp { request: Some(request) }
    }
}

/// `if compares { success } else { failure }`, applied atomically.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    compare: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compare.extend(compares);
        self
    }

    #[must_use]
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    #[must_use]
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    pub fn into_request(self) -> TxnRequest {
        TxnRequest {
            compare: self.compare,
            success: self.success.into_iter().map(TxnOp::into_request_op).collect(),
            failure: self.failure.into_iter().map(TxnOp::into_request_op).collect(),
        }
    }
}

fn compare(key: &[u8], result: CompareResult, target: CompareTarget, operand: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(operand),
    }
}

/// Compare builders, as clientv3's `Value(key)`, `Version(key)`, ...
pub fn compare_value(key: &[u8], result: CompareResult, value: &[u8]) -> Compare {
    compare(key, result, CompareTarget::Value, TargetUnion::Value(value.to_vec()))
}

pub fn compare_version(key: &[u8], result: CompareResult, version: i64) -> Compare {
    compare(key, result, CompareTarget::Version, TargetUnion::Version(version))
}

pub fn compare_create_revision(key: &[u8], result: CompareResult, revision: i64) -> Compare {
    compare(key, result, CompareTarget::Create, TargetUnion::CreateRevision(revision))
}

pub fn compare_mod_revision(key: &[u8], result: CompareResult, revision: i64) -> Compare {
    compare(key, result, CompareTarget::Mod, TargetUnion::ModRevision(revision))
}

pub fn compare_lease(key: &[u8], result: CompareResult, lease: i64) -> Compare {
    compare(key, result, CompareTarget::Lease, TargetUnion::Lease(lease))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_as_clientv3() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"ab\xff"), b"ac");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn options_map_to_requests() {
        let r = GetOptions { range: KeyRange::Prefix, limit: 2, keys_only: true, ..Default::default() }
            .into_request(b"a/".to_vec());
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice(), r.limit, r.keys_only),
            (&b"a/"[..], &b"a0"[..], 2, true)
        );
        let r = GetOptions { range: KeyRange::FromKey, ..Default::default() }.into_request(b"k".to_vec());
        assert_eq!(r.range_end, vec![0]);
        let p = PutOptions { prev_kv: true, ..Default::default() }.into_request(b"k".to_vec(), b"v".to_vec());
        assert!(p.prev_kv);
        let t = Txn::new()
            .when([compare_version(b"k", CompareResult::Equal, 0)])
            .and_then([TxnOp::Put(b"k".to_vec(), b"v".to_vec(), PutOptions::default())])
            .or_else([TxnOp::Get(b"k".to_vec(), GetOptions::default())])
            .into_request();
        assert_eq!((t.compare.len(), t.success.len(), t.failure.len()), (1, 1, 1));
    }
}
