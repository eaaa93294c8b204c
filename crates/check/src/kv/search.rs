//! Wing & Gong's linearizability search with Lowe's cache, as porcupine does it, on one partition.
//!
//! The history becomes a list of call and return entries in time order. The operations that may come next
//! are those whose call precedes the first return still listed. The search places one of them (the model must
//! accept it, and the pair (set of placed operations, resulting state) must be new, else that branch was
//! explored already), lifts its entries out of the list, and goes on. When none can be placed, it takes back
//! the last choice and tries the next candidate. Taking back the first choice means no order exists.
//! Operations of unknown outcome return "at infinity", so they may be placed anywhere after their call or left
//! out; once every known operation is placed the search succeeds.
//!
//! Candidates are tried in revision order (a write before a read at its revision), those of unknown outcome
//! last: acknowledged revisions almost always give the right order at once, so the search rarely backtracks.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::Instant;

use super::model::{step, Lax, Output, State};
use super::partition::Partition;
use super::unknown::{class, follow, may_follow, Class, Follow};

/// How a partition's search ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Linearizable,
    /// No order exists; the deepest dead end found.
    Illegal(DeadEnd),
    /// The deadline or the state budget ran out.
    GaveUp(&'static str),
}

/// The dead end with the most operations placed: where the search got furthest.
#[derive(Debug)]
pub(crate) struct DeadEnd {
    /// Partition-local operations placed, in order.
    pub(crate) placed: Vec<usize>,
    /// The state after them.
    pub(crate) state: State,
    /// The operation whose return comes first among those not placed.
    pub(crate) blocked: usize,
}

/// Limits of one search.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) deadline: Instant,
    pub(crate) max_states: usize,
}

/// A placed operation, with what to restore when it is taken back.
struct Frame {
    op: usize,
    before: State,
    /// Which of the model's next states was taken (0 or 1).
    alt: usize,
    pending: Option<Follow>,
}

/// A point of the search already explored: placed operations, state, and the rule the next operation must
/// follow.
struct Visited {
    placed: Box<[u64]>,
    state: State,
    pending: Option<Follow>,
}

/// The call/return entries not yet lifted, as a doubly linked list over arrays (node 0 is the head, the last
/// node the tail); lifting and restoring in LIFO order is O(1).
struct Entries {
    /// Per node: the operation and whether it is its call.
    node: Vec<(usize, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_of: Vec<usize>,
    ret_of: Vec<usize>,
}

impl Entries {
    fn new(part: &Partition) -> Self {
        let n = part.ops.len();
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in part.ops.iter().enumerate() {
            // Calls sort before returns at equal times: operations touching in time count as concurrent.
            order.push((op.call, false, i));
            order.push((op.ret, true, i));
        }
        order.sort_unstable();
        let mut node = vec![(0, false); 2 * n + 2];
        let (mut call_of, mut ret_of) = (vec![0; n], vec![0; n]);
        for (i, &(_, ret, op)) in order.iter().enumerate() {
            node[i + 1] = (op, !ret);
            if ret {
                ret_of[op] = i + 1;
            } else {
                call_of[op] = i + 1;
            }
        }
        let tail = 2 * n + 1;
        let mut next: Vec<usize> = (1..=tail + 1).collect();
        next[tail] = tail;
        let prev: Vec<usize> = (0..=tail).map(|i| i.saturating_sub(1)).collect();
        Self { node, next, prev, call_of, ret_of }
    }

    fn lift(&mut self, op: usize) {
        for node in [self.call_of[op], self.ret_of[op]] {
            self.next[self.prev[node]] = self.next[node];
            self.prev[self.next[node]] = self.prev[node];
        }
    }

    /// Undoes [`Entries::lift`]; undos must come in reverse order.
    fn restore(&mut self, op: usize) {
        for node in [self.ret_of[op], self.call_of[op]] {
            self.next[self.prev[node]] = node;
            self.prev[self.next[node]] = node;
        }
    }

