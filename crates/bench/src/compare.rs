//! `cairn-bench compare`: the same workloads against throw-away etcd and cairn clusters of 1 and 3 members, on the
//! same machine and disk, with the same flags, and tables with both and the ratio.
//!
//! Each workload gets a fresh cluster of each server, etcd's then cairn's, one at a time, so they never compete for
//! the two cores or the disk, the memory figures belong to that workload alone, and drift over the run touches both
//! alike. A server that cannot form the cluster (cairn before multi-member support, etcd not installed) is skipped
//! for that size with a note instead of failing the comparison.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::env::Env;
use crate::keys::KeyChoice;
use crate::lease::LeaseSpec;
use crate::lock::LockSpec;
use crate::progress::Progress;
use crate::report::Report;
use crate::usage::Probe;
use crate::watch::WatchSpec;
use crate::workload::{Consistency, KvSpec, Op};

mod table;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The cairn binary (default: `cairn` next to this program).
    #[arg(long)]
    pub cairn_bin: Option<PathBuf>,
    /// The etcd binary; when it cannot be started, only cairn is measured.
    #[arg(long, default_value = "etcd")]
    pub etcd_bin: PathBuf,
    /// Requests per KV workload (and puts for the single-watcher events/s; a tenth for lock acquisitions).
    #[arg(long, default_value_t = 20_000)]
    pub total: u64,
    /// Watchers of the watch workload.
    #[arg(long, default_value_t = 10_000)]
    pub watchers: usize,
    /// Leases of the lease-keepalive workload.
    #[arg(long, default_value_t = 10_000)]
    pub leases: usize,
    /// Length of the rate-driven workloads (watch puts, keep-alive rounds), in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Cluster sizes to compare.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub members: Vec<usize>,
    /// Only the workloads whose name contains this text (repeat for several; default: all).
    #[arg(long)]
    pub only: Vec<String>,
    /// Where the servers' data dirs go (default: the system temp dir).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
}

/// How a workload runs, on the endpoints of whichever cluster it is given.
#[derive(Debug, Clone)]
enum Kind {
    Kv(KvSpec),
    Watch(WatchSpec),
    WatchEvents(WatchSpec),
    Lease(LeaseSpec),
    Lock(LockSpec),
}

#[derive(Debug, Clone)]
struct Workload {
    name: String,
    conns: usize,
    kind: Kind,
}

const VAL_SIZE: usize = 256;
const KEY_SIZE: usize = 8;

fn kv(name: &str, clients: usize, total: u64, keys: KeyChoice, op: Op) -> Workload {
    Workload {
        name: name.to_owned(),
        conns: clients.div_ceil(10),
        kind: Kind::Kv(KvSpec { clients, total, key_size: KEY_SIZE, val_size: VAL_SIZE, keys, rate: 0, op }),
    }
}

fn watch(name: String, watchers: usize, space: u64, rate: u64, seconds: u64) -> Workload {
    Workload {
        name,
        conns: 10,
        kind: Kind::Watch(WatchSpec {
            name: "watch",
            watchers,
            streams: 100.min(watchers),
            whole_space: false,
            keys: KeyChoice::Random(space),
            key_size: KEY_SIZE,
            val_size: VAL_SIZE,
            puts: rate * seconds,
            rate,
            writers: 32,
        }),
    }
}

fn workloads(args: &CompareArgs) -> Vec<Workload> {
    let total = args.total;
    let puts = KeyChoice::Random(100_000);
    let one_key = KeyChoice::Sequential(1);
    let mixed = Op::TxnMixed { consistency: Consistency::Linearizable, rw_ratio: 1.0, limit: 100 };
    let all = vec![
        kv("put, 1 client", 1, total, puts, Op::Put),
        kv("put, 100 clients", 100, total, puts, Op::Put),
        kv("range linearizable, 100 clients", 100, total, one_key, Op::Range(Consistency::Linearizable)),
        kv("range serializable, 100 clients", 100, total, one_key, Op::Range(Consistency::Serializable)),
        kv("txn-put (4 puts per txn), 100 clients", 100, total, puts, Op::TxnPut { ops: 4 }),
        kv("txn-mixed (r:w 1:1, range limit 100), 100 clients", 100, total, KeyChoice::Random(10_000), mixed),
        watch(
            format!("watch, {} watchers, 1000 puts/s", args.watchers),
            args.watchers,
            args.watchers as u64,
            1000,
            args.seconds,
        ),
        watch("watch-latency, 100 watchers of one key, 100 puts/s".to_owned(), 100, 1, 100, args.seconds),
        Workload {
            name: "watch events/s to 1 watcher, 100 writers".to_owned(),
            conns: 10,
            kind: Kind::WatchEvents(WatchSpec {
                name: "watch-events",
                watchers: 1,
                streams: 1,
                whole_space: true,
                keys: puts,
                key_size: KEY_SIZE,
                val_size: VAL_SIZE,
                puts: total,
                rate: 0,
                writers: 100,
            }),
        },
        Workload {
            name: format!("lease-keepalive, {} leases every second", args.leases),
            conns: 10,
            kind: Kind::Lease(LeaseSpec {
                leases: args.leases,
                streams: 100,
                total: args.leases as u64 * args.seconds,
            }),
        },
        Workload {
            name: "lock, 100 contenders".to_owned(),
            conns: 10,
            kind: Kind::Lock(LockSpec {
                name: b"cairn-bench-lock".to_vec(),
                contenders: 100,
                total: (total / 10).max(1),
                rate: 0,
            }),
        },
    ];
    all.into_iter()
        .filter(|w| args.only.is_empty() || args.only.iter().any(|word| w.name.contains(word.as_str())))
        .collect()
}

