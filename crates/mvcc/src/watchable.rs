//! The store's watch API: registering watchers and catching unsynced ones up from the backend's history (the
//! `key` table is ordered by revision, so history from a revision is one range scan, as in etcd).

use std::sync::Arc;

use cairn_api::mvccpb::event::EventType;
use cairn_api::mvccpb::{Event, KeyValue};
use cairn_storage::{ReadTx, Table};
use prost::Message;

use crate::revision::Revision;
use crate::store::{meta, Store};
use crate::watch::{event_revision, WatchSink, WatchSpec, WatcherId, SYNC_BYTES, SYNC_EVENTS};
use crate::MvccError;

impl Store {
    /// Registers a watcher for `spec` (whose start revision the caller has already chosen: etcd turns 0 into
    /// "current + 1"). A watcher starting at or below the current revision is caught up by
    /// [`Store::sync_watchers`].
    pub fn watch(&self, stream: u64, spec: WatchSpec, sink: Arc<dyn WatchSink>) -> WatcherId {
        // The read lock keeps batches out: none can be between its commit and its notify while we register.
        let _state = self.read_state();
        self.hub.add(stream, spec, sink)
    }

    /// Removes a watcher; false if it is not registered (already canceled, or canceled by compaction).
    pub fn cancel_watch(&self, id: WatcherId) -> bool {
        self.hub.cancel(id)
    }

    /// Removes every watcher of a stream.
    pub fn cancel_watch_stream(&self, stream: u64) {
        self.hub.cancel_stream(stream);
    }

    /// Answers a stream's progress request once all its watchers are synced.
    pub fn request_watch_progress(&self, stream: u64, sink: Arc<dyn WatchSink>) {
        self.hub.request_progress(stream, sink);
    }

    /// Sends the periodic progress notification to synced watchers that asked for it.
    pub fn watch_progress_notify(&self) {
        self.hub.progress_notify();
    }

    /// Number of registered watchers.
    pub fn watcher_count(&self) -> usize {
        self.hub.len()
    }

    /// One catch-up round: reads a bounded slice of history for unsynced watchers whose streams have room and
    /// hands it to them. Returns how many watchers are still unsynced (call again soon if not zero).
    pub fn sync_watchers(&self) -> Result<usize, MvccError> {
        let pending = self.hub.pending();
        let Some(from) = pending.iter().map(|p| p.min_rev).min() else {
            return Ok(self.hub.deliver(&[], &[], 0, 0));
        };
        let tx = self.backend().begin_read()?;
        let compact_rev = finished_compaction(&tx)?;
        let want_prev = pending.iter().any(|p| p.spec.prev_kv);
        let (mut history, scanned_to) = self.read_history(&tx, from)?;
        if want_prev {
            self.fill_prev_kvs(&tx, &mut history)?;
        }
        Ok(self.hub.deliver(&pending, &history, scanned_to, compact_rev))
    }

    /// Events from revision `from` on, whole revisions, at most about [`SYNC_EVENTS`] and [`SYNC_BYTES`]; and
    /// the last revision the read covers completely.
    fn read_history(&self, tx: &ReadTx, from: i64) -> Result<(Vec<Event>, i64), MvccError> {
        let start = Revision::new(from.max(0), 0).to_bytes(false);
        let mut events: Vec<Event> = Vec::new();
        let mut last_complete = from - 1;
        let mut cut = false;
        let mut bytes = 0usize;
        let mut corrupt = None;
        tx.for_each(Table::Key, start.as_slice().., |k, v| {
            let parsed = Revision::from_bytes(k).zip(KeyValue::decode(v).ok());
            let Some(((rev, tombstone), kv)) = parsed else {
                corrupt = Some(format!("undecodable key table entry at {k:?}"));
                return false;
            };
            let prev_rev = events.last().map(event_revision);
            if prev_rev.is_some_and(|p| p != rev.main) {
                if let Some(p) = prev_rev {
                    last_complete = p;
                }
                if events.len() >= SYNC_EVENTS || bytes >= SYNC_BYTES {
                    cut = true;
                    return false;
                }
            }
            bytes += k.len() + v.len();
            events.push(if tombstone {
                let kv = KeyValue { key: kv.key, mod_revision: rev.main, ..Default::default() };
                Event { r#type: EventType::Delete.into(), kv: Some(kv), prev_kv: None }
            } else {
                Event { r#type: EventType::Put.into(), kv: Some(kv), prev_kv: None }
            });
            true
        })?;
        if let Some(msg) = corrupt {
            return Err(MvccError::Corrupt(msg));
        }
        if cut {
            let keep = events.iter().take_while(|e| event_revision(e) <= last_complete).count();
            events.truncate(keep);
        } else if let Some(last) = events.last() {
            last_complete = event_revision(last);
        }
        Ok((events, last_complete))
    }

    /// Each event's previous value of its key, where history still has it.
    fn fill_prev_kvs(&self, tx: &ReadTx, events: &mut [Event]) -> Result<(), MvccError> {
        let prev_revs: Vec<Option<Revision>> = {
            let state = self.read_state();
            events
                .iter()
                .map(|ev| {
                    let kv = ev.kv.as_ref()?;
                    Some(state.index.get(&kv.key, kv.mod_revision - 1)?.modified)
                })
                .collect()
        };
        for (ev, prev) in events.iter_mut().zip(prev_revs) {
            if let Some(rev) = prev {
                if let Some(bytes) = tx.get(Table::Key, &rev.to_bytes(false))? {
                    ev.prev_kv = KeyValue::decode(bytes.as_slice()).ok();
                }
            }
        }
        Ok(())
    }
}

/// The compaction point a backend snapshot reflects (-1 if never compacted).
fn finished_compaction(tx: &ReadTx) -> Result<i64, MvccError> {
    match tx.get(Table::Meta, meta::FINISHED_COMPACT_REV)? {
        None => Ok(-1),
        Some(v) => {
            let b: [u8; 8] =
                v.as_slice().try_into().map_err(|_| MvccError::Corrupt("finished compact rev".into()))?;
            Ok(i64::from_be_bytes(b))
        }
    }
}
