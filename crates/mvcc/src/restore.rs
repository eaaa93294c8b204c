//! Snapshot restore (`cairnctl snapshot restore`): a backend made from a snapshot becomes the store of a member
//! of a NEW cluster. Keys, revisions and compaction are kept; the raft position starts again, as the new
//! cluster's log does. An etcd snapshot's buckets are brought in as they are: etcd's `key` rows are the bytes
//! cairn's `key` table holds (docs/design.md), but etcd writes its compaction marks in `meta` as 17-byte
//! revisions where cairn writes an i64 BE.

use cairn_storage::{Backend, Table};

use crate::revision::Revision;
use crate::store::meta;
use crate::MvccError;

/// Sets the raft position (consistent index, term) of a backend no store has open. Unlike a batch's, it may go
/// back: a restored member's log starts again at its initial membership.
pub fn rebase(backend: &Backend, consistent_index: u64, term: u64) -> Result<(), MvccError> {
    let mut tx = backend.begin_write()?;
    let (index, term) = (consistent_index.to_be_bytes(), term.to_be_bytes());
    tx.put_all(Table::Meta, [(meta::CONSISTENT_INDEX, index.as_slice()), (meta::TERM, term.as_slice())])?;
    tx.commit(true)?;
    Ok(())
}

/// etcd's `key` and `meta` bucket rows, collected and written into an empty backend in one transaction.
#[derive(Debug, Default)]
pub struct EtcdImport {
    keys: Vec<(Vec<u8>, Vec<u8>)>,
    meta: Vec<(&'static [u8], Vec<u8>)>,
}

impl EtcdImport {
    /// A row of etcd's `key` bucket (revision -> `mvccpb.KeyValue`). It is checked when the store opens.
    pub fn key(&mut self, revision: &[u8], kv: &[u8]) {
        self.keys.push((revision.to_vec(), kv.to_vec()));
    }

    /// A row of etcd's `meta` bucket: its compaction marks are kept, the rest (its raft position) is not.
    pub fn meta(&mut self, key: &[u8], value: &[u8]) -> Result<(), MvccError> {
        let Some(name) =
            [meta::SCHEDULED_COMPACT_REV, meta::FINISHED_COMPACT_REV].into_iter().find(|n| *n == key)
        else {
            return Ok(());
        };
        let (rev, _) = Revision::from_bytes(value)
            .ok_or_else(|| MvccError::Corrupt(format!("etcd meta {name:?} is not a revision: {value:?}")))?;
        self.meta.push((name, rev.main.to_be_bytes().to_vec()));
        Ok(())
    }

    pub fn write(self, backend: &Backend) -> Result<(), MvccError> {
        let mut tx = backend.begin_write()?;
        tx.put_all(Table::Key, self.keys.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))?;
        tx.put_all(Table::Meta, self.meta.iter().map(|(k, v)| (*k, v.as_slice())))?;
        tx.commit(true)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use cairn_api::etcdserverpb::RangeRequest;
    use cairn_api::mvccpb::KeyValue;
    use prost::Message as _;

    use super::*;
    use crate::Store;

    fn kv(key: &str, create: i64, rev: i64, version: i64) -> Vec<u8> {
        KeyValue {
            key: key.into(),
            value: b"v".to_vec(),
            create_revision: create,
            mod_revision: rev,
            version,
            lease: 0,
        }
        .encode_to_vec()
    }

    #[test]
    fn etcd_rows_become_a_store_at_their_revision_and_the_raft_position_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(&dir.path().join("db")).unwrap();
        let mut import = EtcdImport::default();
        import.key(&Revision::new(2, 0).to_bytes(false), &kv("a", 2, 2, 1));
        import.key(&Revision::new(3, 0).to_bytes(false), &kv("a", 2, 3, 2));
        import.key(
            &Revision::new(4, 0).to_bytes(true),
            &KeyValue { key: b"b".to_vec(), ..KeyValue::default() }.encode_to_vec(),
        );
        // etcd's meta: a 17-byte compaction revision, and a consistent index that is not carried over.
        import.meta(b"finishedCompactRev", &Revision::new(2, 0).to_bytes(false)).unwrap();
        import.meta(b"consistent_index", &9u64.to_be_bytes()).unwrap();
        assert!(import.meta(b"scheduledCompactRev", b"short").is_err());
        import.write(&backend).unwrap();
        rebase(&backend, 3, 1).unwrap();

        let store = Store::open(Arc::new(backend)).unwrap();
        assert_eq!((store.current_revision(), store.compact_revision()), (4, 2));
        assert_eq!((store.consistent_index(), store.term()), (3, 1));
        let got = store.range(&RangeRequest { key: b"a".to_vec(), ..RangeRequest::default() }).unwrap();
        assert_eq!((got.kvs[0].mod_revision, got.kvs[0].version), (3, 2));
    }
}
