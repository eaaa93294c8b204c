//! `snapshot restore`: a new member's data dir for a NEW cluster holding a snapshot's data, as etcdctl 3.4's
//! (clientv3/snapshot) writes one for etcd: the snapshot's trailing SHA-256 checked, the backend at
//! `<data-dir>/member/snap/db` with the snapshot's keys, revisions, compaction and leases, the old membership
//! replaced by `--initial-cluster`'s, and a WAL naming this member that starts the raft log where etcd's
//! restore does: a snapshot at index = number of members, term 1, which the backend's consistent index matches.
//!
//! Two inputs: a snapshot saved from cairn (its redb backend, taken as it is) or from etcd (a bbolt file, whose
//! `key`, `lease` and `meta` compaction rows are brought into a new backend; see docs/design.md).

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_api::etcdserverpb::Member;
use cairn_lease::{record_key, LeaseRecord};
use cairn_mvcc::restore::{rebase, EtcdImport};
use cairn_mvcc::Store;
use cairn_storage::wal::{EntryRef, HardState, SnapshotMarker};
use cairn_storage::{member, Backend, Table, Wal, WalOptions};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::initial_cluster::{self, InitialCluster};
use super::snapshot::info;
use crate::boltdb::Bolt;
use crate::cli::RestoreArgs;
use crate::ctx::Ctx;
use crate::error::{CtlError, ExitCode, Result};
use crate::gofmt::quote;
use crate::gojson;

/// The raft term a restored cluster's log starts in (etcd's).
const TERM: u64 = 1;

fn fail(message: impl Into<String>) -> CtlError {
    CtlError::new(ExitCode::Error, message)
}

fn io_fail(op: &str, path: &Path, e: &std::io::Error) -> CtlError {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    };
    fail(format!("{op} {}: {reason}", path.display()))
}

/// Where the restored member lives.
struct Dirs {
    data: PathBuf,
    wal: PathBuf,
    snap: PathBuf,
}

pub fn restore(ctx: &mut Ctx, a: &RestoreArgs) -> Result<()> {
    let [path] = a.args.as_slice() else {
        return Err(CtlError::bad_args("snapshot restore requires exactly one argument"));
    };
    let advertised: Vec<&str> = a.initial_advertise_peer_urls.split(',').collect();
    let peer_urls = initial_cluster::parse_urls(&advertised).map_err(fail)?;
    let map = initial_cluster::parse_urls_map(&a.initial_cluster).map_err(fail)?;
    let cluster =
        initial_cluster::bootstrap(&a.name, &peer_urls, &map, &a.initial_cluster_token).map_err(fail)?;
    let data =
        PathBuf::from(if a.data_dir.is_empty() { format!("{}.etcd", a.name) } else { a.data_dir.clone() });
    if data.exists() {
        return Err(fail(format!("data-dir {} exists", quote(data.display().to_string().as_bytes()))));
    }
    let wal = if a.wal_dir.is_empty() { data.join("member").join("wal") } else { PathBuf::from(&a.wal_dir) };
    if !a.wal_dir.is_empty() && wal.exists() {
        return Err(fail(format!("wal-dir {} exists", quote(wal.display().to_string().as_bytes()))));
    }
    let dirs = Dirs { snap: data.join("member").join("snap"), data, wal };
    let fields = format!(
        ",\"path\":{},\"wal-dir\":{},\"data-dir\":{},\"snap-dir\":{}",
        gojson::string(path),
        gojson::string(&dirs.wal.display().to_string()),
        gojson::string(&dirs.data.display().to_string()),
        gojson::string(&dirs.snap.display().to_string()),
    );
    info(ctx, false, "snapshot/v3_snapshot.go:296", "restoring snapshot", &fields);
    let written = write_member(ctx, Path::new(path), &dirs, &cluster, &a.name, a.skip_hash_check);
    if let Err(e) = written {
        // Nothing half-written stays behind to make the next attempt fail with "exists".
        let _ = std::fs::remove_dir_all(&dirs.data);
        if !a.wal_dir.is_empty() {
            let _ = std::fs::remove_dir_all(&dirs.wal);
        }
        return Err(e);
    }
    info(ctx, false, "snapshot/v3_snapshot.go:309", "restored snapshot", &fields);
    Ok(())
}

