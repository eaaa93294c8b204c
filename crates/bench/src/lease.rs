//! `lease-keepalive`: `leases` leases granted up front, then kept alive once a second each over `streams` keep-alive
//! streams (as clients holding many sessions do), for as many rounds as `total` keep-alives need. Each keep-alive's
//! latency is the time from sending it to its answer; the server's CPU and memory are measured over the keep-alive
//! rounds only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};
use cairn_client::{Client, KeepAliveStream};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::time::MissedTickBehavior;

use crate::env::Env;
use crate::report::{new_histogram, record, Errors, Report, Summary};

/// Keep-alives sent on a stream before reading their answers, so neither side's buffers fill.
const WINDOW: usize = 32;
/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Leases outlive the run by far, so none expires between two rounds.
const LEASE_TTL_SECONDS: i64 = 60;

#[derive(Debug, Clone)]
pub struct LeaseSpec {
    pub leases: usize,
    pub streams: usize,
    /// Keep-alives in all; rounds = total / leases, rounded up.
    pub total: u64,
}

impl LeaseSpec {
    fn rounds(&self) -> u64 {
        self.total.div_ceil(self.leases.max(1) as u64).max(1)
    }
}

pub async fn run(env: &Env, spec: &LeaseSpec) -> anyhow::Result<Report> {
    anyhow::ensure!(spec.leases > 0 && spec.streams > 0, "--leases and --clients must be at least 1");
    let connections = env.connect().await?;
    let granted = Instant::now();
    let leases = grant(env, spec, &connections).await?;
    let grant_seconds = granted.elapsed().as_secs_f64();

    let rounds = spec.rounds();
    let bar = env.progress.bar(rounds * leases.len() as u64, "keep-alives");
    let phase = env.probe.start()?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.streams);
    let shares: Vec<Vec<i64>> = (0..spec.streams.min(leases.len()))
        .map(|s| leases.iter().skip(s).step_by(spec.streams).copied().collect())
        .collect();
    for (s, share) in shares.into_iter().enumerate() {
        let client = connections[s % connections.len()].clone();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move { keep_alive(client, share, rounds, bar).await }));
    }
    let mut latencies = new_histogram()?;
    let mut errors = Errors::default();
    for task in tasks {
        let (h, e) = task.await.context("a keep-alive task panicked")??;
        latencies.add(&h).context("merging latency histograms")?;
        errors.merge(e);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut report = Report::new("lease-keepalive", "keep-alives", Summary::new(&latencies, errors, elapsed))
        .detail("leases", leases.len() as f64)
        .detail("rounds", rounds as f64)
        .detail("grant_seconds", grant_seconds);
    report.server = crate::usage::finish(phase.as_ref())?;
    Ok(report)
}

/// Grants the leases, `streams` grants in flight at a time.
async fn grant(env: &Env, spec: &LeaseSpec, connections: &[Client]) -> anyhow::Result<Vec<i64>> {
    let bar = env.progress.bar(spec.leases as u64, "lease grants");
    let mut tasks = Vec::with_capacity(spec.streams);
    for s in 0..spec.streams.min(spec.leases) {
        let client = connections[s % connections.len()].clone();
        let count = (s..spec.leases).step_by(spec.streams).count();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let resp = client
                    .lease_grant(LeaseGrantRequest { ttl: LEASE_TTL_SECONDS, id: 0 })
                    .await
                    .context("granting a lease")?;
                ids.push(resp.id);
                bar.inc(1);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut leases = Vec::with_capacity(spec.leases);
    for task in tasks {
        leases.extend(task.await.context("a lease-granting task panicked")??);
    }
    bar.finish_and_clear();
    Ok(leases)
}

/// One stream: every second, one keep-alive per lease of its share.
async fn keep_alive(
    client: Client,
    leases: Vec<i64>,
    rounds: u64,
    bar: ProgressBar,
) -> anyhow::Result<(Histogram<u64>, Errors)> {
    let mut latencies = new_histogram()?;
    let mut errors = Errors::default();
    let mut stream: Option<KeepAliveStream> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sent: HashMap<i64, Instant> = HashMap::with_capacity(WINDOW);
    for _ in 0..rounds {
        tick.tick().await;
        for window in leases.chunks(WINDOW) {
            sent.clear();
            for id in window {
                let request = LeaseKeepAliveRequest { id: *id };
                sent.insert(*id, Instant::now());
                match &stream {
                    Some(s) => s.send(request).await?,
                    None => {
                        stream = Some(
                            client.lease_keep_alive(request).await.context("opening a keep-alive stream")?,
                        )
                    }
                }
            }
            let s = stream.as_mut().context("no keep-alive stream")?;
            while !sent.is_empty() {
                let resp = tokio::time::timeout(ANSWER_TIMEOUT, s.message())
                    .await
                    .context("no answer to a keep-alive")??
                    .context("the server ended a keep-alive stream")?;
                let Some(at) = sent.remove(&resp.id) else { continue };
                record(&mut latencies, at.elapsed());
                if resp.ttl <= 0 {
                    errors.add(format!("lease {:x} expired or was not found", resp.id));
                }
                bar.inc(1);
            }
        }
    }
    Ok((latencies, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_cover_the_total() {
        let spec = |leases, total| LeaseSpec { leases, streams: 1, total };
        assert_eq!(spec(10_000, 50_000).rounds(), 5);
        assert_eq!(spec(10_000, 50_001).rounds(), 6);
        assert_eq!(spec(10_000, 1).rounds(), 1);
        assert_eq!(spec(10, 0).rounds(), 1, "at least one round");
    }
}
