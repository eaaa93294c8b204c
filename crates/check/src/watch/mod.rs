//! etcd's watch guarantees, checked on what watchers received against the committed history.
//!
//! <https://etcd.io/docs/v3.5/learning/api_guarantees/#watch-apis>: a watcher's events are
//! - **ordered** by revision (and within a revision in commit order) and never before its start revision;
//! - **unique**: no event twice, across reconnections too;
//! - **atomic**: the events of one revision arrive in one response, or in consecutive fragments;
//! - **reliable**: no wanted event between the start and the last revision the watcher confirmed (through an
//!   event, or a progress notification) is missing;
//! - **resumable**: a watcher that reconnects from the revision after its last confirmed one continues the
//!   same stream (a gap at a reconnection is reported as such);
//! - **bookmarkable**: after a progress notification at revision R, no event at or below R arrives.
//!
//! Besides: events match what was committed (value, revisions, version), `prev_kv` is the key's previous
//! state (and absent unless asked for), filtered types and keys outside the range never arrive, a watch
//! starting below a compaction is told `compact_revision` and canceled, and nothing arrives after a cancel.
//!
//! [`check`] takes the [`GroundTruth`] (every committed event) and the [`Watcher`]s (request and the
//! responses of each stream) and returns every [`Violation`] found.

mod check;
mod types;

#[cfg(test)]
mod tests;

use std::fmt;

pub use types::{Event, EventKind, GroundTruth, Segment, WatchRequest, WatchResponse, Watcher};

/// The guarantee a [`Violation`] breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    Ordered,
    Unique,
    Atomic,
    Reliable,
    Resumable,
    Bookmarkable,
    /// `prev_kv` missing, wrong, or unasked for.
    PrevKv,
    /// An event of a filtered type, or outside the watched range.
    Filter,
    /// An event that was not committed as delivered.
    Content,
    /// A compaction not reported, or reported wrongly.
    Compaction,
    /// Events after a cancellation.
    Canceled,
}

/// One broken guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Index of the watcher in the slice given to [`check`].
    pub watcher: usize,
    pub rule: Rule,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watcher {}: {:?}: {}", self.watcher, self.rule, self.message)
    }
}

/// Every violation found; an error so tests can `?` it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} watch guarantee violation(s)", self.0.len())?;
        for v in &self.0 {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Checks every watcher against `truth`.
pub fn check(truth: &GroundTruth, watchers: &[Watcher]) -> Result<(), Violations> {
    let found: Vec<Violation> =
        watchers.iter().enumerate().flat_map(|(i, w)| check::check_watcher(truth, i, w)).collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(Violations(found))
    }
}
