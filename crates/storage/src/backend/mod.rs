//! The backend: cairn's state machine on disk, a single redb file (etcd keeps bbolt at `member/snap/db`).
//!
//! Tables are etcd's buckets, each mapping raw bytes to raw bytes; their layouts are owned by the crates that
//! write them (mvcc owns `key` and the revision entries of `meta`) and are written down in docs/design.md.
//! Writes may commit without fsync between checkpoints: the WAL is the source of truth and entries after the
//! consistent index stored here are replayed on start (DESIGN.md, "Durability").

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};

/// One of etcd's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// MVCC revisions -> key-values.
    Key,
    /// Consistent index, term, compaction progress.
    Meta,
    Lease,
    Auth,
    AuthUsers,
    AuthRoles,
    Members,
    MembersRemoved,
    Alarm,
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Key,
        Table::Meta,
        Table::Lease,
        Table::Auth,
        Table::AuthUsers,
        Table::AuthRoles,
        Table::Members,
        Table::MembersRemoved,
        Table::Alarm,
    ];

    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Auth => "auth",
            Table::AuthUsers => "authUsers",
            Table::AuthRoles => "authRoles",
            Table::Members => "members",
            Table::MembersRemoved => "members_removed",
            Table::Alarm => "alarm",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("backend: {0}")]
    Redb(#[from] redb::Error),
    #[error("backend: reading file size: {0}")]
    Io(#[from] std::io::Error),
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for BackendError {
            fn from(e: $t) -> Self {
                BackendError::Redb(e.into())
            }
        }
    )*};
}
redb_errors!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// The backend file. Send + Sync: any number of read transactions run beside one write transaction.
#[derive(Debug)]
pub struct Backend {
    db: Database,
    path: PathBuf,
}

impl Backend {
    /// Opens the backend at `path`, creating the file and every table if missing.
    pub fn open(path: &Path) -> Result<Backend, BackendError> {
        let db =
            Database::create(path).map_err(|source| BackendError::Open { path: path.to_owned(), source })?;
        let txn = db.begin_write()?;
        for table in Table::ALL {
            txn.open_table(table.definition())?;
        }
        txn.commit()?;
        Ok(Backend { db, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A consistent view of everything committed so far.
    pub fn begin_read(&self) -> Result<ReadTx, BackendError> {
        Ok(ReadTx { txn: self.db.begin_read()? })
    }

    /// The one write transaction; others wait for it to commit or drop.
    pub fn begin_write(&self) -> Result<WriteTx, BackendError> {
        Ok(WriteTx { txn: self.db.begin_write()? })
    }

    /// Size of the backend file in bytes (etcd's dbSize).
    pub fn size(&self) -> Result<u64, BackendError> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    /// Bytes holding live data (etcd's dbSizeInUse).
    pub fn size_in_use(&self) -> Result<u64, BackendError> {
        let txn = self.db.begin_write()?;
        let stats = txn.stats()?;
        let in_use = stats.stored_bytes() + stats.metadata_bytes();
        txn.abort()?;
        Ok(in_use)
    }
}

/// A read-only snapshot of the backend.
pub struct ReadTx {
    txn: redb::ReadTransaction,
}

impl std::fmt::Debug for ReadTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadTx")
    }
}

impl ReadTx {
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let t = self.txn.open_table(table.definition())?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Calls `f` with every entry whose key is in `range`, in key order, until `f` returns false.
    pub fn for_each<'a>(
        &self,
        table: Table,
        range: impl RangeBounds<&'a [u8]>,
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        let t = self.txn.open_table(table.definition())?;
        for entry in t.range::<&[u8]>(range)? {
            let (k, v) = entry?;
            if !f(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }

    pub fn len(&self, table: Table) -> Result<u64, BackendError> {
        Ok(self.txn.open_table(table.definition())?.len()?)
    }
}

/// Changes to the backend, applied atomically by [`WriteTx::commit`].
pub struct WriteTx {
    txn: redb::WriteTransaction,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteTx")
    }
}

impl WriteTx {
    pub fn put_all<'a>(
        &mut self,
        table: Table,
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), BackendError> {
        let mut t = self.txn.open_table(table.definition())?;
        for (k, v) in entries {
            t.insert(k, v)?;
        }
        Ok(())
    }

    pub fn delete_all<'a>(
        &mut self,
        table: Table,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), BackendError> {
        let mut t = self.txn.open_table(table.definition())?;
        for k in keys {
            t.remove(k)?;
        }
        Ok(())
    }

    /// Commits; `durable` waits for fsync, otherwise the commit is durable once a later durable one is.
    pub fn commit(mut self, durable: bool) -> Result<(), BackendError> {
        self.txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        self.txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_writes_are_read_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let b = Backend::open(&path).unwrap();
            let mut w = b.begin_write().unwrap();
            w.put_all(Table::Key, [(&b"a"[..], &b"1"[..]), (b"b", b"2"), (b"c", b"3")]).unwrap();
            w.put_all(Table::Meta, [(&b"consistent_index"[..], &7u64.to_be_bytes()[..])]).unwrap();
            w.commit(true).unwrap();
            let mut w = b.begin_write().unwrap();
            w.delete_all(Table::Key, [&b"b"[..]]).unwrap();
            w.commit(true).unwrap();
        }
        let b = Backend::open(&path).unwrap();
        let r = b.begin_read().unwrap();
        assert_eq!(r.get(Table::Key, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(r.get(Table::Key, b"b").unwrap(), None);
        assert_eq!(r.get(Table::Meta, b"consistent_index").unwrap(), Some(7u64.to_be_bytes().to_vec()));
        let mut seen = Vec::new();
        r.for_each(Table::Key, &b"a"[..]..&b"z"[..], |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(seen, vec![(b"a".to_vec(), b"1".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
        assert_eq!(r.len(Table::Key).unwrap(), 2);
        assert!(b.size().unwrap() > 0);
        assert!(b.size_in_use().unwrap() > 0);
    }

    #[test]
    fn a_dropped_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::open(&dir.path().join("db")).unwrap();
        let mut w = b.begin_write().unwrap();
        w.put_all(Table::Alarm, [(&b"x"[..], &b"y"[..])]).unwrap();
        drop(w);
        assert_eq!(b.begin_read().unwrap().get(Table::Alarm, b"x").unwrap(), None);
    }

    #[test]
    fn a_non_durable_commit_is_visible_to_readers() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::open(&dir.path().join("db")).unwrap();
        let mut w = b.begin_write().unwrap();
        w.put_all(Table::Key, [(&b"k"[..], &b"v"[..])]).unwrap();
        w.commit(false).unwrap();
        assert_eq!(b.begin_read().unwrap().get(Table::Key, b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn a_garbage_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, vec![0xa5u8; 8192]).unwrap();
        assert!(Backend::open(&path).is_err());
    }
}
