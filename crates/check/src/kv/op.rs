//! The operations of a KV history: what a client asked ([`Request`]), what it was told ([`Response`]), and when
//! ([`Operation`]), with conversions from etcd's wire messages.

use cairn_api::etcdserverpb::{self, compare::CompareResult, compare::TargetUnion, request_op, response_op};

use crate::{show, Error, KeyValue};

/// One client operation: its call and return times, the request and, when known, the response.
///
/// Times are on any clock shared by all clients (nanoseconds, or the logical clock of
/// [`Recorder`](crate::kv::Recorder)): only their order matters. An operation A precedes B in real time when
/// `A.ret < B.call`; equal times count as concurrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client (session) that issued the operation; used in explanations only.
    pub client: u64,
    /// When the request was sent.
    pub call: u64,
    /// When the response arrived (ignored when `response` is `None`).
    pub ret: u64,
    /// What was asked.
    pub request: Request,
    /// What was answered; `None` when the request failed or timed out. A write with no response may have
    /// taken effect at any time after its call, or never; a read with no response is dropped.
    pub response: Option<Response>,
}

impl Operation {
    /// An operation that returned `response`.
    pub fn new(client: u64, call: u64, ret: u64, request: Request, response: Response) -> Self {
        Self { client, call, ret, request, response: Some(response) }
    }

    /// An operation whose outcome is unknown (error or timeout).
    pub fn unknown(client: u64, call: u64, request: Request) -> Self {
        Self { client, call, ret: u64::MAX, request, response: None }
    }
}

/// A request on single keys, as etcd's KV service receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Range on one key.
    Get { key: Vec<u8> },
    /// Put of one key.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// DeleteRange of one key.
    Delete { key: Vec<u8> },
    /// A transaction whose compares and operations each name one key.
    Txn(TxnRequest),
}

impl Request {
    /// A Get of `key`.
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        Self::Get { key: key.into() }
    }

    /// A Put of `value` at `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::Put { key: key.into(), value: value.into() }
    }

    /// A Delete of `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Self::Delete { key: key.into() }
    }

    /// Every key the request reads or writes (with repetitions).
    pub(crate) fn keys(&self) -> Vec<&[u8]> {
        match self {
            Self::Get { key } | Self::Put { key, .. } | Self::Delete { key } => vec![key.as_slice()],
            Self::Txn(txn) => txn
                .compares
                .iter()
                .map(|c| c.key.as_slice())
                .chain(txn.success.iter().chain(&txn.failure).map(TxnOp::key))
                .collect(),
        }
    }

    /// Whether the request may change the store.
    pub(crate) fn may_write(&self) -> bool {
        match self {
            Self::Get { .. } => false,
            Self::Put { .. } | Self::Delete { .. } => true,
            Self::Txn(txn) => txn.success.iter().chain(&txn.failure).any(|op| !matches!(op, TxnOp::Get(_))),
        }
    }
}

/// A transaction: if every compare holds, `success` runs, else `failure`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Equality compares, all of which must hold for `success` to run.
    pub compares: Vec<Compare>,
    /// Operations run when every compare holds.
    pub success: Vec<TxnOp>,
    /// Operations run otherwise.
    pub failure: Vec<TxnOp>,
}

/// An equality compare on one key, as etcd evaluates it: on a missing key a value compare fails and the other
/// targets compare against 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// What the key must equal.
    pub target: CompareTarget,
}

/// The field a [`Compare`] looks at, with the value it must equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
}

/// One operation inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl TxnOp {
    fn key(&self) -> &[u8] {
        match self {
            Self::Get(key) | Self::Put(key, _) | Self::Delete(key) => key,
        }
    }
}

/// What the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Range on one key: the header revision and the key if it exists.
    Get { revision: i64, kv: Option<KeyValue> },
    /// Put: the header revision, which is the put's revision.
    Put { revision: i64 },
    /// DeleteRange: the header revision and how many keys were deleted (0 or 1).
    Delete { revision: i64, deleted: i64 },
    /// Txn: the header revision, which branch ran, and one result per operation of that branch.
    Txn { revision: i64, succeeded: bool, results: Vec<TxnOpResult> },
}

impl Response {
    /// The response header's revision.
    pub fn revision(&self) -> i64 {
        match self {
            Self::Get { revision, .. }
            | Self::Put { revision }
            | Self::Delete { revision, .. }
            | Self::Txn { revision, .. } => *revision,
        }
    }

