//! cairn-api: etcd v3's wire types and gRPC services, generated from `proto/`, their protojson (serde) form for the
//! HTTP gateway, and etcd's error table.
//!
//! This is the bottom of cairn's crate graph: every other crate may use it, it uses none of them.
//!
//! # Layout
//! - [`etcdserverpb`], [`mvccpb`], [`authpb`], [`v3lockpb`], [`v3electionpb`]: etcd's packages, same names and field
//!   numbers as etcd, so gRPC paths (`/etcdserverpb.KV/Range`) and bytes on the wire are etcd's. Each message also
//!   has serde impls in etcd gateway's JSON shape (proto field names, int64 as strings, bytes as base64).
//! - [`cairnpb`]: cairn's own protocol: the request envelope proposed through raft and the peer raft messages.
//! - [`error`]: [`EtcdError`], every error etcd's server returns, with its gRPC code and exact message, in one table.
//! - [`gateway`]: request bodies of the HTTP gateway read as etcd 3.4's grpc-gateway reads them (Go's JSON errors,
//!   byte for byte), and its error body.
//!
//! It must not know how requests are served: no storage, raft or server logic lives here.

pub mod error;
pub mod gateway;

pub use error::EtcdError;

/// Generated code is not ours to lint.
macro_rules! generated {
    ($name:ident, $file:literal) => {
        #[allow(clippy::all, clippy::pedantic, missing_debug_implementations, missing_docs)]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file, ".rs"));
            include!(concat!(env!("OUT_DIR"), "/", $file, ".serde.rs"));
        }
    };
}

generated!(mvccpb, "mvccpb");
generated!(authpb, "authpb");
generated!(etcdserverpb, "etcdserverpb");
generated!(v3lockpb, "v3lockpb");
generated!(v3electionpb, "v3electionpb");
generated!(cairnpb, "cairnpb");
