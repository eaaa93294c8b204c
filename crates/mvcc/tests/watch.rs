//! The watchable store through its public API: what a watcher receives for a sequence of writes, live and from
//! history, when its stream is slow, after compaction.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use cairn_api::etcdserverpb::request_op::Request;
use cairn_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use cairn_api::mvccpb::event::EventType;
use cairn_api::mvccpb::Event;
use cairn_mvcc::watch::event_revision;
use cairn_mvcc::{NoLeases, Store, WatchMessage, WatchSink, WatchSpec};
use cairn_storage::Backend;

/// A stream queue of fixed capacity that the test drains by hand.
#[derive(Debug)]
struct Queue {
    capacity: usize,
    items: Mutex<Vec<WatchMessage>>,
}

impl Queue {
    fn new(capacity: usize) -> Arc<Queue> {
        Arc::new(Queue { capacity, items: Mutex::new(Vec::new()) })
    }

    fn drain(&self) -> Vec<WatchMessage> {
        std::mem::take(&mut *self.items.lock().unwrap())
    }
}

impl WatchSink for Queue {
    fn try_send(&self, msg: WatchMessage) -> bool {
        let mut items = self.items.lock().unwrap();
        if items.len() >= self.capacity {
            return false;
        }
        items.push(msg);
        true
    }

    fn has_capacity(&self) -> bool {
        self.items.lock().unwrap().len() < self.capacity
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Arc::new(Backend::open(&dir.path().join("db")).unwrap())).unwrap();
    (dir, store)
}

fn put(store: &Store, key: &str, value: &str) {
    let mut b = store.begin_batch();
    b.put(&PutRequest { key: key.into(), value: value.into(), ..Default::default() }, &NoLeases).unwrap();
    b.commit(false).unwrap();
}

fn delete(store: &Store, key: &str) {
    let mut b = store.begin_batch();
    b.delete_range(&DeleteRangeRequest { key: key.into(), ..Default::default() }).unwrap();
    b.commit(false).unwrap();
}

fn spec(key: &str, range_end: &str, start: i64) -> WatchSpec {
    WatchSpec { key: key.into(), range_end: range_end.into(), start_revision: start, ..Default::default() }
}

