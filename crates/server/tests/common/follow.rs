//! Following one watch across faults, as a client that must miss nothing does: a stream that breaks (its
//! member killed, the connection lost) is opened again on the next member from the last revision seen + 1.
//! Every response of every stream is kept for cairn-check's watch checker.
//!
//! No test here compacts, so a canceled watch (or a compaction notice) is a server error: the follower panics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::{WatchCreateRequest, WatchRequest};
use cairn_check::watch as check;
use cairn_client::{Client, ConnectOptions, WatchStream};
use tokio::sync::watch;

/// How long a stream may stay quiet before the follower checks whether it is done.
const QUIET: Duration = Duration::from_secs(1);

/// What a followed watch received so far; the test reads it while the follower runs and after.
#[derive(Debug, Default)]
pub struct Followed {
    /// One per stream, in order, as cairn-check reads them.
    pub segments: Vec<check::Segment>,
    /// Streams that ended before the watcher was done and were opened again.
    pub resumes: usize,
    /// The revision the watcher waits for next (the last event's revision + 1).
    pub next: i64,
    /// The endpoint (an index into [`Follow::endpoints`]) the watcher is on, or is trying.
    pub member: usize,
}

impl Followed {
    /// Every event received, in order.
    pub fn events(&self) -> impl Iterator<Item = &check::Event> {
        self.segments.iter().flat_map(|s| &s.responses).flat_map(|r| &r.events)
    }
}

/// One watch to follow: its name (for messages), what it asks for (`start_revision` is where it starts), the
/// members it may use and the one it starts on.
#[derive(Clone, Debug)]
pub struct Follow {
    pub name: String,
    pub request: WatchCreateRequest,
    pub endpoints: Vec<String>,
    pub first: usize,
}

impl Follow {
    /// The watcher as cairn-check judges it.
    pub fn watcher(&self, log: &Followed) -> check::Watcher {
        check::Watcher { request: check::WatchRequest::from(&self.request), segments: log.segments.clone() }
    }

    /// Follows the watch until it has seen the revision `until` holds (0: not known yet), recording into
    /// `log`. Panics on a canceled watch, or when still not done at `deadline`.
    pub async fn run(&self, log: Arc<Mutex<Followed>>, mut until: watch::Receiver<i64>, deadline: Instant) {
        let done = |until: &watch::Receiver<i64>, next: i64| {
            let target = *until.borrow();
            target != 0 && next > target
        };
        let mut member = self.first;
        let mut next = self.request.start_revision;
        loop {
            {
                let mut l = log.lock().unwrap();
                l.next = next;
                l.member = member;
            }
            let Some((_client, mut stream)) = self.open(member, next).await else {
                assert!(Instant::now() < deadline, "watcher {}: no member to watch on", self.name);
                member = (member + 1) % self.endpoints.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            log.lock().unwrap().segments.push(check::Segment { start_revision: next, responses: Vec::new() });
            loop {
                if done(&until, next) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "watcher {}: still waiting for revision {next}",
                    self.name
                );
                let message = tokio::select! {
                    m = tokio::time::timeout(QUIET, stream.message()) => m,
                    // The target moved: look again whether the watcher is done.
                    Ok(()) = until.changed() => continue,
                };
                match message {
                    Err(_) => {} // quiet: look again at the deadline
                    Ok(Ok(Some(r))) => {
                        assert!(
                            !r.canceled && r.compact_revision == 0,
                            "watcher {}: watch canceled on {} (nothing is compacted here): {r:?}",
                            self.name,
                            self.endpoints[member]
                        );
                        next = r
                            .events
                            .last()
                            .and_then(|e| e.kv.as_ref())
                            .map_or(next, |kv| kv.mod_revision + 1);
                        let mut l = log.lock().unwrap();
                        l.next = next;
                        if let Some(segment) = l.segments.last_mut() {
                            segment.responses.push(check::WatchResponse::from(&r));
                        }
                    }
                    Ok(_) => break, // the stream ended: the member went away
                }
            }
            log.lock().unwrap().resumes += 1;
            let from = member;
            member = (member + 1) % self.endpoints.len();
            eprintln!(
                "watch {}: the stream on {} ended; resuming on {} from revision {next}",
                self.name, self.endpoints[from], self.endpoints[member]
            );
        }
    }

    /// A stream on endpoint `member` from revision `from`, with the client that keeps its connection.
    async fn open(&self, member: usize, from: i64) -> Option<(Client, WatchStream)> {
        let opts = ConnectOptions {
            dial_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            user: None,
        };
        let client = Client::connect([self.endpoints[member].clone()], opts).await.ok()?;
        let create = WatchCreateRequest { start_revision: from, ..self.request.clone() };
        let first = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        let stream = tokio::time::timeout(Duration::from_secs(3), client.watch(first)).await.ok()?.ok()?;
        Some((client, stream))
    }
}
