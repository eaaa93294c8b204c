//! The watchable store's watchers, as etcd's `mvcc/watchable_store.go`: every watcher is either *synced* (it has
//! seen everything up to the newest committed revision and gets new events as batches commit) or *unsynced* (it
//! starts in the past, or fell behind because its stream's queue was full) and is caught up from the backend's
//! history by [`Store::sync_watchers`](crate::Store::sync_watchers), which the server runs in the background.
//!
//! Nothing here ever blocks on a client: events go to a [`WatchSink`] with `try_send`; a full sink moves its
//! watcher to the unsynced set, so a slow or stuck client costs one bounded queue and never stalls writes or other
//! watchers. Catch-up reads a bounded number of events per round ([`SYNC_EVENTS`]).
//!
//! Ordering: batches notify while holding the store's write lock, and the watchers' lock is always taken after
//! the store's lock, never before; so a watcher sees revisions in order, each revision whole, exactly once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_api::mvccpb::event::EventType;
use cairn_api::mvccpb::Event;

use crate::key_index::KeyRange;

/// Events read from the backend per catch-up round (whole revisions: a round may end a little past it).
pub const SYNC_EVENTS: usize = 10_000;
/// Bytes of key-values read per catch-up round, likewise: keeps each catch-up message of a modest size.
pub const SYNC_BYTES: usize = 1 << 20;
/// Unsynced watchers served per catch-up round (etcd's maxWatchersPerSync).
pub const SYNC_WATCHERS: usize = 512;

/// Where a watcher's messages go: a stream's bounded queue. Never blocks.
pub trait WatchSink: Send + Sync + std::fmt::Debug {
    /// Queues `msg`; false if the queue is full (the watcher is then caught up from the backend later).
    fn try_send(&self, msg: WatchMessage) -> bool;
    /// Whether a message could be queued now, so reading the backend for this watcher is worth it.
    fn has_capacity(&self) -> bool;
}

/// What the store tells a watcher's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMessage {
    /// Events in revision order, every revision whole; `revision` is the store revision they bring it to.
    Events { watch_id: i64, revision: i64, events: Vec<Event>, fragment: bool },
    /// Everything up to `revision` has been sent. `watch_id` -1 answers a stream-wide progress request.
    Progress { watch_id: i64, revision: i64 },
    /// The watcher needs history that compaction removed: it is canceled.
    Compacted { watch_id: i64, compact_revision: i64 },
}

/// A watch as a client asks for it (etcd's WatchCreateRequest, after the server picked the start revision).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSpec {
    pub watch_id: i64,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// The first revision the watcher wants (the server turns 0 into "current + 1").
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
}

impl WatchSpec {
    fn is_single_key(&self) -> bool {
        self.range_end.is_empty()
    }

    /// Whether this watcher wants `ev` (its key and type; revisions are checked by the caller).
    pub fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        let filtered = match EventType::try_from(ev.r#type) {
            Ok(EventType::Put) => self.no_put,
            Ok(EventType::Delete) => self.no_delete,
            Err(_) => true,
        };
        !filtered && KeyRange::new(&self.key, &self.range_end).contains(&kv.key)
    }

    /// `ev` as this watcher receives it: without prev_kv unless asked for.
    fn shape(&self, ev: &Event) -> Event {
        if self.prev_kv {
            ev.clone()
        } else {
            Event { r#type: ev.r#type, kv: ev.kv.clone(), prev_kv: None }
        }
    }
}

