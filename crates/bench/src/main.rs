//! `cairn-bench`: a load generator for cairn and etcd, modelled on etcd's `tools/benchmark`.
//!
//! It speaks only the etcd v3 gRPC API, so every workload runs unchanged against cairn and against a real etcd,
//! which is how the README's performance table is made: `cairn-bench compare` starts both on the same machine, on
//! the same disk, with the same flags, runs the same workloads against each and prints one table with the ratio.
//!
//! # Layout
//! - `workload`: the load loops (put, range), bounded by a request count, recording latency per request.
//! - `report`: merging per-client HDR histograms into a throughput/latency summary (text or JSON).
//! - `compare`: starting a throw-away cairn and etcd on free loopback ports and running the workloads on each.
//!
//! It must not know cairn's internals: it talks through cairn-client and the wire types of cairn-api only.

mod compare;
mod report;
mod workload;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::workload::{Consistency, KeyChoice, LoadSpec, Op};

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
    Put {
        #[command(flatten)]
        load: LoadArgs,
        /// Size of each value in bytes.
        #[arg(long, default_value_t = 256)]
        val_size: usize,
    },
    /// Read one key (or a prefix with --range-end) with Range.
    Range {
        #[command(flatten)]
        load: LoadArgs,
        /// "l" for linearizable reads, "s" for serializable ones (as etcd's benchmark).
        #[arg(long, default_value = "l")]
        consistency: Consistency,
    },
    /// Start cairn and etcd (when installed) in temp dirs and run the same workloads against both.
    Compare(compare::CompareArgs),
}

/// Flags shared by every workload (names as etcd's benchmark tool).
#[derive(Debug, Args)]
struct LoadArgs {
    /// Comma-separated client URLs.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Number of gRPC connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Number of concurrent clients (requests in flight).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Total number of requests.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Size of each key in bytes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Number of distinct keys to write or read.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Use keys 0, 1, 2, ... in order instead of random ones.
    #[arg(long)]
    sequential_keys: bool,
}

impl LoadArgs {
    fn spec(&self, op: Op) -> LoadSpec {
        LoadSpec {
            endpoints: self.endpoints.clone(),
            conns: self.conns,
            clients: self.clients,
            total: self.total,
            key_size: self.key_size,
            keys: if self.sequential_keys {
                KeyChoice::Sequential(self.key_space_size)
            } else {
                KeyChoice::Random(self.key_space_size)
            },
            op,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Put { load, val_size } => {
            let summary = workload::run(&load.spec(Op::Put { val_size })).await?;
            summary.print(cli.json)?;
        }
        Command::Range { load, consistency } => {
            let summary = workload::run(&load.spec(Op::Range(consistency))).await?;
            summary.print(cli.json)?;
        }
        Command::Compare(args) => {
            let cairn = args.cairn_bin.clone().map_or_else(default_cairn_bin, Ok)?;
            compare::run(&args, &cairn, cli.json).await?;
        }
    }
    Ok(())
}

/// `cairn` is built next to `cairn-bench` by `cargo build --release`.
fn default_cairn_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow::anyhow!("{} has no parent directory", exe.display()))?;
    Ok(dir.join("cairn"))
}
