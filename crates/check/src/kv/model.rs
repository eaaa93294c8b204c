//! The sequential model of etcd's KV on one partition (a set of keys no operation crosses), with revisions.
//!
//! The global revision couples all keys, so a partition cannot know it exactly. What it knows is a *floor*: the
//! revision the store had at least reached at the current point of the linearization. In any legal global
//! order header revisions never decrease and each write gets a revision above every earlier one, so within a
//! partition: a read at header revision `h` needs `h >= floor` (then `floor = h`); a write at revision `r` needs
//! `r > floor` (then `floor = r`). A write whose outcome is unknown gets an unknown revision above the floor;
//! its key then holds [`Rev::Unknown`], which a later read or compare binds to the revision it observed.
//!
//! These are necessary conditions of etcd's global model restricted to the partition, so the model never
//! rejects a linearizable history; see [`crate::kv`] for what the global checks add.

use std::fmt::Write as _;

use crate::show;

/// A revision of a key: known, or written by an operation of unknown outcome, so only bounded below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Rev {
    Known(i64),
    Unknown { min: i64 },
}

impl Rev {
    /// Whether the revision can be `x`.
    fn may_be(self, x: i64) -> bool {
        match self {
            Self::Known(r) => r == x,
            Self::Unknown { min } => x >= min,
        }
    }

    /// Whether the revision can be above `x` (`x` a valid revision).
    fn may_be_above(self, x: i64) -> bool {
        match self {
            Self::Known(r) => r > x,
            Self::Unknown { .. } => x >= 1,
        }
    }
}

/// One key's state: the interned value and its revisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyState {
    pub(crate) value: u32,
    pub(crate) create: Rev,
    pub(crate) modr: Rev,
    pub(crate) version: i64,
}

/// A key-value as a read reported it, with the value interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadKv {
    pub(crate) value: u32,
    pub(crate) create: i64,
    pub(crate) modr: i64,
    pub(crate) version: i64,
}

/// The partition's state: its keys (by local index) and the revision floor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct State {
    pub(crate) floor: i64,
    pub(crate) keys: Box<[Option<KeyState>]>,
}

impl State {
    /// Every key absent, before revision 1.
    pub(crate) fn empty(keys: usize) -> Self {
        Self { floor: 0, keys: vec![None; keys].into_boxed_slice() }
    }
}

/// A compare target with the value interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Value(u32),
    Version(i64),
    Create(i64),
    Mod(i64),
}

/// An operation inside a transaction, keys as local indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Get(usize),
    Put(usize, u32),
    Delete(usize),
}

/// A request with keys as local indices and values interned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    Get(usize),
    Put(usize, u32),
    Delete(usize),
    Txn { compares: Vec<(usize, Target)>, success: Vec<Step>, failure: Vec<Step> },
}

/// The result of one transaction operation, values interned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StepResult {
    Get(Option<ReadKv>),
    Put,
    Delete(i64),
}

/// A response with values interned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Get { revision: i64, kv: Option<ReadKv> },
    Put { revision: i64 },
    Delete { revision: i64, deleted: i64 },
    Txn { revision: i64, succeeded: bool, results: Vec<StepResult> },
}

impl Output {
    /// The response header's revision.
    pub(crate) fn revision(&self) -> i64 {
        match self {
            Self::Get { revision, .. }
            | Self::Put { revision }
            | Self::Delete { revision, .. }
            | Self::Txn { revision, .. } => *revision,
        }
    }
}

/// Why an operation cannot come next: rendered for humans by [`Mismatch::describe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// A read's header revision is below a revision already reached.
    ReadBehind { revision: i64, floor: i64 },
    /// A write's revision is not above every revision already reached.
    WriteBehind { revision: i64, floor: i64 },
    /// A read saw something other than the key's state.
    Read { key: usize, state: Option<KeyState>, got: Option<ReadKv> },
    /// A delete reported a count the key's existence contradicts.
    Deleted { key: usize, exists: bool, deleted: i64 },
    /// A transaction took the branch its compares contradict.
    Branch { succeeded: bool },
    /// A transaction's results do not match the operations of its branch.
    Shape,
}

/// Keys whose version and create revision an operation may see higher (version) or lower (create) than the
/// model says, because puts nobody saw the value of (dropped from the search, see [`super::unknown`]) may
/// have taken effect before it: `from[key]` is the earliest call of such a put, `at` the operation's return.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lax<'a> {
    pub(crate) from: &'a [u64],
    pub(crate) at: u64,
}

impl Lax<'_> {
    fn holds(self, key: usize) -> bool {
        self.from.get(key).is_some_and(|&from| from < self.at)
    }
}

/// The states an operation may lead to: one, or two when a transaction of unknown outcome compares a revision
/// written by another operation of unknown outcome (the compare may hold or not).
pub(crate) type Next = (State, Option<State>);

