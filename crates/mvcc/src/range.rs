//! etcd's Range: the index picks the revisions visible at the requested revision, the source supplies the values,
//! then etcd's filters, sort and limit apply (etcd `server/etcdserver/txn` Range and mvcc `rangeKeys`).

use std::cmp::Ordering;

use cairn_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use cairn_api::mvccpb::KeyValue;

use crate::key_index::KeyRange;
use crate::revision::Revision;
use crate::store::State;
use crate::MvccError;

/// Where the values of revisions come from: the committed backend, or a batch's own uncommitted writes over it.
pub(crate) trait KvSource {
    fn kv(&self, rev: Revision) -> Result<KeyValue, MvccError>;
}

/// Checks a read revision against the store: 0 or less means `current`.
pub(crate) fn check_revision(state: &State, requested: i64, current: i64) -> Result<i64, MvccError> {
    if requested > current {
        return Err(MvccError::FutureRevision);
    }
    let rev = if requested <= 0 { current } else { requested };
    if rev < state.compact_rev {
        return Err(MvccError::Compacted);
    }
    Ok(rev)
}

/// Answers `req` as of `current`, the newest revision the caller may see.
pub(crate) fn range(
    state: &State,
    source: &dyn KvSource,
    req: &RangeRequest,
    current: i64,
) -> Result<RangeResponse, MvccError> {
    let rev = check_revision(state, req.revision, current)?;
    let header = Some(ResponseHeader { revision: current, ..Default::default() });

    let mut revisions = Vec::new();
    state.index.visit(KeyRange::new(&req.key, &req.range_end), rev, |_, at| {
        revisions.push(at.modified);
        true
    });
    let count =
        i64::try_from(revisions.len()).map_err(|_| MvccError::Corrupt("range count overflow".into()))?;
    if req.count_only {
        return Ok(RangeResponse { header, kvs: Vec::new(), more: false, count });
    }

    let sort_order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let limit = usize::try_from(req.limit).unwrap_or(0);
    if sort_order == SortOrder::None && !filtered && limit > 0 {
        // Values past limit + 1 are never needed: one more tells `more`.
        revisions.truncate(limit.saturating_add(1));
    }

    let mut kvs = Vec::with_capacity(revisions.len());
    for r in revisions {
        let kv = source.kv(r)?;
        let keep = (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision);
        if keep {
            kvs.push(kv);
        }
    }

    // The index yields keys in ascending order; etcd sorts ascending by default only for non-key targets.
    let order = match (sort_order, sort_target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    if order != SortOrder::None {
        let by_target = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| by_target(b, a));
        } else {
            kvs.sort_by(by_target);
        }
    }

    let mut more = false;
    if limit > 0 && kvs.len() > limit {
        kvs.truncate(limit);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse { header, kvs, more, count })
}
