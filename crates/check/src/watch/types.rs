//! The plain types the watch checker reads: events, a watcher's request and what it received, and the ground
//! truth, with conversions from etcd's wire messages.

use std::collections::HashMap;

use cairn_api::{etcdserverpb, mvccpb};

use crate::{show, Error, KeyValue};

/// Whether an event put or deleted its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of one key, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: Vec<u8>,
    /// For a put the key's new state; for a delete only `mod_revision` (the deletion's revision) counts.
    pub kv: KeyValue,
    /// The key's state before the event, when the watcher asked for it (`prev_kv`).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// A put event.
    pub fn put(key: impl Into<Vec<u8>>, kv: KeyValue) -> Self {
        Self { kind: EventKind::Put, key: key.into(), kv, prev: None }
    }

    /// A delete event at `revision`.
    pub fn delete(key: impl Into<Vec<u8>>, revision: i64) -> Self {
        Self {
            kind: EventKind::Delete,
            key: key.into(),
            kv: KeyValue { mod_revision: revision, ..KeyValue::default() },
            prev: None,
        }
    }

    /// The same event carrying `prev` as its previous key-value.
    #[must_use]
    pub fn with_prev(mut self, prev: Option<KeyValue>) -> Self {
        self.prev = prev;
        self
    }

    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

impl From<&mvccpb::Event> for Event {
    fn from(e: &mvccpb::Event) -> Self {
        let kind = match e.r#type() {
            mvccpb::event::EventType::Put => EventKind::Put,
            mvccpb::event::EventType::Delete => EventKind::Delete,
        };
        let key = e.kv.as_ref().map(|kv| kv.key.clone()).unwrap_or_default();
        let kv = e.kv.as_ref().map(KeyValue::from).unwrap_or_default();
        Self { kind, key, kv, prev: e.prev_kv.as_ref().map(KeyValue::from) }
    }
}

/// What a watcher asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRequest {
    pub key: Vec<u8>,
    /// Empty: `key` alone; `"\0"`: every key from `key` on; else the half-open range `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// First revision wanted; 0 means "after the revision current at creation".
    pub start_revision: i64,
    /// NOPUT filter.
    pub no_put: bool,
    /// NODELETE filter.
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
}

impl WatchRequest {
    /// Whether the watcher wants this event (range and filters).
    pub fn wants(&self, event: &Event) -> bool {
        let filtered = match event.kind {
            EventKind::Put => self.no_put,
            EventKind::Delete => self.no_delete,
        };
        !filtered && self.covers(&event.key)
    }

    /// Whether `key` is in the watched range.
    pub fn covers(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }
}

impl From<&etcdserverpb::WatchCreateRequest> for WatchRequest {
    fn from(r: &etcdserverpb::WatchCreateRequest) -> Self {
        use etcdserverpb::watch_create_request::FilterType;
        let has = |f: FilterType| r.filters.contains(&(f as i32));
        Self {
            key: r.key.clone(),
            range_end: r.range_end.clone(),
            start_revision: r.start_revision,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            prev_kv: r.prev_kv,
            progress_notify: r.progress_notify,
            fragment: r.fragment,
        }
    }
}

/// One response a watcher received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    pub header_revision: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    /// More fragments of this response follow.
    pub fragment: bool,
    pub events: Vec<Event>,
}

impl WatchResponse {
    /// A progress notification: no events, not a creation, cancellation or compaction notice.
    pub fn is_progress(&self) -> bool {
        self.events.is_empty() && !self.created && !self.canceled && self.compact_revision == 0
    }
}

impl From<&etcdserverpb::WatchResponse> for WatchResponse {
    fn from(r: &etcdserverpb::WatchResponse) -> Self {
        Self {
            header_revision: r.header.as_ref().map_or(0, |h| h.revision),
            created: r.created,
            canceled: r.canceled,
            compact_revision: r.compact_revision,
            fragment: r.fragment,
            events: r.events.iter().map(Event::from).collect(),
        }
    }
}

/// One stream of a watcher: from a (re)connection to its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// The start revision this stream was created with (0: current revision at creation, taken from the
    /// `created` response's header).
    pub start_revision: i64,
    pub responses: Vec<WatchResponse>,
}

/// A watcher: its request and the streams it went through. A watcher that reconnects resumes with a new
/// segment, normally from the revision after the last one it confirmed; together the segments must form one
/// stream without gaps or duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watcher {
    pub request: WatchRequest,
    pub segments: Vec<Segment>,
}

impl Watcher {
    /// A watcher that never reconnected.
    pub fn new(request: WatchRequest, responses: Vec<WatchResponse>) -> Self {
        let segment = Segment { start_revision: request.start_revision, responses };
        Self { request, segments: vec![segment] }
    }
}

/// Every committed event in revision order (within a revision in the order etcd delivers them), the reference
/// watchers are judged against. It must cover every revision watchers confirm (collect it after they stop,
/// e.g. with a watch from revision 1), and start at revision 1 or carry `prev` on each key's first event.
#[derive(Clone, Debug, Default)]
pub struct GroundTruth {
    pub(crate) events: Vec<Event>,
    /// Per (revision, key): the index in `events`.
    pub(crate) index: HashMap<(i64, Vec<u8>), usize>,
    /// Per event: the key's state before it.
    pub(crate) prev: Vec<Option<KeyValue>>,
    /// Revisions below this were compacted before any watcher started (0: none).
    pub(crate) compact_revision: i64,
}

impl GroundTruth {
    /// Takes the events; fails if revisions go down or a key changes twice in one revision.
    pub fn new(events: Vec<Event>) -> Result<Self, Error> {
        let mut index = HashMap::new();
        let mut prev = Vec::with_capacity(events.len());
        let mut last: HashMap<&[u8], usize> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            if i > 0 && e.revision() < events[i - 1].revision() {
                return Err(Error::InvalidTruth(format!(
                    "event #{i} at revision {} goes back",
                    e.revision()
                )));
            }
            if index.insert((e.revision(), e.key.clone()), i).is_some() {
                return Err(Error::InvalidTruth(format!(
                    "key {:?} changes twice at revision {}",
                    show(&e.key),
                    e.revision()
                )));
            }
            prev.push(match last.insert(&e.key, i) {
                Some(j) if events[j].kind == EventKind::Put => Some(events[j].kv.clone()),
                Some(_) => None,
                None => e.prev.clone(),
            });
        }
        Ok(Self { events, index, prev, compact_revision: 0 })
    }

    /// Says revisions below `revision` were compacted before any watcher started: watchers starting below
    /// it must be told so.
    #[must_use]
    pub fn compacted_at(mut self, revision: i64) -> Self {
        self.compact_revision = revision;
        self
    }
}
