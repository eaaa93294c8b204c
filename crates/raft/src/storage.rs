//! The log storage Raft reads from: a trait the driver implements (the server over its WAL, tests in memory), and
//! [`MemStorage`], an in-memory implementation as etcd's MemoryStorage.

use crate::types::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The entry was compacted into a snapshot.
    Compacted,
    /// The entry is past the last index.
    Unavailable,
    /// The snapshot asked for is older than the one already held.
    SnapshotOutOfDate,
    /// A snapshot is being made; ask again later.
    SnapshotTemporarilyUnavailable,
    /// Persisted state that cannot be used.
    Corrupt(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Compacted => f.write_str("requested index is unavailable due to compaction"),
            StorageError::Unavailable => f.write_str("requested entry at index is unavailable"),
            StorageError::SnapshotOutOfDate => {
                f.write_str("requested index is older than the existing snapshot")
            }
            StorageError::SnapshotTemporarilyUnavailable => {
                f.write_str("snapshot is temporarily unavailable")
            }
            StorageError::Corrupt(why) => write!(f, "corrupt raft storage: {why}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// Read access to the persisted log; entries are in the range `[first_index, last_index]`.
pub trait Storage {
    /// Persisted hard state and membership, read once at start.
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError>;
    /// Entries `[lo, hi)`, at least one if any, at most about `max_size` bytes.
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>, StorageError>;
    /// Term of entry `index`; `first_index - 1` (the snapshot's index) must also be answered.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    fn first_index(&self) -> Result<u64, StorageError>;
    fn last_index(&self) -> Result<u64, StorageError>;
    /// The newest snapshot, to send to a follower that needs compacted entries.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// The log in memory. `entries[0]` is a dummy standing for the snapshot's index and term.
#[derive(Debug, Clone)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl Default for MemStorage {
    fn default() -> Self {
        MemStorage {
            hard_state: HardState::default(),
            snapshot: Snapshot::default(),
            entries: vec![Entry::default()],
        }
    }
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh log whose membership is `conf_state` (how a cluster is bootstrapped).
    pub fn new_with_conf_state(conf_state: ConfState) -> Self {
        let mut s = Self::default();
        s.snapshot.metadata.conf_state = conf_state;
        s
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.snapshot.metadata.conf_state = cs;
    }

    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    fn last(&self) -> u64 {
        self.offset() + self.entries.len() as u64 - 1
    }

    /// Appends entries, replacing any conflicting suffix; entries below the snapshot are ignored.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first_new) = entries.first() else { return Ok(()) };
        let first = self.offset() + 1;
        let last_new = first_new.index + entries.len() as u64 - 1;
        if last_new < first {
            return Ok(());
        }
        let entries =
            if first > first_new.index { &entries[(first - first_new.index) as usize..] } else { entries };
        let offset = entries[0].index - self.offset();
        if offset > self.entries.len() as u64 {
            return Err(StorageError::Corrupt(format!(
                "missing log entry [last: {}, append at: {}]",
                self.last(),
                entries[0].index
            )));
        }
        self.entries.truncate(offset as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Replaces the whole log by a snapshot (a follower catching up).
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if snapshot.metadata.index < self.snapshot.metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        self.entries =
            vec![Entry { term: snapshot.metadata.term, index: snapshot.metadata.index, ..Entry::default() }];
        if self.hard_state.commit < snapshot.metadata.index {
            self.hard_state.commit = snapshot.metadata.index;
        }
        if self.hard_state.term < snapshot.metadata.term {
            self.hard_state.term = snapshot.metadata.term;
        }
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the state machine at `index` (which must be applied, so in the log).
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: Option<ConfState>,
        data: Vec<u8>,
    ) -> Result<&Snapshot, StorageError> {
        if index <= self.snapshot.metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        if index > self.last() {
            return Err(StorageError::Unavailable);
        }
        let term = self.entries[(index - self.offset()) as usize].term;
        let conf_state = conf_state.unwrap_or_else(|| self.snapshot.metadata.conf_state.clone());
        self.snapshot = Snapshot { metadata: SnapshotMetadata { index, term, conf_state }, data };
        Ok(&self.snapshot)
    }

    /// Discards entries before `compact_index`, which becomes the new dummy.
    pub fn compact(&mut self, compact_index: u64) -> Result<(), StorageError> {
        if compact_index <= self.offset() {
            return Err(StorageError::Compacted);
        }
        if compact_index > self.last() {
            return Err(StorageError::Unavailable);
        }
        let i = (compact_index - self.offset()) as usize;
        self.entries.drain(..i);
        self.entries[0].data.clear();
        Ok(())
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        Ok((self.hard_state, self.snapshot.metadata.conf_state.clone()))
    }

    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        if lo <= self.offset() {
            return Err(StorageError::Compacted);
        }
        if hi > self.last() + 1 {
            return Err(StorageError::Unavailable);
        }
        let slice = &self.entries[(lo - self.offset()) as usize..(hi - self.offset()) as usize];
        Ok(limit_size(slice, max_size))
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index < self.offset() {
            return Err(StorageError::Compacted);
        }
        self.entries.get((index - self.offset()) as usize).map(|e| e.term).ok_or(StorageError::Unavailable)
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.offset() + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.last())
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }
}

/// The longest prefix within `max_size` bytes, but always at least one entry.
pub fn limit_size(entries: &[Entry], max_size: u64) -> Vec<Entry> {
    let mut size = 0;
    let n = entries
        .iter()
        .take_while(|e| {
            size += e.size();
            size <= max_size
        })
        .count()
        .max(1)
        .min(entries.len());
    entries[..n].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|index| Entry { index, term, ..Entry::default() }).collect()
    }

    #[test]
    fn append_replaces_the_conflicting_suffix() {
        let mut s = MemStorage::new();
        s.append(&ents(1..=5, 1)).unwrap();
        s.append(&ents(4..=6, 2)).unwrap();
        assert_eq!(s.last_index().unwrap(), 6);
        assert_eq!(s.term(3).unwrap(), 1);
        assert_eq!(s.term(4).unwrap(), 2);
        assert!(matches!(s.append(&ents(9..=9, 2)), Err(StorageError::Corrupt(_))), "a gap is refused");
    }

    #[test]
    fn compaction_and_snapshots_move_the_first_index() {
        let mut s = MemStorage::new();
        s.append(&ents(1..=10, 1)).unwrap();
        s.create_snapshot(5, None, b"state".to_vec()).unwrap();
        s.compact(5).unwrap();
        assert_eq!(s.first_index().unwrap(), 6);
        assert_eq!(s.term(5).unwrap(), 1, "the snapshot's term stays answerable");
        assert_eq!(s.entries(4, 7, u64::MAX), Err(StorageError::Compacted));
        assert_eq!(s.entries(6, 8, u64::MAX).unwrap().len(), 2);
        assert_eq!(s.compact(3), Err(StorageError::Compacted));
        assert_eq!(s.create_snapshot(4, None, vec![]).err(), Some(StorageError::SnapshotOutOfDate));
    }

    #[test]
    fn size_limit_keeps_at_least_one_entry() {
        let e = ents(1..=3, 1);
        assert_eq!(limit_size(&e, 0).len(), 1);
        assert_eq!(limit_size(&e, 48).len(), 2);
        assert_eq!(limit_size(&e, u64::MAX).len(), 3);
    }
}