async fn run_workload(env: &Env, w: &Workload) -> anyhow::Result<Report> {
    let mut report = match &w.kind {
        Kind::Kv(spec) => crate::workload::run(env, spec).await,
        Kind::Watch(spec) => crate::watch::run(env, spec).await,
        Kind::WatchEvents(spec) => crate::watch::events(env, spec).await,
        Kind::Lease(spec) => crate::lease::run(env, spec).await,
        Kind::Lock(spec) => crate::lock::run(env, spec).await,
    }?;
    report.workload.clone_from(&w.name);
    Ok(report)
}

/// One server's outcome for one workload.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Measured(Box<Report>),
    /// The server could not be measured (not installed, cannot form the cluster, the workload failed).
    Skipped(String),
}

impl Outcome {
    fn report(&self) -> Option<&Report> {
        match self {
            Outcome::Measured(r) => Some(r),
            Outcome::Skipped(_) => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub members: usize,
    pub workload: String,
    pub unit: &'static str,
    pub etcd: Outcome,
    pub cairn: Outcome,
}

pub async fn run(args: &CompareArgs, cairn_bin: &Path, json: bool) -> anyhow::Result<()> {
    let root = args.data_root.clone().unwrap_or_else(std::env::temp_dir);
    let progress = Progress::for_stderr();
    let mut rows = Vec::new();
    for &members in &args.members {
        anyhow::ensure!(members > 0, "--members sizes must be at least 1");
        // A server that cannot form a cluster of this size is not retried for every workload.
        let mut etcd_broken: Option<String> = None;
        let mut cairn_broken: Option<String> = None;
        for w in workloads(args) {
            progress.note(&format!("[{members} member(s)] {}", w.name));
            let etcd = measure(&args.etcd_bin, &root, members, &w, progress, &mut etcd_broken).await;
            let cairn = measure(cairn_bin, &root, members, &w, progress, &mut cairn_broken).await;
            let unit = etcd.report().or(cairn.report()).map_or("", |r| r.unit);
            rows.push(Row { members, workload: w.name.clone(), unit, etcd, cairn });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table::render(&rows));
    }
    Ok(())
}

/// Runs one workload on a fresh cluster of `bin`; `broken` remembers a cluster that would not start.
async fn measure(
    bin: &Path,
    root: &Path,
    members: usize,
    w: &Workload,
    progress: Progress,
    broken: &mut Option<String>,
) -> Outcome {
    if let Some(why) = broken {
        return Outcome::Skipped(why.clone());
    }
    let mut cluster = match Cluster::start(bin, root, members) {
        Ok(c) => c,
        Err(e) => {
            let why = format!("{} not started: {e:#}", bin.display());
            *broken = Some(why.clone());
            return Outcome::Skipped(why);
        }
    };
    if let Err(e) = cluster.wait_ready(Duration::from_secs(30)).await {
        let why = format!("{} did not form a {members}-member cluster: {e:#}", bin.display());
        *broken = Some(why.clone());
        return Outcome::Skipped(why);
    }
    let env =
        Env { endpoints: cluster.client_urls(), conns: w.conns, progress, probe: Probe::new(cluster.pids()) };
    match run_workload(&env, w).await {
        Ok(report) => Outcome::Measured(Box::new(report)),
        Err(e) => Outcome::Skipped(format!("{} failed: {e:#}", w.name)),
    }
}
