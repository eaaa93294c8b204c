//! The KV workloads' connections: hyper's HTTP/2 client connection, corked as cairn-client's, under the generated
//! stubs, without tonic's `Channel`.
//!
//! A `Channel` is a `Buffer` in front of a reconnecting connection: every request travels through an mpsc queue to
//! the buffer's worker task and its answer back through a oneshot, one extra task hop per request, plus the
//! reconnect, origin and user-agent layers. A load generator that spends its CPU there takes it from the server it
//! measures, on the same two cores, and more from the faster server. The requests on the wire are the same: the
//! generated stub encodes them and decodes the answers and their status as over a `Channel`.
//! A broken connection is not re-established: its requests fail and count as errors.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use cairn_api::etcdserverpb::kv_client::KvClient;
use cairn_client::cork::Corked;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tonic::body::Body;
use tonic::transport::Uri;

use crate::env::Env;

/// One HTTP/2 connection to one endpoint; clones share it.
#[derive(Clone)]
pub struct Direct(SendRequest<Body>);

impl tower_service::Service<http::Request<Body>> for Direct {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// `env.conns` connections, spread round-robin over the endpoints as [`Env::connect`] spreads its clients.
pub async fn connect_all(env: &Env) -> anyhow::Result<Vec<KvClient<Direct>>> {
    let mut connections = Vec::with_capacity(env.conns);
    for url in env.connection_urls()? {
        connections.push(connect(url).await?);
    }
    Ok(connections)
}

/// Opens one connection to `url` (`http://host:port`) and returns the KV stub on it.
pub async fn connect(url: &str) -> anyhow::Result<KvClient<Direct>> {
    let origin: Uri = url.parse().with_context(|| format!("{url:?} is not a URL"))?;
    anyhow::ensure!(
        origin.scheme_str() == Some("http"),
        "the KV workloads speak plain http, and {url:?} is not an http:// URL"
    );
    let authority = origin.authority().with_context(|| format!("{url:?} names no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((authority.host().trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(Corked::new(tcp)))
        .await
        .with_context(|| format!("HTTP/2 handshake with {url}"))?;
    // The connection runs until the last stub is dropped or the server goes away; a failure then shows up in the
    // requests' own errors.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(KvClient::with_origin(Direct(send), origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_what_it_cannot_dial() {
        let err = connect("https://127.0.0.1:1").await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("plain http")));
        let err = connect("not a url").await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("is not a URL")));
        // Port 1 on loopback: nothing listens there, so the connect itself fails.
        let err = connect("http://127.0.0.1:1").await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("connecting to")));
    }
}