    /// Operations called before the first listed return, and that returning operation.
    fn candidates(&self, out: &mut Vec<usize>) -> Option<usize> {
        out.clear();
        let mut node = self.next[0];
        while node != self.next[node] {
            let (op, call) = self.node[node];
            if !call {
                return Some(op);
            }
            out.push(op);
            node = self.next[node];
        }
        None
    }
}

/// Acknowledged operations in the order their revisions force: by revision, a write before the reads at its
/// revision. Placing one before another of lower rank would leave the latter below the revision floor for
/// good, so only the lowest unplaced rank (several reads may share it) may come next.
struct KnownOrder {
    sorted: Vec<usize>,
    /// Per operation, its index in `sorted` (unused for unknown outcomes).
    pos: Vec<usize>,
    done: Vec<bool>,
    /// The first index of `sorted` not placed.
    first: usize,
}

impl KnownOrder {
    fn new(ranks: &[Rank]) -> Self {
        let mut sorted: Vec<usize> = (0..ranks.len()).filter(|&op| !ranks[op].0).collect();
        sorted.sort_unstable_by_key(|&op| ranks[op]);
        let mut pos = vec![usize::MAX; ranks.len()];
        for (i, &op) in sorted.iter().enumerate() {
            pos[op] = i;
        }
        Self { done: vec![false; sorted.len()], sorted, pos, first: 0 }
    }

    fn all_placed(&self) -> bool {
        self.first == self.sorted.len()
    }

    fn allows(&self, ranks: &[Rank], op: usize) -> bool {
        let (unknown, rev, read, _) = ranks[op];
        unknown || self.sorted.get(self.first).is_some_and(|&f| ranks[f].1 == rev && ranks[f].2 == read)
    }

    fn place(&mut self, op: usize) {
        if let Some(done) = self.done.get_mut(self.pos[op]) {
            *done = true;
        }
        while self.done.get(self.first) == Some(&true) {
            self.first += 1;
        }
    }

