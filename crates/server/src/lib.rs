//! cairn-server: the cairn member: etcd's flags, the raft node loop over the WAL, the applier into the MVCC
//! store, and etcd's gRPC and HTTP APIs on the client port.
//!
//! # Layout
//! - [`config`]: etcd's flags, `ETCD_*` environment, `--config-file`, member and cluster ids as etcd derives them.
//! - [`node`]: the raft node loop (its own thread): WAL group commit, apply batches, read index, snapshots.
//! - [`member`]: the state every service serves from; proposing and read-index waits with etcd's timeout.
//! - [`validate`]: etcd's request checks (empty keys, ignore flags, txn op limits, duplicate keys).
//! - [`kv`], [`maintenance`]: the KV, Maintenance and Cluster gRPC services.
//! - [`alarm`]: raised alarms (NOSPACE, CORRUPT) and the backend quota, at the gRPC edge and on apply.
//! - [`compactor`]: auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`) on the leader.
//! - [`lease`]: the Lease service, applying lease entries into the lessor, and the leader's lease duties.
//! - [`watch`]: the Watch service's streams (gRPC and gateway) and the watchers' background catch-up.
//! - [`lock`], [`election`]: the Lock and Election services, on leases, keys and watch as etcd's v3lock/v3election.
//! - [`concurrency`]: what those two share: sessions, contender keys, waiting for older contenders' deletion.
//! - [`http`]: `/health`, `/version` and the JSON gateway.
//! - [`server`]: listeners, the services on one port, signals and shutdown.
//! - [`authority`]: a shim under the HTTP/2 server that repairs Go clients' malformed `:authority`.
//! - [`bootstrap`]: new cluster, joining an existing one, or restarting from the WAL, as etcd decides.
//! - [`membership`]: members' names and URLs, durable in the backend, changed by applied conf changes.
//! - [`membership_api`]: MemberAdd/Remove/Update/Promote and MoveLeader with etcd's checks.
//! - [`transport`]: raft messages and snapshots between members (gRPC streams on the peer port).
//! - [`wire`]: raft's messages to and from their protobuf form.
//! - [`error`]: the server's errors and the one mapping of other crates' errors to etcd's.
//!
//! It alone wires raft, storage and mvcc together; none of them knows the others.

pub mod alarm;
pub mod authority;
pub mod bootstrap;
pub mod compactor;
pub mod concurrency;
pub mod config;
pub mod election;
pub mod error;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod member;
pub mod membership;
pub mod membership_api;
pub mod node;
pub mod server;
pub mod transport;
pub mod validate;
pub mod watch;
pub mod wire;
