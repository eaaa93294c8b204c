//! cairn-client: cairn's Rust client for the etcd v3 API, on the generated tonic stubs (as etcd keeps clientv3
//! beside its server). Works against cairn and against etcd.
//!
//! # Layout
//! - [`Client`]: connection to one of several endpoints with failover, per-request timeout, auth token, TLS
//!   and keepalive ([`Transport`]); `skip_verify`: the certificate verifier of `--insecure-skip-tls-verify`.
//! - [`options`]: clientv3-style options ([`GetOptions`], [`PutOptions`], [`DeleteOptions`]) and [`Txn`].
//! - [`rpc`]: one typed method per unary RPC of Lease, Cluster, Maintenance, Auth, Lock and Election.
//! - [`stream`]: watch and lease keep-alive streams ([`stream::Duplex`]), snapshot and observe
//!   ([`stream::ServerStream`]).
//! - [`ClientError`]: etcd's errors decoded from gRPC status, and transport errors.
//! - [`cork`]: write coalescing under HTTP/2 connections, used by the client's connections and the server's.
//!
//! It must not know the server: only the wire types of cairn-api.

pub mod cork;
pub mod options;
pub mod rpc;
mod skip_verify;
pub mod stream;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_api::etcdserverpb::auth_client::AuthClient;
use cairn_api::etcdserverpb::cluster_client::ClusterClient;
use cairn_api::etcdserverpb::kv_client::KvClient;
use cairn_api::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_api::etcdserverpb::{
    AuthenticateRequest, CompactionRequest, CompactionResponse, DeleteRangeResponse, MemberListRequest,
    MemberListResponse, PutResponse, RangeResponse, StatusRequest, StatusResponse, TxnResponse,
};
use cairn_api::EtcdError;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

pub use options::{DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
pub use stream::{Duplex, KeepAliveStream, ServerStream, WatchStream};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An error etcd's server defines, with its exact message.
    #[error("{0}")]
    Etcd(EtcdError),
    #[error("{0}")]
    Status(Status),
    #[error("cannot connect to any endpoint of {endpoints:?}: {last}")]
    Unreachable { endpoints: Vec<String>, last: String },
    #[error("invalid endpoint {0:?}")]
    InvalidEndpoint(String),
    #[error("no endpoints given")]
    NoEndpoints,
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        match EtcdError::from_status(&s) {
            Some(e) => ClientError::Etcd(e),
            None => ClientError::Status(s),
        }
    }
}

impl ClientError {
    /// The gRPC code, whichever way the error arrived.
    pub fn code(&self) -> Code {
        match self {
            ClientError::Etcd(e) => e.code(),
            ClientError::Status(s) => s.code(),
            ClientError::Unreachable { .. } => Code::Unavailable,
            ClientError::InvalidEndpoint(_) | ClientError::NoEndpoints => Code::InvalidArgument,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    /// User and password: a token is fetched with Authenticate and sent with every request.
    pub user: Option<(String, String)>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        // etcdctl's defaults.
        ConnectOptions {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            user: None,
        }
    }
}

/// TLS for the connection (etcdctl's `--cacert`, `--cert`, `--key`, `--insecure-skip-tls-verify`): endpoints
/// without a scheme become `https://`. Without a CA bundle no server certificate is trusted: there is no system
/// root store.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM CA bundle that signs the servers' certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that check client certificates.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept any server certificate (Go's `InsecureSkipVerify`): the handshake's signatures are still checked,
    /// the certificate's chain and name are not. For tests only, as etcdctl warns.
    pub skip_verify: bool,
}

impl TlsOptions {
    fn config(&self, with_ca: bool) -> tonic::transport::ClientTlsConfig {
        let mut c = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = self.ca_pem.as_ref().filter(|_| with_ca) {
            c = c.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            c = c.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        c
    }

    fn apply(&self, endpoint: Endpoint) -> std::result::Result<Endpoint, tonic::transport::Error> {
        if self.skip_verify {
            endpoint
                .tls_config_with_verifier(self.config(false), Arc::new(skip_verify::AnyCertificate::new()))
        } else {
            endpoint.tls_config(self.config(true))
        }
    }
}

/// HTTP/2 keepalive pings (etcdctl's `--keepalive-time`, `--keepalive-timeout`): a ping every `time`, the
/// connection dropped when one is not answered within `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    pub time: Duration,
    pub timeout: Duration,
}

