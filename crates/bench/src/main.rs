//! `cairn-bench`: a load generator for cairn and etcd, modelled on etcd's `tools/benchmark`.
//!
//! It speaks only the etcd v3 gRPC API, so every workload runs unchanged against cairn and against a real etcd,
//! which is how the README's performance tables are made: `cairn-bench compare` starts both on the same machine, on
//! the same disk, with the same flags, runs the same workloads against each and prints tables with the ratio.
//!
//! # Layout
//! - `env`: endpoints (all, or the leader's), connections, progress and server probe shared by every workload.
//! - `workload`: the KV load loops (put, range, txn-put, txn-mixed), bounded by a request count.
//! - `direct`: the KV loops' unary calls, written onto h2 connections as Go's gRPC client frames them.
//! - `watch`: watchers on a key space with rate-limited puts (watch, watch-latency, watch-events); delivery latency.
//! - `lease`: many leases kept alive every second (lease-keepalive).
//! - `lock`: contenders acquiring and releasing one lock.
//! - `keys`, `rate`: key choice (sequential or random over a key space) and the shared rate limit.
//! - `report`: HDR histograms merged into a throughput/latency summary (text or JSON).
//! - `usage`: the server's RSS and CPU from /proc while a workload runs.
//! - `progress`: the live progress bar, on a terminal only.
//! - `cluster`, `compare`: throw-away 1- and 3-member clusters of cairn and etcd, the same workloads on each, tables.
//!
//! It must not know cairn's internals: it talks through cairn-client, or gRPC framing of its own over h2, and the
//! wire types of cairn-api only.

/// The load generator shares the machine with the servers it measures: a lean allocator leaves them more CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cluster;
mod compare;
mod direct;
mod env;
mod keys;
mod lease;
mod lock;
mod progress;
mod rate;
mod report;
mod usage;
mod watch;
mod workload;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::env::Env;
use crate::keys::KeyChoice;
use crate::progress::Progress;
use crate::report::Report;
use crate::usage::Probe;
use crate::workload::{Consistency, KvSpec, Op};

#[derive(Debug, Parser)]
#[command(name = "cairn-bench", version, about = "Benchmark cairn (or etcd) over the etcd v3 gRPC API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print the result as JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write keys with Put.
    Put(LoadArgs),
    /// Read one key with Range.
    Range {
        #[command(flatten)]
        load: LoadArgs,
        /// "l" for linearizable reads, "s" for serializable ones (as etcd's benchmark).
        #[arg(long, default_value = "l")]
        consistency: Consistency,
    },
    /// Txns of --txn-ops puts to distinct keys.
    TxnPut {
        #[command(flatten)]
        load: LoadArgs,
        /// Puts per txn.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Txns that each put one key or range over the key space, in the ratio --rw-ratio.
    TxnMixed {
        #[command(flatten)]
        load: LoadArgs,
        /// "l" for linearizable reads, "s" for serializable ones.
        #[arg(long, default_value = "l")]
        consistency: Consistency,
        /// Reads per write.
        #[arg(long, default_value_t = 1.0)]
        rw_ratio: f64,
        /// Most keys a read returns.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// --watchers watchers over the key space (watcher i on key i mod --key-space-size) on --clients streams;
    /// --total puts at --rate: delivery latency and, with --server-pid, the server's memory.
    Watch {
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long, default_value_t = 10_000)]
        watchers: usize,
    },
    /// --clients watchers of one key, each on its own stream; --total puts at --rate (default 100/s): the latency
    /// from a put to every watcher's event.
    WatchLatency(LoadArgs),
    /// One watcher of every key while --clients writers put --total keys unthrottled: events/s to a single watcher,
    /// then the same events replayed from history to a new watcher.
    WatchEvents(LoadArgs),
    /// --leases leases kept alive once a second each over --clients streams, --total keep-alives in all.
    LeaseKeepalive {
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long, default_value_t = 10_000)]
        leases: usize,
    },
    /// --clients contenders, each with its own lease, acquire and release one lock --total times in all.
    Lock {
        #[command(flatten)]
        load: LoadArgs,
        /// The lock's name.
        #[arg(long, default_value = "cairn-bench-lock")]
        name: String,
    },
    /// Start etcd and cairn clusters (1 and 3 members) in temp dirs and run the same workloads against both.
    Compare(compare::CompareArgs),
}

