//! Checks on the global revision that partitions cannot see: acknowledged writes have distinct revisions, and
//! header revisions never go back in real time (an operation that starts after another returned sees at least
//! its revision, and a write gets a revision above it).

use std::collections::HashMap;

use super::op::{Operation, Response, TxnOpResult};
use super::Violation;

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
    unique_revisions(history).or_else(|| real_time(history))
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
