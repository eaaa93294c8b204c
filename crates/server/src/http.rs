//! HTTP on the client port, as etcd serves it beside gRPC: `/health`, `/version`, and the JSON gateway for the
//! KV paths (`/v3/kv/...`), `/v3/watch`, `/v3/maintenance/status`, `/v3/maintenance/alarm` and `/v3/cluster/member/list` in grpc-gateway's shape (proto field names, int64 as strings, bytes as base64; errors
//! as `{"error","message","code"}`), and `/v3/lock/*`, `/v3/election/*` (Observe streams as `/v3/watch`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_api::etcdserverpb::{LeaseKeepAliveRequest, WatchRequest};
use cairn_api::gateway::{self, GatewayMessage, Requests};
use futures::StreamExt;
use serde::Serialize;
use tonic::Code;

use crate::member::{MemberState, CLUSTER_VERSION, SERVER_VERSION};
use crate::{alarm, election, kv, lease, lock, maintenance};

pub fn router(m: Arc<MemberState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/v3/kv/range", post(|s, b| gateway(s, b, kv::range)))
        .route("/v3/kv/put", post(|s, b| gateway(s, b, kv::put)))
        .route("/v3/kv/deleterange", post(|s, b| gateway(s, b, kv::delete_range)))
        .route("/v3/kv/txn", post(|s, b| gateway(s, b, kv::txn)))
        .route("/v3/kv/compaction", post(|s, b| gateway(s, b, kv::compact)))
        .route("/v3/maintenance/status", post(|s, b| gateway(s, b, maintenance::status_request)))
        .route("/v3/maintenance/alarm", post(|s, b| gateway(s, b, alarm::alarm)))
        .route("/v3/cluster/member/list", post(|s, b| gateway(s, b, maintenance::member_list)))
        .route("/v3/watch", post(watch))
        .route("/v3/lease/grant", post(|s, b| gateway(s, b, lease::grant)))
        .route("/v3/lease/revoke", post(|s, b| gateway(s, b, lease::revoke)))
        .route("/v3/kv/lease/revoke", post(|s, b| gateway(s, b, lease::revoke)))
        .route("/v3/lease/timetolive", post(|s, b| gateway(s, b, lease::time_to_live)))
        .route("/v3/kv/lease/timetolive", post(|s, b| gateway(s, b, lease::time_to_live)))
        .route("/v3/lease/leases", post(|s, b| gateway(s, b, lease::leases)))
        .route("/v3/kv/lease/leases", post(|s, b| gateway(s, b, lease::leases)))
        .route("/v3/lease/keepalive", post(lease_keep_alive))
        .route("/v3/lock/lock", post(|s, b| gateway(s, b, lock::lock)))
        .route("/v3/lock/unlock", post(|s, b| gateway(s, b, lock::unlock)))
        .route("/v3/election/campaign", post(|s, b| gateway(s, b, election::campaign)))
        .route("/v3/election/proclaim", post(|s, b| gateway(s, b, election::proclaim)))
        .route("/v3/election/leader", post(|s, b| gateway(s, b, election::leader)))
        .route("/v3/election/resign", post(|s, b| gateway(s, b, election::resign)))
        .route("/v3/election/observe", post(observe))
        .with_state(m)
}

