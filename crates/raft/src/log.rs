//! The Raft log as one node sees it: entries persisted in [`Storage`], followed by `unstable` entries (and
//! perhaps a snapshot) the driver has not persisted yet, plus the commit and apply cursors (etcd's raft_log.go).

use crate::storage::{limit_size, Storage, StorageError};
use crate::types::{Entry, Snapshot};

/// Entries and a snapshot not yet handed to storage. `offset` is the index of `entries[0]`.
#[derive(Debug, Default)]
struct Unstable {
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    offset: u64,
}

impl Unstable {
    fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    fn maybe_last_index(&self) -> Option<u64> {
        match self.entries.last() {
            Some(e) => Some(e.index),
            None => self.snapshot.as_ref().map(|s| s.metadata.index),
        }
    }

    fn maybe_term(&self, i: u64) -> Option<u64> {
        if i < self.offset {
            let s = self.snapshot.as_ref()?;
            return (s.metadata.index == i).then_some(s.metadata.term);
        }
        let last = self.maybe_last_index()?;
        if i > last {
            return None;
        }
        self.entries.get((i - self.offset) as usize).map(|e| e.term)
    }

    fn stable_to(&mut self, i: u64, t: u64) {
        let Some(gt) = self.maybe_term(i) else { return };
        // Only if the entry is still the one persisted: a newer leader may have replaced it meanwhile.
        if gt == t && i >= self.offset {
            self.entries.drain(..(i + 1 - self.offset) as usize);
            self.offset = i + 1;
        }
    }

    fn stable_snap_to(&mut self, i: u64) {
        if self.snapshot.as_ref().is_some_and(|s| s.metadata.index == i) {
            self.snapshot = None;
        }
    }

    fn restore(&mut self, s: Snapshot) {
        self.offset = s.metadata.index + 1;
        self.entries.clear();
        self.snapshot = Some(s);
    }

    fn truncate_and_append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let after = first.index;
        if after == self.offset + self.entries.len() as u64 {
            self.entries.extend_from_slice(ents);
        } else if after <= self.offset {
            // Replaces everything unstable; storage's conflicting tail is replaced when these are persisted.
            self.offset = after;
            self.entries = ents.to_vec();
        } else {
            self.entries.truncate((after - self.offset) as usize);
            self.entries.extend_from_slice(ents);
        }
    }
}

#[derive(Debug)]
pub struct RaftLog<S: Storage> {
    pub storage: S,
    unstable: Unstable,
    /// Highest index known to be committed on a quorum.
    pub committed: u64,
    /// Highest index the driver has applied. Invariant: applied <= committed.
    pub applied: u64,
}

impl<S: Storage> RaftLog<S> {
    pub fn new(storage: S) -> Result<Self, StorageError> {
        let first = storage.first_index()?;
        let last = storage.last_index()?;
        Ok(RaftLog {
            storage,
            unstable: Unstable { offset: last + 1, ..Unstable::default() },
            committed: first - 1,
            applied: first - 1,
        })
    }

    pub fn first_index(&self) -> u64 {
        self.unstable.maybe_first_index().unwrap_or_else(|| self.storage.first_index().unwrap_or(1))
    }

    pub fn last_index(&self) -> u64 {
        self.unstable.maybe_last_index().unwrap_or_else(|| self.storage.last_index().unwrap_or(0))
    }

    pub fn term(&self, i: u64) -> Result<u64, StorageError> {
        let dummy = self.first_index() - 1;
        if i < dummy {
            return Err(StorageError::Compacted);
        }
        if i > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        match self.unstable.maybe_term(i) {
            Some(t) => Ok(t),
            None => self.storage.term(i),
        }
    }

    pub fn last_term(&self) -> u64 {
        self.term(self.last_index()).unwrap_or(0)
    }

    pub fn match_term(&self, i: u64, t: u64) -> bool {
        self.term(i).is_ok_and(|x| x == t)
    }

