//! Whole-store snapshots for raft: a consistent copy of the backend file to send to a follower, and installing
//! a received one in place of the current backend (etcd sends its bbolt file the same way).

use std::path::Path;
use std::sync::Arc;

use cairn_storage::Backend;

use crate::store::Store;
use crate::MvccError;

/// The raft position a snapshot reflects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPoint {
    pub consistent_index: u64,
    pub term: u64,
    pub revision: i64,
}

fn io(context: &str, path: &Path, e: std::io::Error) -> MvccError {
    MvccError::Io(format!("{context} {}: {e}", path.display()))
}

impl Store {
    /// Writes a consistent copy of the backend to `path` and says what it holds. Writes wait meanwhile (the
    /// copy is of a file made durable first, so it is exactly the committed state).
    pub fn snapshot_to(&self, path: &Path) -> Result<SnapshotPoint, MvccError> {
        let batch = self.begin_batch();
        let point = SnapshotPoint {
            consistent_index: batch.consistent_index(),
            term: batch.term(),
            revision: batch.current_revision(),
        };
        // An empty durable commit makes everything before it durable; the state lock (held by the batch until
        // commit returns) keeps writers out until the copy is done.
        batch.commit_then(true, || {
            let source = self.backend().path().to_owned();
            std::fs::copy(&source, path).map_err(|e| io("copying the backend to", path, e))?;
            std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| io("syncing", path, e))
        })?;
        Ok(point)
    }

    /// Replaces the store's contents with a backend file received from the leader: `received` is moved to
    /// `target` (the backend's own path), opened, and the index rebuilt. Watchers stay registered and are caught
    /// up from the new history (or told it was compacted).
    pub fn restore_from(&self, received: &Path, target: &Path) -> Result<SnapshotPoint, MvccError> {
        // Check the received file opens before touching the current one.
        drop(Backend::open(received)?);
        let unfinished = {
            let mut state = self.write_state();
            // The old backend stays open (for readers that still hold it) on its unlinked file.
            std::fs::rename(received, target).map_err(|e| io("installing the snapshot at", target, e))?;
            let backend = Arc::new(Backend::open(target)?);
            self.replace_backend(&mut state, backend)?
        };
        self.finish_interrupted_compaction(unfinished)?;
        let state = self.read_state();
        Ok(SnapshotPoint {
            consistent_index: state.consistent_index,
            term: state.term,
            revision: state.current_rev,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cairn_api::etcdserverpb::{PutRequest, RangeRequest};

    use super::*;
    use crate::NoLeases;

    fn put(store: &Store, key: &str, value: &str, index: u64) {
        let mut b = store.begin_batch();
        let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        b.put(&req, &NoLeases).unwrap();
        b.set_consistent_index(index, 1);
        b.commit(false).unwrap();
    }

    fn get(store: &Store, key: &str) -> Option<Vec<u8>> {
        let req = RangeRequest { key: key.into(), ..Default::default() };
        store.range(&req).unwrap().kvs.pop().map(|kv| kv.value)
    }

    #[test]
    fn a_snapshot_installed_elsewhere_gives_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let leader = Store::open(Arc::new(Backend::open(&dir.path().join("a")).unwrap())).unwrap();
        put(&leader, "k1", "v1", 5);
        put(&leader, "k2", "v2", 6);
        let snap = dir.path().join("snap");
        let point = leader.snapshot_to(&snap).unwrap();
        assert_eq!(point, SnapshotPoint { consistent_index: 6, term: 1, revision: 3 });

        let target = dir.path().join("b");
        let follower = Store::open(Arc::new(Backend::open(&target).unwrap())).unwrap();
        put(&follower, "old", "x", 1);
        let installed = follower.restore_from(&snap, &target).unwrap();
        assert_eq!(installed, point);
        assert_eq!(get(&follower, "k2"), Some(b"v2".to_vec()));
        assert_eq!(get(&follower, "old"), None);
        // Writes continue on the installed backend and survive a reopen.
        put(&follower, "k3", "v3", 7);
        drop(follower);
        let reopened = Store::open(Arc::new(Backend::open(&target).unwrap())).unwrap();
        assert_eq!(get(&reopened, "k3"), Some(b"v3".to_vec()));
        assert_eq!(reopened.consistent_index(), 7);
    }

    #[test]
    fn a_garbage_snapshot_is_refused_and_the_store_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("db");
        let store = Store::open(Arc::new(Backend::open(&target).unwrap())).unwrap();
        put(&store, "k", "v", 1);
        let bad = dir.path().join("bad");
        std::fs::write(&bad, vec![0x5au8; 4096]).unwrap();
        assert!(store.restore_from(&bad, &target).is_err());
        assert_eq!(get(&store, "k"), Some(b"v".to_vec()));
    }
}