/// Healthy when the member has a leader and a linearizable read goes through (etcd 3.4's check).
async fn health(State(m): State<Arc<MemberState>>) -> Response {
    let healthy = m.shared.leader.load(Ordering::SeqCst) != 0 && m.read_index().await.is_ok();
    let (code, body) = if healthy {
        (StatusCode::OK, r#"{"health":"true"}"#)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
    };
    (code, [("content-type", "application/json")], body).into_response()
}

async fn version() -> Response {
    Json(serde_json::json!({ "etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION })).into_response()
}

/// The requests of a streaming call's body, as grpc-gateway sends them on: a body that does not start with a
/// valid request is refused with the decoder's error as an Unknown status; after the first request, a bad one
/// just ends the requests (grpc-gateway's send loop stops there).
fn stream_requests<T: GatewayMessage>(body: &[u8]) -> Result<Vec<T>, gateway::GatewayError> {
    let mut requests = Vec::new();
    for r in Requests::<T>::new(body) {
        match r {
            Ok(r) => requests.push(r),
            Err(e) if requests.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(requests)
}

/// The Watch stream over HTTP, as grpc-gateway serves it: the body holds one or more JSON WatchRequests, the
/// response streams one `{"result": WatchResponse}` line per message until the client goes away.
async fn watch(State(m): State<Arc<MemberState>>, body: Bytes) -> Response {
    let requests = match stream_requests::<WatchRequest>(&body) {
        Ok(r) => r,
        Err(e) => return error_response(Code::Unknown, &e.to_string()),
    };
    // The request side stays open: watchers live as long as the response is read.
    let requests = futures::stream::iter(requests).chain(futures::stream::pending());
    let lines = crate::watch::serve(m, Box::pin(requests)).map(|resp| {
        let mut line = serde_json::to_vec(&serde_json::json!({ "result": resp })).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    ([("content-type", "application/json")], Body::from_stream(lines)).into_response()
}

/// Election Observe over HTTP: one `{"result": LeaderResponse}` line per change until the client goes away.
async fn observe(State(m): State<Arc<MemberState>>, body: Bytes) -> Response {
    let req = match gateway::decode(&body) {
        Ok(r) => r,
        Err(e) => return error_response(Code::InvalidArgument, &e.to_string()),
    };
    let lines = election::observe(m, req).map(|resp| {
        // Written around the message so its fields keep the proto order, as grpc-gateway's.
        let mut line = b"{\"result\":".to_vec();
        line.extend(serde_json::to_vec(&resp).unwrap_or_default());
        line.extend_from_slice(b"}\n");
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    ([("content-type", "application/json")], Body::from_stream(lines)).into_response()
}

/// Keep-alive over HTTP: grpc-gateway streams it, so the answer is one `{"result": ...}` line per request in
/// the body (none for an empty body).
async fn lease_keep_alive(State(m): State<Arc<MemberState>>, body: Bytes) -> Response {
    let requests = match stream_requests::<LeaseKeepAliveRequest>(&body) {
        Ok(r) => r,
        Err(e) => return error_response(Code::Unknown, &e.to_string()),
    };
    let mut lines = Vec::new();
    for req in requests {
        match lease::keep_alive_once(Arc::clone(&m), req).await {
            Ok(resp) => {
                // Written around the message so its fields keep the proto order, as grpc-gateway's.
                lines.extend_from_slice(b"{\"result\":");
                lines.extend(serde_json::to_vec(&resp).unwrap_or_default());
                lines.extend_from_slice(b"}\n");
            }
            Err(e) if lines.is_empty() => return error_response(e.code(), e.message()),
            Err(_) => break,
        }
    }
    ([("content-type", "application/json")], lines).into_response()
}

/// Decodes the JSON body, runs the same function gRPC runs, encodes the answer.
async fn gateway<Req, Resp, E, Fut>(
    State(m): State<Arc<MemberState>>,
    body: Bytes,
    f: impl FnOnce(Arc<MemberState>, Req) -> Fut,
) -> Response
where
    Req: GatewayMessage,
    Resp: Serialize,
    E: Into<tonic::Status>,
    Fut: std::future::Future<Output = Result<Resp, E>>,
{
    // An empty body is the empty request, as grpc-gateway reads it.
    let req = match gateway::decode::<Req>(&body) {
        Ok(r) => r,
        Err(e) => return error_response(Code::InvalidArgument, &e.to_string()),
    };
    match f(m, req).await {
        Ok(resp) => Json(resp).into_response(),
        Err(e) => {
            let status: tonic::Status = e.into();
            error_response(status.code(), status.message())
        }
    }
}

fn error_response(code: Code, message: &str) -> Response {
    let status = match code {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // grpc-gateway's key order and Go's string escaping, which serde_json would not give.
    (status, [("content-type", "application/json")], gateway::error_body(code as i32, message))
        .into_response()
}
