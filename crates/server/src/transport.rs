//! The peer transport: raft messages between members over gRPC (`cairnpb.Raft`, proto/cairn/cairn.proto).
//!
//! Sending: one task per peer owns a bounded queue and a long-lived `Send` stream, opened as soon as the peer is
//! known (as etcd's rafthttp keeps a stream to every peer); it batches whatever is queued into one
//! `MessageBatch`, and on any failure reports the peer unreachable to raft, backs off and reconnects. Since when
//! each peer's stream has been up is kept in [`PeerActivity`] (etcd's ActiveSince), for the strict
//! reconfiguration checks. The node loop never waits on the network: it hands messages over with `try_send`, and a full
//! queue drops the message and reports the peer unreachable, as etcd's transport does. Snapshots (`MsgSnap`)
//! go on their own `SendSnapshot` stream: a consistent copy of the backend in checksummed chunks, after which
//! raft is told whether the send worked (`report_snapshot`).
//!
//! Receiving ([`PeerService`]): batches of another cluster are refused (and logged), messages of removed
//! members and malformed messages dropped; received snapshots are checked chunk by chunk (crc32c, offsets)
//! and handed to the node loop as a file once complete.
//!
//! Fault injection for tests: when `CAIRN_FAULT_FILE` names a file, a member whose file says `isolate` drops
//! every raft message it would send or receive (a network partition around it), until the file says otherwise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_api::cairnpb::raft_client::RaftClient;
use cairn_api::cairnpb::raft_server::Raft;
use cairn_api::cairnpb::{Ack, MessageBatch, SnapshotChunk};
use cairn_mvcc::Store;
use cairn_raft::{Message, MessageType};
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::membership::Membership;
use crate::node::{Command, Shared};
use crate::wire;

/// Messages queued per peer before new ones are dropped (etcd's streamBufSize).
const QUEUE: usize = 4096;
/// At most this many messages, or about [`BATCH_BYTES`], per MessageBatch.
const BATCH_MESSAGES: usize = 512;
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Largest frame a peer accepts: a batch plus one maximal append.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;
const SNAPSHOT_CHUNK: usize = 1024 * 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A batch that cannot be handed to the stream for this long means the peer stopped reading.
const SEND_STALL: Duration = Duration::from_secs(2);
/// What a member answers a removed member's messages with (etcd's peer handler answers 410 Gone): the removed
/// member, which may never learn of its removal through raft, stops when it hears it.
pub const REMOVED: &str = "the member has been permanently removed from the cluster";

/// How a stream to a peer ended.
enum StreamEnd {
    /// The node loop is gone: stop.
    Closed,
    Failed(String),
    /// The peer says we were removed from the cluster.
    Removed,
}

fn ended(r: Result<Response<Ack>, Status>) -> StreamEnd {
    match r {
        Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message() == REMOVED => StreamEnd::Removed,
        Err(s) => StreamEnd::Failed(s.to_string()),
        Ok(_) => StreamEnd::Failed("the peer ended the stream".into()),
    }
}

/// What the sender tasks and the peer service share.
#[derive(Debug, Clone)]
pub struct PeerContext {
    pub cluster_id: u64,
    pub member_id: u64,
    pub node: mpsc::Sender<Command>,
    pub store: Arc<Store>,
    /// Where snapshots are staged (sent and received): the backend's directory.
    pub snap_dir: PathBuf,
    pub faults: Faults,
    /// Since when each peer's stream has been up.
    pub activity: Arc<PeerActivity>,
}

/// Since when each peer has been connected (etcd's rafthttp ActiveSince): set when its sender's stream comes
/// up, cleared when the stream ends. Written only on connect and disconnect, read by membership changes: a
/// plain mutex over a small map is cheap for both.
#[derive(Debug, Default)]
pub struct PeerActivity(Mutex<HashMap<u64, Instant>>);

impl PeerActivity {
    /// When the current connection to `id` came up; None while it is down (or was never up).
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        self.0.lock().ok()?.get(&id).copied()
    }

    fn activate(&self, id: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(id).or_insert_with(Instant::now);
        }
    }

    fn deactivate(&self, id: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&id);
        }
    }
}

/// The test hook: whether this member is cut off from its peers.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    isolated: Arc<AtomicBool>,
}