    /// A Range response on one key.
    pub fn from_range(resp: &etcdserverpb::RangeResponse) -> Self {
        Self::Get {
            revision: header_revision(resp.header.as_ref()),
            kv: resp.kvs.first().map(KeyValue::from),
        }
    }

    /// A Put response.
    pub fn from_put(resp: &etcdserverpb::PutResponse) -> Self {
        Self::Put { revision: header_revision(resp.header.as_ref()) }
    }

    /// A DeleteRange response.
    pub fn from_delete(resp: &etcdserverpb::DeleteRangeResponse) -> Self {
        Self::Delete { revision: header_revision(resp.header.as_ref()), deleted: resp.deleted }
    }

    /// A Txn response; fails on a nested transaction.
    pub fn from_txn(resp: &etcdserverpb::TxnResponse) -> Result<Self, Error> {
        let results = resp
            .responses
            .iter()
            .map(|op| match &op.response {
                Some(response_op::Response::ResponseRange(r)) => {
                    Ok(TxnOpResult::Get(r.kvs.first().map(KeyValue::from)))
                }
                Some(response_op::Response::ResponsePut(_)) => Ok(TxnOpResult::Put),
                Some(response_op::Response::ResponseDeleteRange(d)) => {
                    Ok(TxnOpResult::Delete { deleted: d.deleted })
                }
                Some(response_op::Response::ResponseTxn(_)) | None => {
                    Err(Error::Unsupported("a nested or empty transaction response".to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::Txn { revision: header_revision(resp.header.as_ref()), succeeded: resp.succeeded, results })
    }
}

fn header_revision(header: Option<&etcdserverpb::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision)
}

/// The result of one operation inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResult {
    Get(Option<KeyValue>),
    Put,
    Delete { deleted: i64 },
}

impl TryFrom<&etcdserverpb::TxnRequest> for TxnRequest {
    type Error = Error;

    /// Accepts equality compares on value, version, create and mod revision, and single-key operations.
    fn try_from(txn: &etcdserverpb::TxnRequest) -> Result<Self, Error> {
        let compares = txn.compare.iter().map(compare_from_pb).collect::<Result<_, _>>()?;
        let ops = |ops: &[etcdserverpb::RequestOp]| ops.iter().map(op_from_pb).collect::<Result<Vec<_>, _>>();
        Ok(Self { compares, success: ops(&txn.success)?, failure: ops(&txn.failure)? })
    }
}

fn compare_from_pb(c: &etcdserverpb::Compare) -> Result<Compare, Error> {
    if c.result() != CompareResult::Equal || !c.range_end.is_empty() {
        return Err(Error::Unsupported(format!("compare on {} is not an equality on one key", show(&c.key))));
    }
    let target = match &c.target_union {
        Some(TargetUnion::Value(v)) => CompareTarget::Value(v.clone()),
        Some(TargetUnion::Version(v)) => CompareTarget::Version(*v),
        Some(TargetUnion::CreateRevision(r)) => CompareTarget::CreateRevision(*r),
        Some(TargetUnion::ModRevision(r)) => CompareTarget::ModRevision(*r),
        Some(TargetUnion::Lease(_)) | None => {
            return Err(Error::Unsupported(format!("compare on {} has no supported target", show(&c.key))))
        }
    };
    Ok(Compare { key: c.key.clone(), target })
}

fn op_from_pb(op: &etcdserverpb::RequestOp) -> Result<TxnOp, Error> {
    let single = |key: &[u8], range_end: &[u8]| {
        if range_end.is_empty() {
            Ok(key.to_vec())
        } else {
            Err(Error::Unsupported(format!("a range operation from {}", show(key))))
        }
    };
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => Ok(TxnOp::Get(single(&r.key, &r.range_end)?)),
        Some(request_op::Request::RequestPut(p)) => Ok(TxnOp::Put(p.key.clone(), p.value.clone())),
        Some(request_op::Request::RequestDeleteRange(d)) => Ok(TxnOp::Delete(single(&d.key, &d.range_end)?)),
        Some(request_op::Request::RequestTxn(_)) | None => {
            Err(Error::Unsupported("a nested or empty transaction operation".to_owned()))
        }
    }
}
