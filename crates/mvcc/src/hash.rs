//! Hashes of the store for consistency checks between members (etcd's `HashByRev` and `Hash`), and
//! defragmentation (rewriting the backend into a fresh, compact file).
//!
//! The `key` table holds exactly etcd's bytes (revision keys, `mvccpb.KeyValue` values), so [`Store::hash_kv`]
//! gives the hash etcd gives for the same history: `etcdctl endpoint hashkv` agrees across the two.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use cairn_storage::{Backend, Table};

use crate::revision::Revision;
use crate::store::Store;
use crate::MvccError;

/// What [`Store::hash_kv`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32C (Castagnoli) of the `key` table name and every entry up to the revision.
    pub hash: u32,
    pub current_revision: i64,
    pub compact_revision: i64,
    /// The revision the hash covers (the requested one, or the current).
    pub hash_revision: i64,
}

/// Entries copied per write transaction while defragmenting.
const DEFRAG_BATCH: usize = 10_000;

impl Store {
    /// etcd's HashKV at `rev` (0: the current revision): CRC-32C over `key` and each (revision, value) entry
    /// up to `rev`; at or below the compaction point only the revisions a compaction at `rev` would keep.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, MvccError> {
        let (keep, current, compact, tx) = {
            let state = self.read_state();
            let (current, compact) = (state.current_rev, state.compact_rev);
            if rev > 0 && rev <= compact {
                return Err(MvccError::Compacted);
            }
            if rev > current {
                return Err(MvccError::FutureRevision);
            }
            let at = if rev == 0 { current } else { rev };
            let keep: HashSet<Revision> = state.index.keep(at);
            // The snapshot is taken under the lock, so it is the state the index describes.
            (keep, (current, at), compact, self.backend().begin_read()?)
        };
        let (current_revision, hash_revision) = current;
        let upper = Revision::new(hash_revision.saturating_add(1), 0).to_bytes(false);
        let mut hash = crc32c::crc32c(b"key");
        let mut corrupt = None;
        tx.for_each(Table::Key, ..upper.as_slice(), |k, v| {
            let Some((r, _)) = Revision::from_bytes(k) else {
                corrupt = Some(format!("undecodable key table entry {k:?}"));
                return false;
            };
            if r.main <= compact && !keep.is_empty() && !keep.contains(&r) {
                return true;
            }
            hash = crc32c::crc32c_append(crc32c::crc32c_append(hash, k), v);
            true
        })?;
        if let Some(msg) = corrupt {
            return Err(MvccError::Corrupt(msg));
        }
        Ok(KvHash { hash, current_revision, compact_revision: compact, hash_revision })
    }

    /// A hash of every table of the backend (etcd's Hash hashes its whole database): members with the same
    /// applied state agree.
    pub fn hash_all(&self) -> Result<u32, MvccError> {
        let tx = {
            let _state = self.read_state();
            self.backend().begin_read()?
        };
        let mut hash = 0;
        for table in Table::ALL {
            tx.for_each(table, .., |k, v| {
                hash = crc32c::crc32c_append(crc32c::crc32c_append(hash, k), v);
                true
            })?;
        }
        Ok(hash)
    }

    /// Rewrites the backend into a fresh file and swaps it in (etcd's defrag): the space of deleted and
    /// compacted entries is given back. Writes wait meanwhile; readers keep their snapshots.
    pub fn defragment(&self) -> Result<(), MvccError> {
        let mut state = self.write_state();
        let old = self.backend();
        let target = old.path().to_owned();
        let fresh_path = sibling(&target, "defrag");
        let _ = std::fs::remove_file(&fresh_path);
        {
            let fresh = Backend::open(&fresh_path)?;
            let tx = old.begin_read()?;
            for table in Table::ALL {
                let mut chunk: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(DEFRAG_BATCH);
                let mut failed = None;
                tx.for_each(table, .., |k, v| {
                    chunk.push((k.to_vec(), v.to_vec()));
                    if chunk.len() == DEFRAG_BATCH {
                        if let Err(e) = write_chunk(&fresh, table, &mut chunk) {
                            failed = Some(e);
                            return false;
                        }
                    }
                    true
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                write_chunk(&fresh, table, &mut chunk)?;
            }
            fresh.begin_write()?.commit(true)?;
        }
        // The old file stays open (for readers holding it) after it is replaced.
        std::fs::rename(&fresh_path, &target)
            .map_err(|e| MvccError::Io(format!("replacing {} after defragmenting: {e}", target.display())))?;
        let backend = Arc::new(Backend::open(&target)?);
        let unfinished = self.replace_backend(&mut state, backend)?;
        drop(state);
        self.finish_interrupted_compaction(unfinished)
    }
}

fn write_chunk(to: &Backend, table: Table, chunk: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), MvccError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let mut w = to.begin_write()?;
    w.put_all(table, chunk.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))?;
    w.commit(false)?;
    chunk.clear();
    Ok(())
}

