//! The KV load loops (put, range, txn-put, txn-mixed). `clients` tasks share the connections and take request
//! numbers from one shared counter until `total` have been sent, so every run is bounded by count; an optional
//! shared rate limit spaces them. Each task records its latencies in its own histograms (no lock on the hot path)
//! and the histograms are merged at the end.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cairn_api::etcdserverpb::request_op::Request as OpRequest;
use cairn_api::etcdserverpb::{
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use crate::direct::Direct;
use crate::env::Env;
use crate::keys::{encode_key, seed_for, KeyChoice, SplitMix64};
use crate::rate::RateLimiter;
use crate::report::{new_histogram, record, Errors, Report, Summary};

/// Linearizable reads go through the leader's read index; serializable ones are served locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Serializable,
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "l" => Ok(Consistency::Linearizable),
            "s" => Ok(Consistency::Serializable),
            other => Err(format!("consistency must be l or s, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Put,
    /// Range of one key.
    Range(Consistency),
    /// A Txn of `ops` unconditional puts to distinct keys (etcd 3.4's txn-put).
    TxnPut {
        ops: usize,
    },
    /// Txns that are either one put or one range over the whole key space with `limit`, reads:writes = `rw_ratio`
    /// (etcd's txn-mixed).
    TxnMixed {
        consistency: Consistency,
        rw_ratio: f64,
        limit: i64,
    },
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Range(Consistency::Linearizable) => "range (linearizable)",
            Op::Range(Consistency::Serializable) => "range (serializable)",
            Op::TxnPut { .. } => "txn-put",
            Op::TxnMixed { .. } => "txn-mixed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KvSpec {
    pub clients: usize,
    pub total: u64,
    pub key_size: usize,
    pub val_size: usize,
    pub keys: KeyChoice,
    /// Requests per second over all clients; 0 = unlimited.
    pub rate: u64,
    pub op: Op,
}

pub async fn run(env: &Env, spec: &KvSpec) -> anyhow::Result<Report> {
    anyhow::ensure!(spec.clients > 0, "--clients must be at least 1");
    if let Op::TxnPut { ops } = spec.op {
        anyhow::ensure!(ops > 0, "--txn-ops must be at least 1");
        anyhow::ensure!(
            ops as u64 <= spec.keys.space(),
            "--txn-ops ({ops}) must not exceed --key-space-size ({}): a txn may not put one key twice",
            spec.keys.space()
        );
    }
    let connections = crate::direct::connect_all(env).await?;
    let bar = env.progress.bar(spec.total, spec.op.name());
    let shared = Arc::new(Shared { next: AtomicU64::new(0), limiter: RateLimiter::new(spec.rate), bar });
    // Histograms are made before the clock starts: zeroing a hundred of them is not the server's time.
    let mixed = matches!(spec.op, Op::TxnMixed { .. });
    let latencies = (0..spec.clients).map(|_| Latencies::new(mixed)).collect::<anyhow::Result<Vec<_>>>()?;
    let phase = env.probe.start()?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.clients);
    for (i, latencies) in latencies.into_iter().enumerate() {
        // The client's connection: nothing but the request on the measured path.
        let kv = connections[i % connections.len()].clone();
        let spec = spec.clone();
        let shared = Arc::clone(&shared);
        tasks
            .push(tokio::spawn(async move { client_loop(kv, &spec, &shared, latencies, seed_for(i)).await }));
    }
    let mut finished = Vec::with_capacity(tasks.len());
    for task in tasks {
        finished.push(task.await.context("a client task panicked")??);
    }
    // The run ends with its last answer; merging the histograms afterwards is not part of it.
    let elapsed =
        finished.iter().map(|(_, at)| at.saturating_duration_since(started)).max().unwrap_or_default();
    let mut all = Latencies::new(mixed)?;
    for (latencies, _) in finished {
        all.merge(latencies)?;
    }
    shared.bar.finish_and_clear();
    let mut report = Report::new(spec.op.name(), "requests", Summary::new(&all.all, all.errors, elapsed));
    report.server = crate::usage::finish(phase.as_ref())?;
    if let Some((reads, writes)) = &all.split {
        let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
        report = report
            .detail("reads", reads.len() as f64)
            .detail("writes", writes.len() as f64)
            .detail("read_p99_ms", p99(reads))
            .detail("write_p99_ms", p99(writes));
    }
    Ok(report)
}

struct Shared {
    next: AtomicU64,
    limiter: RateLimiter,
    bar: ProgressBar,
}

/// One client's latencies: all requests, and for txn-mixed reads and writes apart.
struct Latencies {
    all: Histogram<u64>,
    split: Option<(Histogram<u64>, Histogram<u64>)>,
    errors: Errors,
}

impl Latencies {
    fn new(split: bool) -> anyhow::Result<Self> {
        let split = if split { Some((new_histogram()?, new_histogram()?)) } else { None };
        Ok(Latencies { all: new_histogram()?, split, errors: Errors::default() })
    }

    fn merge(&mut self, other: Latencies) -> anyhow::Result<()> {
        self.all.add(&other.all).context("merging latency histograms")?;
        if let (Some((reads, writes)), Some((other_reads, other_writes))) = (&mut self.split, &other.split) {
            reads.add(other_reads).context("merging latency histograms")?;
            writes.add(other_writes).context("merging latency histograms")?;
        }
        self.errors.merge(other.errors);
        Ok(())
    }
}

/// Sends requests until the run's total is reached; returns the latencies and when the last answer came.
async fn client_loop(
    mut kv: Direct,
    spec: &KvSpec,
    shared: &Shared,
    mut latencies: Latencies,
    seed: u64,
) -> anyhow::Result<(Latencies, Instant)> {
    let mut rng = SplitMix64(seed);
    let value = vec![b'v'; spec.val_size];
    let (put, range, txn) =
        (kv.uri("/etcdserverpb.KV/Put")?, kv.uri("/etcdserverpb.KV/Range")?, kv.uri("/etcdserverpb.KV/Txn")?);
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= spec.total {
            break;
        }
        shared.limiter.wait().await;
        let request = build(spec, n, &mut rng, &value);
        let is_read = request.is_read();
        let start = Instant::now();
        let outcome = match request {
            Request::Put(r) => kv.unary::<_, PutResponse>(&put, &r).await.map(|_| ()),
            Request::Range(r) => kv.unary::<_, RangeResponse>(&range, &r).await.map(|_| ()),
            Request::Txn(r) => kv.unary::<_, TxnResponse>(&txn, &r).await.map(|_| ()),
        };
        let latency = start.elapsed();
        record(&mut latencies.all, latency);
        if let Some((reads, writes)) = &mut latencies.split {
            record(if is_read { reads } else { writes }, latency);
        }
        if let Err(status) = outcome {
            latencies.errors.add(status);
        }
        shared.bar.inc(1);
    }
    Ok((latencies, Instant::now()))
}