    fn take_back(&mut self, op: usize) {
        if let Some(done) = self.done.get_mut(self.pos[op]) {
            *done = false;
            self.first = self.first.min(self.pos[op]);
        }
    }
}

/// Unknown outcome, revision, whether it only read, call time.
type Rank = (bool, i64, bool, u64);

/// The order candidates are tried in: known before unknown outcome, then by revision, writes before reads.
fn rank(output: Option<&Output>, call: u64) -> Rank {
    match output {
        None => (true, 0, false, call),
        Some(out) => (false, out.revision(), !wrote_output(out), call),
    }
}

fn wrote_output(out: &Output) -> bool {
    use super::model::StepResult;
    match out {
        Output::Get { .. } => false,
        Output::Put { .. } => true,
        Output::Delete { deleted, .. } => *deleted > 0,
        Output::Txn { results, .. } => results
            .iter()
            .any(|r| matches!(r, StepResult::Put) || matches!(r, StepResult::Delete(d) if *d > 0)),
    }
}

/// Searches for a linearization of `part`.
pub(crate) fn search(part: &Partition, limits: Limits) -> Outcome {
    let n = part.ops.len();
    let ranks: Vec<Rank> = part.ops.iter().map(|op| rank(op.output.as_ref(), op.call)).collect();
    let mut known = KnownOrder::new(&ranks);
    let mut entries = Entries::new(part);
    let hasher = std::collections::hash_map::RandomState::new();
    let op_hash: Vec<u64> = (0..n).map(|i| hasher.hash_one(i)).collect();
    let mut cache: HashMap<u64, Vec<Visited>> = HashMap::new();
    let mut cached = 0usize;
    let mut placed = vec![0u64; n.div_ceil(64)];
    let mut placed_hash = 0u64;
    let mut state = State::empty(part.keys.len());
    let mut pending: Option<Follow> = None;
    let classes: Vec<Option<Class>> = part.ops.iter().map(class).collect();
    let mut seen_classes: Vec<Class> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut deepest: Option<DeadEnd> = None;
    // After taking an operation back: continue with it, from this alternative on.
    let mut resume: Option<(usize, usize)> = None;
    let mut cands = Vec::new();
    let mut steps = 0u64;

    while !known.all_placed() {
        steps += 1;
        if steps.is_multiple_of(1024) && Instant::now() >= limits.deadline {
            return Outcome::GaveUp("the time budget ran out");
        }
        if cached > limits.max_states {
            return Outcome::GaveUp("the state budget ran out");
        }
        let first_return = entries.candidates(&mut cands);
        cands.sort_unstable_by_key(|&op| ranks[op]);
        // Of interchangeable candidates only the earliest called (they sort by call) is tried.
        seen_classes.clear();
        cands.retain(|&op| match classes[op] {
            Some(c) if seen_classes.contains(&c) => false,
            Some(c) => {
                seen_classes.push(c);
                true
            }
            None => true,
        });
        let (start, mut first_alt) = match resume.take() {
            Some((op, alt)) => (cands.iter().position(|&c| c == op).unwrap_or(cands.len()), alt),
            None => (0, 0),
        };
        let mut taken = None;
        for &op in &cands[start..] {
            let candidate = &part.ops[op];
            let alt_from = std::mem::take(&mut first_alt);
            if !known.allows(&ranks, op) || !pending.is_none_or(|rule| may_follow(&candidate.input, rule)) {
                continue;
            }
            let lax = Lax { from: &part.lax_from, at: candidate.ret };
            let Ok((a, b)) = step(&state, &candidate.input, candidate.output.as_ref(), lax) else { continue };
            let after = follow(candidate);
            flip(&mut placed, op);
            let with_op = placed_hash ^ op_hash[op] ^ hasher.hash_one(after);
            for (alt, next_state) in [Some(a), b].into_iter().enumerate().skip(alt_from) {
                let Some(next_state) = next_state else { continue };
                if candidate.output.is_none() && next_state == state {
                    // Taking effect without changing anything is the same as never taking effect, which an
                    // operation of unknown outcome may always do: nothing to explore.
                    continue;
                }
                let bucket = cache.entry(with_op ^ hasher.hash_one(&next_state)).or_default();
                if bucket
                    .iter()
                    .any(|v| v.pending == after && v.state == next_state && v.placed[..] == placed[..])
                {
                    continue;
                }
                bucket.push(Visited {
                    placed: placed.clone().into_boxed_slice(),
                    state: next_state.clone(),
                    pending: after,
                });
                cached += 1;
                taken = Some((op, alt, next_state));
                break;
            }
            if taken.is_some() {
                break;
            }
            flip(&mut placed, op);
        }
        if let Some((op, alt, next_state)) = taken {
            placed_hash ^= op_hash[op];
            entries.lift(op);
            known.place(op);
            let before = std::mem::replace(&mut state, next_state);
            stack.push(Frame { op, before, alt, pending });
            pending = follow(&part.ops[op]);
            continue;
        }
        // Dead end: nothing can come next.
        let blocked = first_return.unwrap_or_default();
        if deepest.as_ref().is_none_or(|d| stack.len() > d.placed.len()) {
            deepest =
                Some(DeadEnd { placed: stack.iter().map(|f| f.op).collect(), state: state.clone(), blocked });
        }
        let Some(frame) = stack.pop() else {
            return Outcome::Illegal(deepest.unwrap_or(DeadEnd { placed: Vec::new(), state, blocked }));
        };
        state = frame.before;
        pending = frame.pending;
        flip(&mut placed, frame.op);
        placed_hash ^= op_hash[frame.op];
        entries.restore(frame.op);
        known.take_back(frame.op);
        resume = Some((frame.op, frame.alt + 1));
    }
    Outcome::Linearizable
}

fn flip(bits: &mut [u64], i: usize) {
    bits[i / 64] ^= 1 << (i % 64);
}
