//! Throw-away local clusters for `compare`: 1 or 3 processes of one server binary (cairn or etcd) with etcd's flags,
//! on free loopback ports, in a temp dir under the chosen root. Every process is killed and the dir removed when
//! the cluster is dropped, also when a workload fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_client::{Client, ConnectOptions, GetOptions};

/// One member process.
#[derive(Debug)]
struct Member {
    name: String,
    child: Child,
    client_url: String,
}

#[derive(Debug)]
pub struct Cluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

/// The `--initial-cluster` value for members named m0, m1, ... at these peer URLs.
pub fn initial_cluster(peer_urls: &[String]) -> String {
    peer_urls.iter().enumerate().map(|(i, url)| format!("m{i}={url}")).collect::<Vec<_>>().join(",")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts `size` members of `bin`; they are not ready yet (see [`Cluster::wait_ready`]).
    pub fn start(bin: &Path, root: &Path, size: usize) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("cairn-bench-").tempdir_in(root)?;
        let mut client_urls = Vec::with_capacity(size);
        let mut peer_urls = Vec::with_capacity(size);
        for _ in 0..size {
            client_urls.push(format!("http://127.0.0.1:{}", free_port()?));
            peer_urls.push(format!("http://127.0.0.1:{}", free_port()?));
        }
        let initial = initial_cluster(&peer_urls);
        let mut cluster = Cluster { members: Vec::with_capacity(size), dir };
        for (i, (client_url, peer_url)) in client_urls.into_iter().zip(&peer_urls).enumerate() {
            let name = format!("m{i}");
            let log = std::fs::File::create(cluster.dir.path().join(format!("{name}.log")))?;
            let child = Command::new(bin)
                .arg(format!("--name={name}"))
                .arg(format!("--data-dir={}", cluster.dir.path().join(&name).display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={initial}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=cairn-bench")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            // Pushed at once, so a failure starting a later member still kills this one.
            cluster.members.push(Member { name, child, client_url });
        }
        Ok(cluster)
    }

    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    /// Ready once every member answers a linearizable Range (it has a leader and applies). A member that exits
    /// fails the wait at once, with the end of its log.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        for i in 0..self.members.len() {
            loop {
                if let Some(status) = self.members[i].child.try_wait()? {
                    anyhow::bail!("member {} exited ({status}): {}", self.members[i].name, self.log_tail(i));
                }
                let url = self.members[i].client_url.clone();
                let attempt = async {
                    let client = Client::connect([&url], ConnectOptions::default()).await?;
                    client.get("health", GetOptions::default()).await?;
                    anyhow::Ok(())
                };
                match attempt.await {
                    Ok(()) => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(e.context(format!(
                            "member {} never became ready: {}",
                            self.members[i].name,
                            self.log_tail(i)
                        )))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }

    /// The last lines of a member's log, for error messages.
    fn log_tail(&self, i: usize) -> String {
        let path = self.dir.path().join(format!("{}.log", self.members[i].name));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            // The process may already be gone; there is nothing more to do about either error.
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_names_members_in_order() {
        let urls = ["http://127.0.0.1:1".to_owned(), "http://127.0.0.1:2".to_owned()];
        assert_eq!(initial_cluster(&urls), "m0=http://127.0.0.1:1,m1=http://127.0.0.1:2");
    }
}