#[derive(Debug, Clone, PartialEq)]
enum Request {
    Put(PutRequest),
    Range(RangeRequest),
    Txn(TxnRequest),
}

impl Request {
    fn is_read(&self) -> bool {
        match self {
            Request::Put(_) => false,
            Request::Range(_) => true,
            Request::Txn(t) => {
                matches!(
                    t.success.first().and_then(|op| op.request.as_ref()),
                    Some(OpRequest::RequestRange(_))
                )
            }
        }
    }
}

fn put_op(key: Vec<u8>, value: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(OpRequest::RequestPut(PutRequest { key, value: value.to_vec(), ..Default::default() })),
    }
}

/// The `n`th request of a run.
fn build(spec: &KvSpec, n: u64, rng: &mut SplitMix64, value: &[u8]) -> Request {
    let key = |number: u64| encode_key(number, spec.key_size);
    match spec.op {
        Op::Put => Request::Put(PutRequest {
            key: key(spec.keys.pick(n, rng)),
            value: value.to_vec(),
            ..Default::default()
        }),
        Op::Range(consistency) => Request::Range(RangeRequest {
            key: key(spec.keys.pick(n, rng)),
            serializable: consistency == Consistency::Serializable,
            ..Default::default()
        }),
        Op::TxnPut { ops } => {
            // Consecutive keys from the picked one: distinct as long as ops <= key space (checked in `run`).
            let space = spec.keys.space();
            let first = match spec.keys {
                KeyChoice::Sequential(_) => n.wrapping_mul(ops as u64) % space,
                KeyChoice::Random(_) => rng.next() % space,
            };
            let success = (0..ops as u64).map(|j| put_op(key((first + j) % space), value)).collect();
            Request::Txn(TxnRequest { success, ..Default::default() })
        }
        Op::TxnMixed { consistency, rw_ratio, limit } => {
            let op = if rng.unit() < rw_ratio / (1.0 + rw_ratio) {
                // The whole key space: from "\0" to the end of the keyspace, as etcd's WithPrefix on "".
                RequestOp {
                    request: Some(OpRequest::RequestRange(RangeRequest {
                        key: vec![0],
                        range_end: vec![0],
                        limit,
                        serializable: consistency == Consistency::Serializable,
                        ..Default::default()
                    })),
                }
            } else {
                put_op(key(spec.keys.pick(n, rng)), value)
            };
            Request::Txn(TxnRequest { success: vec![op], ..Default::default() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(op: Op, keys: KeyChoice) -> KvSpec {
        KvSpec { clients: 1, total: 10, key_size: 4, val_size: 3, keys, rate: 0, op }
    }

    fn txn_keys(r: &Request) -> Vec<Vec<u8>> {
        let Request::Txn(t) = r else { panic!("not a txn: {r:?}") };
        t.success
            .iter()
            .map(|op| match &op.request {
                Some(OpRequest::RequestPut(p)) => p.key.clone(),
                other => panic!("not a put: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn consistency_parses_etcd_benchmark_spellings() {
        assert_eq!("l".parse::<Consistency>(), Ok(Consistency::Linearizable));
        assert_eq!("s".parse::<Consistency>(), Ok(Consistency::Serializable));
        assert!("x".parse::<Consistency>().is_err());
    }

    #[test]
    fn puts_and_ranges_use_the_key_choice() {
        let mut rng = SplitMix64(1);
        let s = spec(Op::Put, KeyChoice::Sequential(5));
        let Request::Put(p) = build(&s, 7, &mut rng, b"vvv") else { panic!() };
        assert_eq!((p.key.as_slice(), p.value.as_slice()), (&b"0002"[..], &b"vvv"[..]));
        let s = spec(Op::Range(Consistency::Serializable), KeyChoice::Sequential(5));
        let Request::Range(r) = build(&s, 3, &mut rng, b"") else { panic!() };
        assert_eq!(r.key, b"0003");
        assert!(r.serializable);
    }

    #[test]
    fn txn_put_keys_are_distinct_and_wrap() {
        let mut rng = SplitMix64(1);
        let s = spec(Op::TxnPut { ops: 3 }, KeyChoice::Sequential(4));
        assert_eq!(
            txn_keys(&build(&s, 1, &mut rng, b"v")),
            [b"0003".to_vec(), b"0000".to_vec(), b"0001".to_vec()]
        );
        let s = spec(Op::TxnPut { ops: 4 }, KeyChoice::Random(4));
        for n in 0..20 {
            let mut keys = txn_keys(&build(&s, n, &mut rng, b"v"));
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), 4);
        }
    }

    #[test]
    fn txn_mixed_follows_the_read_write_ratio() {
        let mut rng = SplitMix64(9);
        let op = Op::TxnMixed { consistency: Consistency::Serializable, rw_ratio: 3.0, limit: 10 };
        let s = spec(op, KeyChoice::Random(100));
        let mut reads = 0;
        for n in 0..4000 {
            let Request::Txn(t) = build(&s, n, &mut rng, b"v") else { panic!() };
            if let Some(OpRequest::RequestRange(r)) = &t.success[0].request {
                assert_eq!((r.key.as_slice(), r.range_end.as_slice(), r.limit), (&[0u8][..], &[0u8][..], 10));
                assert!(r.serializable);
                reads += 1;
            }
        }
        assert!((2800..3200).contains(&reads), "3:1 reads to writes, got {reads} reads of 4000");
    }
}