fn write_member(
    ctx: &mut Ctx,
    snapshot: &Path,
    dirs: &Dirs,
    cluster: &InitialCluster,
    name: &str,
    skip_hash_check: bool,
) -> Result<()> {
    let db = dirs.snap.join("db");
    let copy = dirs.snap.join("db.snapshot");
    std::fs::create_dir_all(&dirs.snap).map_err(|e| io_fail("mkdir", &dirs.snap, &e))?;
    let is_bolt = copy_checked(snapshot, &copy, skip_hash_check)?;
    let backend = if is_bolt {
        let backend = Backend::open(&db).map_err(|e| fail(e.to_string()))?;
        import_etcd(&copy, &backend)?;
        std::fs::remove_file(&copy).map_err(|e| io_fail("remove", &copy, &e))?;
        backend
    } else {
        std::fs::rename(&copy, &db).map_err(|e| io_fail("rename", &copy, &e))?;
        Backend::open(&db)
            .map_err(|e| fail(format!("the snapshot is neither a cairn nor an etcd backend: {e}")))?
    };
    let count = u64::try_from(cluster.members.len()).unwrap_or(u64::MAX);
    replace_members(&backend, cluster)?;
    rebase(&backend, count, TERM).map_err(|e| fail(e.to_string()))?;
    // Opening the store reads every key back: a snapshot cairn could not serve fails here, not at start.
    let store = Store::open(Arc::new(backend)).map_err(|e| fail(e.to_string()))?;
    if store.compact_revision() >= 0 {
        info(
            ctx,
            false,
            "mvcc/kvstore.go:388",
            "restored last compact revision",
            &format!(
                ",\"meta-bucket-name\":\"meta\",\"meta-bucket-name-key\":\"finishedCompactRev\",\
                 \"restored-compact-revision\":{}",
                store.compact_revision()
            ),
        );
    }
    drop(store);
    for m in &cluster.members {
        let urls: Vec<String> = m.peer_urls.iter().map(|u| gojson::string(u)).collect();
        let fields = format!(
            ",\"cluster-id\":\"{:x}\",\"local-member-id\":\"0\",\"added-peer-id\":\"{:x}\",\
             \"added-peer-peer-urls\":[{}]",
            cluster.id,
            m.id,
            urls.join(",")
        );
        info(ctx, false, "membership/cluster.go:392", "added member", &fields);
    }
    let me = cluster.members.iter().find(|m| m.name == name).map_or(0, |m| m.id);
    write_wal(&dirs.wal, me, cluster, count)
}

