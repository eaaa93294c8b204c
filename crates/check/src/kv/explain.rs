//! Turning the search's furthest dead end into a [`Violation`] a human can follow.

use std::fmt::Write as _;

use super::model::{describe_state, step, Input, Lax, Step};
use super::op::Operation;
use super::partition::Partition;
use super::search::DeadEnd;
use super::Violation;
use crate::show;

/// Candidates listed besides the blocked operation.
const MAX_OTHERS: usize = 6;

/// Explains why `part` has no linearization, from the dead end where the search got furthest: the state
/// there, who wrote it, the operation that had to come next, and why neither it nor any other pending
/// operation fits.
pub(crate) fn explain(history: &[Operation], part: &Partition, dead: &DeadEnd) -> Violation {
    let blocked = &part.ops[dead.blocked];
    let mut ops = Vec::new();
    let mut text = format!(
        "no order of the {} operations on these keys respects both real time and etcd's semantics. The furthest \
         order found places {} of them, reaching revision {} or later, where:",
        part.ops.len(),
        dead.placed.len(),
        dead.state.floor
    );
    for key in touched(&blocked.input) {
        let name = part.keys.get(key).map_or_else(String::new, |k| show(k));
        let _ = write!(text, "\n  {name:?} = ");
        describe_state(&mut text, dead.state.keys.get(key).copied().flatten().as_ref(), &part.values);
        let writer = dead.placed.iter().rev().find(|&&p| writes(&part.ops[p].input, key));
        if let Some(&w) = writer {
            let index = part.ops[w].index;
            let _ = write!(text, ", last written by #{index}");
            ops.push(index);
        }
    }
    let why = |op: usize| match step(
        &dead.state,
        &part.ops[op].input,
        part.ops[op].output.as_ref(),
        Lax { from: &part.lax_from, at: part.ops[op].ret },
    ) {
        Err(m) => m.describe(&part.keys, &part.values),
        Ok(_) => "it fits here, but every order continuing with it fails later".to_owned(),
    };
    let _ = write!(
        text,
        "\n#{} returned before anything else could be placed, and cannot come next: {}",
        blocked.index,
        why(dead.blocked)
    );
    ops.push(blocked.index);
    let others: Vec<usize> = (0..part.ops.len())
        .filter(|&o| o != dead.blocked && !dead.placed.contains(&o))
        .filter(|&o| part.ops[o].call <= blocked.ret && part.ops[o].output.is_some())
        .take(MAX_OTHERS)
        .collect();
    for o in others {
        let _ = write!(text, "\n#{} was pending too: {}", part.ops[o].index, why(o));
        ops.push(part.ops[o].index);
    }
    Violation::new(history, ops, text)
}

/// Keys an operation reads or writes.
fn touched(input: &Input) -> Vec<usize> {
    let mut keys = match input {
        Input::Get(k) | Input::Put(k, _) | Input::Delete(k) => vec![*k],
        Input::Txn { compares, success, failure } => compares
            .iter()
            .map(|(k, _)| *k)
            .chain(success.iter().chain(failure).map(|s| match s {
                Step::Get(k) | Step::Put(k, _) | Step::Delete(k) => *k,
            }))
            .collect(),
    };
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn writes(input: &Input, key: usize) -> bool {
    match input {
        Input::Get(_) => false,
        Input::Put(k, _) | Input::Delete(k) => *k == key,
        Input::Txn { success, failure, .. } => {
            success.iter().chain(failure).any(|s| matches!(s, Step::Put(k, _) | Step::Delete(k) if *k == key))
        }
    }
}
