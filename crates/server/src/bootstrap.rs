//! How a member starts, as etcd decides it: with a WAL it restarts as the member the WAL names; without one,
//! `--initial-cluster-state new` bootstraps the cluster `--initial-cluster` describes (ids derived from the
//! peer URLs and `--initial-cluster-token`), and `existing` joins a running cluster: it asks the listed peers
//! for the member list (the Cluster service on their peer URLs), finds itself there by its peer URLs (added
//! beforehand with `etcdctl member add`) and takes the cluster's id.

use std::time::Duration;

use cairn_api::etcdserverpb::cluster_client::ClusterClient;
use cairn_api::etcdserverpb::{Member, MemberListRequest};
use cairn_storage::Wal;

use crate::config::{cluster_id, Config};
use crate::error::ServerError;
use crate::membership::Membership;

/// Rounds of asking every listed peer for the member list before giving up on joining.
const JOIN_ATTEMPTS: usize = 10;

/// Who this member is and what it starts from.
#[derive(Debug, Clone)]
pub struct Plan {
    pub member_id: u64,
    pub cluster_id: u64,
    pub membership: Membership,
    /// No bootstrap: the member learns the log (or a snapshot) from the leader.
    pub join: bool,
}

pub async fn plan(cfg: &Config) -> Result<Plan, ServerError> {
    let initial = cfg.initial_members()?;
    let me = initial
        .iter()
        .find(|m| m.name == cfg.name)
        .ok_or_else(|| ServerError::Startup(format!("{} is not in --initial-cluster", cfg.name)))?;
    let join = cfg.initial_cluster_state == "existing";
    let members = initial.iter().map(|m| Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        // Client URLs become known when each member publishes them through raft, as in etcd.
        client_ur_ls: Vec::new(),
        is_learner: false,
    });
    let derived = Plan {
        member_id: me.id,
        cluster_id: cluster_id(&initial.iter().map(|m| m.id).collect::<Vec<_>>()),
        membership: Membership::from_members(members),
        join,
    };
    if !join || Wal::exists(&cfg.wal_dir()) {
        // A restart takes its ids from the WAL (the node checks them against these for a `new` cluster).
        return Ok(derived);
    }
    // A peer that has not applied the MemberAdd yet does not list us: ask the others, then again a few times.
    let mut errors = Vec::new();
    for _ in 0..JOIN_ATTEMPTS {
        for peer in initial.iter().filter(|m| m.id != me.id) {
            for url in &peer.peer_urls {
                match fetch_members(url).await {
                    Ok((cid, list)) => {
                        let mine =
                            list.iter().find(|m| m.peer_ur_ls.iter().any(|u| me.peer_urls.contains(u)));
                        let Some(found) = mine else {
                            errors.push(format!("{url}: not in its member list"));
                            continue;
                        };
                        let member_id = found.id;
                        tracing::info!(
                            member_id = format!("{member_id:x}"),
                            cluster_id = format!("{cid:x}"),
                            via = %url,
                            "joining an existing cluster"
                        );
                        let membership = Membership::from_members(list);
                        return Ok(Plan { member_id, cluster_id: cid, membership, join });
                    }
                    Err(e) => errors.push(format!("{url}: {e}")),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    errors.dedup();
    Err(ServerError::Startup(format!(
        "cannot join the cluster (--initial-cluster-state=existing): {} ({}): if it was not added, add it first \
         with `etcdctl member add {} --peer-urls={}`",
        cfg.name,
        errors.join("; "),
        cfg.name,
        me.peer_urls.join(",")
    )))
}

async fn fetch_members(url: &str) -> Result<(u64, Vec<Member>), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let resp = ClusterClient::new(channel)
        .member_list(MemberListRequest { linearizable: false })
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    let cid = resp.header.map(|h| h.cluster_id).ok_or("member list without a header")?;
    Ok((cid, resp.members))
}
