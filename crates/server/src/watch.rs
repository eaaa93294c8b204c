//! etcd's Watch service: one bidirectional stream carries many watchers (etcd `api/v3rpc/watch.go`).
//!
//! Each stream has one bounded queue to its client. Control answers (created, canceled) are queued by the
//! stream's request task and wait for room; events are queued by the store's watchers without waiting, and a
//! full queue makes the watcher fall behind and catch up from the backend later (crates/mvcc `watch`), so a
//! client that never reads costs one queue, never a stalled write. A stream's watchers live until the client
//! goes away (a half-closed request side keeps them, as etcd).
//!
//! The background loops that catch unsynced watchers up and send periodic progress notifications run here too.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use cairn_api::etcdserverpb::watch_create_request::FilterType;
use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::watch_server::Watch;
use cairn_api::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use cairn_api::mvccpb::Event;
use cairn_mvcc::{WatchMessage, WatchSink, WatchSpec, WatcherId};
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Notify};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::member::MemberState;

/// Messages queued per stream before its watchers fall behind (etcd's chanBufLen).
const STREAM_QUEUE: usize = 128;
/// How often unsynced watchers are caught up when nothing asks sooner (etcd syncs every 100 ms).
const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Between rounds while watchers are still behind.
const SYNC_BUSY_INTERVAL: Duration = Duration::from_millis(5);

const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// Wakes the catch-up loop as soon as a watcher starts in the past, instead of at its next round. Process-wide:
/// one loop runs per server, and a spurious wake of another server's loop (tests) costs one empty round.
static CATCH_UP: Notify = Notify::const_new();

/// What a stream sends, in order.
#[derive(Debug)]
enum Outgoing {
    Store(WatchMessage),
    Control(WatchResponse),
}

/// The store's handle on a stream's queue.
#[derive(Debug)]
struct StreamSink(mpsc::Sender<Outgoing>);

impl WatchSink for StreamSink {
    fn try_send(&self, msg: WatchMessage) -> bool {
        self.0.try_send(Outgoing::Store(msg)).is_ok()
    }

    fn has_capacity(&self) -> bool {
        self.0.capacity() > 0
    }
}

/// Runs the catch-up and progress loops until the member stops (the tasks end with the runtime).
pub fn start_background(m: &Arc<MemberState>, progress_interval: Duration) {
    let store = Arc::clone(&m.shared.store);
    tokio::spawn(async move {
        let mut wait = SYNC_INTERVAL;
        loop {
            let _ = tokio::time::timeout(wait, CATCH_UP.notified()).await;
            let s = Arc::clone(&store);
            wait = match tokio::task::spawn_blocking(move || s.sync_watchers()).await {
                Ok(Ok(0)) => SYNC_INTERVAL,
                Ok(Ok(_)) => SYNC_BUSY_INTERVAL,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "catching up watchers failed; retrying");
                    SYNC_INTERVAL
                }
                Err(_) => return,
            };
        }
    });
    if progress_interval.is_zero() {
        return;
    }
    let store = Arc::clone(&m.shared.store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(progress_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            store.watch_progress_notify();
        }
    });
}

/// One stream's watch ids: etcd numbers them per stream.
#[derive(Debug, Default)]
struct Ids {
    by_watch_id: HashMap<i64, WatcherId>,
    next_auto: i64,
}

/// Cancels the stream's watchers when its response side is dropped (the client went away).
#[derive(Debug)]
struct StreamGuard {
    m: Arc<MemberState>,
    stream: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.m.shared.store.cancel_watch_stream(self.stream);
    }
}

/// Serves one watch stream: `requests` from the client, the returned stream of responses to it. Shared by
/// gRPC and the HTTP gateway.
pub fn serve<S>(m: Arc<MemberState>, requests: S) -> impl Stream<Item = WatchResponse> + Send + 'static
where
    S: Stream<Item = WatchRequest> + Send + Unpin + 'static,
{
    let stream = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let ids = Arc::new(Mutex::new(Ids::default()));
    let reader = StreamReader { m: Arc::clone(&m), stream, tx, ids: Arc::clone(&ids) };
    tokio::spawn(reader.run(requests));
    let guard = StreamGuard { m, stream };
    futures::stream::unfold((rx, guard, ids), |(mut rx, guard, ids)| async move {
        let out = rx.recv().await?;
        let responses = to_responses(&guard.m, &ids, out);
        Some((futures::stream::iter(responses), (rx, guard, ids)))
    })
    .flatten()
}

