//! Narrowing down writes of unknown outcome before the search, so that it does not try them everywhere.
//!
//! Both steps rely on values written once per key (tests write unique values; a value written twice is left
//! alone):
//! - **Observed**: when a read returned the value, the write must come before that read, so before it
//!   returned: the earliest such return becomes the write's return time.
//! - **Never observed** (a plain put whose value no read returned and no compare mentions): taking effect only
//!   bumps the key's version and sets its revisions. It becomes [`Input::UnseenPut`], which is looser than an
//!   unknown put (it leaves the revision floor alone, and its revision is only bounded below by the revisions
//!   that returned before its call), so no valid order is lost. Its effect then no longer depends on where it
//!   stands among operations on other keys: given any valid order that places it, moving it later, to just
//!   before the next operation on its key, gives the same states; and that next operation cannot be a plain
//!   get, which would have returned the value. So the search only places it right before a non-get operation
//!   on its key.

use std::collections::HashMap;

use super::model::{Input, Output, Step, StepResult, Target};
use super::partition::Partition;

/// Tightens return times of observed unknown writes and marks never-observed unknown puts.
pub(crate) fn narrow(part: &mut Partition) {
    let mut writes: HashMap<(usize, u32), usize> = HashMap::new();
    let mut observed_by: HashMap<(usize, u32), u64> = HashMap::new();
    let mut compared: HashMap<(usize, u32), ()> = HashMap::new();
    for op in &part.ops {
        for (key, value) in written(&op.input) {
            *writes.entry((key, value)).or_default() += 1;
        }
        if let Input::Txn { compares, .. } = &op.input {
            for (key, target) in compares {
                if let Target::Value(v) = target {
                    compared.insert((*key, *v), ());
                }
            }
        }
        for (key, value) in read(&op.input, op.output.as_ref()) {
            let bound = observed_by.entry((key, value)).or_insert(op.ret);
            *bound = (*bound).min(op.ret);
        }
    }
    let mut acked: Vec<(u64, i64)> =
        part.ops.iter().filter_map(|op| op.output.as_ref().map(|out| (op.ret, out.revision()))).collect();
    acked.sort_unstable();
    let mut highest = 0;
    for (_, rev) in &mut acked {
        highest = highest.max(*rev);
        *rev = highest;
    }
    for op in part.ops.iter_mut().filter(|op| op.output.is_none()) {
        let unique: Vec<(usize, u32)> =
            written(&op.input).into_iter().filter(|kv| writes.get(kv) == Some(&1)).collect();
        if let Some(bound) = unique.iter().filter_map(|kv| observed_by.get(kv)).min() {
            op.ret = (*bound).max(op.call);
        } else if let (Input::Put(key, value), [_]) = (&op.input, unique.as_slice()) {
            if !compared.contains_key(&(*key, *value)) {
                let min = revision_before(&acked, op.call) + 1;
                op.input = Input::UnseenPut { key: *key, value: *value, min };
            }
        }
    }
}

/// The highest revision among acknowledged operations that returned before `time` (0 if none): an operation
/// called at `time` gets a higher revision if it writes. `acked` is sorted by return time, revisions made
/// running maxima.
fn revision_before(acked: &[(u64, i64)], time: u64) -> i64 {
    let n = acked.partition_point(|(ret, _)| *ret < time);
    n.checked_sub(1).map_or(0, |i| acked[i].1)
}

/// The (key, value) pairs an operation may write.
fn written(input: &Input) -> Vec<(usize, u32)> {
    match input {
        Input::Put(key, value) => vec![(*key, *value)],
        Input::Get(_) | Input::UnseenPut { .. } | Input::Delete(_) => Vec::new(),
        Input::Txn { success, failure, .. } => success
            .iter()
            .chain(failure)
            .filter_map(|s| match s {
                Step::Put(key, value) => Some((*key, *value)),
                Step::Get(_) | Step::Delete(_) => None,
            })
            .collect(),
    }
}

/// The (key, value) pairs an acknowledged operation read.
fn read(input: &Input, output: Option<&Output>) -> Vec<(usize, u32)> {
    match (input, output) {
        (Input::Get(key), Some(Output::Get { kv: Some(kv), .. })) => vec![(*key, kv.value)],
        (Input::Txn { success, failure, .. }, Some(Output::Txn { succeeded, results, .. })) => {
            let ops = if *succeeded { success } else { failure };
            ops.iter()
                .zip(results)
                .filter_map(|(op, result)| match (op, result) {
                    (Step::Get(key), StepResult::Get(Some(kv))) => Some((*key, kv.value)),
                    _ => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The key after which the next operation placed must be a non-get operation on that key, for an unseen put.
pub(crate) fn unseen_key(input: &Input) -> Option<usize> {
    match input {
        Input::UnseenPut { key, .. } => Some(*key),
        _ => None,
    }
}

/// Whether `input` may come right after a never-observed put on `key`: a non-get operation on that key.
pub(crate) fn may_follow_unobserved(input: &Input, key: usize) -> bool {
    match input {
        Input::Get(_) => false,
        Input::Put(k, _) | Input::UnseenPut { key: k, .. } | Input::Delete(k) => *k == key,
        Input::Txn { compares, success, failure } => {
            compares.iter().any(|(k, _)| *k == key)
                || success.iter().chain(failure).any(|s| match s {
                    Step::Get(k) | Step::Put(k, _) | Step::Delete(k) => *k == key,
                })
        }
    }
}
