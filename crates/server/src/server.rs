//! Starting and stopping a member: open the store and the node loop, serve gRPC and HTTP on every client URL
//! (one listener each, gRPC and HTTP merged as etcd serves them on :2379), stop on SIGINT/SIGTERM or when the
//! node loop hits a fatal disk error.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::ServiceExt as _;
use cairn_api::cairnpb::raft_server::RaftServer;
use cairn_api::etcdserverpb::auth_server::{Auth, AuthServer};
use cairn_api::etcdserverpb::cluster_server::ClusterServer;
use cairn_api::etcdserverpb::kv_server::KvServer;
use cairn_api::etcdserverpb::lease_server::LeaseServer;
use cairn_api::etcdserverpb::maintenance_server::MaintenanceServer;
use cairn_api::etcdserverpb::watch_server::WatchServer;
use cairn_api::v3electionpb::election_server::ElectionServer;
use cairn_api::v3lockpb::lock_server::LockServer;
use cairn_client::cork::Corked;
use cairn_mvcc::Store;
use cairn_storage::Backend;
use futures::future::Either;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codegen::Service;

use crate::authority::AuthorityStream;
use crate::config::{parse_host_port, split_urls, Config};
use crate::election::ElectionService;
use crate::error::ServerError;
use crate::kv::KvService;
use crate::lease::LeaseService;
use crate::lock::LockService;
use crate::maintenance::{ClusterService, MaintenanceService};
use crate::member::MemberState;
use crate::node::{self, Command, NodeSetup};
use crate::transport::{self, PeerContext, PeerService};
use crate::watch::WatchService;

/// A request refused for its size is answered as grpc-go (and so etcd) words it. tonic refuses it before the
/// handler runs, with a trailers-only answer, so its status is in the headers.
fn go_size_limit(mut response: axum::response::Response) -> axum::response::Response {
    if let Some(go) =
        tonic::Status::from_header_map(response.headers()).and_then(|s| cairn_api::error::go_size_limit(&s))
    {
        // Replacing two ASCII headers with valid values cannot fail.
        let _ = go.add_header(response.headers_mut());
    }
    response
}

/// The client port's service. KV calls, nearly all of a busy member's traffic, go straight to the KV service:
/// no route lookup and no router layers between the connection and the handler (2-3% of a put's CPU).
/// Everything else (the other gRPC services, the gateway, /health, /version, /metrics) goes through the router.
#[derive(Clone)]
struct ClientPort {
    kv: KvServer<KvService>,
    router: axum::Router,
}

type Answer = Result<axum::response::Response, Infallible>;

impl Service<axum::extract::Request> for ClientPort {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future =
        Either<Pin<Box<dyn Future<Output = Answer> + Send>>, axum::routing::future::RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        if request.uri().path().starts_with("/etcdserverpb.KV/") {
            let answer = self.kv.call(request);
            Either::Left(Box::pin(async move {
                let response = answer.await?;
                Ok(go_size_limit(response.map(axum::body::Body::new)))
            }))
        } else {
            Either::Right(self.router.call(request))
        }
    }
}

/// Services whose issues have not landed: every call answers gRPC Unimplemented (the generated defaults).
#[derive(Debug, Clone, Copy)]
struct NotYet;

impl Auth for NotYet {}