struct StreamReader {
    m: Arc<MemberState>,
    stream: u64,
    tx: mpsc::Sender<Outgoing>,
    ids: Arc<Mutex<Ids>>,
}

impl StreamReader {
    async fn run<S: Stream<Item = WatchRequest> + Unpin>(self, mut requests: S) {
        loop {
            // A request side that never ends (the gateway's) must not outlive the client: stop when the
            // response side is gone too.
            let req = tokio::select! {
                req = requests.next() => match req {
                    Some(req) => req,
                    None => return,
                },
                () = self.tx.closed() => return,
            };
            let sent = match req.request_union {
                Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
                Some(RequestUnion::CancelRequest(c)) => self.cancel(c.watch_id).await,
                Some(RequestUnion::ProgressRequest(_)) => {
                    let sink = Arc::new(StreamSink(self.tx.clone()));
                    self.m.shared.store.request_watch_progress(self.stream, sink);
                    true
                }
                None => true,
            };
            if !sent {
                return; // the response side is gone
            }
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn control(&self, resp: WatchResponse) -> bool {
        self.tx.send(Outgoing::Control(resp)).await.is_ok()
    }

    async fn create(&self, c: WatchCreateRequest) -> bool {
        let store = &self.m.shared.store;
        let rev = store.current_revision();
        let refuse = |reason: &str| WatchResponse {
            header: self.m.header(rev),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_owned(),
            ..Default::default()
        };
        // "\0" means every key from `key` on; any other end must be past the key.
        if !c.range_end.is_empty() && c.range_end != [0] && c.key >= c.range_end {
            return self.control(refuse(EMPTY_RANGE)).await;
        }
        let watch_id = {
            let mut ids = self.ids();
            if c.watch_id != 0 {
                if ids.by_watch_id.contains_key(&c.watch_id) {
                    None
                } else {
                    Some(c.watch_id)
                }
            } else {
                while ids.by_watch_id.contains_key(&ids.next_auto) {
                    ids.next_auto += 1;
                }
                let id = ids.next_auto;
                ids.next_auto += 1;
                Some(id)
            }
        };
        let Some(watch_id) = watch_id else {
            return self.control(refuse(DUPLICATE_ID)).await;
        };
        // Reserve the id before answering, so a second create cannot take it meanwhile.
        self.ids().by_watch_id.insert(watch_id, 0);
        let created =
            WatchResponse { header: self.m.header(rev), watch_id, created: true, ..Default::default() };
        // Answer first, then register: events can only follow the created answer in the queue.
        if !self.control(created).await {
            return false;
        }
        let filters = |f: FilterType| c.filters.contains(&(f as i32));
        let spec = WatchSpec {
            watch_id,
            key: c.key,
            range_end: c.range_end,
            start_revision: if c.start_revision == 0 { rev + 1 } else { c.start_revision },
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            prev_kv: c.prev_kv,
            progress_notify: c.progress_notify,
            fragment: c.fragment,
        };
        let in_past = spec.start_revision <= store.current_revision();
        let id = store.watch(self.stream, spec, Arc::new(StreamSink(self.tx.clone())));
        self.ids().by_watch_id.insert(watch_id, id);
        if in_past {
            CATCH_UP.notify_one();
        }
        true
    }

    async fn cancel(&self, watch_id: i64) -> bool {
        let Some(id) = self.ids().by_watch_id.remove(&watch_id) else {
            return true; // etcd answers nothing for an unknown id
        };
        if !self.m.shared.store.cancel_watch(id) {
            return true; // already canceled by compaction, which said so
        }
        let rev = self.m.shared.store.current_revision();
        self.control(WatchResponse {
            header: self.m.header(rev),
            watch_id,
            canceled: true,
            ..Default::default()
        })
        .await
    }
}

/// The responses for one queued message: events split into fragments when asked and too large.
fn to_responses(m: &MemberState, ids: &Mutex<Ids>, out: Outgoing) -> Vec<WatchResponse> {
    match out {
        Outgoing::Control(r) => vec![r],
        Outgoing::Store(WatchMessage::Progress { watch_id, revision }) => {
            vec![WatchResponse { header: m.header(revision), watch_id, ..Default::default() }]
        }
        Outgoing::Store(WatchMessage::Compacted { watch_id, compact_revision }) => {
            ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner).by_watch_id.remove(&watch_id);
            vec![WatchResponse {
                header: m.header(0),
                watch_id,
                canceled: true,
                compact_revision,
                ..Default::default()
            }]
        }
        Outgoing::Store(WatchMessage::Events { watch_id, revision, events, fragment }) => {
            let whole = WatchResponse { header: m.header(revision), watch_id, events, ..Default::default() };
            // etcd splits only what would not fit in one message of --max-request-bytes plus gRPC's overhead.
            let limit = m.max_request_bytes + crate::server::GRPC_OVERHEAD_BYTES;
            if !fragment || whole.events.len() < 2 || whole.encoded_len() < limit {
                return vec![whole];
            }
            fragments(whole, limit)
        }
    }
}

/// `WatchResponse.events` field number: each event costs its tag and length besides its own bytes.
const EVENTS_FIELD: u32 = 11;

/// Splits a response's events into responses under `limit` bytes (at least one event each); all but the last
/// are marked `fragment`, as etcd's sendFragments.
fn fragments(mut whole: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    let events = std::mem::take(&mut whole.events);
    let part = WatchResponse { fragment: true, ..whole };
    let empty_len = part.encoded_len();
    let mut out = Vec::new();
    let mut chunk: Vec<Event> = Vec::new();
    let mut size = empty_len;
    for ev in events {
        let len = prost::encoding::message::encoded_len(EVENTS_FIELD, &ev);
        if !chunk.is_empty() && size + len >= limit {
            out.push(WatchResponse { events: std::mem::take(&mut chunk), ..part.clone() });
            size = empty_len;
        }
        size += len;
        chunk.push(ev);
    }
    out.push(WatchResponse { events: chunk, fragment: false, ..part });
    out
}

/// The client's side of a Watch call, as its responses see it.
enum RequestsSide {
    /// Requests may still come; the receiver yields the error that ends them, if one does.
    Open(oneshot::Receiver<Status>),
    /// The client closed its side: the watchers go on.
    Closed,
    /// A request could not be read: the error was answered and the call is over.
    Failed,
}

#[derive(Debug, Clone)]
pub struct WatchService(pub Arc<MemberState>);

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<BoxStream<WatchResponse>>, Status> {
        // The client closing its side ends the requests; the responses go on until it goes away. A request that
        // cannot be read (one over the size limit) ends the call with that error, as etcd's recvLoop does.
        let (failed, failure) = oneshot::channel::<Status>();
        let mut failed = Some(failed);
        let requests = req.into_inner().scan((), move |_, r| {
            futures::future::ready(match r {
                Ok(r) => Some(r),
                Err(s) => {
                    if let Some(failed) = failed.take() {
                        let _ = failed.send(cairn_api::error::go_size_limit(&s).unwrap_or(s));
                    }
                    None
                }
            })
        });
        let mut responses = Box::pin(serve(Arc::clone(&self.0), Box::pin(requests)));
        let mut requests_side = RequestsSide::Open(failure);
        let stream = futures::stream::poll_fn(move |cx| {
            if let RequestsSide::Open(failure) = &mut requests_side {
                match Pin::new(failure).poll(cx) {
                    Poll::Ready(Ok(status)) => {
                        requests_side = RequestsSide::Failed;
                        return Poll::Ready(Some(Err(status)));
                    }
                    Poll::Ready(Err(_)) => requests_side = RequestsSide::Closed,
                    Poll::Pending => {}
                }
            }
            if let RequestsSide::Failed = requests_side {
                return Poll::Ready(None);
            }
            responses.as_mut().poll_next(cx).map(|r| r.map(Ok))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use cairn_api::mvccpb::KeyValue;

    use super::*;

    fn event(n: usize) -> Event {
        Event {
            kv: Some(KeyValue { key: vec![b'k'; 10], value: vec![0; n], ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn fragments_cover_every_event_once_in_order_and_only_the_last_is_final() {
        let events: Vec<Event> = (0..10).map(|i| event(100 + i)).collect();
        let whole = WatchResponse { watch_id: 3, events: events.clone(), ..Default::default() };
        let parts = fragments(whole, 300);
        assert!(parts.len() > 1);
        let (last, rest) = parts.split_last().unwrap_or_else(|| unreachable!());
        assert!(rest.iter().all(|p| p.fragment) && !last.fragment);
        assert!(parts.iter().all(|p| p.watch_id == 3 && !p.events.is_empty()));
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, events);
    }

    #[test]
    fn an_event_larger_than_the_limit_still_goes_alone() {
        let whole = WatchResponse { events: vec![event(1000), event(10)], ..Default::default() };
        let parts = fragments(whole, 100);
        assert_eq!(parts.iter().map(|p| p.events.len()).collect::<Vec<_>>(), vec![1, 1]);
    }
}