/// Every event of the messages, in order.
fn all_events(msgs: &[WatchMessage]) -> Vec<Event> {
    msgs.iter()
        .flat_map(|m| match m {
            WatchMessage::Events { events, .. } => events.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// (revision, key, is_delete) of every event.
fn flatten(msgs: &[WatchMessage]) -> Vec<(i64, String, bool)> {
    all_events(msgs)
        .into_iter()
        .map(|e: Event| {
            let kv = e.kv.unwrap();
            (kv.mod_revision, String::from_utf8(kv.key).unwrap(), e.r#type == EventType::Delete as i32)
        })
        .collect()
}

#[test]
fn a_live_watcher_gets_each_revision_whole_and_in_order() {
    let (_d, store) = open();
    let q = Queue::new(100);
    store.watch(1, spec("a", "b", store.current_revision() + 1), q.clone());
    put(&store, "a1", "x");
    put(&store, "zzz", "not watched");
    let mut b = store.begin_batch();
    let op = |k: &str| RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    };
    b.txn(&TxnRequest { success: vec![op("a2"), op("a3")], ..Default::default() }, &NoLeases).unwrap();
    b.commit(false).unwrap();
    delete(&store, "a1");
    let msgs = q.drain();
    assert_eq!(msgs.len(), 3, "one message per committed batch that touched the range: {msgs:?}");
    assert_eq!(
        flatten(&msgs),
        vec![
            (2, "a1".into(), false),
            (4, "a2".into(), false),
            (4, "a3".into(), false),
            (5, "a1".into(), true)
        ]
    );
    match &msgs[1] {
        WatchMessage::Events { revision, events, .. } => {
            assert_eq!(*revision, 4);
            assert_eq!(events.len(), 2, "a txn's events arrive together");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_watch_from_the_past_catches_up_then_continues_live_without_gap_or_duplicate() {
    let (_d, store) = open();
    for i in 0..20 {
        put(&store, &format!("k{}", i % 3), &i.to_string());
    }
    let q = Queue::new(100);
    store.watch(1, spec("k", "l", 5), q.clone());
    put(&store, "k0", "during");
    assert_eq!(store.sync_watchers().unwrap(), 0);
    put(&store, "k1", "after");
    let revs: Vec<i64> = flatten(&q.drain()).into_iter().map(|e| e.0).collect();
    assert_eq!(revs, (5..=23).collect::<Vec<_>>());
}

#[test]
fn a_slow_stream_falls_behind_and_is_caught_up_from_history_exactly_once() {
    let (_d, store) = open();
    let q = Queue::new(2);
    store.watch(1, spec("k", "", 2), q.clone());
    let mut seen = Vec::new();
    for i in 0..50 {
        put(&store, "k", &i.to_string());
        if i % 10 == 9 {
            seen.extend(flatten(&q.drain()));
            while store.sync_watchers().unwrap() > 0 {
                seen.extend(flatten(&q.drain()));
            }
        }
    }
    seen.extend(flatten(&q.drain()));
    let revs: Vec<i64> = seen.iter().map(|e| e.0).collect();
    assert_eq!(revs, (2..=51).collect::<Vec<_>>(), "every revision once, in order");
}

#[test]
fn history_below_the_compaction_point_cancels_the_watch() {
    let (_d, store) = open();
    for i in 0..5 {
        put(&store, "k", &i.to_string());
    }
    let mut b = store.begin_batch();
    b.compact(4).unwrap();
    b.commit(false).unwrap();
    let q = Queue::new(10);
    store.watch(1, WatchSpec { watch_id: 7, ..spec("k", "", 2) }, q.clone());
    store.sync_watchers().unwrap();
    assert_eq!(q.drain(), vec![WatchMessage::Compacted { watch_id: 7, compact_revision: 4 }]);
    assert_eq!(store.watcher_count(), 0);
    // At the compaction point itself history is still there.
    store.watch(1, spec("k", "", 4), q.clone());
    store.sync_watchers().unwrap();
    assert_eq!(flatten(&q.drain()).iter().map(|e| e.0).collect::<Vec<_>>(), vec![4, 5, 6]);
}

#[test]
fn filters_prev_kv_and_delete_revisions_are_etcds() {
    let (_d, store) = open();
    let q_noput = Queue::new(10);
    let q_prev = Queue::new(10);
    let start = store.current_revision() + 1;
    store.watch(1, WatchSpec { no_put: true, ..spec("k", "", start) }, q_noput.clone());
    store.watch(1, WatchSpec { prev_kv: true, ..spec("k", "", start) }, q_prev.clone());
    put(&store, "k", "one");
    put(&store, "k", "two");
    delete(&store, "k");
    assert_eq!(flatten(&q_noput.drain()), vec![(4, "k".into(), true)]);
    let events = all_events(&q_prev.drain());
    let prev: Vec<Option<Vec<u8>>> =
        events.iter().map(|e| e.prev_kv.as_ref().map(|p| p.value.clone())).collect();
    assert_eq!(prev, vec![None, Some(b"one".to_vec()), Some(b"two".to_vec())]);
    assert_eq!(events.iter().map(event_revision).collect::<Vec<_>>(), vec![2, 3, 4]);

    // The same from history.
    let q_hist = Queue::new(10);
    store.watch(2, WatchSpec { prev_kv: true, ..spec("k", "", 2) }, q_hist.clone());
    store.sync_watchers().unwrap();
    let hist = all_events(&q_hist.drain());
    assert_eq!(hist, events);
}

#[test]
fn progress_is_answered_only_once_every_watcher_of_the_stream_is_synced() {
    let (_d, store) = open();
    for i in 0..3 {
        put(&store, "k", &i.to_string());
    }
    let q = Queue::new(10);
    store.watch(9, spec("k", "", 2), q.clone());
    store.request_watch_progress(9, q.clone());
    assert!(q.drain().is_empty(), "unsynced: no progress yet");
    store.sync_watchers().unwrap();
    let msgs = q.drain();
    assert_eq!(msgs.last(), Some(&WatchMessage::Progress { watch_id: -1, revision: 4 }));
    assert_eq!(flatten(&msgs).len(), 3, "events first, then the progress answer");
}

#[test]
fn canceled_watchers_get_nothing_more() {
    let (_d, store) = open();
    let q = Queue::new(10);
    let id = store.watch(1, spec("k", "", 2), q.clone());
    put(&store, "k", "1");
    assert!(store.cancel_watch(id));
    assert!(!store.cancel_watch(id));
    put(&store, "k", "2");
    assert_eq!(flatten(&q.drain()).len(), 1);
    store.watch(3, spec("k", "", 2), q.clone());
    store.cancel_watch_stream(3);
    assert_eq!(store.watcher_count(), 0);
}
