//! Splitting a history into partitions: groups of keys that no operation crosses (a transaction on two keys
//! joins them), each with its operations in the model's interned form.

use std::collections::HashMap;

use super::model::{Input, Output, ReadKv, Step, StepResult, Target};
use super::op::{CompareTarget, Operation, Request, Response, TxnOp, TxnOpResult};
use crate::KeyValue;

/// One operation of a partition.
#[derive(Clone, Debug)]
pub(crate) struct PartOp {
    /// Index in the checked history.
    pub(crate) index: usize,
    pub(crate) call: u64,
    /// `u64::MAX` when the outcome is unknown.
    pub(crate) ret: u64,
    pub(crate) input: Input,
    pub(crate) output: Option<Output>,
}

/// Keys no operation shares with another partition, and the operations on them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Partition {
    pub(crate) keys: Vec<Vec<u8>>,
    /// Interned values: a value's id is its index.
    pub(crate) values: Vec<Vec<u8>>,
    pub(crate) ops: Vec<PartOp>,
    /// Per key: from when it is lax (see [`super::model::Lax`]); `u64::MAX` if never.
    pub(crate) lax_from: Vec<u64>,
}

/// Splits `history` into partitions, dropping reads whose outcome is unknown (they constrain nothing).
pub(crate) fn partitions(history: &[Operation]) -> Vec<Partition> {
    let mut key_ids: HashMap<&[u8], usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    for op in history {
        let mut first = None;
        for key in op.request.keys() {
            let id = *key_ids.entry(key).or_insert_with(|| {
                parent.push(parent.len());
                parent.len() - 1
            });
            match first {
                None => first = Some(id),
                Some(f) => union(&mut parent, f, id),
            }
        }
    }
    let mut roots: HashMap<usize, usize> = HashMap::new();
    let mut parts: Vec<Partition> = Vec::new();
    let mut builders: Vec<Builder<'_>> = Vec::new();
    let mut sorted_keys: Vec<(&[u8], usize)> = key_ids.iter().map(|(k, v)| (*k, *v)).collect();
    sorted_keys.sort_unstable();
    for (key, id) in sorted_keys {
        let root = find(&mut parent, id);
        let part = *roots.entry(root).or_insert_with(|| {
            builders.push(Builder::default());
            builders.len() - 1
        });
        let b = &mut builders[part];
        b.local.insert(key, b.keys.len());
        b.keys.push(key.to_vec());
    }
    for (index, op) in history.iter().enumerate() {
        if op.response.is_none() && !op.request.may_write() {
            continue;
        }
        let Some(key) = op.request.keys().first().copied() else { continue };
        let Some(id) = key_ids.get(key) else { continue };
        let root = find(&mut parent, *id);
        let Some(part) = roots.get(&root) else { continue };
        builders[*part].push(index, op);
    }
    for b in builders {
        let mut part = Partition { keys: b.keys, values: b.values, ops: b.ops, lax_from: Vec::new() };
        super::unknown::narrow(&mut part);
        parts.push(part);
    }
    parts
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

#[derive(Default)]
struct Builder<'h> {
    local: HashMap<&'h [u8], usize>,
    keys: Vec<Vec<u8>>,
    value_ids: HashMap<&'h [u8], u32>,
    values: Vec<Vec<u8>>,
    ops: Vec<PartOp>,
}

impl<'h> Builder<'h> {
    fn key(&self, key: &[u8]) -> usize {
        self.local.get(key).copied().unwrap_or_default()
    }

    fn value(&mut self, value: &'h [u8]) -> u32 {
        if let Some(id) = self.value_ids.get(value) {
            return *id;
        }
        let id = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.value_ids.insert(value, id);
        self.values.push(value.to_vec());
        id
    }

    fn read(&mut self, kv: Option<&'h KeyValue>) -> Option<ReadKv> {
        kv.map(|kv| ReadKv {
            value: self.value(&kv.value),
            create: kv.create_revision,
            modr: kv.mod_revision,
            version: kv.version,
        })
    }

    fn step(&mut self, op: &'h TxnOp) -> Step {
        match op {
            TxnOp::Get(k) => Step::Get(self.key(k)),
            TxnOp::Put(k, v) => Step::Put(self.key(k), self.value(v)),
            TxnOp::Delete(k) => Step::Delete(self.key(k)),
        }
    }

    fn push(&mut self, index: usize, op: &'h Operation) {
        let input = match &op.request {
            Request::Get { key } => Input::Get(self.key(key)),
            Request::Put { key, value } => Input::Put(self.key(key), self.value(value)),
            Request::Delete { key } => Input::Delete(self.key(key)),
            Request::Txn(txn) => {
                let compares = txn
                    .compares
                    .iter()
                    .map(|c| {
                        let target = match &c.target {
                            CompareTarget::Value(v) => Target::Value(self.value(v)),
                            CompareTarget::Version(x) => Target::Version(*x),
                            CompareTarget::CreateRevision(x) => Target::Create(*x),
                            CompareTarget::ModRevision(x) => Target::Mod(*x),
                        };
                        (self.key(&c.key), target)
                    })
                    .collect();
                let success = txn.success.iter().map(|s| self.step(s)).collect();
                let failure = txn.failure.iter().map(|s| self.step(s)).collect();
                Input::Txn { compares, success, failure }
            }
        };
        let output = op.response.as_ref().map(|r| match r {
            Response::Get { revision, kv } => Output::Get { revision: *revision, kv: self.read(kv.as_ref()) },
            Response::Put { revision } => Output::Put { revision: *revision },
            Response::Delete { revision, deleted } => {
                Output::Delete { revision: *revision, deleted: *deleted }
            }
            Response::Txn { revision, succeeded, results } => Output::Txn {
                revision: *revision,
                succeeded: *succeeded,
                results: results
                    .iter()
                    .map(|r| match r {
                        TxnOpResult::Get(kv) => StepResult::Get(self.read(kv.as_ref())),
                        TxnOpResult::Put => StepResult::Put,
                        TxnOpResult::Delete { deleted } => StepResult::Delete(*deleted),
                    })
                    .collect(),
            },
        });
        let ret = if output.is_some() { op.ret } else { u64::MAX };
        self.ops.push(PartOp { index, call: op.call, ret, input, output });
    }
}
