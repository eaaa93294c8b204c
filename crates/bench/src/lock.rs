//! `lock`: `contenders` clients, each with its own lease, acquire and release one lock (v3lock's Lock and Unlock)
//! until `total` acquisitions. Latency is the time a Lock call takes (waiting for the holders ahead included);
//! throughput is acquisitions per second. The run also checks mutual exclusion as far as one process can see it:
//! a Lock that returns while another contender still holds the lock counts as an error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cairn_api::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
use cairn_api::v3lockpb::{LockRequest, UnlockRequest};
use cairn_client::Client;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use crate::env::Env;
use crate::rate::RateLimiter;
use crate::report::{new_histogram, record, Errors, Report, Summary};

/// The contenders' leases outlive the run; they are revoked at its end.
const LEASE_TTL_SECONDS: i64 = 60;

#[derive(Debug, Clone)]
pub struct LockSpec {
    pub name: Vec<u8>,
    pub contenders: usize,
    pub total: u64,
    pub rate: u64,
}

struct Shared {
    next: AtomicU64,
    /// Set by the holder between its Lock returning and its Unlock being sent.
    held: AtomicBool,
    limiter: RateLimiter,
    bar: ProgressBar,
}

pub async fn run(env: &Env, spec: &LockSpec) -> anyhow::Result<Report> {
    anyhow::ensure!(spec.contenders > 0, "--clients must be at least 1");
    let connections = env.connect().await?;
    let bar = env.progress.bar(spec.total, "lock acquisitions");
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        held: AtomicBool::new(false),
        limiter: RateLimiter::new(spec.rate),
        bar,
    });
    let mut leases = Vec::with_capacity(spec.contenders);
    for i in 0..spec.contenders {
        let client = &connections[i % connections.len()];
        let resp = client
            .lease_grant(LeaseGrantRequest { ttl: LEASE_TTL_SECONDS, id: 0 })
            .await
            .context("granting a lease")?;
        leases.push(resp.id);
    }
    // Histograms are made before the clock starts, and merged after it stops.
    let histograms = leases.iter().map(|_| new_histogram()).collect::<anyhow::Result<Vec<_>>>()?;
    let phase = env.probe.start()?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.contenders);
    for (i, (lease, latencies)) in leases.iter().zip(histograms).enumerate() {
        let client = connections[i % connections.len()].clone();
        let (spec, shared, lease) = (spec.clone(), Arc::clone(&shared), *lease);
        tasks.push(tokio::spawn(async move { contend(client, &spec, &shared, lease, latencies).await }));
    }
    let mut finished = Vec::with_capacity(tasks.len());
    for task in tasks {
        finished.push(task.await.context("a contender task panicked")??);
    }
    let elapsed =
        finished.iter().map(|(.., at)| at.saturating_duration_since(started)).max().unwrap_or_default();
    let mut latencies = new_histogram()?;
    let mut errors = Errors::default();
    for (h, e, _) in finished {
        latencies.add(&h).context("merging latency histograms")?;
        errors.merge(e);
    }
    let server = crate::usage::finish(phase.as_ref())?;
    shared.bar.finish_and_clear();
    for (i, lease) in leases.iter().enumerate() {
        // Best effort: the leases expire by themselves anyway.
        let _ = connections[i % connections.len()].lease_revoke(LeaseRevokeRequest { id: *lease }).await;
    }
    let mut report = Report::new("lock", "acquisitions", Summary::new(&latencies, errors, elapsed))
        .detail("contenders", spec.contenders as f64);
    report.server = server;
    Ok(report)
}

async fn contend(
    client: Client,
    spec: &LockSpec,
    shared: &Shared,
    lease: i64,
    mut latencies: Histogram<u64>,
) -> anyhow::Result<(Histogram<u64>, Errors, Instant)> {
    let mut errors = Errors::default();
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= spec.total {
            break;
        }
        shared.limiter.wait().await;
        let start = Instant::now();
        let key = match client.lock(LockRequest { name: spec.name.clone(), lease }).await {
            Ok(resp) => resp.key,
            Err(e) => {
                errors.add(e);
                continue;
            }
        };
        record(&mut latencies, start.elapsed());
        if shared.held.swap(true, Ordering::SeqCst) {
            errors.add("two contenders held the lock at once");
        }
        // Hold the lock across a scheduling point, so another contender's Lock returning early would be seen.
        tokio::task::yield_now().await;
        shared.held.store(false, Ordering::SeqCst);
        if let Err(e) = client.unlock(UnlockRequest { key }).await {
            errors.add(e);
        }
        shared.bar.inc(1);
    }
    Ok((latencies, errors, Instant::now()))
}
