//! Generated histories: a correct sequential store driven by random concurrent clients, with random unknown
//! outcomes, must pass; the same history with one read result changed must fail.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Instant;

use cairn_check::kv::{
    self, Compare, CompareTarget, Operation, Options, Request, Response, TxnOp, TxnOpResult, TxnRequest,
    Verdict,
};
use cairn_check::KeyValue;

/// splitmix64: a seed reproduces a whole history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A correct sequential etcd KV: the reference the clients run against.
#[derive(Default)]
struct Store {
    rev: i64,
    kvs: HashMap<Vec<u8>, KeyValue>,
}

impl Store {
    fn new() -> Self {
        Self { rev: 1, kvs: HashMap::new() }
    }

    fn put(&mut self, key: &[u8], value: &[u8], rev: i64) {
        let kv = match self.kvs.get(key) {
            Some(old) => KeyValue::new(value, old.create_revision, rev, old.version + 1),
            None => KeyValue::new(value, rev, rev, 1),
        };
        self.kvs.insert(key.to_vec(), kv);
    }

    fn holds(&self, c: &Compare) -> bool {
        match (self.kvs.get(&c.key), &c.target) {
            (None, CompareTarget::Value(_)) => false,
            (
                None,
                CompareTarget::Version(x) | CompareTarget::CreateRevision(x) | CompareTarget::ModRevision(x),
            ) => *x == 0,
            (Some(kv), CompareTarget::Value(v)) => kv.value == *v,
            (Some(kv), CompareTarget::Version(x)) => kv.version == *x,
            (Some(kv), CompareTarget::CreateRevision(x)) => kv.create_revision == *x,
            (Some(kv), CompareTarget::ModRevision(x)) => kv.mod_revision == *x,
        }
    }

    fn apply(&mut self, req: &Request) -> Response {
        match req {
            Request::Get { key } => Response::Get { revision: self.rev, kv: self.kvs.get(key).cloned() },
            Request::Put { key, value } => {
                self.rev += 1;
                self.put(key, value, self.rev);
                Response::Put { revision: self.rev }
            }
            Request::Delete { key } => {
                let deleted = self.kvs.remove(key).is_some();
                if deleted {
                    self.rev += 1;
                }
                Response::Delete { revision: self.rev, deleted: i64::from(deleted) }
            }
            Request::Txn(txn) => {
                let succeeded = txn.compares.iter().all(|c| self.holds(c));
                let ops = if succeeded { &txn.success } else { &txn.failure };
                let new_rev = self.rev + 1;
                let mut changed = false;
                let mut results = Vec::new();
                for op in ops {
                    results.push(match op {
                        TxnOp::Get(k) => TxnOpResult::Get(self.kvs.get(k).cloned()),
                        TxnOp::Put(k, v) => {
                            self.put(k, v, new_rev);
                            changed = true;
                            TxnOpResult::Put
                        }
                        TxnOp::Delete(k) => {
                            let deleted = self.kvs.remove(k).is_some();
                            changed |= deleted;
                            TxnOpResult::Delete { deleted: i64::from(deleted) }
                        }
                    });
                }
                if changed {
                    self.rev = new_rev;
                }
                Response::Txn { revision: self.rev, succeeded, results }
            }
        }
    }
}

enum Client {
    Idle,
    Called { call: u64, req: Request },
    Applied { call: u64, req: Request, resp: Response },
}

struct Shape {
    ops: usize,
    keys: u64,
    clients: usize,
    unknown_percent: u64,
    /// Multi-key transactions on any two keys (joining all keys into one partition), else only on k0 and k1.
    cross: bool,
}

fn key(rng: &mut Rng, keys: u64) -> Vec<u8> {
    format!("k{}", rng.below(keys)).into_bytes()
}