/// The revision an event happened at (the PUT's mod revision; a DELETE's kv carries the deletion revision).
pub fn event_revision(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// A registered watcher's handle.
pub type WatcherId = u64;

#[derive(Debug)]
struct Watcher {
    spec: WatchSpec,
    stream: u64,
    /// The next revision this watcher needs (events below it were sent or are not wanted).
    min_rev: i64,
    synced: bool,
    sink: Arc<dyn WatchSink>,
}

#[derive(Debug, Default)]
struct Watchers {
    next_id: WatcherId,
    all: HashMap<WatcherId, Watcher>,
    /// Synced single-key watchers by key: a put looks up its key instead of testing every watcher.
    by_key: HashMap<Vec<u8>, HashSet<WatcherId>>,
    /// Synced range watchers.
    ranges: HashSet<WatcherId>,
    /// Ordered so catch-up rounds serve watchers fairly, oldest registration first.
    unsynced: BTreeSet<WatcherId>,
    /// Streams that asked for progress while some of their watchers were unsynced: answered once synced.
    progress_wanted: HashMap<u64, Arc<dyn WatchSink>>,
    /// The newest revision notified: synced watchers have everything up to it.
    notified_rev: i64,
}

impl Watchers {
    fn mark_synced(&mut self, id: WatcherId) {
        let Some(w) = self.all.get_mut(&id) else { return };
        w.synced = true;
        self.unsynced.remove(&id);
        if w.spec.is_single_key() {
            self.by_key.entry(w.spec.key.clone()).or_default().insert(id);
        } else {
            self.ranges.insert(id);
        }
    }

    fn mark_unsynced(&mut self, id: WatcherId, min_rev: i64) {
        let Some(w) = self.all.get_mut(&id) else { return };
        w.min_rev = min_rev;
        if w.synced {
            w.synced = false;
            if w.spec.is_single_key() {
                if let Some(set) = self.by_key.get_mut(&w.spec.key) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.by_key.remove(&w.spec.key);
                    }
                }
            } else {
                self.ranges.remove(&id);
            }
        }
        self.unsynced.insert(id);
    }

    fn remove(&mut self, id: WatcherId) -> Option<Watcher> {
        self.mark_unsynced(id, 0);
        self.unsynced.remove(&id);
        self.all.remove(&id)
    }

    fn stream_synced(&self, stream: u64) -> bool {
        self.all.values().all(|w| w.stream != stream || w.synced)
    }

    fn answer_progress(&mut self) {
        let ready: Vec<u64> =
            self.progress_wanted.keys().copied().filter(|&s| self.stream_synced(s)).collect();
        for stream in ready {
            if let Some(sink) = self.progress_wanted.remove(&stream) {
                if !sink.try_send(WatchMessage::Progress { watch_id: -1, revision: self.notified_rev }) {
                    // Full: ask again next round rather than lose the answer.
                    self.progress_wanted.insert(stream, sink);
                }
            }
        }
    }
}

/// The set of watchers of one store.
#[derive(Debug, Default)]
pub struct WatchHub {
    inner: Mutex<Watchers>,
    /// Read without the lock by every batch, to skip building events nobody watches.
    count: AtomicUsize,
}

/// What a catch-up round needs to know about one unsynced watcher.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub id: WatcherId,
    pub min_rev: i64,
    pub spec: WatchSpec,
}

