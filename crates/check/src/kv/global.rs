//! Checks across partitions, before the search: reads no store could answer, reads that missed an
//! acknowledged write, and on the global revision, which partitions cannot see: acknowledged writes have distinct revisions, and
//! header revisions never go back in real time (an operation that starts after another returned sees at least
//! its revision, and a write gets a revision above it).

use std::collections::{HashMap, HashSet};

use super::op::{Operation, Request, Response, TxnOp, TxnOpResult};
use super::Violation;
use crate::KeyValue;

/// Whether an acknowledged response says its operation changed the store (and so owns its revision).
pub(crate) fn wrote(response: &Response) -> bool {
    match response {
        Response::Get { .. } => false,
        Response::Put { .. } => true,
        Response::Delete { deleted, .. } => *deleted > 0,
        Response::Txn { results, .. } => results.iter().any(|r| {
            matches!(r, TxnOpResult::Put) || matches!(r, TxnOpResult::Delete { deleted } if *deleted > 0)
        }),
    }
}

/// The first global violation found, if any.
pub(crate) fn check(history: &[Operation]) -> Option<Violation> {
    impossible_reads(history)
        .or_else(|| unique_revisions(history))
        .or_else(|| real_time(history))
        .or_else(|| overwritten_reads(history))
}

/// Reads that missed an acknowledged write to their key: a read at header revision h returns the key as of
/// h, so its mod revision m is the key's last change at or before h, and no acknowledged write to the key
/// (by another operation) can have a revision in (m, h].
fn overwritten_reads(history: &[Operation]) -> Option<Violation> {
    let mut writes: HashMap<&[u8], Vec<(i64, usize)>> = HashMap::new();
    for (i, op) in history.iter().enumerate() {
        let Some(resp) = op.response.as_ref().filter(|r| wrote(r)) else { continue };
        for key in written_keys(&op.request, resp) {
            writes.entry(key).or_default().push((resp.revision(), i));
        }
    }
    for list in writes.values_mut() {
        list.sort_unstable();
    }
    for (i, op) in history.iter().enumerate() {
        let Some(resp) = &op.response else { continue };
        for (key, kv) in reads(&op.request, resp) {
            let Some(list) = writes.get(key) else { continue };
            let from = list.partition_point(|&(rev, _)| rev <= kv.mod_revision);
            let missed =
                list[from..].iter().take_while(|&&(rev, _)| rev <= resp.revision()).find(|&&(_, w)| w != i);
            if let Some(&(rev, w)) = missed {
                return Some(Violation::new(
                    history,
                    vec![w, i],
                    format!(
                        "a read at revision {} saw the key as of revision {}, missing the write at revision {rev}",
                        resp.revision(),
                        kv.mod_revision
                    ),
                ));
            }
        }
    }
    None
}