fn request(rng: &mut Rng, shape: &Shape, store: &Store, seq: usize) -> Request {
    let k = key(rng, shape.keys);
    let value = format!("v{seq}").into_bytes();
    match rng.below(100) {
        0..=39 => Request::Get { key: k },
        40..=64 => Request::Put { key: k, value },
        65..=74 => Request::Delete { key: k },
        75..=84 => {
            // Compare-and-swap on the value as of now (often stale by the time it applies).
            let current = store.kvs.get(&k).map(|kv| kv.value.clone()).unwrap_or_default();
            Request::Txn(TxnRequest {
                compares: vec![Compare { key: k.clone(), target: CompareTarget::Value(current) }],
                success: vec![TxnOp::Put(k.clone(), value)],
                failure: vec![TxnOp::Get(k)],
            })
        }
        85..=94 => {
            let current = store.kvs.get(&k).map_or(0, |kv| kv.mod_revision);
            Request::Txn(TxnRequest {
                compares: vec![Compare { key: k.clone(), target: CompareTarget::ModRevision(current) }],
                success: vec![TxnOp::Delete(k.clone())],
                failure: vec![TxnOp::Get(k)],
            })
        }
        _ => {
            let (a, b) =
                if shape.cross { (k, key(rng, shape.keys)) } else { (b"k0".to_vec(), b"k1".to_vec()) };
            if a == b {
                return Request::Get { key: a };
            }
            Request::Txn(TxnRequest {
                compares: vec![Compare { key: a.clone(), target: CompareTarget::Version(0) }],
                success: vec![TxnOp::Put(a.clone(), value.clone()), TxnOp::Put(b.clone(), value)],
                failure: vec![TxnOp::Get(a), TxnOp::Get(b)],
            })
        }
    }
}

/// Runs random clients against a correct store; returns the history.
fn generate(seed: u64, shape: &Shape) -> Vec<Operation> {
    let mut rng = Rng(seed);
    let mut store = Store::new();
    let mut clients: Vec<Client> = (0..shape.clients).map(|_| Client::Idle).collect();
    let mut history = Vec::new();
    let mut started = 0;
    let mut time = 0u64;
    // Each step advances one client; every operation needs three, so this bound is never reached.
    for _ in 0..shape.ops * 3 * shape.clients * 8 {
        if started >= shape.ops && clients.iter().all(|c| matches!(c, Client::Idle)) {
            break;
        }
        time += 1;
        let c = usize::try_from(rng.below(shape.clients as u64)).unwrap();
        let client = c as u64;
        clients[c] = match std::mem::replace(&mut clients[c], Client::Idle) {
            Client::Idle if started < shape.ops => {
                started += 1;
                let req = request(&mut rng, shape, &store, started);
                if rng.chance(shape.unknown_percent / 2) {
                    // Fails before reaching the store.
                    history.push(Operation::unknown(client, time, req));
                    Client::Idle
                } else {
                    Client::Called { call: time, req }
                }
            }
            Client::Idle => Client::Idle,
            Client::Called { call, req } => {
                let resp = store.apply(&req);
                Client::Applied { call, req, resp }
            }
            Client::Applied { call, req, resp } => {
                if rng.chance(shape.unknown_percent / 2) {
                    // Applied, but the client never heard back.
                    history.push(Operation::unknown(client, call, req));
                } else {
                    history.push(Operation::new(client, call, time, req, resp));
                }
                Client::Idle
            }
        };
    }
    history
}

fn check(history: &[Operation]) -> Verdict {
    kv::check(history, &Options::default()).unwrap()
}

/// Changes one acknowledged read so that no correct store could have returned it; says how. (Not the version:
/// puts of unknown outcome nobody saw the value of make versions only bounded below, see `kv`'s docs.)
fn corrupt_one_read(history: &mut [Operation], rng: &mut Rng) -> Option<&'static str> {
    let reads: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(&history[i].response, Some(Response::Get { kv: Some(_), .. })))
        .collect();
    if reads.is_empty() {
        return None;
    }
    if rng.chance(50) {
        if let Some(how) = make_stale(history, &reads, rng) {
            return Some(how);
        }
    }
    let i = reads[usize::try_from(rng.below(reads.len() as u64)).unwrap()];
    let how = rng.below(3);
    let Some(Response::Get { kv: Some(kv), .. }) = &mut history[i].response else { return None };
    Some(match how {
        0 => {
            kv.value = b"never written".to_vec();
            "value"
        }
        1 => {
            kv.create_revision += 1_000_000;
            "create revision"
        }
        _ => {
            kv.mod_revision += 1_000_000;
            "mod revision"
        }
    })
}

