//! What every workload runs against: the endpoints (all given, or only the leader's with `--target-leader`), the
//! number of gRPC connections, the progress display and the server probe.

use std::time::Duration;

use anyhow::Context;
use cairn_client::{Client, ConnectOptions};

use crate::progress::Progress;
use crate::usage::Probe;

#[derive(Debug, Clone)]
pub struct Env {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub progress: Progress,
    pub probe: Probe,
}

/// Long enough for a contended Lock or a slow 3-member commit; a request that exceeds it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn connect_options() -> ConnectOptions {
    ConnectOptions { request_timeout: REQUEST_TIMEOUT, ..ConnectOptions::default() }
}

impl Env {
    /// The endpoint of each of the `conns` connections: round-robin over the endpoints.
    pub fn connection_urls(&self) -> anyhow::Result<impl Iterator<Item = &String>> {
        anyhow::ensure!(self.conns > 0, "--conns must be at least 1");
        anyhow::ensure!(!self.endpoints.is_empty(), "--endpoints must name at least one endpoint");
        Ok(self.endpoints.iter().cycle().take(self.conns))
    }

    /// `conns` connections, spread round-robin over the endpoints.
    pub async fn connect(&self) -> anyhow::Result<Vec<Client>> {
        let mut connections = Vec::with_capacity(self.conns);
        for url in self.connection_urls()? {
            connections.push(
                Client::connect([url], connect_options())
                    .await
                    .with_context(|| format!("connecting to {url}"))?,
            );
        }
        Ok(connections)
    }
}

/// The endpoint of the current leader among `endpoints` (etcd benchmark's `--target-leader`).
pub async fn leader_endpoint(endpoints: &[String]) -> anyhow::Result<String> {
    let mut last_error = None;
    for url in endpoints {
        let status = async {
            let client = Client::connect([url], ConnectOptions::default()).await?;
            client.status().await
        };
        match status.await {
            Ok(s) => {
                let member = s.header.map(|h| h.member_id);
                if s.leader != 0 && member == Some(s.leader) {
                    return Ok(url.clone());
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => Err(anyhow::anyhow!("no leader among {endpoints:?} (last error: {e})")),
        None => Err(anyhow::anyhow!("no leader among {endpoints:?}")),
    }
}