/// The keys an acknowledged write changed.
fn written_keys<'h>(request: &'h Request, response: &'h Response) -> Vec<&'h [u8]> {
    match (request, response) {
        (Request::Put { key, .. }, _) => vec![key.as_slice()],
        (Request::Delete { key }, Response::Delete { deleted, .. }) if *deleted > 0 => vec![key.as_slice()],
        (Request::Txn(txn), Response::Txn { succeeded, results, .. }) => {
            let ops = if *succeeded { &txn.success } else { &txn.failure };
            ops.iter()
                .zip(results)
                .filter_map(|(op, result)| match (op, result) {
                    (TxnOp::Put(key, _), TxnOpResult::Put) => Some(key.as_slice()),
                    (TxnOp::Delete(key), TxnOpResult::Delete { deleted }) if *deleted > 0 => {
                        Some(key.as_slice())
                    }
                    _ => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Reads no store could return whatever the order: a value nobody wrote to that key, or revisions out of
/// their bounds (1 <= create <= mod <= header revision, version >= 1). Found here at once, where the search
/// would have to try every order first.
fn impossible_reads(history: &[Operation]) -> Option<Violation> {
    let mut written: HashSet<(&[u8], &[u8])> = HashSet::new();
    for op in history {
        match &op.request {
            Request::Put { key, value } => {
                written.insert((key, value));
            }
            Request::Txn(txn) => {
                for step in txn.success.iter().chain(&txn.failure) {
                    if let TxnOp::Put(key, value) = step {
                        written.insert((key, value));
                    }
                }
            }
            Request::Get { .. } | Request::Delete { .. } => {}
        }
    }
    for (i, op) in history.iter().enumerate() {
        let Some(resp) = &op.response else { continue };
        for (key, kv) in reads(&op.request, resp) {
            let why = if !written.contains(&(key, kv.value.as_slice())) {
                "it read a value nobody wrote to that key"
            } else if kv.create_revision < 1 || kv.create_revision > kv.mod_revision {
                "its create revision is not between 1 and its mod revision"
            } else if kv.mod_revision > resp.revision() {
                "its mod revision is above its header revision"
            } else if kv.version < 1 {
                "its version is below 1"
            } else {
                continue;
            };
            return Some(Violation::new(history, vec![i], format!("no store could answer this read: {why}")));
        }
    }
    None
}

/// The key-values an acknowledged operation read, with their keys.
fn reads<'h>(request: &'h Request, response: &'h Response) -> Vec<(&'h [u8], &'h KeyValue)> {
    match (request, response) {
        (Request::Get { key }, Response::Get { kv: Some(kv), .. }) => vec![(key.as_slice(), kv)],
        (Request::Txn(txn), Response::Txn { succeeded, results, .. }) => {
            let ops = if *succeeded { &txn.success } else { &txn.failure };
            ops.iter()
                .zip(results)
                .filter_map(|(op, result)| match (op, result) {
                    (TxnOp::Get(key), TxnOpResult::Get(Some(kv))) => Some((key.as_slice(), kv)),
                    _ => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

fn unique_revisions(history: &[Operation]) -> Option<Violation> {
    let mut owner: HashMap<i64, usize> = HashMap::new();
    for (i, op) in history.iter().enumerate() {
        let Some(resp) = op.response.as_ref().filter(|r| wrote(r)) else { continue };
        if let Some(&first) = owner.get(&resp.revision()) {
            return Some(Violation::new(
                history,
                vec![first, i],
                format!("two acknowledged writes got the same revision {}", resp.revision()),
            ));
        }
        owner.insert(resp.revision(), i);
    }
    None
}

fn real_time(history: &[Operation]) -> Option<Violation> {
    let acked: Vec<usize> = (0..history.len()).filter(|&i| history[i].response.is_some()).collect();
    let rev = |i: usize| history[i].response.as_ref().map_or(0, Response::revision);
    let mut by_call = acked.clone();
    by_call.sort_by_key(|&i| history[i].call);
    let mut by_ret = acked;
    by_ret.sort_by_key(|&i| history[i].ret);
    let mut done = 0;
    // The operation with the highest revision among those that returned before the current call.
    let mut highest: Option<usize> = None;
    for b in by_call {
        while done < by_ret.len() && history[by_ret[done]].ret < history[b].call {
            let a = by_ret[done];
            if highest.is_none_or(|h| rev(a) > rev(h)) {
                highest = Some(a);
            }
            done += 1;
        }
        let Some(a) = highest else { continue };
        let is_write = history[b].response.as_ref().is_some_and(wrote);
        if rev(b) < rev(a) || (is_write && rev(b) == rev(a)) {
            let what = if is_write { "a write at revision" } else { "a read at header revision" };
            return Some(Violation::new(
                history,
                vec![a, b],
                format!(
                    "{what} {} started after an operation at revision {} had returned: revisions went back in \
                     real time",
                    rev(b),
                    rev(a)
                ),
            ));
        }
    }
    None
}