impl Faults {
    /// Watches `CAIRN_FAULT_FILE` if set (a test harness partitions a member by writing `isolate` into it).
    pub fn from_env(runtime: &Handle) -> Faults {
        let faults = Faults::default();
        if let Some(path) = std::env::var_os("CAIRN_FAULT_FILE") {
            let path = PathBuf::from(path);
            let isolated = Arc::clone(&faults.isolated);
            tracing::warn!(path = %path.display(), "fault injection enabled");
            runtime.spawn(async move {
                loop {
                    let now = tokio::fs::read_to_string(&path).await.is_ok_and(|s| s.trim() == "isolate");
                    if isolated.swap(now, Ordering::SeqCst) != now {
                        tracing::warn!(isolated = now, "fault injection: partition changed");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
        faults
    }

    pub fn isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }
}

struct Peer {
    urls: Vec<String>,
    queue: mpsc::Sender<Message>,
    task: tokio::task::AbortHandle,
    /// A snapshot is being streamed to this peer: raft sends one at a time, a second would be redundant.
    sending_snapshot: Arc<AtomicBool>,
}

/// The node loop's side: owned by the node thread, never blocks.
pub struct Transport {
    ctx: PeerContext,
    runtime: Handle,
    peers: HashMap<u64, Peer>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("peers", &self.peers.keys().collect::<Vec<_>>()).finish()
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for p in self.peers.values() {
            p.task.abort();
        }
    }
}

impl Transport {
    pub fn new(ctx: PeerContext, runtime: Handle) -> Transport {
        Transport { ctx, runtime, peers: HashMap::new() }
    }

    /// Follows the membership: a sender per member other than us; removed members' senders stop.
    pub fn set_peers(&mut self, membership: &Membership) {
        self.peers.retain(|id, p| {
            let keep = membership.members.get(id).is_some_and(|m| m.peer_ur_ls == p.urls);
            if !keep {
                p.task.abort();
                self.ctx.activity.deactivate(*id);
            }
            keep
        });
        for m in membership.members.values() {
            if m.id == self.ctx.member_id || self.peers.contains_key(&m.id) || m.peer_ur_ls.is_empty() {
                continue;
            }
            let (queue, rx) = mpsc::channel(QUEUE);
            let task = self.runtime.spawn(run_peer(m.id, m.peer_ur_ls.clone(), rx, self.ctx.clone()));
            self.peers.insert(
                m.id,
                Peer {
                    urls: m.peer_ur_ls.clone(),
                    queue,
                    task: task.abort_handle(),
                    sending_snapshot: Arc::new(AtomicBool::new(false)),
                },
            );
        }
    }

    /// Hands messages to their peers' queues. Returns the peers to report unreachable (queue full) and the
    /// snapshots that could not be sent (to report failed).
    pub fn send(&mut self, messages: Vec<Message>) -> (Vec<u64>, Vec<u64>) {
        let mut unreachable = Vec::new();
        let mut snapshot_failed = Vec::new();
        if self.ctx.faults.isolated() {
            return (unreachable, snapshot_failed);
        }
        for m in messages {
            let Some(peer) = self.peers.get(&m.to) else {
                tracing::debug!(to = format!("{:x}", m.to), "message to an unknown member dropped");
                continue;
            };
            if m.msg_type == MessageType::Snap {
                if peer.sending_snapshot.swap(true, Ordering::SeqCst) {
                    snapshot_failed.push(m.to);
                    continue;
                }
                let busy = Arc::clone(&peer.sending_snapshot);
                let ctx = self.ctx.clone();
                let urls = peer.urls.clone();
                self.runtime.spawn(async move {
                    let to = m.to;
                    let failed = match send_snapshot(&ctx, &urls, m).await {
                        Ok(()) => false,
                        Err(e) => {
                            tracing::warn!(to = format!("{to:x}"), error = %e, "sending a snapshot failed");
                            true
                        }
                    };
                    busy.store(false, Ordering::SeqCst);
                    let _ = ctx.node.send(Command::SnapshotStatus { to, failed }).await;
                });
                continue;
            }
            let to = m.to;
            if peer.queue.try_send(m).is_err() {
                unreachable.push(to);
            }
        }
        unreachable.sort_unstable();
        unreachable.dedup();
        (unreachable, snapshot_failed)
    }
}

async fn connect(url: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true)
        .connect()
        .await
}

/// A request stream fed through a bounded channel (its capacity is the back-pressure).
struct ReceiverStream<T>(mpsc::Receiver<T>);

impl<T> Stream for ReceiverStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn receiver_stream<T>(rx: mpsc::Receiver<T>) -> ReceiverStream<T> {
    ReceiverStream(rx)
}

/// One peer's sender: connect, stream batches until something fails, report, back off, reconnect. It connects
/// without waiting for a message, so a member knows which peers are up even when raft has nothing to send them
/// (a follower sends nothing to the other followers).
async fn run_peer(id: u64, urls: Vec<String>, mut queue: mpsc::Receiver<Message>, ctx: PeerContext) {
    let mut backoff = MIN_BACKOFF;
    let mut attempt = 0usize;
    loop {
        let url = &urls[attempt % urls.len()];
        match connect(url).await {
            Ok(channel) => {
                backoff = MIN_BACKOFF;
                ctx.activity.activate(id);
                let end = stream_batches(channel, &mut queue, &ctx).await;
                ctx.activity.deactivate(id);
                match end {
                    StreamEnd::Failed(why) => {
                        tracing::debug!(peer = format!("{id:x}"), %url, %why, "peer stream ended");
                    }
                    StreamEnd::Removed => {
                        let _ = ctx.node.send(Command::Removed).await;
                        return;
                    }
                    StreamEnd::Closed => return,
                }
            }
            Err(e) => tracing::debug!(peer = format!("{id:x}"), %url, error = %e, "cannot reach peer"),
        }
        if ctx.node.send(Command::Unreachable(id)).await.is_err() {
            return;
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        // What piled up while the peer was away is stale: raft resends what still matters.
        while queue.try_recv().is_ok() {}
        if queue.is_closed() {
            return;
        }
    }
}

/// Streams batches until the stream fails or the queue closes.
async fn stream_batches(
    channel: Channel,
    queue: &mut mpsc::Receiver<Message>,
    ctx: &PeerContext,
) -> StreamEnd {
    let mut client = RaftClient::new(channel).max_encoding_message_size(MAX_FRAME);
    let (tx, rx) = mpsc::channel::<MessageBatch>(16);
    let call = client.send(receiver_stream(rx));
    tokio::pin!(call);
    loop {
        let m = tokio::select! {
            r = &mut call => return ended(r),
            m = queue.recv() => match m {
                Some(m) => m,
                None => return StreamEnd::Closed,
            },
        };
        let mut bytes = approx_size(&m);
        let mut messages = vec![wire::to_pb(&m)];
        while messages.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
            match queue.try_recv() {
                Ok(m) => {
                    bytes += approx_size(&m);
                    messages.push(wire::to_pb(&m));
                }
                Err(_) => break,
            }
        }
        if ctx.faults.isolated() {
            continue;
        }
        let batch = MessageBatch { cluster_id: ctx.cluster_id, messages };
        tokio::select! {
            r = &mut call => return ended(r),
            sent = tokio::time::timeout(SEND_STALL, tx.send(batch)) => match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return StreamEnd::Failed("stream closed".into()),
                Err(_) => return StreamEnd::Failed("peer stopped reading".into()),
            },
        }
    }
}

fn approx_size(m: &Message) -> usize {
    64 + m.entries.iter().map(|e| e.data.len() + 24).sum::<usize>()
}

/// Streams a consistent copy of the backend to the peer, the raft message in the last chunk.
async fn send_snapshot(ctx: &PeerContext, urls: &[String], msg: Message) -> Result<(), String> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = ctx.snap_dir.join(format!("send-{:016x}-{nanos}.db", msg.to));
    let _cleanup = RemoveOnDrop(Some(path.clone()));
    let store = Arc::clone(&ctx.store);
    let copy = path.clone();
    let point = tokio::task::spawn_blocking(move || store.snapshot_to(&copy))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    tracing::info!(
        to = format!("{:x}", msg.to),
        index = msg.snapshot.as_ref().map_or(0, |s| s.metadata.index),
        backend_index = point.consistent_index,
        "sending a snapshot"
    );
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| e.to_string())?;
    let mut last_err = String::from("no peer URL");
    for url in urls {
        let channel = match connect(url).await {
            Ok(c) => c,
            Err(e) => {
                last_err = e.to_string();
                continue;
            }
        };
        let mut client = RaftClient::new(channel).max_encoding_message_size(MAX_FRAME);
        // Two chunks in flight at most: the stream's flow control paces reading the file.
        let (tx, rx) = mpsc::channel::<SnapshotChunk>(2);
        let cluster_id = ctx.cluster_id;
        let message = wire::to_pb(&msg);
        let producer = async move {
            let mut offset = 0u64;
            loop {
                let mut data = vec![0u8; SNAPSHOT_CHUNK];
                let mut n = 0;
                while n < data.len() {
                    let read = file.read(&mut data[n..]).await.map_err(|e| e.to_string())?;
                    if read == 0 {
                        break;
                    }
                    n += read;
                }
                data.truncate(n);
                let last = n < SNAPSHOT_CHUNK;
                let chunk = SnapshotChunk {
                    cluster_id,
                    offset,
                    crc32c: crc32c::crc32c(&data),
                    data,
                    last,
                    message: last.then(|| message.clone()),
                };
                offset += n as u64;
                if tx.send(chunk).await.is_err() {
                    return Err("the peer closed the snapshot stream".to_owned());
                }
                if last {
                    return Ok::<(), String>(());
                }
            }
        };
        let (sent, answer) = tokio::join!(producer, client.send_snapshot(receiver_stream(rx)));
        answer.map_err(|s| s.message().to_owned())?;
        return sent;
    }
    Err(last_err)
}