/// Applies `input` with `output` (`None`: unknown outcome) to `state`.
pub(crate) fn step(
    state: &State,
    input: &Input,
    output: Option<&Output>,
    lax: Lax<'_>,
) -> Result<Next, Mismatch> {
    let mut next = state.clone();
    match (input, output) {
        (Input::Get(key), Some(Output::Get { revision, kv })) => {
            read_at(&mut next, *revision)?;
            read(&mut next, *key, kv.as_ref(), *revision, lax.holds(*key))?;
        }
        (Input::Put(key, value), Some(Output::Put { revision })) => {
            write_at(&mut next, *revision)?;
            put(&mut next, *key, *value, Rev::Known(*revision));
        }
        (Input::Put(key, value), None) => {
            next.floor += 1;
            let rev = Rev::Unknown { min: next.floor };
            put(&mut next, *key, *value, rev);
        }
        (Input::Delete(key), Some(Output::Delete { revision, deleted })) => {
            // A lax key may exist through a put nobody saw the value of.
            let exists = next.keys[*key].is_some() || (lax.holds(*key) && *deleted == 1);
            if i64::from(exists) != *deleted {
                return Err(Mismatch::Deleted { key: *key, exists, deleted: *deleted });
            }
            if exists {
                write_at(&mut next, *revision)?;
                next.keys[*key] = None;
            } else {
                read_at(&mut next, *revision)?;
            }
        }
        (Input::Delete(key), None) => {
            // It leaves the floor alone so that its effect does not depend on its place (see super::unknown).
            next.keys[*key] = None;
        }
        (Input::Txn { compares, success, failure }, Some(Output::Txn { revision, succeeded, results })) => {
            if !compares_can_be(&mut next, compares, *succeeded, lax) {
                return Err(Mismatch::Branch { succeeded: *succeeded });
            }
            let ops = if *succeeded { success } else { failure };
            txn_known(&mut next, ops, results, *revision, lax)?;
        }
        (Input::Txn { compares, success, failure }, None) => {
            let mut other = None;
            let mut holds = next.clone();
            if compares_can_be(&mut holds, compares, true, lax) {
                if compares_can_be(&mut next.clone(), compares, false, lax) {
                    txn_unknown(&mut next, failure);
                    txn_unknown(&mut holds, success);
                    other = Some(holds);
                } else {
                    next = holds;
                    txn_unknown(&mut next, success);
                }
            } else {
                txn_unknown(&mut next, failure);
            }
            return Ok((next, other));
        }
        _ => return Err(Mismatch::Shape),
    }
    Ok((next, None))
}

fn read_at(state: &mut State, revision: i64) -> Result<(), Mismatch> {
    if revision < state.floor {
        return Err(Mismatch::ReadBehind { revision, floor: state.floor });
    }
    state.floor = revision;
    Ok(())
}

fn write_at(state: &mut State, revision: i64) -> Result<(), Mismatch> {
    if revision <= state.floor {
        return Err(Mismatch::WriteBehind { revision, floor: state.floor });
    }
    state.floor = revision;
    Ok(())
}

fn put(state: &mut State, key: usize, value: u32, rev: Rev) {
    let slot = &mut state.keys[key];
    *slot = Some(match *slot {
        Some(old) => KeyState { value, create: old.create, modr: rev, version: old.version + 1 },
        None => KeyState { value, create: rev, modr: rev, version: 1 },
    });
}

/// Checks a read of `key` at header revision `revision`, binding unknown revisions to what it saw. With
/// `lax`, the version may be higher and the create revision lower than the model's (then bound to them).
fn read(
    state: &mut State,
    key: usize,
    got: Option<&ReadKv>,
    revision: i64,
    lax: bool,
) -> Result<(), Mismatch> {
    let slot = &mut state.keys[key];
    let bound = match (slot.as_ref(), got) {
        (None, None) => return Ok(()),
        (Some(s), Some(g))
            if s.value == g.value
                && (s.version == g.version || (lax && g.version > s.version))
                && (s.create.may_be(g.create) || (lax && s.create.may_be_above(g.create)))
                && s.modr.may_be(g.modr)
                && g.modr <= revision =>
        {
            KeyState { create: Rev::Known(g.create), modr: Rev::Known(g.modr), version: g.version, ..*s }
        }
        _ => return Err(Mismatch::Read { key, state: *slot, got: got.copied() }),
    };
    *slot = Some(bound);
    Ok(())
}

/// Whether the compares can all hold (`want`) or not all hold (`!want`); binds unknown revisions when they
/// must equal the compared revision for every compare to hold.
fn compares_can_be(state: &mut State, compares: &[(usize, Target)], want: bool, lax: Lax<'_>) -> bool {
    let mut any_false = false;
    let mut any_maybe = false;
    for &(key, target) in compares {
        let slot = &mut state.keys[key];
        let holds = match (slot.as_mut(), target) {
            (None, Target::Value(_)) => Some(false),
            (Some(s), Target::Value(v)) => Some(s.value == v),
            // A lax key may exist, or have another version and revisions, through a put nobody saw the value
            // of: compares on them may go either way.
            (_, Target::Version(_) | Target::Create(_) | Target::Mod(_)) if lax.holds(key) => None,
            (None, Target::Version(x) | Target::Create(x) | Target::Mod(x)) => Some(x == 0),
            (Some(s), Target::Version(x)) => Some(s.version == x),
            (Some(s), Target::Create(x)) => compare_rev(&mut s.create, x, want),
            (Some(s), Target::Mod(x)) => compare_rev(&mut s.modr, x, want),
        };
        match holds {
            Some(true) => {}
            Some(false) => any_false = true,
            None => any_maybe = true,
        }
    }
    if want {
        !any_false
    } else {
        any_false || any_maybe
    }
}