/// `path` with `.suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cairn_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

    use super::*;
    use crate::NoLeases;

    fn open(dir: &Path) -> Store {
        Store::open(Arc::new(Backend::open(&dir.join("db")).unwrap())).unwrap()
    }

    fn put(store: &Store, key: &str, value: &str) {
        let mut b = store.begin_batch();
        b.put(&PutRequest { key: key.into(), value: value.into(), ..Default::default() }, &NoLeases).unwrap();
        b.commit(false).unwrap();
    }

    #[test]
    fn equal_histories_hash_equal_and_the_hash_follows_revisions() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (open(a.path()), open(b.path()));
        for s in [&sa, &sb] {
            put(s, "k1", "v1");
            put(s, "k2", "v2");
        }
        assert_eq!(sa.hash_kv(0).unwrap(), sb.hash_kv(0).unwrap());
        assert_eq!(sa.hash_all().unwrap(), sb.hash_all().unwrap());
        let at2 = sa.hash_kv(2).unwrap();
        put(&sa, "k3", "v3");
        assert_eq!(sa.hash_kv(2).unwrap().hash, at2.hash, "a past revision's hash does not change");
        assert_ne!(sa.hash_kv(0).unwrap().hash, at2.hash);
        assert_eq!(sa.hash_kv(0).unwrap().current_revision, 4);
        assert!(matches!(sa.hash_kv(9), Err(MvccError::FutureRevision)));
        let mut batch = sa.begin_batch();
        batch.compact(3).unwrap();
        batch.commit(false).unwrap();
        assert!(matches!(sa.hash_kv(2), Err(MvccError::Compacted)));
        assert_eq!(sa.hash_kv(0).unwrap().compact_revision, 3);
    }

    #[test]
    fn defragmenting_keeps_every_answer_and_shrinks_a_file_full_of_deleted_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let big = "x".repeat(4096);
        for i in 0..300 {
            put(&store, &format!("k{i}"), &big);
        }
        let mut b = store.begin_batch();
        b.delete_range(&DeleteRangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .unwrap();
        b.commit(false).unwrap();
        put(&store, "kept", "v");
        let now = store.current_revision();
        let mut b = store.begin_batch();
        b.compact(now).unwrap();
        b.commit(true).unwrap();
        let before = (store.hash_kv(0).unwrap(), store.backend().size().unwrap());
        store.defragment().unwrap();
        let after = (store.hash_kv(0).unwrap(), store.backend().size().unwrap());
        assert_eq!(after.0, before.0, "same contents");
        assert!(after.1 < before.1, "{} bytes after, {} before", after.1, before.1);
        put(&store, "later", "w");
        drop(store);
        let reopened = open(dir.path());
        let got = reopened.range(&RangeRequest { key: b"later".to_vec(), ..Default::default() }).unwrap();
        assert_eq!(got.kvs[0].value, b"w");
    }
}
