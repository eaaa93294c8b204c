//! check perf (etcdctl's check.go): puts at a fixed rate from many clients for 60 seconds, then judges
//! throughput, slowest request and standard deviation with etcdctl's thresholds and words.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::options::KeyRange;
use cairn_client::{DeleteOptions, GetOptions, PutOptions};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Mutex;

use crate::cli::{CheckCommand, PerfArgs};
use crate::ctx::Ctx;
use crate::error::{client_message, CtlError, ExitCode, Result};

/// (writes per second, clients) of each load; every load runs 60 seconds.
fn load(name: &str) -> Option<(u64, usize)> {
    Some(match name {
        "s" => (150, 50),
        "m" => (1000, 200),
        "l" => (8000, 500),
        "xl" => (15000, 1000),
        _ => return None,
    })
}

const DURATION_SECS: u64 = 60;
const KEY_SIZE: usize = 256;
const VALUE_SIZE: usize = 1024;

pub async fn check(ctx: &mut Ctx, c: CheckCommand) -> Result<()> {
    match c {
        CheckCommand::Perf(a) => perf(ctx, a).await,
    }
}

#[derive(Debug, Default)]
struct Stats {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

async fn perf(ctx: &mut Ctx, a: PerfArgs) -> Result<()> {
    let (limit, clients) = load(&a.load)
        .ok_or_else(|| CtlError::new(ExitCode::BadFeature, format!("unknown load option {}", a.load)))?;
    let client = ctx.client().await?;
    let prefix = a.prefix.clone().into_bytes();
    let existing = ctx
        .call(
            client
                .get(prefix.clone(), GetOptions { range: KeyRange::Prefix, limit: 1, ..Default::default() }),
        )
        .await?;
    if !existing.kvs.is_empty() {
        return Err(CtlError::invalid_input(format!(
            "prefix {:?} has keys. Delete with etcdctl del --prefix {} first.",
            a.prefix, a.prefix
        )));
    }
    let bar = std::io::stdout().is_terminal().then(|| {
        let b = ProgressBar::new(DURATION_SECS);
        if let Ok(style) = ProgressStyle::with_template("{pos} / {len} {wide_bar} {percent}% {elapsed}") {
            b.set_style(style);
        }
        b
    });
    let stats = Arc::new(Mutex::new(Stats::default()));
    let deadline = Instant::now() + Duration::from_secs(DURATION_SECS);
    let interval = Duration::from_nanos(1_000_000_000 / limit);
    let (tx, rx) = async_channel(clients);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (c, rx, stats) = (client.clone(), rx.clone(), stats.clone());
        workers.spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(key) = next else { break };
                let start = Instant::now();
                let r = c.put(key, vec![0u8; VALUE_SIZE], PutOptions::default()).await;
                let mut s = stats.lock().await;
                match r {
                    Ok(_) => s.latencies.push(start.elapsed().as_secs_f64()),
                    Err(e) => *s.errors.entry(client_message(&e)).or_default() += 1,
                }
            }
        });
    }
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    while Instant::now() < deadline {
        ticker.tick().await;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut key = prefix.clone();
        key.extend_from_slice(&seed.to_be_bytes());
        key.resize(prefix.len() + KEY_SIZE, 0);
        if tx.send(key).await.is_err() {
            break;
        }
        if let Some(b) = &bar {
            b.set_position(started.elapsed().as_secs().min(DURATION_SECS));
        }
    }
    drop(tx);
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish();
    }
    let dresp =
        ctx.call(client.delete(prefix, DeleteOptions { range: KeyRange::Prefix, prev_kv: false })).await?;
    let mut text = String::new();
    if a.auto_compact {
        let rev = dresp.header.map_or(0, |h| h.revision);
        text.push_str(&format!("Compacting with revision {rev}\n"));
        ctx.call(client.compact(rev, true)).await?;
        text.push_str(&format!("Compacted with revision {rev}\n"));
    }
    if a.auto_defrag {
        for ep in ctx.global.endpoints.clone() {
            text.push_str(&format!("Defragmenting {ep:?}\n"));
            let c = ctx.connect(std::slice::from_ref(&ep)).await?;
            ctx.call(c.defragment(cairn_api::etcdserverpb::DefragmentRequest {})).await?;
            text.push_str(&format!("Defragmented {ep:?}\n"));
        }
    }
    let s = stats.lock().await;
    let mut ok = true;
    if !s.errors.is_empty() {
        text.push_str("FAIL: too many errors\n");
        for (k, v) in &s.errors {
            text.push_str(&format!("FAIL: ERROR({k}) -> {v}\n"));
        }
        ok = false;
    }
    let n = s.latencies.len() as f64;
    let rps = if elapsed > 0.0 { n / elapsed } else { 0.0 };
    if rps / limit as f64 <= 0.9 {
        text.push_str(&format!("FAIL: Throughput too low: {} writes/s\n", rps as i64 + 1));
        ok = false;
    } else {
        text.push_str(&format!("PASS: Throughput is {} writes/s\n", rps as i64 + 1));
    }
    let slowest = s.latencies.iter().copied().fold(0.0, f64::max);
    if slowest > 0.5 {
        text.push_str(&format!("Slowest request took too long: {slowest:.6}s\n"));
        ok = false;
    } else {
        text.push_str(&format!("PASS: Slowest request took {slowest:.6}s\n"));
    }
    let mean = if n > 0.0 { s.latencies.iter().sum::<f64>() / n } else { 0.0 };
    let stddev =
        if n > 0.0 { (s.latencies.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt() } else { 0.0 };
    if stddev > 0.1 {
        text.push_str(&format!("FAIL: Stddev too high: {stddev:.6}s\n"));
        ok = false;
    } else {
        text.push_str(&format!("PASS: Stddev is {stddev:.6}s\n"));
    }
    text.push_str(if ok { "PASS\n" } else { "FAIL\n" });
    ctx.out.extend_from_slice(text.as_bytes());
    if ok {
        Ok(())
    } else {
        Err(CtlError::verbatim(ExitCode::Error as i32, ""))
    }
}

type KeyQueue = Arc<Mutex<tokio::sync::mpsc::Receiver<Vec<u8>>>>;

/// A bounded queue of keys shared by the workers.
fn async_channel(cap: usize) -> (tokio::sync::mpsc::Sender<Vec<u8>>, KeyQueue) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap.max(1));
    (tx, Arc::new(Mutex::new(rx)))
}