/// Makes a read return what an earlier read of its key returned, although an acknowledged put that
/// overwrote it returned before the read started: a stale read only the search can refute.
fn make_stale(history: &mut [Operation], reads: &[usize], rng: &mut Rng) -> Option<&'static str> {
    let kv_of = |op: &Operation| match &op.response {
        Some(Response::Get { kv: Some(kv), .. }) => Some(kv.clone()),
        _ => None,
    };
    let start = usize::try_from(rng.below(reads.len() as u64)).unwrap();
    for &late in reads.iter().cycle().skip(start).take(reads.len()) {
        let seen = kv_of(&history[late])?;
        let key = match &history[late].request {
            Request::Get { key } => key.clone(),
            _ => continue,
        };
        // The put that wrote what `late` saw, acknowledged and returned before `late` started.
        let overwrote = history.iter().any(|op| {
            matches!((&op.request, &op.response), (Request::Put { key: k, .. }, Some(Response::Put { revision }))
                if *k == key && *revision == seen.mod_revision && op.ret < history[late].call)
        });
        if !overwrote {
            continue;
        }
        let mut older = reads.iter().filter_map(|&r| {
            let kv = kv_of(&history[r])?;
            (matches!(&history[r].request, Request::Get { key: k } if *k == key)
                && kv.mod_revision < seen.mod_revision)
                .then_some(kv)
        });
        if let Some(old) = older.next_back() {
            if let Some(Response::Get { kv: Some(kv), .. }) = &mut history[late].response {
                *kv = old;
            }
            return Some("stale read");
        }
    }
    None
}

#[test]
fn generated_histories_pass_and_corrupted_ones_fail() {
    for seed in 0..40 {
        let shape =
            Shape { ops: 400, keys: 5, clients: 6, unknown_percent: 5 + seed % 4 * 5, cross: seed % 2 == 0 };
        pass_then_fail(seed, &shape);
    }
}

/// The history of `seed` must pass, and fail once one read is corrupted.
fn pass_then_fail(seed: u64, shape: &Shape) {
    let mut history = generate(seed, shape);
    match check(&history) {
        Verdict::Ok => {}
        Verdict::Illegal(v) => panic!("seed {seed}: a correct store's history was rejected: {v}"),
        Verdict::Unknown(why) => panic!("seed {seed}: the checker gave up: {why}"),
    }
    let mut rng = Rng(seed ^ 0xdead_beef);
    if let Some(how) = corrupt_one_read(&mut history, &mut rng) {
        let verdict = check(&history);
        assert!(
            matches!(verdict, Verdict::Illegal(_)),
            "seed {seed}: a corrupted read ({how}) went unnoticed: {verdict:?}"
        );
    }
}

#[test]
fn hot_key_with_many_clients() {
    for seed in 100..105 {
        let shape = Shape { ops: 1_000, keys: 1, clients: 20, unknown_percent: 5, cross: false };
        pass_then_fail(seed, &shape);
    }
}

#[test]
fn many_unknown_outcomes_across_keys() {
    // Like a cluster under faults: a fifth of the operations time out, transactions join all keys.
    for seed in 200..203 {
        let shape = Shape { ops: 2_000, keys: 6, clients: 10, unknown_percent: 20, cross: true };
        pass_then_fail(seed, &shape);
    }
}

#[test]
fn ten_thousand_operations() {
    for (seed, keys, clients) in [(7, 50, 10), (8, 10, 20)] {
        let shape = Shape { ops: 10_000, keys, clients, unknown_percent: 5, cross: false };
        let start = Instant::now();
        pass_then_fail(seed, &shape);
        eprintln!(
            "ten_thousand_operations: {keys} keys, {clients} clients: checked twice in {:?}",
            start.elapsed()
        );
    }
}
