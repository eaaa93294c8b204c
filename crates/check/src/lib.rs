//! cairn-check: checkers that judge what clients observed of an etcd-compatible cluster.
//!
//! Tests (the multi-member robustness test under faults, the watch tests), `cairn-bench`'s verify mode and
//! `cairnctl check` record what their clients sent and received, then ask this crate whether that record is
//! possible for a correct etcd.
//!
//! # Layout
//! - [`kv`]: linearizability of KV histories (get, put, delete, txn on single keys) against etcd's sequential
//!   semantics with revisions: a porcupine-style search per group of keys, plus global revision checks.
//!   [`kv::Recorder`] collects a history from concurrent clients.
//! - [`watch`]: etcd's watch guarantees (ordered, unique, atomic, reliable, resumable, bookmarkable, prev_kv,
//!   filters, compaction) on what watchers received, against the committed events.
//! - [`KeyValue`]: a key's value and revisions, shared by both checkers.
//!
//! It must not know how histories are produced: no client, no server, no async runtime. It sees plain values
//! (convertible from `cairn_api`'s wire types) and returns verdicts with explanations.
//!
//! # Example
//! ```
//! use cairn_check::kv::{self, Operation, Request, Response, Verdict};
//! use cairn_check::KeyValue;
//!
//! let history = vec![
//!     // client 1 puts x=1 during [0, 10] and gets revision 2
//!     Operation::new(1, 0, 10, Request::put("x", "1"), Response::Put { revision: 2 }),
//!     // client 2 then reads x at revision 2 and sees it
//!     Operation::new(2, 11, 20, Request::get("x"),
//!         Response::Get { revision: 2, kv: Some(KeyValue::new("1", 2, 2, 1)) }),
//! ];
//! assert_eq!(kv::check(&history, &kv::Options::default()).unwrap(), Verdict::Ok);
//!
//! // A later read that misses the acknowledged put is a stale read.
//! let mut stale = history.clone();
//! stale.push(Operation::new(3, 21, 30, Request::get("x"), Response::Get { revision: 2, kv: None }));
//! assert!(matches!(kv::check(&stale, &kv::Options::default()).unwrap(), Verdict::Illegal(_)));
//! ```
//!
//! Watch streams are judged against every committed event (e.g. from a final watch from revision 1):
//! ```
//! use cairn_check::watch::{self, Event, GroundTruth, WatchRequest, WatchResponse, Watcher};
//! use cairn_check::KeyValue;
//!
//! let events = vec![Event::put("a", KeyValue::new("1", 2, 2, 1)), Event::put("a", KeyValue::new("2", 2, 3, 2))];
//! let truth = GroundTruth::new(events.clone()).unwrap();
//! let request = WatchRequest { key: b"a".to_vec(), start_revision: 2, ..WatchRequest::default() };
//! let response = |events: &[Event]| WatchResponse { header_revision: 3, events: events.to_vec(), ..Default::default() };
//! // Saw both events: fine. Saw only the second: the first is missing.
//! assert!(watch::check(&truth, &[Watcher::new(request.clone(), vec![response(&events)])]).is_ok());
//! let gap = Watcher::new(request, vec![response(&events[1..])]);
//! assert_eq!(watch::check(&truth, &[gap]).unwrap_err().0[0].rule, watch::Rule::Reliable);
//! ```

mod key_value;
pub mod kv;
pub mod watch;

pub(crate) use key_value::show;
pub use key_value::KeyValue;

/// Input a checker cannot judge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operation of the history is malformed.
    #[error("operation #{index} {reason}")]
    InvalidOperation { index: usize, reason: String },
    /// The ground truth of a watch check is not a history (revisions go back, a key changes twice at once).
    #[error("invalid ground truth: {0}")]
    InvalidTruth(String),
    /// A request or response uses something the checker does not model (ranges, nested txns, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
}