/// How the connection is carried: TLS and keepalive, both off by default.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    pub tls: Option<TlsOptions>,
    pub keepalive: Option<Keepalive>,
}

/// Whether a call may be sent again after a transport failure, as clientv3's retry policies say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads, and what etcd's client repeats too (lease grant and revoke, alarms, auth reads).
    Repeatable,
    /// Writes: sent again only if the failed call never reached a server (the connection could not be made),
    /// since a write that was sent may have been applied.
    Once,
}

#[derive(Debug)]
struct Connection {
    index: usize,
    channel: Channel,
}

/// A client of one cluster. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    endpoints: Arc<Vec<String>>,
    opts: ConnectOptions,
    conn: Arc<RwLock<Connection>>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    transport: Transport,
}

/// `host:port` or `http(s)://host:port`, as etcdctl accepts them; TLS makes a bare `host:port` https.
fn normalize(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

impl Client {
    /// Connects to the first reachable endpoint, in order.
    pub async fn connect<I, S>(endpoints: I, opts: ConnectOptions) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::connect_with(endpoints, opts, Transport::default()).await
    }

    /// As [`Client::connect`], over the given transport (TLS, keepalive).
    pub async fn connect_with<I, S>(
        endpoints: I,
        opts: ConnectOptions,
        transport: Transport,
    ) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints: Vec<String> =
            endpoints.into_iter().map(|e| normalize(e.as_ref(), transport.tls.is_some())).collect();
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let conn = Self::dial_any(&endpoints, 0, &opts, &transport).await?;
        let mut client = Client {
            endpoints: Arc::new(endpoints),
            opts,
            conn: Arc::new(RwLock::new(conn)),
            token: None,
            transport,
        };
        if let Some((user, password)) = client.opts.user.clone() {
            let mut auth = AuthClient::new(client.channel());
            let resp = auth.authenticate(AuthenticateRequest { name: user, password }).await?.into_inner();
            let token = MetadataValue::try_from(resp.token.as_str())
                .map_err(|_| ClientError::Status(Status::internal("server returned an invalid token")))?;
            client.token = Some(token);
        }
        Ok(client)
    }

    async fn dial_any(
        endpoints: &[String],
        start: usize,
        opts: &ConnectOptions,
        transport: &Transport,
    ) -> Result<Connection> {
        let mut last = String::new();
        for k in 0..endpoints.len() {
            let index = (start + k) % endpoints.len();
            let url = &endpoints[index];
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|_| ClientError::InvalidEndpoint(url.clone()))?
                .connect_timeout(opts.dial_timeout)
                .timeout(opts.request_timeout)
                .tcp_nodelay(true);
            if let Some(k) = transport.keepalive {
                endpoint = endpoint
                    .http2_keep_alive_interval(k.time)
                    .keep_alive_timeout(k.timeout)
                    .keep_alive_while_idle(true);
            }
            if let Some(t) = &transport.tls {
                endpoint = t.apply(endpoint).map_err(|e| ClientError::Unreachable {
                    endpoints: endpoints.to_vec(),
                    last: e.to_string(),
                })?;
            }
            let connecting = endpoint.connect_with_connector(cork::CorkedConnector::new());
            match tokio::time::timeout(opts.dial_timeout, connecting).await {
                Ok(Ok(channel)) => return Ok(Connection { index, channel }),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "dial timeout".into(),
            }
        }
        Err(ClientError::Unreachable { endpoints: endpoints.to_vec(), last })
    }

    fn channel(&self) -> Channel {
        self.conn.read().unwrap_or_else(std::sync::PoisonError::into_inner).channel.clone()
    }

    /// After a connection-level failure, move to the next reachable endpoint.
    async fn failover(&self) -> Result<()> {
        let next = self.conn.read().unwrap_or_else(std::sync::PoisonError::into_inner).index + 1;
        let conn = Self::dial_any(&self.endpoints, next, &self.opts, &self.transport).await?;
        *self.conn.write().unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
        Ok(())
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        if let Some(t) = &self.token {
            req.metadata_mut().insert("token", t.clone());
        }
        req
    }

    /// Runs `call` on the current connection; on a transport failure (not an etcd error), moves to the next
    /// endpoint and, if `retry` allows it for this failure, calls once more there.
    async fn with_failover<T, F, Fut>(&self, retry: Retry, call: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Status>>,
    {
        match call(self.channel()).await {
            Ok(v) => Ok(v),
            Err(s)
                if s.code() == Code::Unavailable
                    && EtcdError::from_status(&s).is_none()
                    && self.endpoints.len() > 1 =>
            {
                self.failover().await?;
                if retry == Retry::Repeatable || cork::never_sent(&s) {
                    Ok(call(self.channel()).await?)
                } else {
                    Err(s.into())
                }
            }
            Err(s) => Err(s.into()),
        }
    }

    /// The raw generated KV client on the current connection (for tests and tools).
    pub fn kv_client(&self) -> KvClient<Channel> {
        KvClient::new(self.channel())
    }

    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        opts: PutOptions,
    ) -> Result<PutResponse> {
        let req = opts.into_request(key.into(), value.into());
        self.with_failover(Retry::Once, |ch| {
            let r = self.request(req.clone());
            async move { KvClient::new(ch).put(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    pub async fn get(&self, key: impl Into<Vec<u8>>, opts: GetOptions) -> Result<RangeResponse> {
        let req = opts.into_request(key.into());
        self.with_failover(Retry::Repeatable, |ch| {
            let r = self.request(req.clone());
            async move { KvClient::new(ch).range(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    pub async fn delete(&self, key: impl Into<Vec<u8>>, opts: DeleteOptions) -> Result<DeleteRangeResponse> {
        let req = opts.into_request(key.into());
        self.with_failover(Retry::Once, |ch| {
            let r = self.request(req.clone());
            async move { KvClient::new(ch).delete_range(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let req = txn.into_request();
        self.with_failover(Retry::Once, |ch| {
            let r = self.request(req.clone());
            async move { KvClient::new(ch).txn(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    pub async fn compact(&self, revision: i64, physical: bool) -> Result<CompactionResponse> {
        let req = CompactionRequest { revision, physical };
        self.with_failover(Retry::Once, |ch| {
            let r = self.request(req);
            async move { KvClient::new(ch).compact(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    pub async fn status(&self) -> Result<StatusResponse> {
        self.with_failover(Retry::Repeatable, |ch| {
            let r = self.request(StatusRequest {});
            async move { MaintenanceClient::new(ch).status(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    pub async fn member_list(&self) -> Result<MemberListResponse> {
        self.with_failover(Retry::Repeatable, |ch| {
            let r = self.request(MemberListRequest { linearizable: false });
            async move { ClusterClient::new(ch).member_list(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_etcdctl_forms() {
        assert_eq!(normalize("127.0.0.1:2379", false), "http://127.0.0.1:2379");
        assert_eq!(normalize("http://h:1", true), "http://h:1");
        assert_eq!(normalize("h:1", true), "https://h:1");
    }

    #[test]
    fn etcd_errors_are_recognised_from_status() {
        let e = ClientError::from(Status::from(EtcdError::Compacted));
        assert!(matches!(e, ClientError::Etcd(EtcdError::Compacted)));
        assert_eq!(e.to_string(), "etcdserver: mvcc: required revision has been compacted");
        let e = ClientError::from(Status::unavailable("connection refused"));
        assert_eq!(e.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn no_reachable_endpoint_is_an_error_naming_them() {
        let opts = ConnectOptions { dial_timeout: Duration::from_millis(200), ..ConnectOptions::default() };
        // Port 1 on loopback: nothing listens there.
        let e = Client::connect(["127.0.0.1:1"], opts).await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(matches!(
            Client::connect(Vec::<String>::new(), ConnectOptions::default()).await,
            Err(ClientError::NoEndpoints)
        ));
    }
}