/// Flags shared by every workload (names as etcd's benchmark tool).
#[derive(Debug, Args)]
struct LoadArgs {
    /// Comma-separated client URLs.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Send only to the endpoint of the current leader.
    #[arg(long)]
    target_leader: bool,
    /// Number of gRPC connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Number of concurrent clients (requests in flight; streams for watch and lease workloads).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Total number of requests (puts for watch workloads, keep-alives, lock acquisitions).
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Size of each key in bytes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Size of each value in bytes (watch workloads: at least 20, the send time they carry).
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Number of distinct keys to write or read (watch: default --watchers).
    #[arg(long)]
    key_space_size: Option<u64>,
    /// Use keys 0, 1, 2, ... in order instead of random ones.
    #[arg(long)]
    sequential_keys: bool,
    /// Requests per second over all clients (0: no limit; watch-latency: 100 when not given).
    #[arg(long)]
    rate: Option<u64>,
    /// Process ids of the server(s), to report their memory and CPU over the run (Linux /proc).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
}

impl LoadArgs {
    async fn env(&self) -> anyhow::Result<Env> {
        let endpoints = if self.target_leader {
            vec![env::leader_endpoint(&self.endpoints).await?]
        } else {
            self.endpoints.clone()
        };
        Ok(Env {
            endpoints,
            conns: self.conns,
            progress: Progress::for_stderr(),
            probe: Probe::new(self.server_pid.clone()),
        })
    }

    fn keys(&self, default_space: u64) -> KeyChoice {
        KeyChoice::new(self.key_space_size.unwrap_or(default_space), self.sequential_keys)
    }

    fn kv(&self, op: Op) -> KvSpec {
        KvSpec {
            clients: self.clients,
            total: self.total,
            key_size: self.key_size,
            val_size: self.val_size,
            keys: self.keys(1),
            rate: self.rate.unwrap_or(0),
            op,
        }
    }

    fn watch(
        &self,
        name: &'static str,
        watchers: usize,
        keys: KeyChoice,
        default_rate: u64,
    ) -> watch::WatchSpec {
        watch::WatchSpec {
            name,
            watchers,
            streams: self.clients,
            whole_space: false,
            keys,
            key_size: self.key_size,
            val_size: self.val_size,
            puts: self.total,
            rate: self.rate.unwrap_or(default_rate),
            writers: self.clients.clamp(1, 100),
        }
    }
}

async fn run(command: Command, json: bool) -> anyhow::Result<()> {
    let report: Report = match command {
        Command::Put(load) => workload::run(&load.env().await?, &load.kv(Op::Put)).await?,
        Command::Range { load, consistency } => {
            workload::run(&load.env().await?, &load.kv(Op::Range(consistency))).await?
        }
        Command::TxnPut { load, txn_ops } => {
            workload::run(&load.env().await?, &load.kv(Op::TxnPut { ops: txn_ops })).await?
        }
        Command::TxnMixed { load, consistency, rw_ratio, limit } => {
            anyhow::ensure!(rw_ratio >= 0.0, "--rw-ratio must not be negative");
            let op = Op::TxnMixed { consistency, rw_ratio, limit };
            workload::run(&load.env().await?, &load.kv(op)).await?
        }
        Command::Watch { load, watchers } => {
            let spec = load.watch("watch", watchers, load.keys(watchers as u64), 0);
            watch::run(&load.env().await?, &spec).await?
        }
        Command::WatchLatency(load) => {
            let spec = load.watch("watch-latency", load.clients, KeyChoice::Sequential(1), 100);
            watch::run(&load.env().await?, &spec).await?
        }
        Command::WatchEvents(load) => {
            let spec = load.watch("watch-events", 1, load.keys(100_000), 0);
            watch::events(&load.env().await?, &spec).await?
        }
        Command::LeaseKeepalive { load, leases } => {
            let spec = lease::LeaseSpec { leases, streams: load.clients, total: load.total };
            lease::run(&load.env().await?, &spec).await?
        }
        Command::Lock { load, name } => {
            let spec = lock::LockSpec {
                name: name.into_bytes(),
                contenders: load.clients,
                total: load.total,
                rate: load.rate.unwrap_or(0),
            };
            lock::run(&load.env().await?, &spec).await?
        }
        Command::Compare(args) => {
            let cairn = args.cairn_bin.clone().map_or_else(default_cairn_bin, Ok)?;
            return compare::run(&args, &cairn, json).await;
        }
    };
    report.print(json)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli.command, cli.json).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error chain on one line, never a backtrace.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `cairn` is built next to `cairn-bench` by `cargo build --release`.
fn default_cairn_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow::anyhow!("{} has no parent directory", exe.display()))?;
    Ok(dir.join("cairn"))
}