/// Deletes a staged file when the code handling it returns early.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Where a received snapshot for raft index `index` waits to be installed (etcd's `<index>.snap.db`).
pub fn received_snapshot_path(snap_dir: &Path, index: u64) -> PathBuf {
    snap_dir.join(format!("{index:016x}.snap.db"))
}

/// The Raft service on the peer port.
#[derive(Debug, Clone)]
pub struct PeerService {
    pub ctx: PeerContext,
    pub shared: Arc<Shared>,
}

impl PeerService {
    fn removed(&self, id: u64) -> bool {
        self.shared.membership.read().is_ok_and(|m| m.removed.contains(&id))
    }

    fn check_cluster(&self, cluster_id: u64) -> Result<(), Status> {
        if cluster_id == self.ctx.cluster_id {
            return Ok(());
        }
        tracing::warn!(
            local = format!("{:x}", self.ctx.cluster_id),
            remote = format!("{cluster_id:x}"),
            "rejected raft messages from a member of another cluster (cluster ID mismatch)"
        );
        Err(Status::failed_precondition(format!(
            "cluster ID mismatch: local {:x}, remote {cluster_id:x}",
            self.ctx.cluster_id
        )))
    }
}

#[tonic::async_trait]
impl Raft for PeerService {
    async fn send(&self, request: Request<Streaming<MessageBatch>>) -> Result<Response<Ack>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            self.check_cluster(batch.cluster_id)?;
            if self.ctx.faults.isolated() {
                continue;
            }
            let mut messages = Vec::with_capacity(batch.messages.len());
            for pb in batch.messages {
                match wire::from_pb(pb) {
                    Ok(m) if self.removed(m.from) => {
                        tracing::info!(
                            from = format!("{:x}", m.from),
                            "rejected messages from a removed member"
                        );
                        return Err(Status::failed_precondition(REMOVED));
                    }
                    Ok(m) if m.msg_type == MessageType::Snap => {
                        tracing::warn!(
                            from = format!("{:x}", m.from),
                            "snapshot message outside a snapshot stream dropped"
                        );
                    }
                    Ok(m) => messages.push(m),
                    Err(e) => tracing::warn!(error = %e, "malformed raft message dropped"),
                }
            }
            if !messages.is_empty() && self.ctx.node.send(Command::Step(messages)).await.is_err() {
                return Err(Status::unavailable("member stopping"));
            }
        }
        Ok(Response::new(Ack {}))
    }

    async fn send_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Ack>, Status> {
        let mut stream = request.into_inner();
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let part = self.ctx.snap_dir.join(format!("recv-{nanos}.part"));
        let mut cleanup = RemoveOnDrop(Some(part.clone()));
        let io = |e: std::io::Error| Status::internal(format!("staging a received snapshot: {e}"));
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        let mut offset = 0u64;
        loop {
            let Some(chunk) = stream.message().await? else {
                return Err(Status::invalid_argument("snapshot stream ended before its last chunk"));
            };
            self.check_cluster(chunk.cluster_id)?;
            if chunk.offset != offset {
                tracing::warn!(expected = offset, got = chunk.offset, "snapshot chunk out of order; refused");
                return Err(Status::invalid_argument("snapshot chunk out of order"));
            }
            if crc32c::crc32c(&chunk.data) != chunk.crc32c {
                tracing::warn!(offset, "snapshot chunk checksum mismatch; snapshot refused");
                return Err(Status::data_loss("snapshot chunk checksum mismatch"));
            }
            file.write_all(&chunk.data).await.map_err(io)?;
            offset += chunk.data.len() as u64;
            if !chunk.last {
                continue;
            }
            let msg = chunk
                .message
                .ok_or_else(|| Status::invalid_argument("last snapshot chunk without its raft message"))
                .and_then(|pb| wire::from_pb(pb).map_err(|e| Status::invalid_argument(e.to_string())))?;
            let Some(index) =
                msg.snapshot.as_ref().map(|s| s.metadata.index).filter(|_| msg.msg_type == MessageType::Snap)
            else {
                return Err(Status::invalid_argument("snapshot stream without a snapshot message"));
            };
            if self.removed(msg.from) || self.ctx.faults.isolated() {
                return Err(Status::failed_precondition("snapshot from a removed member"));
            }
            file.sync_all().await.map_err(io)?;
            drop(file);
            let path = received_snapshot_path(&self.ctx.snap_dir, index);
            tokio::fs::rename(&part, &path).await.map_err(io)?;
            cleanup.keep();
            tracing::info!(from = format!("{:x}", msg.from), index, bytes = offset, "received a snapshot");
            self.ctx
                .node
                .send(Command::Snapshot { message: msg, path })
                .await
                .map_err(|_| Status::unavailable("member stopping"))?;
            return Ok(Response::new(Ack {}));
        }
    }
}
