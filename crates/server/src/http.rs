//! HTTP on the client port, as etcd serves it beside gRPC: `/health`, `/version`, and the JSON gateway for the
//! KV paths (`/v3/kv/...`), `/v3/watch`, `/v3/maintenance/status` and `/v3/cluster/member/list` in grpc-gateway's shape (proto field names, int64 as strings, bytes as base64; errors
//! as `{"error","message","code"}`), and `/v3/lock/*`, `/v3/election/*` (Observe streams as `/v3/watch`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_api::etcdserverpb::WatchRequest;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Code;

use crate::member::{MemberState, CLUSTER_VERSION, SERVER_VERSION};
use crate::{election, kv, lease, lock, maintenance};

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

/// The Watch stream over HTTP, as grpc-gateway serves it: the body holds one or more JSON WatchRequests, the
/// response streams one `{"result": WatchResponse}` line per message until the client goes away.
async fn watch(State(m): State<Arc<MemberState>>, body: Bytes) -> Response {
    let mut requests = Vec::new();
    for r in serde_json::Deserializer::from_slice(&body).into_iter::<WatchRequest>() {
        match r {
            Ok(r) => requests.push(r),
            Err(e) => return error_response(Code::InvalidArgument, &e.to_string()),
        }
    }
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
    let req = match serde_json::from_slice(&body) {
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

/// Keep-alive over HTTP: grpc-gateway streams it, so the answer is one `{"result": ...}` line.
async fn lease_keep_alive(State(m): State<Arc<MemberState>>, body: Bytes) -> Response {
    let req = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error_response(Code::InvalidArgument, &e.to_string()),
    };
    match lease::keep_alive_once(m, req).await {
        Ok(resp) => Json(serde_json::json!({ "result": resp })).into_response(),
        Err(e) => error_response(e.code(), e.message()),
    }
}

/// Decodes the JSON body, runs the same function gRPC runs, encodes the answer.
async fn gateway<Req, Resp, E, Fut>(
    State(m): State<Arc<MemberState>>,
    body: Bytes,
    f: impl FnOnce(Arc<MemberState>, Req) -> Fut,
) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    E: Into<tonic::Status>,
    Fut: std::future::Future<Output = Result<Resp, E>>,
{
    // An empty body is the empty request, as grpc-gateway reads it.
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Req::default())
    } else {
        serde_json::from_slice::<Req>(&body)
    };
    let req = match req {
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
    let body = serde_json::json!({ "error": message, "message": message, "code": code as i32 });
    (status, Json(body)).into_response()
}
