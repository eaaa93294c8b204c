//! Bad input on the peer port and at bootstrap: a peer of another cluster, malformed raft messages, a snapshot
//! chunk with a bad checksum, a data dir started with another cluster's flags. Each is refused with a clear
//! error and the member keeps serving; none is a panic.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;
#[path = "common/cluster.rs"]
mod harness;

use std::time::Duration;

use cairn_api::cairnpb::raft_client::RaftClient;
use cairn_api::cairnpb::{Message, MessageBatch, SnapshotChunk};
use cairn_client::PutOptions;
use harness::Cluster;
use tonic::transport::Channel;

async fn peer_client(cluster: &Cluster, i: usize) -> RaftClient<Channel> {
    let ch = tonic::transport::Endpoint::from_shared(cluster.members[i].peer_url())
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    RaftClient::new(ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peer_input_is_refused_and_the_member_keeps_serving() {
    let cluster = Cluster::start(1, &[]);
    cluster.wait_leader().await;
    let cid = cluster.status(0).await.unwrap().header.unwrap().cluster_id;
    let mut raft = peer_client(&cluster, 0).await;

    // A member of another cluster.
    let foreign =
        MessageBatch { cluster_id: cid ^ 1, messages: vec![Message { r#type: 8, ..Message::default() }] };
    let e = raft.send(futures::stream::iter([foreign])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("cluster ID mismatch"), "{e:?}");

    // Malformed messages: unknown type, unknown entry type, a local message type, an append out of sequence.
    let garbage = MessageBatch {
        cluster_id: cid,
        messages: vec![
            Message { r#type: 99, from: 7, ..Message::default() },
            Message {
                r#type: 3,
                from: 7,
                entries: vec![cairn_api::cairnpb::Entry { r#type: 9, ..Default::default() }],
                ..Message::default()
            },
            Message { r#type: 0, from: 7, ..Message::default() },
            Message {
                r#type: 3,
                from: 7,
                term: 1,
                index: 5,
                entries: vec![cairn_api::cairnpb::Entry { index: 2, term: 9, ..Default::default() }],
                ..Message::default()
            },
            Message { r#type: 8, from: 0, ..Message::default() },
        ],
    };
    raft.send(futures::stream::iter([garbage])).await.unwrap();

    // A snapshot chunk whose checksum does not match its data.
    let chunk = SnapshotChunk {
        cluster_id: cid,
        offset: 0,
        data: b"not a backend".to_vec(),
        crc32c: 1,
        last: true,
        message: None,
    };
    let e = raft.send_snapshot(futures::stream::iter([chunk])).await.unwrap_err();
    assert_eq!(e.message(), "snapshot chunk checksum mismatch");
    // A well-formed stream that ends without its raft message.
    let data = b"x".to_vec();
    let chunk = SnapshotChunk {
        cluster_id: cid,
        offset: 0,
        crc32c: crc32c::crc32c(&data),
        data,
        last: true,
        message: None,
    };
    let e = raft.send_snapshot(futures::stream::iter([chunk])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    let c = cluster.client(0).await;
    c.put("still", "serving", PutOptions::default()).await.unwrap();
    let log = cluster.members[0].log();
    assert!(log.contains("another cluster"), "{log}");
    assert!(log.contains("malformed raft message dropped"), "{log}");
    assert!(log.contains("checksum mismatch"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_with_another_clusters_flags_refuses_to_start() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.wait_leader().await;
    cluster.kill9(0);
    cluster.set_extra(0, &["--initial-cluster-token=another-cluster"]);
    cluster.spawn(0);
    let code = cluster.members[0].wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{}", cluster.members[0].log());
    let log = cluster.members[0].log();
    assert!(log.contains("member or cluster id mismatch"), "{log}");
}
