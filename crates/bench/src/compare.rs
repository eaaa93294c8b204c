//! `cairn-bench compare`: the same workloads against a throw-away etcd and cairn, one after the other, on the same
//! machine and disk, with the same flags, and one table with both and the ratio.
//!
//! Servers run one at a time so they never compete for the two cores or the disk; each is killed when its
//! workloads end, also when a workload fails (the guard's Drop).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_client::{Client, ConnectOptions, GetOptions};
use clap::Args;
use serde::Serialize;

use crate::report::Summary;
use crate::workload::{self, Consistency, KeyChoice, LoadSpec, Op};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The cairn binary (default: `cairn` next to this program).
    #[arg(long)]
    pub cairn_bin: Option<PathBuf>,
    /// The etcd binary; when it cannot be started, only cairn is measured.
    #[arg(long, default_value = "etcd")]
    pub etcd_bin: PathBuf,
    /// Requests per workload.
    #[arg(long, default_value_t = 20_000)]
    pub total: u64,
    /// Where the servers' data dirs go (default: the system temp dir).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
}

/// One row of the table: a workload's name and how to run it against an endpoint.
struct Workload {
    name: &'static str,
    clients: usize,
    conns: usize,
    op: Op,
    keys: KeyChoice,
}

fn workloads() -> Vec<Workload> {
    let puts = KeyChoice::Random(100_000);
    let reads = KeyChoice::Sequential(1);
    vec![
        Workload { name: "put, 1 client", clients: 1, conns: 1, op: Op::Put { val_size: 256 }, keys: puts },
        Workload {
            name: "put, 100 clients",
            clients: 100,
            conns: 10,
            op: Op::Put { val_size: 256 },
            keys: puts,
        },
        Workload {
            name: "range linearizable, 100 clients",
            clients: 100,
            conns: 10,
            op: Op::Range(Consistency::Linearizable),
            keys: reads,
        },
        Workload {
            name: "range serializable, 100 clients",
            clients: 100,
            conns: 10,
            op: Op::Range(Consistency::Serializable),
            keys: reads,
        },
    ]
}

#[derive(Debug, Serialize)]
struct Row {
    workload: &'static str,
    etcd: Option<Summary>,
    cairn: Summary,
}

pub async fn run(args: &CompareArgs, cairn_bin: &Path, json: bool) -> anyhow::Result<()> {
    let root = args.data_root.clone().unwrap_or_else(std::env::temp_dir);
    let etcd = match measure(&args.etcd_bin, &root, args.total).await {
        Ok(results) => Some(results),
        Err(e) => {
            eprintln!("etcd not measured ({e:#}); showing cairn alone");
            None
        }
    };
    let cairn = measure(cairn_bin, &root, args.total).await.context("measuring cairn")?;
    let rows: Vec<Row> = workloads()
        .iter()
        .zip(cairn)
        .enumerate()
        .map(|(i, (w, cairn))| Row {
            workload: w.name,
            etcd: etcd.as_ref().and_then(|e| e.get(i).cloned()),
            cairn,
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows, args.total);
    }
    Ok(())
}

fn print_table(rows: &[Row], total: u64) {
    println!("{total} requests per workload, 256-byte values; ratio = cairn / etcd (throughput), etcd / cairn (p99)");
    println!("| workload | etcd req/s | cairn req/s | ratio | etcd p99 ms | cairn p99 ms | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let c = &row.cairn;
        match &row.etcd {
            Some(e) => println!(
                "| {} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2}x |",
                row.workload,
                e.requests_per_second,
                c.requests_per_second,
                c.requests_per_second / e.requests_per_second.max(f64::MIN_POSITIVE),
                e.latency_ms.p99,
                c.latency_ms.p99,
                e.latency_ms.p99 / c.latency_ms.p99.max(f64::MIN_POSITIVE),
            ),
            None => println!(
                "| {} | - | {:.0} | - | - | {:.2} | - |",
                row.workload, c.requests_per_second, c.latency_ms.p99
            ),
        }
        for (who, s) in [("etcd", row.etcd.as_ref()), ("cairn", Some(c))] {
            if let Some(s) = s.filter(|s| s.errors > 0) {
                eprintln!("{who}: {} errors in {}: {:?}", s.errors, row.workload, s.first_error);
            }
        }
    }
}

/// Starts `bin` as a one-member cluster with etcd's flags, runs every workload, stops it.
async fn measure(bin: &Path, root: &Path, total: u64) -> anyhow::Result<Vec<Summary>> {
    let server = Server::start(bin, root)?;
    server.wait_ready(Duration::from_secs(30)).await?;
    let mut results = Vec::new();
    for w in workloads() {
        let spec = LoadSpec {
            endpoints: vec![server.client_url.clone()],
            conns: w.conns,
            clients: w.clients,
            total,
            key_size: 8,
            keys: w.keys,
            op: w.op,
        };
        results.push(
            workload::run(&spec).await.with_context(|| format!("{} against {}", w.name, bin.display()))?,
        );
    }
    Ok(results)
}

/// A server process in its own temp data dir; killed and removed on drop.
struct Server {
    child: Child,
    client_url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(bin: &Path, root: &Path) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new().prefix("cairn-bench-").tempdir_in(root)?;
        let client_url = format!("http://127.0.0.1:{}", free_port()?);
        let peer_url = format!("http://127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(bin)
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bench={peer_url}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Server { child, client_url, _dir: dir })
    }

    /// Ready once a linearizable Range succeeds: the member has a leader and applies.
    async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let attempt = async {
                let client = Client::connect([&self.client_url], ConnectOptions::default()).await?;
                client.get("health", GetOptions::default()).await?;
                anyhow::Ok(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e.context("server never became ready")),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The process may already be gone; there is nothing more to do about either error.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
