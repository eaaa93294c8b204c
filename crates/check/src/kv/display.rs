//! Operations in words, for explanations.

use std::fmt;

use super::op::{Compare, CompareTarget, Operation, Request, Response, TxnOp, TxnOpResult};
use crate::{show, KeyValue};

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.response {
            Some(resp) => write!(
                f,
                "[client {}, {}..{}] {} -> {}",
                self.client, self.call, self.ret, self.request, resp
            ),
            None => {
                write!(f, "[client {}, {}..?] {} -> unknown outcome", self.client, self.call, self.request)
            }
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Get { key } => write!(f, "get {:?}", show(key)),
            Self::Put { key, value } => write!(f, "put {:?}={:?}", show(key), show(value)),
            Self::Delete { key } => write!(f, "delete {:?}", show(key)),
            Self::Txn(txn) => {
                f.write_str("txn if [")?;
                list(f, &txn.compares)?;
                f.write_str("] then [")?;
                list(f, &txn.success)?;
                f.write_str("] else [")?;
                list(f, &txn.failure)?;
                f.write_str("]")
            }
        }
    }
}

fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Compare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = show(&self.key);
        match &self.target {
            CompareTarget::Value(v) => write!(f, "value({key:?})=={:?}", show(v)),
            CompareTarget::Version(x) => write!(f, "version({key:?})=={x}"),
            CompareTarget::CreateRevision(x) => write!(f, "create({key:?})=={x}"),
            CompareTarget::ModRevision(x) => write!(f, "mod({key:?})=={x}"),
        }
    }
}

impl fmt::Display for TxnOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Get(key) => write!(f, "get {:?}", show(key)),
            Self::Put(key, value) => write!(f, "put {:?}={:?}", show(key), show(value)),
            Self::Delete(key) => write!(f, "delete {:?}", show(key)),
        }
    }
}

struct Read<'a>(Option<&'a KeyValue>);

impl fmt::Display for Read<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("(absent)"),
            Some(kv) => write!(
                f,
                "{:?} (create {}, mod {}, version {})",
                show(&kv.value),
                kv.create_revision,
                kv.mod_revision,
                kv.version
            ),
        }
    }
}

impl fmt::Display for TxnOpResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Get(kv) => write!(f, "{}", Read(kv.as_ref())),
            Self::Put => f.write_str("ok"),
            Self::Delete { deleted } => write!(f, "deleted {deleted}"),
        }
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Get { revision, kv } => write!(f, "{} at revision {revision}", Read(kv.as_ref())),
            Self::Put { revision } => write!(f, "revision {revision}"),
            Self::Delete { revision, deleted } => write!(f, "deleted {deleted} at revision {revision}"),
            Self::Txn { revision, succeeded, results } => {
                write!(f, "succeeded={succeeded} [")?;
                list(f, results)?;
                write!(f, "] at revision {revision}")
            }
        }
    }
}
