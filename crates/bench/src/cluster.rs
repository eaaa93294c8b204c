//! Throw-away local clusters for `compare`: 1 or 3 processes of one server binary (cairn or etcd) with etcd's flags,
//! on free loopback ports, in a temp dir under the chosen root. Every process is killed and the dir removed when
//! the cluster is dropped, also when a workload fails. A cluster whose member lost a port to another process before
//! binding it starts again on new ports (the port picking and that check are the test harnesses' own).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_client::{Client, ConnectOptions, GetOptions};

#[path = "../../server/tests/common/launch.rs"]
mod launch;

use launch::{free_port, Launch, Spawned};

/// One member process.
#[derive(Debug)]
struct Member {
    name: String,
    child: Child,
    client_url: String,
    /// Client and peer port.
    ports: [u16; 2],
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

impl Cluster {
    /// Starts `size` members of `bin`, listening on their ports; they are not ready yet (see
    /// [`Cluster::wait_ready`]).
    pub fn start(bin: &Path, root: &Path, size: usize) -> anyhow::Result<Cluster> {
        let mut attempt = 1;
        loop {
            let mut cluster = Self::spawn(bin, root, size)?;
            if attempt == launch::ATTEMPTS || cluster.listening() != Launch::PortTaken {
                return Ok(cluster);
            }
            // Dropped: its processes are gone, its dir removed.
            attempt += 1;
        }
    }

    /// Waits until every member listens on its ports, or one exited.
    fn listening(&mut self) -> Launch {
        let logs: Vec<PathBuf> =
            self.members.iter().map(|m| self.dir.path().join(format!("{}.log", m.name))).collect();
        let mut spawned: Vec<Spawned<'_>> = self
            .members
            .iter_mut()
            .zip(&logs)
            .map(|(m, log)| Spawned { child: &mut m.child, ports: m.ports.to_vec(), log })
            .collect();
        launch::wait_listening(&mut spawned, Duration::from_secs(20))
    }

    fn spawn(bin: &Path, root: &Path, size: usize) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("cairn-bench-").tempdir_in(root)?;
        let ports: Vec<[u16; 2]> = (0..size).map(|_| [free_port(), free_port()]).collect();
        let peer_urls: Vec<String> =
            ports.iter().map(|[_, peer]| format!("http://127.0.0.1:{peer}")).collect();
        let initial = initial_cluster(&peer_urls);
        let mut cluster = Cluster { members: Vec::with_capacity(size), dir };
        for (i, (&ports, peer_url)) in ports.iter().zip(&peer_urls).enumerate() {
            let client_url = format!("http://127.0.0.1:{}", ports[0]);
            let name = format!("m{i}");
            let log = std::fs::File::create(cluster.dir.path().join(format!("{name}.log")))?;
            let child = Command::new(bin)
                .args(launch::member_args(
                    &name,
                    &cluster.dir.path().join(&name),
                    &client_url,
                    peer_url,
                    &initial,
                ))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=cairn-bench")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            // Pushed at once, so a failure starting a later member still kills this one.
            cluster.members.push(Member { name, child, client_url, ports });
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