impl WatchHub {
    pub(crate) fn new(current_rev: i64) -> Self {
        let hub = WatchHub::default();
        hub.lock().notified_rev = current_rev;
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Watchers> {
        // Every change below completes before it can panic (no I/O inside): keep serving if a holder panicked.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a watcher. The caller holds the store's read lock, so no batch is between commit and notify.
    pub(crate) fn add(&self, stream: u64, spec: WatchSpec, sink: Arc<dyn WatchSink>) -> WatcherId {
        let mut w = self.lock();
        w.next_id += 1;
        let id = w.next_id;
        let min_rev = spec.start_revision;
        let caught_up = min_rev > w.notified_rev;
        w.all.insert(id, Watcher { spec, stream, min_rev, synced: false, sink });
        if caught_up {
            w.mark_synced(id);
        } else {
            w.unsynced.insert(id);
        }
        self.count.store(w.all.len(), Ordering::SeqCst);
        id
    }

    /// Removes a watcher; false if it was not registered (already canceled, or compacted).
    pub fn cancel(&self, id: WatcherId) -> bool {
        let mut w = self.lock();
        let found = w.remove(id).is_some();
        self.count.store(w.all.len(), Ordering::SeqCst);
        found
    }

    /// Removes every watcher of a stream (the client went away) and forgets its pending progress request.
    pub fn cancel_stream(&self, stream: u64) {
        let mut w = self.lock();
        let ids: Vec<WatcherId> =
            w.all.iter().filter(|(_, x)| x.stream == stream).map(|(&id, _)| id).collect();
        for id in ids {
            w.remove(id);
        }
        w.progress_wanted.remove(&stream);
        self.count.store(w.all.len(), Ordering::SeqCst);
    }

    /// A stream asks where it stands: answered (watch_id -1) as soon as all its watchers are synced.
    pub fn request_progress(&self, stream: u64, sink: Arc<dyn WatchSink>) {
        let mut w = self.lock();
        w.progress_wanted.insert(stream, sink);
        w.answer_progress();
    }

    /// The periodic progress notification: every synced watcher that asked for it learns the current revision.
    pub fn progress_notify(&self) {
        let w = self.lock();
        for (&id, x) in &w.all {
            if x.synced && x.spec.progress_notify {
                let msg = WatchMessage::Progress { watch_id: x.spec.watch_id, revision: w.notified_rev };
                if !x.sink.try_send(msg) {
                    tracing::debug!(watcher = id, "progress notification dropped: stream queue full");
                }
            }
        }
    }

    /// Delivers a committed batch's events (all revisions up to `revision`) to synced watchers. Called with the
    /// store's write lock held, right after the backend commit.
    pub(crate) fn notify(&self, events: &[Event], revision: i64) {
        let mut w = self.lock();
        let mut out: HashMap<WatcherId, Vec<Event>> = HashMap::new();
        for ev in events {
            let rev = event_revision(ev);
            let key = ev.kv.as_ref().map(|kv| kv.key.as_slice()).unwrap_or_default();
            let keyed = w.by_key.get(key).into_iter().flatten();
            for id in keyed.chain(w.ranges.iter()) {
                if let Some(x) = w.all.get(id) {
                    if rev >= x.min_rev && x.spec.wants(ev) {
                        out.entry(*id).or_default().push(x.spec.shape(ev));
                    }
                }
            }
        }
        let mut behind = Vec::new();
        for (id, evs) in out {
            let Some(x) = w.all.get(&id) else { continue };
            let first = evs.first().map_or(revision, event_revision);
            let msg = WatchMessage::Events {
                watch_id: x.spec.watch_id,
                revision,
                events: evs,
                fragment: x.spec.fragment,
            };
            if !x.sink.try_send(msg) {
                behind.push((id, first));
            }
        }
        for (id, first) in behind {
            tracing::debug!(watcher = id, from = first, "watcher fell behind; catching up from the backend");
            w.mark_unsynced(id, first);
        }
        w.notified_rev = revision;
    }

    /// After a commit with no watchers (nothing was recorded): move the notified revision along.
    pub(crate) fn advance(&self, revision: i64) {
        self.lock().notified_rev = revision;
    }

    /// After the store was replaced by a snapshot: every watcher catches up from the new backend.
    pub(crate) fn reset(&self, revision: i64) {
        let mut w = self.lock();
        let synced: Vec<WatcherId> = w.all.iter().filter(|(_, x)| x.synced).map(|(&id, _)| id).collect();
        let next = w.notified_rev + 1;
        for id in synced {
            w.mark_unsynced(id, next);
        }
        w.notified_rev = revision;
    }

    /// Unsynced watchers whose streams have room, at most [`SYNC_WATCHERS`].
    pub(crate) fn pending(&self) -> Vec<Pending> {
        let w = self.lock();
        w.unsynced
            .iter()
            .filter_map(|id| w.all.get(id).map(|x| (id, x)))
            .filter(|(_, x)| x.sink.has_capacity())
            .take(SYNC_WATCHERS)
            .map(|(&id, x)| Pending { id, min_rev: x.min_rev, spec: x.spec.clone() })
            .collect()
    }

    /// Finishes a catch-up round: `history` holds every event in `[from, scanned_to]` as of a backend snapshot
    /// whose compaction point was `compact_rev`. Returns how many watchers are still unsynced.
    pub(crate) fn deliver(
        &self,
        served: &[Pending],
        history: &[Event],
        scanned_to: i64,
        compact_rev: i64,
    ) -> usize {
        let mut w = self.lock();
        // Revisions past the last notify may be in the snapshot but are still on their way to synced watchers.
        let upto = scanned_to.min(w.notified_rev);
        for p in served {
            let Some(x) = w.all.get(&p.id) else { continue };
            if x.synced || x.min_rev != p.min_rev {
                continue; // changed since the round started: next round
            }
            if x.min_rev < compact_rev {
                let msg =
                    WatchMessage::Compacted { watch_id: x.spec.watch_id, compact_revision: compact_rev };
                if x.sink.try_send(msg) {
                    w.remove(p.id);
                }
                continue;
            }
            if upto < x.min_rev {
                if upto >= w.notified_rev {
                    w.mark_synced(p.id);
                }
                continue;
            }
            let events: Vec<Event> = history
                .iter()
                .filter(|ev| (x.min_rev..=upto).contains(&event_revision(ev)) && x.spec.wants(ev))
                .map(|ev| x.spec.shape(ev))
                .collect();
            if !events.is_empty() {
                let msg = WatchMessage::Events {
                    watch_id: x.spec.watch_id,
                    revision: upto,
                    events,
                    fragment: x.spec.fragment,
                };
                if !x.sink.try_send(msg) {
                    continue;
                }
            }
            if upto >= w.notified_rev {
                w.mark_synced(p.id);
            } else {
                w.mark_unsynced(p.id, upto + 1);
            }
        }
        w.answer_progress();
        self.count.store(w.all.len(), Ordering::SeqCst);
        w.unsynced.len()
    }
}