/// Copies the snapshot to `to` without its trailing SHA-256 (present when the size is 32 past a multiple of
/// 512, etcd's test), checks that hash unless told not to, and says whether the file is a bolt database.
fn copy_checked(from: &Path, to: &Path, skip_hash_check: bool) -> Result<bool> {
    let mut src = File::open(from).map_err(|e| io_fail("open", from, &e))?;
    let len = src.metadata().map_err(|e| io_fail("stat", from, &e))?.len();
    if len < 32 {
        return Err(fail(format!("seek {}: invalid argument", from.display())));
    }
    let mut sha = [0u8; 32];
    src.seek(SeekFrom::Start(len - 32))
        .and_then(|_| src.read_exact(&mut sha))
        .and_then(|()| src.seek(SeekFrom::Start(0)))
        .map_err(|e| io_fail("read", from, &e))?;
    let has_hash = len % 512 == 32;
    if !has_hash && !skip_hash_check {
        return Err(fail("snapshot missing hash but --skip-hash-check=false"));
    }
    let body = if has_hash { len - 32 } else { len };
    let mut dst = File::create(to).map_err(|e| io_fail("open", to, &e))?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = body;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(body);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} copied ({bytes_per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = src.read(&mut buf[..want]).map_err(|e| io_fail("read", from, &e))?;
        if n == 0 {
            return Err(fail(format!("read {}: unexpected EOF", from.display())));
        }
        hasher.update(&buf[..n]);
        if head.len() < 64 {
            head.extend_from_slice(&buf[..n.min(64 - head.len())]);
        }
        dst.write_all(&buf[..n]).map_err(|e| io_fail("write", to, &e))?;
        left -= n as u64;
        if let Some(b) = &bar {
            b.set_position(body - left);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    dst.sync_all().map_err(|e| io_fail("sync", to, &e))?;
    let got: [u8; 32] = hasher.finalize().into();
    if has_hash && !skip_hash_check && got != sha {
        return Err(fail(format!("expected sha256 {}, got {}", go_bytes(&sha), go_bytes(&got))));
    }
    // bolt's meta page: magic 0xED0CDAED (little endian) right after the 16-byte page header.
    Ok(head.get(16..20) == Some(&[0xed, 0xda, 0x0c, 0xed][..]))
}

/// Go's `%v` of a byte slice: `[1 2 3]`.
fn go_bytes(b: &[u8]) -> String {
    let items: Vec<String> = b.iter().map(u8::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// Brings an etcd snapshot's `key` rows, `lease` rows and `meta` compaction marks into the empty backend.
/// etcd's `members` and `members_removed` are replaced, like its auth and alarm buckets they are not carried.
fn import_etcd(bolt_file: &Path, backend: &Backend) -> Result<()> {
    let data = std::fs::read(bolt_file).map_err(|e| io_fail("open", bolt_file, &e))?;
    let bad = |e: crate::boltdb::BoltError| fail(e.to_string());
    let db = Bolt::open(&data).map_err(bad)?;
    let mut buckets = Vec::new();
    db.each_root(&mut |name, header, _| {
        buckets.push((name.to_vec(), header.to_vec()));
        Ok(())
    })
    .map_err(bad)?;
    let mut import = EtcdImport::default();
    let mut leases = Vec::new();
    let mut meta_error = None;
    for (name, header) in buckets {
        match name.as_slice() {
            b"key" => db.each_in(&header, &mut |k, v, _| {
                import.key(k, v);
                Ok(())
            }),
            b"lease" => db.each_in(&header, &mut |k, v, _| {
                leases.push(LeaseRecord::decode_entry(k, v));
                Ok(())
            }),
            b"meta" => db.each_in(&header, &mut |k, v, _| {
                if let Err(e) = import.meta(k, v) {
                    meta_error.get_or_insert(e);
                }
                Ok(())
            }),
            _ => Ok(()),
        }
        .map_err(bad)?;
    }
    if let Some(e) = meta_error {
        return Err(fail(e.to_string()));
    }
    import.write(backend).map_err(|e| fail(e.to_string()))?;
    // etcd's `lease` rows (lease id i64 BE -> leasepb.Lease) are the records cairn's lessor keeps.
    let leases: Vec<LeaseRecord> =
        leases.into_iter().collect::<std::result::Result<_, _>>().map_err(|e| fail(e.to_string()))?;
    let rows: Vec<([u8; 8], Vec<u8>)> = leases.iter().map(|l| (record_key(l.id), l.encode_value())).collect();
    let mut tx = backend.begin_write().map_err(|e| fail(e.to_string()))?;
    tx.put_all(cairn_lease::record::TABLE, rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
        .and_then(|()| tx.commit(true))
        .map_err(|e| fail(e.to_string()))
}

/// The snapshot's members belong to the old cluster: the new cluster's replace them.
fn replace_members(backend: &Backend, cluster: &InitialCluster) -> Result<()> {
    let err = |e: cairn_storage::BackendError| fail(e.to_string());
    let mut old: Vec<(Table, Vec<u8>)> = Vec::new();
    let read = backend.begin_read().map_err(err)?;
    for table in [Table::Members, Table::MembersRemoved] {
        read.for_each(table, .., |k, _| {
            old.push((table, k.to_vec()));
            true
        })
        .map_err(err)?;
    }
    drop(read);
    let mut tx = backend.begin_write().map_err(err)?;
    for (table, key) in &old {
        tx.delete_all(*table, [key.as_slice()]).map_err(err)?;
    }
    for m in &cluster.members {
        let member = Member {
            id: m.id,
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            // Published by each member once it runs, as on a fresh bootstrap.
            client_ur_ls: Vec::new(),
            is_learner: false,
        };
        let (key, value) = member::member_row(&member);
        tx.put_all(Table::Members, [(key.as_slice(), value.as_slice())]).map_err(err)?;
    }
    tx.commit(true).map_err(err)
}

/// The member's WAL: its ids, a hard state committing the initial membership, and a snapshot marker at that
/// index carrying the voters, so raft starts right after the restored state.
fn write_wal(dir: &Path, member_id: u64, cluster: &InitialCluster, index: u64) -> Result<()> {
    let err = |e: cairn_storage::WalError| fail(e.to_string());
    let metadata = member::wal_metadata(member_id, cluster.id);
    let mut wal = Wal::create(dir, &metadata, WalOptions::default()).map_err(err)?;
    let voters: Vec<u64> = cluster.members.iter().map(|m| m.id).collect();
    let vote = voters.first().copied().unwrap_or(0);
    wal.save(Some(&HardState { term: TERM, vote, commit: index }), std::iter::empty::<EntryRef>())
        .map_err(err)?;
    wal.save_snapshot(SnapshotMarker { index, term: TERM, data: member::conf_state_data(&voters, &[]) })
        .map_err(err)?;
    wal.sync().map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn message(e: CtlError) -> String {
        match e {
            CtlError::Exit { message, .. } => message,
            CtlError::Verbatim { stderr, .. } => stderr,
        }
    }

    #[test]
    fn the_trailing_hash_is_checked_and_dropped_as_etcd_does() {
        let dir = tempfile::tempdir().unwrap();
        let (snap, out) = (dir.path().join("snap"), dir.path().join("out"));
        let body = vec![7u8; 1024];
        let mut with_hash = body.clone();
        with_hash.extend_from_slice(&Sha256::digest(&body));
        std::fs::write(&snap, &with_hash).unwrap();
        assert!(!copy_checked(&snap, &out, false).unwrap(), "not a bolt file");
        assert_eq!(std::fs::read(&out).unwrap(), body, "the hash is cut off");

        with_hash[0] ^= 1;
        std::fs::write(&snap, &with_hash).unwrap();
        let e = message(copy_checked(&snap, &out, false).unwrap_err());
        assert!(e.starts_with("expected sha256 ["), "{e}");
        copy_checked(&snap, &out, true).unwrap();

        std::fs::write(&snap, &body).unwrap();
        let e = message(copy_checked(&snap, &out, false).unwrap_err());
        assert_eq!(e, "snapshot missing hash but --skip-hash-check=false");
        copy_checked(&snap, &out, true).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), body, "without a hash the whole file is the backend");
        assert_eq!(go_bytes(&[0, 255, 3]), "[0 255 3]");
    }
}