/// Compares a revision with `x`: `Some` when known; for an unknown one that may be `x`, binds it when the
/// compare must hold (`want`) and says `None` (either way) otherwise.
fn compare_rev(rev: &mut Rev, x: i64, want: bool) -> Option<bool> {
    match *rev {
        Rev::Known(r) => Some(r == x),
        Rev::Unknown { min } if x >= min => {
            if want {
                *rev = Rev::Known(x);
                Some(true)
            } else {
                None
            }
        }
        Rev::Unknown { .. } => Some(false),
    }
}

fn txn_known(
    state: &mut State,
    ops: &[Step],
    results: &[StepResult],
    revision: i64,
    lax: Lax<'_>,
) -> Result<(), Mismatch> {
    if ops.len() != results.len() {
        return Err(Mismatch::Shape);
    }
    let mut wrote = false;
    for (op, result) in ops.iter().zip(results) {
        match (*op, result) {
            (Step::Get(key), StepResult::Get(got)) => {
                read(state, key, got.as_ref(), revision, lax.holds(key))?
            }
            (Step::Put(key, value), StepResult::Put) => {
                put(state, key, value, Rev::Known(revision));
                wrote = true;
            }
            (Step::Delete(key), StepResult::Delete(deleted)) => {
                let exists = state.keys[key].take().is_some() || (lax.holds(key) && *deleted == 1);
                if i64::from(exists) != *deleted {
                    return Err(Mismatch::Deleted { key, exists, deleted: *deleted });
                }
                wrote |= exists;
            }
            _ => return Err(Mismatch::Shape),
        }
    }
    if wrote {
        write_at(state, revision)
    } else {
        read_at(state, revision)
    }
}

fn txn_unknown(state: &mut State, ops: &[Step]) {
    let rev = Rev::Unknown { min: state.floor + 1 };
    let mut wrote = false;
    for op in ops {
        match *op {
            Step::Get(_) => {}
            Step::Put(key, value) => {
                put(state, key, value, rev);
                wrote = true;
            }
            Step::Delete(key) => wrote |= state.keys[key].take().is_some(),
        }
    }
    if wrote {
        state.floor += 1;
    }
}

impl Mismatch {
    /// The mismatch in words, naming keys and values.
    pub(crate) fn describe(&self, keys: &[Vec<u8>], values: &[Vec<u8>]) -> String {
        let key = |k: usize| keys.get(k).map_or_else(|| "?".to_owned(), |k| show(k));
        match self {
            Self::ReadBehind { revision, floor } => {
                format!("its header revision {revision} is below revision {floor}, already reached")
            }
            Self::WriteBehind { revision, floor } => {
                format!("its revision {revision} is not above revision {floor}, already reached")
            }
            Self::Read { key: k, state, got } => {
                let mut s = format!("it read {} = ", key(*k));
                describe_read(&mut s, got.as_ref(), values);
                s.push_str(" but the key holds ");
                describe_state(&mut s, state.as_ref(), values);
                s
            }
            Self::Deleted { key: k, exists, deleted } => {
                format!(
                    "it deleted {deleted} key(s) but {} {}",
                    key(*k),
                    if *exists { "exists" } else { "is absent" }
                )
            }
            Self::Branch { succeeded } => {
                format!(
                    "its compares {} but the transaction says succeeded={succeeded}",
                    if *succeeded { "fail" } else { "hold" }
                )
            }
            Self::Shape => "its results do not match its operations".to_owned(),
        }
    }
}

fn value_name(values: &[Vec<u8>], v: u32) -> String {
    usize::try_from(v).ok().and_then(|i| values.get(i)).map_or_else(|| "?".to_owned(), |v| show(v))
}

fn describe_read(s: &mut String, got: Option<&ReadKv>, values: &[Vec<u8>]) {
    match got {
        None => s.push_str("(absent)"),
        Some(g) => {
            let _ = write!(
                s,
                "{:?} (create {}, mod {}, version {})",
                value_name(values, g.value),
                g.create,
                g.modr,
                g.version
            );
        }
    }
}

/// Describes a key's state in the model.
pub(crate) fn describe_state(s: &mut String, state: Option<&KeyState>, values: &[Vec<u8>]) {
    let rev = |r: Rev| match r {
        Rev::Known(r) => r.to_string(),
        Rev::Unknown { min } => format!(">={min}"),
    };
    match state {
        None => s.push_str("(absent)"),
        Some(k) => {
            let _ = write!(
                s,
                "{:?} (create {}, mod {}, version {})",
                value_name(values, k.value),
                rev(k.create),
                rev(k.modr),
                k.version
            );
        }
    }
}
