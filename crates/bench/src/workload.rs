//! The load loops. `clients` tasks share `conns` gRPC connections and take requests from one shared counter until
//! `total` have been sent, so every run is bounded by count; each task records its latencies in its own histogram
//! (no lock on the hot path) and the histograms are merged at the end.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cairn_api::etcdserverpb::kv_client::KvClient;
use cairn_api::etcdserverpb::{PutRequest, RangeRequest};
use cairn_client::{Client, ConnectOptions};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

use crate::report::Summary;

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

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Put { val_size: usize },
    Range(Consistency),
}

#[derive(Debug, Clone, Copy)]
pub enum KeyChoice {
    /// Keys 0, 1, 2, ... wrapping at the key space size.
    Sequential(u64),
    /// Uniformly random keys in [0, key space size).
    Random(u64),
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub total: u64,
    pub key_size: usize,
    pub keys: KeyChoice,
    pub op: Op,
}

/// Highest latency the histograms track; slower requests are clamped (and still counted).
const MAX_LATENCY_MICROS: u64 = 60_000_000;

pub async fn run(spec: &LoadSpec) -> anyhow::Result<Summary> {
    anyhow::ensure!(spec.clients > 0 && spec.conns > 0, "--clients and --conns must be at least 1");
    anyhow::ensure!(!spec.endpoints.is_empty(), "--endpoints must name at least one endpoint");
    let mut connections = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        let url = &spec.endpoints[i % spec.endpoints.len()];
        connections.push(
            Client::connect([url], ConnectOptions::default())
                .await
                .with_context(|| format!("connecting to {url}"))?,
        );
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.clients);
    for i in 0..spec.clients {
        // The generated stub on the client's connection: nothing but the request on the measured path.
        let kv = connections[i % connections.len()].kv_client();
        let spec = spec.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move { client_loop(kv, &spec, &next, seed_for(i)).await }));
    }
    let mut histogram = new_histogram()?;
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let result = task.await.context("a client task panicked")??;
        histogram.add(&result.histogram).context("merging latency histograms")?;
        errors += result.errors;
        first_error = first_error.or(result.first_error);
    }
    Ok(Summary::new(&histogram, errors, first_error, started.elapsed()))
}

struct ClientResult {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn client_loop(
    mut kv: KvClient<Channel>,
    spec: &LoadSpec,
    next: &AtomicU64,
    seed: u64,
) -> anyhow::Result<ClientResult> {
    let mut histogram = new_histogram()?;
    let mut rng = SplitMix64(seed);
    let mut errors = 0;
    let mut first_error = None;
    let value = vec![b'v'; if let Op::Put { val_size } = spec.op { val_size } else { 0 }];
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= spec.total {
            break;
        }
        let key_number = match spec.keys {
            KeyChoice::Sequential(space) => n % space.max(1),
            KeyChoice::Random(space) => rng.next() % space.max(1),
        };
        let key = encode_key(key_number, spec.key_size);
        let start = Instant::now();
        let outcome = match spec.op {
            Op::Put { .. } => {
                kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await.map(|_| ())
            }
            Op::Range(consistency) => kv
                .range(RangeRequest {
                    key,
                    serializable: consistency == Consistency::Serializable,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        };
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
        if let Err(status) = outcome {
            errors += 1;
            first_error.get_or_insert_with(|| status.to_string());
        }
    }
    Ok(ClientResult { histogram, errors, first_error })
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).context("creating a latency histogram")
}

/// Zero-padded decimal, at least `key_size` bytes, so keys sort in numeric order as etcd's benchmark keys do.
fn encode_key(n: u64, key_size: usize) -> Vec<u8> {
    format!("{n:0key_size$}").into_bytes()
}

fn seed_for(client: usize) -> u64 {
    0x9e37_79b9_7f4a_7c15 ^ (client as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// splitmix64: enough randomness to spread keys, reproducible per client, no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_padded_to_the_requested_size() {
        assert_eq!(encode_key(42, 8), b"00000042");
        assert_eq!(encode_key(123_456_789, 4), b"123456789");
    }

    #[test]
    fn consistency_parses_etcd_benchmark_spellings() {
        assert_eq!("l".parse::<Consistency>(), Ok(Consistency::Linearizable));
        assert_eq!("s".parse::<Consistency>(), Ok(Consistency::Serializable));
        assert!("x".parse::<Consistency>().is_err());
    }

    #[test]
    fn random_keys_differ_between_clients() {
        let run = |seed| {
            let mut rng = SplitMix64(seed);
            (0..4).map(|_| rng.next()).collect::<Vec<_>>()
        };
        assert_eq!(run(seed_for(0)), run(seed_for(0)), "a seed reproduces its sequence");
        assert_ne!(run(seed_for(0)), run(seed_for(1)));
    }
}
