//! The consensus core alone: 3 in-memory nodes, 256-byte proposals proposed in batches, measured until every
//! node has applied them. Shows how many entries per second the state machine itself can commit, so that the
//! server's limits are known to lie elsewhere (disk, network, apply).

#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a broken setup

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
mod common;

use common::Cluster;

const BATCH: usize = 1000;

fn commit_batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("3 nodes, 1000 x 256-byte proposals per batch", |b| {
        b.iter_batched(
            || {
                let mut cluster = Cluster::new(&[1, 2, 3]);
                cluster.elect(1);
                cluster
            },
            |mut cluster| {
                let payload = vec![0xabu8; 256];
                for _ in 0..BATCH {
                    cluster.node(1).raw.propose(payload.clone()).unwrap();
                }
                cluster.stabilize();
                assert_eq!(cluster.node(3).applied.len(), BATCH);
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, commit_batches);
criterion_main!(benches);
