//! Narrowing down operations of unknown outcome before and during the search, so that it does not try them
//! everywhere. Each step only makes the model looser (it accepts every order it accepted before), so no
//! linearizable history is rejected.
//!
//! Before the search, relying on values written once per key (tests write unique values; a value written
//! twice is left alone):
//! - **Observed**: when a read returned the value (or a successful compare matched it), the write must come
//!   before that read, so before it returned: the earliest such return becomes the write's return time. A
//!   plain put whose value was read with its mod revision took effect at that revision: it becomes an
//!   acknowledged put at that revision.
//! - **Never observed** (a put whose value no read returned, no successful compare matched, and no compare of
//!   a transaction of unknown outcome mentions): taking effect
//!   would only have bumped its key's version and set its create revision, since another write must have
//!   replaced the value before anyone read the key. Such puts leave the search; instead their key becomes
//!   *lax* for every operation returning after the earliest such call ([`Lax`](super::model::Lax)): reads may
//!   see a higher version and a lower create revision than the model's, deletes may find the key, and
//!   compares on version and revisions may go either way. A transaction of unknown outcome that wrote no
//!   observed value likewise becomes its deletes alone, each optional, whatever its compares.
//!
//! During the search, deletes of unknown outcome leave the revision floor alone, so their effect depends only
//! on their key's state ([`Follow`], [`Class`]):
//! - given any valid order that places one, moving it later, to just before the next operation on its key,
//!   gives the same states; so it is only placed right before an operation on its key;
//! - two on the same key are interchangeable once both are called: only the earliest called is tried.

use std::collections::HashMap;

use super::model::{Input, Output, Step, StepResult, Target};
use super::partition::{PartOp, Partition};

/// Tightens return times of observed unknown writes, pins those whose revision a read saw, and replaces
/// never-observed unknown puts by lax keys.
pub(crate) fn narrow(part: &mut Partition) {
    let mut writes: HashMap<(usize, u32), usize> = HashMap::new();
    let mut observed_by: HashMap<(usize, u32), u64> = HashMap::new();
    // The mod revision a read saw with the value: the revision of its only write.
    let mut observed_rev: HashMap<(usize, u32), i64> = HashMap::new();
    let mut needed: HashMap<(usize, u32), ()> = HashMap::new();
    for op in &part.ops {
        for (key, value) in written(&op.input) {
            *writes.entry((key, value)).or_default() += 1;
        }
        if let (Input::Txn { compares, .. }, None) = (&op.input, &op.output) {
            // A transaction of unknown outcome that compares a value may need it: not unseen, not bounded.
            for (key, target) in compares {
                if let Target::Value(v) = target {
                    needed.insert((*key, *v), ());
                }
            }
        }
        for (key, value, revision) in read(&op.input, op.output.as_ref()) {
            if let Some(revision) = revision {
                observed_rev.entry((key, value)).or_insert(revision);
            }
            let bound = observed_by.entry((key, value)).or_insert(op.ret);
            *bound = (*bound).min(op.ret);
        }
    }
    let unseen = |kv: &(usize, u32)| {
        writes.get(kv) == Some(&1) && !observed_by.contains_key(kv) && !needed.contains_key(kv)
    };
    let mut narrowed = Vec::with_capacity(part.ops.len());
    let mut lax_from = vec![u64::MAX; part.keys.len()];
    let mut lax = |key: usize, call: u64| {
        if let Some(from) = lax_from.get_mut(key) {
            *from = (*from).min(call);
        }
    };
    for mut op in std::mem::take(&mut part.ops) {
        if op.output.is_some() {
            narrowed.push(op);
            continue;
        }
        let written = written(&op.input);
        let bound =
            written.iter().filter(|kv| writes.get(kv) == Some(&1)).filter_map(|kv| observed_by.get(kv)).min();
        if let Some(bound) = bound {
            op.ret = (*bound).max(op.call);
            if let Input::Put(key, value) = op.input {
                if let Some(&revision) =
                    observed_rev.get(&(key, value)).filter(|_| writes.get(&(key, value)) == Some(&1))
                {
                    // A read saw its value with its revision: the put took effect, at that revision.
                    op.output = Some(Output::Put { revision });
                }
            }
            narrowed.push(op);
        } else if !written.iter().all(unseen) {
            narrowed.push(op);
        } else {
            match &op.input {
                Input::Put(key, _) => lax(*key, op.call),
                Input::Txn { success, failure, .. } => {
                    for s in success.iter().chain(failure) {
                        match s {
                            Step::Put(key, _) => lax(*key, op.call),
                            Step::Delete(key) => {
                                narrowed.push(PartOp { input: Input::Delete(*key), ..op.clone() })
                            }
                            Step::Get(_) => {}
                        }
                    }
                }
                Input::Get(_) | Input::Delete(_) => narrowed.push(op),
            }
        }
    }
    part.ops = narrowed;
    part.lax_from = lax_from;
}

/// The (key, value) pairs an operation may write.
fn written(input: &Input) -> Vec<(usize, u32)> {
    match input {
        Input::Put(key, value) => vec![(*key, *value)],
        Input::Get(_) | Input::Delete(_) => Vec::new(),
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

/// The (key, value) pairs an acknowledged operation observed, with the mod revision when it read them: read,
/// or compared equal in a transaction that succeeded. (A failed compare observes nothing: an unseen put's value compares unequal to everything.)
fn read(input: &Input, output: Option<&Output>) -> Vec<(usize, u32, Option<i64>)> {
    match (input, output) {
        (Input::Get(key), Some(Output::Get { kv: Some(kv), .. })) => vec![(*key, kv.value, Some(kv.modr))],
        (Input::Txn { compares, success, failure }, Some(Output::Txn { succeeded, results, .. })) => {
            let ops = if *succeeded { success } else { failure };
            let compared = compares.iter().filter(|_| *succeeded).filter_map(|(key, target)| match target {
                Target::Value(v) => Some((*key, *v, None)),
                _ => None,
            });
            ops.iter()
                .zip(results)
                .filter_map(|(op, result)| match (op, result) {
                    (Step::Get(key), StepResult::Get(Some(kv))) => Some((*key, kv.value, Some(kv.modr))),
                    _ => None,
                })
                .chain(compared)
                .collect()
        }
        _ => Vec::new(),
    }
}

/// What must come right after a delete of unknown outcome: an operation on `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Follow {
    key: usize,
}

/// The [`Follow`] rule an operation sets, if any.
pub(crate) fn follow(op: &PartOp) -> Option<Follow> {
    match (&op.input, &op.output) {
        (Input::Delete(key), None) => Some(Follow { key: *key }),
        _ => None,
    }
}

/// Whether `input` may come right after an operation that set `rule`.
pub(crate) fn may_follow(input: &Input, rule: Follow) -> bool {
    let key = rule.key;
    match input {
        Input::Get(k) | Input::Put(k, _) | Input::Delete(k) => *k == key,
        Input::Txn { compares, success, failure } => {
            compares.iter().any(|(k, _)| *k == key)
                || success.iter().chain(failure).any(|s| match s {
                    Step::Get(k) | Step::Put(k, _) | Step::Delete(k) => *k == key,
                })
        }
    }
}

/// Operations of the same class have the same effect wherever they stand: deletes of unknown outcome on one
/// key.
pub(crate) type Class = usize;

/// The class of an operation, if it has one.
pub(crate) fn class(op: &PartOp) -> Option<Class> {
    match (&op.input, &op.output) {
        (Input::Delete(key), None) => Some(*key),
        _ => None,
    }
}
