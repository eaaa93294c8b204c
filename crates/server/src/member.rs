//! What the member serves from: the node loop's handle, the shared state, and the limits from the config.
//! Every gRPC service and the HTTP gateway go through this one type, so a request is validated and answered
//! the same way on both.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_api::cairnpb::internal_request::Request;
use cairn_api::etcdserverpb::{Member, ResponseHeader};
use cairn_api::EtcdError;
use tokio::sync::{mpsc, oneshot};

use crate::node::{ApplyResult, Command, Shared};
use cairn_raft::{ConfChange, ConfChangeType};

/// How long a publish attempt waits before proposing again.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct MemberState {
    pub tx: mpsc::Sender<Command>,
    pub shared: Arc<Shared>,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub quota_bytes: i64,
    /// etcd's request timeout: 5 s plus two election timeouts.
    pub request_timeout: Duration,
    /// --strict-reconfig-check: refuse membership changes that would cost the cluster its quorum.
    pub strict_reconfig_check: bool,
    /// Since when each peer has been connected (read by the strict reconfiguration checks).
    pub peers: Arc<crate::transport::PeerActivity>,
}

/// The version cairn reports (a 3.6-style version so clients' version checks pass).
pub const SERVER_VERSION: &str = "3.6.0";
pub const CLUSTER_VERSION: &str = "3.6.0";
pub const STORAGE_VERSION: &str = "3.6.0";

impl MemberState {
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.shared.cluster_id,
            member_id: self.shared.member_id,
            revision,
            raft_term: self.shared.term.load(Ordering::SeqCst),
        })
    }

    /// A learner serves only serializable reads, Status and MemberList (etcd's isRPCSupportedForLearner).
    pub(crate) fn check_voter(&self) -> Result<(), EtcdError> {
        if self.shared.is_learner.load(Ordering::SeqCst) {
            return Err(EtcdError::NotSupportedForLearner);
        }
        Ok(())
    }

    fn check_running(&self) -> Result<(), EtcdError> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(EtcdError::Stopped);
        }
        Ok(())
    }

    /// Proposes a write through raft and waits for it to be applied.
    pub async fn propose(&self, request: Request) -> ApplyResult {
        self.check_running()?;
        self.check_voter()?;
        // etcd compares the encoded internal request with --max-request-bytes.
        if request.encoded_len() > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Propose { request, reply }).await.map_err(|_| EtcdError::Stopped)?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    /// Proposes a membership change and waits until it is applied.
    pub async fn conf_change(&self, change: ConfChange, member: Option<Member>) -> Result<(), EtcdError> {
        self.conf_change_unless(change, member, None).await
    }

    /// As [`MemberState::conf_change`]; a promotion whose learner is ready is answered with `refusal` if given
    /// (the strict reconfiguration check, which etcd makes after the readiness check).
    pub async fn conf_change_unless(
        &self,
        change: ConfChange,
        member: Option<Member>,
        refusal: Option<EtcdError>,
    ) -> Result<(), EtcdError> {
        self.check_running()?;
        let (reply, rx) = oneshot::channel();
        let command = Command::ConfChange { change, member, refusal, reply };
        self.tx.send(command).await.map_err(|_| EtcdError::Stopped)?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    /// Makes this member's name and client URLs known to the cluster (etcd's publish), retrying until the
    /// applied membership shows them. Runs for the member's life; ends once published.
    pub async fn publish(self: Arc<Self>, name: String, client_urls: Vec<String>) {
        let me = self.shared.member_id;
        loop {
            let published = self.shared.membership.read().is_ok_and(|m| {
                m.members.get(&me).is_some_and(|m| m.name == name && m.client_ur_ls == client_urls)
            });
            if published {
                tracing::info!(name, "published local member to the cluster");
                return;
            }
            if self.shared.leader.load(Ordering::SeqCst) != 0 {
                let change =
                    ConfChange { change_type: ConfChangeType::UpdateNode, node_id: me, context: Vec::new() };
                let member = Member {
                    id: me,
                    name: name.clone(),
                    client_ur_ls: client_urls.clone(),
                    ..Member::default()
                };
                // A conf change proposed while another is pending is dropped by raft: retry soon.
                match tokio::time::timeout(PUBLISH_RETRY, self.conf_change(change, Some(member))).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => tracing::debug!(error = %e, "publishing the local member failed; retrying"),
                    Err(_) => tracing::debug!("publishing the local member timed out; retrying"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a linearizable read may be served from the local store (ReadIndex).
    pub async fn read_index(&self) -> Result<(), EtcdError> {
        self.check_running()?;
        self.check_voter()?;
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::ReadIndex { reply }).await.map_err(|_| EtcdError::Stopped)?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::Timeout),
        }
    }
}
