//! The KV workloads' connections: unary gRPC calls written straight onto an `h2` client connection, framed as Go's
//! gRPC client frames them.
//!
//! A request is a HEADERS frame and one DATA frame that ends the stream, queued together so that one write carries
//! both (and the requests of every client that sent meanwhile: the connection is corked as cairn-client's). The
//! generated stub over tonic's `Channel` sends three frames instead (HEADERS, DATA, and an empty DATA to end the
//! stream) from a task spawned per request, after a hop through the channel's buffer task: about twice the
//! syscalls and a third more CPU per put in the load generator, which shares the two cores with the server it
//! measures and so takes more from the faster server. Answers are read as tonic reads them: status from the
//! trailers (or a trailers-only answer's headers), the message from its 5-byte length prefix.
//! A broken connection is not re-established: its requests fail and count as errors.

use std::future::poll_fn;

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use cairn_client::cork::Corked;
use h2::client::SendRequest;
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderValue, Method, Request, Uri};
use prost::Message;
use tokio::net::TcpStream;
use tonic::{Code, Status};

use crate::env::Env;

/// One HTTP/2 connection to one endpoint; clones share it.
#[derive(Clone)]
pub struct Direct {
    send: SendRequest<Bytes>,
    authority: http::uri::Authority,
}

/// `env.conns` connections, spread round-robin over the endpoints as [`Env::connect`] spreads its clients.
pub async fn connect_all(env: &Env) -> anyhow::Result<Vec<Direct>> {
    let mut connections = Vec::with_capacity(env.conns);
    for url in env.connection_urls()? {
        connections.push(connect(url).await?);
    }
    Ok(connections)
}

/// Opens one connection to `url` (`http://host:port`).
pub async fn connect(url: &str) -> anyhow::Result<Direct> {
    let origin: Uri = url.parse().with_context(|| format!("{url:?} is not a URL"))?;
    anyhow::ensure!(
        origin.scheme_str() == Some("http"),
        "the KV workloads speak plain http, and {url:?} is not an http:// URL"
    );
    let authority = origin.authority().cloned().with_context(|| format!("{url:?} names no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((authority.host().trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (send, connection) = h2::client::handshake(Corked::new(tcp))
        .await
        .with_context(|| format!("HTTP/2 handshake with {url}"))?;
    // The connection runs until the last handle is dropped or the server goes away; a failure then shows up in
    // the requests' own errors.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Direct { send, authority })
}

/// A transport failure as the gRPC status tonic would report for it.
fn unavailable(e: h2::Error) -> Status {
    Status::new(Code::Unavailable, e.to_string())
}

impl Direct {
    /// The URI of the gRPC method at `path` (`/package.Service/Method`) on this connection's endpoint: built once
    /// per client, not per request.
    pub fn uri(&self, path: &str) -> anyhow::Result<Uri> {
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .with_context(|| format!("{path:?} is not a gRPC method path"))
    }

    /// Sends `request` to the method at `uri` (from [`Direct::uri`]) and returns the decoded answer or its status.
    pub async fn unary<Req: Message, Resp: Message + Default>(
        &mut self,
        uri: &Uri,
        request: &Req,
    ) -> Result<Resp, Status> {
        let len = request.encoded_len();
        let mut body = BytesMut::with_capacity(5 + len);
        body.put_u8(0);
        body.put_u32(u32::try_from(len).map_err(|_| Status::new(Code::Internal, "request too large"))?);
        request.encode(&mut body).map_err(|e| Status::new(Code::Internal, e.to_string()))?;
        let mut head = Request::new(());
        *head.method_mut() = Method::POST;
        *head.uri_mut() = uri.clone();
        head.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        head.headers_mut().insert(TE, HeaderValue::from_static("trailers"));

        poll_fn(|cx| self.send.poll_ready(cx)).await.map_err(unavailable)?;
        let (answer, mut stream) = self.send.send_request(head, false).map_err(unavailable)?;
        stream.send_data(body.freeze(), true).map_err(unavailable)?;
        let (parts, mut recv) = answer.await.map_err(unavailable)?.into_parts();
        if !parts.status.is_success() {
            return Err(Status::new(Code::Unknown, format!("HTTP status {}", parts.status)));
        }
        if let Some(status) = Status::from_header_map(&parts.headers) {
            // A trailers-only answer: the status came with the headers.
            return Err(if status.code() == Code::Ok {
                Status::new(Code::Internal, "no message")
            } else {
                status
            });
        }
        let mut message = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(unavailable)?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.map_err(unavailable)?.unwrap_or_default();
        match Status::from_header_map(&trailers) {
            Some(status) if status.code() == Code::Ok => {}
            Some(status) => return Err(status),
            None => return Err(Status::new(Code::Internal, "missing grpc-status")),
        }
        decode(&message)
    }
}

/// The one length-prefixed, uncompressed message of a unary answer.
fn decode<Resp: Message + Default>(frame: &[u8]) -> Result<Resp, Status> {
    let bad = |what: &str| Status::new(Code::Internal, format!("malformed answer: {what}"));
    let (&flag, rest) = frame.split_first().ok_or_else(|| bad("empty"))?;
    if flag != 0 {
        return Err(bad("compressed"));
    }
    let len = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).ok_or_else(|| bad("short prefix"))?;
    let message = rest.get(4..4 + u32::from_be_bytes(len) as usize).ok_or_else(|| bad("short message"))?;
    Resp::decode(message).map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use cairn_api::etcdserverpb::PutRequest;

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

    #[test]
    fn decodes_one_prefixed_message_and_refuses_the_rest() {
        let put = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
        let mut frame = vec![0];
        frame.extend_from_slice(&(put.encoded_len() as u32).to_be_bytes());
        put.encode(&mut frame).unwrap();
        assert_eq!(decode::<PutRequest>(&frame).unwrap(), put);
        let code = |f: &[u8]| decode::<PutRequest>(f).unwrap_err().message().to_owned();
        assert!(code(&[]).contains("empty"));
        assert!(code(&[1, 0, 0, 0, 0]).contains("compressed"));
        assert!(code(&[0, 0, 0]).contains("short prefix"));
        assert!(code(&frame[..frame.len() - 1]).contains("short message"));
    }
}