    /// Raft §5.4.1: a candidate's log is at least as up-to-date as ours.
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        term > self.last_term() || (term == self.last_term() && last_index >= self.last_index())
    }

    /// Follower side of AppendEntries (§5.3): appends `ents` after (index, log_term) if that entry matches.
    /// Returns the last index of the new entries, or None on a mismatch. A conflict at or below the commit
    /// index means a leader sent entries that contradict committed ones: refused, never applied.
    pub fn maybe_append(&mut self, index: u64, log_term: u64, committed: u64, ents: &[Entry]) -> Option<u64> {
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new = index + ents.len() as u64;
        let conflict = self.find_conflict(ents);
        if conflict != 0 {
            if conflict <= self.committed {
                tracing::error!(
                    conflict,
                    committed = self.committed,
                    "entry conflicts with a committed entry; ignored"
                );
                return None;
            }
            let start = (conflict - (index + 1)) as usize;
            self.append(&ents[start..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    /// Appends entries (the first must follow the commit index) and returns the new last index.
    pub fn append(&mut self, ents: &[Entry]) -> u64 {
        if let Some(first) = ents.first() {
            debug_assert!(first.index > self.committed, "never overwrite committed entries");
            self.unstable.truncate_and_append(ents);
        }
        self.last_index()
    }

    /// The index of the first entry whose term differs from ours (0 if every entry matches and none is new).
    pub fn find_conflict(&self, ents: &[Entry]) -> u64 {
        ents.iter().find(|e| !self.match_term(e.index, e.term)).map_or(0, |e| e.index)
    }

    /// The largest index <= `index` whose term is <= `term`: where the leader should probe next.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> u64 {
        let mut i = index.min(self.last_index());
        while i > 0 {
            match self.term(i) {
                Ok(t) if t > term => i -= 1,
                _ => break,
            }
        }
        i
    }

    pub fn commit_to(&mut self, to: u64) {
        if self.committed < to {
            if to > self.last_index() {
                tracing::error!(to, last = self.last_index(), "commit beyond the log refused");
                return;
            }
            self.committed = to;
        }
    }

    /// Leader's commit rule (§5.4.2): only an entry of the current term is committed by counting replicas.
    pub fn maybe_commit(&mut self, max_index: u64, term: u64) -> bool {
        if max_index > self.committed && self.term(max_index).is_ok_and(|t| t == term) {
            self.commit_to(max_index);
            return true;
        }
        false
    }

    pub fn applied_to(&mut self, i: u64) {
        if i == 0 {
            return;
        }
        assert!(
            i <= self.committed && i >= self.applied,
            "applied {i} outside [{}, {}]",
            self.applied,
            self.committed
        );
        self.applied = i;
    }

    pub fn stable_to(&mut self, i: u64, t: u64) {
        self.unstable.stable_to(i, t);
    }

    pub fn stable_snap_to(&mut self, i: u64) {
        self.unstable.stable_snap_to(i);
    }

    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    pub fn unstable_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.snapshot.as_ref()
    }

    /// Committed entries not yet applied, up to `max_size` bytes.
    pub fn next_committed(&self, max_size: u64) -> Vec<Entry> {
        let lo = (self.applied + 1).max(self.first_index());
        if self.committed + 1 > lo {
            return self.slice(lo, self.committed + 1, max_size).unwrap_or_default();
        }
        Vec::new()
    }

    pub fn has_next_committed(&self) -> bool {
        self.committed + 1 > (self.applied + 1).max(self.first_index())
    }

    pub fn entries(&self, lo: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        if lo > self.last_index() {
            return Ok(Vec::new());
        }
        self.slice(lo, self.last_index() + 1, max_size)
    }

    /// Entries `[lo, hi)`, from storage and the unstable tail.
    pub fn slice(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let offset = self.unstable.offset;
        if lo < offset {
            out = self.storage.entries(lo, hi.min(offset), max_size)?;
            // Storage stopped early for size: don't add unstable entries after a gap.
            if (out.len() as u64) < hi.min(offset) - lo {
                return Ok(out);
            }
        }
        if hi > offset {
            let from = (lo.max(offset) - offset) as usize;
            let to = (hi - offset) as usize;
            out.extend_from_slice(&self.unstable.entries[from..to]);
        }
        Ok(limit_size(&out, max_size))
    }

    /// Installs a snapshot from the leader: the log becomes the snapshot and nothing else.
    pub fn restore(&mut self, s: Snapshot) {
        self.committed = s.metadata.index;
        self.unstable.restore(s);
    }

    /// The snapshot to send a follower: the unstable one if any, else storage's.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.clone()),
            None => self.storage.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn ents(terms: &[u64], from: u64) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry { index: from + i as u64, term, ..Entry::default() })
            .collect()
    }

    fn log_with(terms: &[u64]) -> RaftLog<MemStorage> {
        let mut s = MemStorage::new();
        s.append(&ents(terms, 1)).unwrap();
        RaftLog::new(s).unwrap()
    }

    #[test]
    fn maybe_append_truncates_conflicts_and_advances_commit() {
        let mut l = log_with(&[1, 2, 3]);
        assert_eq!(l.maybe_append(3, 3, 3, &[]), Some(3));
        assert_eq!(l.committed, 3);
        assert_eq!(l.maybe_append(3, 2, 3, &[]), None, "term mismatch at index 3");
        let mut l = log_with(&[1, 2, 3]);
        assert_eq!(l.maybe_append(1, 1, 2, &ents(&[4, 4], 2)), Some(3));
        assert_eq!(l.term(2).unwrap(), 4);
        assert_eq!(l.committed, 2);
    }

    #[test]
    fn a_conflict_below_the_commit_index_is_refused() {
        let mut l = log_with(&[1, 1, 1]);
        l.commit_to(3);
        assert_eq!(l.maybe_append(1, 1, 3, &ents(&[2], 2)), None);
        assert_eq!(l.term(2).unwrap(), 1);
    }

    #[test]
    fn find_conflict_by_term_skips_a_whole_term() {
        let l = log_with(&[1, 1, 2, 2, 5, 5]);
        assert_eq!(l.find_conflict_by_term(6, 3), 4);
        assert_eq!(l.find_conflict_by_term(6, 1), 2);
        assert_eq!(l.find_conflict_by_term(6, 0), 0);
        assert_eq!(l.find_conflict_by_term(6, 5), 6);
    }

    #[test]
    fn section_5_4_2_figure_8_only_current_term_entries_commit_by_counting() {
        let mut l = log_with(&[1, 2]);
        assert!(!l.maybe_commit(2, 3), "entry of term 2 not committed by a term-3 leader");
        assert!(l.maybe_commit(2, 2));
        assert_eq!(l.committed, 2);
    }

    #[test]
    fn slice_spans_storage_and_unstable() {
        let mut l = log_with(&[1, 1]);
        l.append(&ents(&[2, 2], 3));
        let s = l.slice(2, 5, u64::MAX).unwrap();
        assert_eq!(s.iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(l.unstable_entries().len(), 2);
        l.stable_to(4, 2);
        assert!(l.unstable_entries().is_empty());
        assert_eq!(l.slice(1, 9, u64::MAX), Err(StorageError::Unavailable));
    }
}