/// How long a stopping member lets in-flight requests finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// gRPC's own framing on top of --max-request-bytes (etcd's grpcOverheadBytes).
pub(crate) const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Runs the member until a shutdown signal; Err if it could not start or stopped on a fatal error.
pub async fn run(cfg: Config) -> Result<(), ServerError> {
    let plan = crate::bootstrap::plan(&cfg).await?;
    let backend_path = cfg.backend_path();
    if let Some(dir) = backend_path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|source| ServerError::Io { context: format!("creating {}", dir.display()), source })?;
    }
    let store = Arc::new(Store::open(Arc::new(Backend::open(&backend_path)?))?);
    let heartbeat = Duration::from_millis(cfg.heartbeat_interval);
    let setup = NodeSetup {
        member_id: plan.member_id,
        cluster_id: plan.cluster_id,
        membership: plan.membership,
        join: plan.join,
        wal_dir: cfg.wal_dir(),
        backend_path: backend_path.clone(),
        election_ticks: usize::try_from(cfg.election_timeout / cfg.heartbeat_interval).unwrap_or(10),
        snapshot_count: cfg.snapshot_count,
        snapshot_catchup_entries: cfg.snapshot_catchup_entries,
        max_request_bytes: cfg.max_request_bytes as usize,
        lease_config: cairn_lease::LessorConfig {
            checkpoint_interval: cfg.lease_checkpoint.then_some(cfg.lease_checkpoint_interval),
            ..cairn_lease::LessorConfig::new(cairn_lease::min_lease_ttl(
                heartbeat,
                Duration::from_millis(cfg.election_timeout),
            ))
        },
        quota_backend_bytes: cfg.quota_backend_bytes,
    };
    let (tx, shared, mut fatal, node_thread, peer_ctx) = node::start(setup, store)?;
    let (member_id, cid) = (shared.member_id, shared.cluster_id);
    let state = Arc::new(MemberState {
        tx: tx.clone(),
        shared,
        max_request_bytes: cfg.max_request_bytes as usize,
        max_txn_ops: cfg.max_txn_ops as usize,
        quota_bytes: cfg.quota_bytes(),
        request_timeout: Duration::from_secs(5) + 2 * Duration::from_millis(cfg.election_timeout),
        strict_reconfig_check: cfg.strict_reconfig_check,
        peers: Arc::clone(&peer_ctx.activity),
    });

    let ticker_tx = tx.clone();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(heartbeat);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if ticker_tx.send(Command::Tick).await.is_err() {
                return;
            }
        }
    });

    crate::watch::start_background(&state, cfg.watch_progress_notify_interval);
    crate::lease::start_background(&state, Duration::from_millis(cfg.election_timeout));
    if let Some(policy) = crate::compactor::policy(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)
        .map_err(ServerError::Startup)?
    {
        crate::compactor::start_background(&state, policy);
    }
    let max_recv = cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let kv = KvServer::new(KvService(Arc::clone(&state))).max_decoding_message_size(max_recv);
    // KV is not routed: the client port sends its calls to `kv` before the router sees them.
    let grpc = tonic::service::Routes::new(
        MaintenanceServer::new(MaintenanceService(Arc::clone(&state))).max_decoding_message_size(max_recv),
    )
    .add_service(ClusterServer::new(ClusterService(Arc::clone(&state))).max_decoding_message_size(max_recv))
    .add_service(WatchServer::new(WatchService(Arc::clone(&state))).max_decoding_message_size(max_recv))
    .add_service(LeaseServer::new(LeaseService(Arc::clone(&state))).max_decoding_message_size(max_recv))
    .add_service(AuthServer::new(NotYet))
    .add_service(LockServer::new(LockService(Arc::clone(&state))).max_decoding_message_size(max_recv))
    .add_service(
        ElectionServer::new(ElectionService(Arc::clone(&state))).max_decoding_message_size(max_recv),
    );
    let router = grpc
        .into_axum_router()
        .layer(axum::middleware::map_response(|response| async { go_size_limit(response) }))
        .merge(crate::http::router(Arc::clone(&state)));
    let app = ClientPort { kv, router };

    let (stop_tx, stop_rx) = watch::channel(false);
    // As etcd, clients are served once this member has published its name and client URLs to the cluster
    // (the listeners are bound at once; connections wait in the backlog until then).
    let (published_tx, published_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for url in cfg.client_urls() {
        let (host, port) = parse_host_port(&url)?;
        let listener = TcpListener::bind((host.as_str(), port))
            .await
            .map_err(|source| ServerError::Io { context: format!("listening on {url}"), source })?;
        tracing::info!(%url, member_id = format!("{member_id:x}"), cluster_id = format!("{cid:x}"), "serving client requests");
        let mut stop = stop_rx.clone();
        let mut published = published_rx.clone();
        let app = app.clone();
        // Without TCP_NODELAY small responses wait on the peer's delayed ACK (about 40 ms each).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        // Go clients may send a malformed `:authority` that h2 would reject: repair it underneath.
        let listener = WrapListener(listener, |io| AuthorityStream::new(Corked::new(io)));
        servers.push(tokio::spawn(async move {
            tokio::select! {
                _ = published.wait_for(|p| *p) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            axum::serve(listener, app.into_make_service())
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }

    servers.extend(serve_peers(&cfg, &state, peer_ctx, &stop_rx).await?);
    let publishing = Arc::clone(&state).publish(cfg.name.clone(), cfg.advertise_client_url_list());
    let publisher = tokio::spawn(async move {
        publishing.await;
        let _ = published_tx.send(true);
    });

    let outcome = tokio::select! {
        () = shutdown_signal() => Ok(()),
        msg = &mut fatal => Err(ServerError::Fatal(msg.unwrap_or_else(|_| "raft node stopped".into()))),
    };
    tracing::info!("stopping: no new requests; finishing in-flight ones");
    let _ = stop_tx.send(true);
    // Idle client connections would hold a graceful shutdown forever: give in-flight requests a bounded time.
    let aborts: Vec<_> = servers.iter().map(tokio::task::JoinHandle::abort_handle).collect();
    if tokio::time::timeout(DRAIN_TIMEOUT, futures::future::join_all(servers)).await.is_err() {
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
    }
    ticker.abort();
    publisher.abort();
    // The node loop ends after this, making the backend durable; requests still arriving get "server stopped".
    let _ = tx.send(Command::Shutdown).await;
    if tokio::task::spawn_blocking(move || node_thread.join()).await.is_err() {
        tracing::error!("the raft node thread did not stop cleanly");
    }
    outcome
}

/// The peer listeners: raft messages and snapshots (`cairnpb.Raft`), and the Cluster service (a member
/// joining with `--initial-cluster-state existing` reads the member list there, as etcd's peer `/members`).
async fn serve_peers(
    cfg: &Config,
    state: &Arc<MemberState>,
    ctx: PeerContext,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<std::io::Result<()>>>, ServerError> {
    let peer = PeerService { ctx, shared: Arc::clone(&state.shared) };
    let app =
        tonic::service::Routes::new(RaftServer::new(peer).max_decoding_message_size(transport::MAX_FRAME))
            .add_service(ClusterServer::new(ClusterService(Arc::clone(state))))
            .into_axum_router();
    let mut servers = Vec::new();
    for url in split_urls(&cfg.listen_peer_urls) {
        let (host, port) = parse_host_port(&url)?;
        let listener = TcpListener::bind((host.as_str(), port))
            .await
            .map_err(|source| ServerError::Io { context: format!("listening for peers on {url}"), source })?;
        tracing::info!(%url, "serving peer traffic");
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let listener = WrapListener(listener, Corked::new);
        let mut stop = stop.clone();
        let app = app.clone();
        servers.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    Ok(servers)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// A listener whose accepted connections are wrapped (write coalescing, the `:authority` shim).
struct WrapListener<L, F>(L, F);

impl<L, F, Io> axum::serve::Listener for WrapListener<L, F>
where
    L: axum::serve::Listener,
    F: FnMut(L::Io) -> Io + Send + 'static,
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        ((self.1)(io), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
