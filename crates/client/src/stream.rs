//! The streaming RPCs: watch (bidirectional), lease keep-alive (bidirectional), snapshot and election observe
//! (server streams). Each returns a small handle: a sender for further requests where the RPC takes a stream, and
//! `message()` for the next response.

use cairn_api::etcdserverpb::lease_client::LeaseClient;
use cairn_api::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_api::etcdserverpb::watch_client::WatchClient;
use cairn_api::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, SnapshotRequest, SnapshotResponse, WatchRequest,
    WatchResponse,
};
use cairn_api::v3electionpb::election_client::ElectionClient;
use cairn_api::v3electionpb::{LeaderRequest, LeaderResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::{Client, ClientError, Result};

/// How many requests may wait unsent on a bidirectional stream.
const OUTBOUND: usize = 64;

/// A bidirectional stream: requests go through [`Duplex::send`], responses come from [`Duplex::message`].
#[derive(Debug)]
pub struct Duplex<Req, Resp> {
    tx: mpsc::Sender<Req>,
    rx: Streaming<Resp>,
}

impl<Req, Resp> Duplex<Req, Resp> {
    /// Queues one more request on the stream.
    pub async fn send(&self, req: Req) -> Result<()> {
        self.tx.send(req).await.map_err(|_| ClientError::Status(tonic::Status::cancelled("stream closed")))
    }

    /// The next response; `None` once the server ends the stream.
    pub async fn message(&mut self) -> Result<Option<Resp>> {
        Ok(self.rx.message().await?)
    }
}

/// A server stream of responses.
#[derive(Debug)]
pub struct ServerStream<Resp> {
    rx: Streaming<Resp>,
}

impl<Resp> ServerStream<Resp> {
    pub async fn message(&mut self) -> Result<Option<Resp>> {
        Ok(self.rx.message().await?)
    }
}

pub type WatchStream = Duplex<WatchRequest, WatchResponse>;
pub type KeepAliveStream = Duplex<LeaseKeepAliveRequest, LeaseKeepAliveResponse>;

impl Client {
    async fn duplex<Req, Resp, F, Fut>(&self, first: Req, open: F) -> Result<Duplex<Req, Resp>>
    where
        Req: Send + 'static,
        F: FnOnce(tonic::Request<ReceiverStream<Req>>) -> Fut,
        Fut: std::future::Future<
            Output = std::result::Result<tonic::Response<Streaming<Resp>>, tonic::Status>,
        >,
    {
        let (tx, rx) = mpsc::channel(OUTBOUND);
        tx.send(first).await.map_err(|_| ClientError::Status(tonic::Status::cancelled("stream closed")))?;
        let rx = open(self.request(ReceiverStream::new(rx))).await?.into_inner();
        Ok(Duplex { tx, rx })
    }

    /// Opens a watch stream whose first request is `first` (usually a create request).
    pub async fn watch(&self, first: WatchRequest) -> Result<WatchStream> {
        let mut stub = WatchClient::new(self.channel());
        self.duplex(first, |r| async move { stub.watch(r).await }).await
    }

    /// Opens a keep-alive stream for the lease in `first`; send it again to refresh again.
    pub async fn lease_keep_alive(&self, first: LeaseKeepAliveRequest) -> Result<KeepAliveStream> {
        let mut stub = LeaseClient::new(self.channel());
        self.duplex(first, |r| async move { stub.lease_keep_alive(r).await }).await
    }

    /// Streams the backend's snapshot in chunks.
    pub async fn snapshot(&self) -> Result<ServerStream<SnapshotResponse>> {
        let r = self.request(SnapshotRequest {});
        let rx = MaintenanceClient::new(self.channel()).snapshot(r).await?.into_inner();
        Ok(ServerStream { rx })
    }

    /// Streams the leader of an election, each time it changes.
    pub async fn observe(&self, req: LeaderRequest) -> Result<ServerStream<LeaderResponse>> {
        let r = self.request(req);
        let rx = ElectionClient::new(self.channel()).observe(r).await?.into_inner();
        Ok(ServerStream { rx })
    }
}
