//! The WAL as a crash would leave it: torn tails at every byte, flipped bits, failing fsyncs, many segments.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_storage::wal::{Entry, FaultPoint, HardState, SnapshotMarker};
use cairn_storage::{Wal, WalError, WalOptions};
use proptest::prelude::*;

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, kind: 0, data: format!("entry-{index}-{term}").into_bytes() }
}

fn small() -> WalOptions {
    WalOptions { segment_size: 4096, fault: None }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn only_segment(dir: &Path) -> PathBuf {
    let files = segments(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn what_is_synced_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"node-1", WalOptions::default()).unwrap();
    let hs = HardState { term: 2, vote: 1, commit: 3 };
    wal.save(Some(&hs), &[entry(1, 1), entry(2, 1), entry(3, 2)]).unwrap();
    wal.sync().unwrap();
    wal.save(None, &[entry(4, 2)]).unwrap(); // never synced: lost with the process
    drop(wal);
    let (_, contents) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(contents.metadata, b"node-1");
    assert_eq!(contents.hard_state, hs);
    assert_eq!(contents.entries, vec![entry(1, 1), entry(2, 1), entry(3, 2)]);
    assert!(matches!(Wal::create(dir.path(), b"x", WalOptions::default()), Err(WalError::Exists(_))));
}

#[test]
fn a_later_entry_at_a_lower_index_replaces_the_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m", WalOptions::default()).unwrap();
    wal.save(None, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>()).unwrap();
    wal.save(None, &[entry(3, 2), entry(4, 2)]).unwrap();
    wal.sync().unwrap();
    let (_, c) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(c.entries, vec![entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]);
}

#[test]
fn a_tail_torn_at_any_byte_is_repaired_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m", small()).unwrap();
    wal.save(None, &[entry(1, 1), entry(2, 1)]).unwrap();
    wal.sync().unwrap();
    let before_last = fs::read(only_segment(dir.path())).unwrap();
    wal.save(None, &[entry(3, 1)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let seg = only_segment(dir.path());
    let full = fs::read(&seg).unwrap();
    let start = before_last.iter().rposition(|&b| b != 0).unwrap() + 1;
    let end = full.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(end > start);
    for cut in start..end {
        let copy = tempfile::tempdir().unwrap();
        let path = copy.path().join(seg.file_name().unwrap());
        let mut torn = full.clone();
        torn[cut..].iter_mut().for_each(|b| *b = 0);
        fs::write(&path, &torn).unwrap();
        let (mut wal, c) = Wal::open(copy.path(), small()).unwrap();
        assert_eq!(c.entries, vec![entry(1, 1), entry(2, 1)], "cut at {cut}");
        // The repaired log takes new writes where the torn record was.
        wal.save(None, &[entry(3, 2)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, c) = Wal::open(copy.path(), small()).unwrap();
        assert_eq!(c.entries.last(), Some(&entry(3, 2)), "cut at {cut}");
    }
}

#[test]
fn a_damaged_older_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m", small()).unwrap();
    for i in 1..=300 {
        wal.save(None, &[entry(i, 1)]).unwrap();
        wal.sync().unwrap();
    }
    drop(wal);
    assert!(segments(dir.path()).len() > 1);
    let first = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&first).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[end] ^= 0x01;
    fs::write(&first, &bytes).unwrap();
    let r = Wal::open(dir.path(), small());
    assert!(matches!(r, Err(WalError::Corrupt(_))), "{:?}", r.map(|(_, c)| c.entries.len()));
}

#[test]
fn a_bit_flip_in_the_tail_is_repaired_but_in_the_middle_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m", WalOptions::default()).unwrap();
    for i in 1..=3 {
        wal.save(None, &[entry(i, 1)]).unwrap();
        wal.sync().unwrap();
    }
    drop(wal);
    let seg = only_segment(dir.path());
    let good = fs::read(&seg).unwrap();
    let end = good.iter().rposition(|&b| b != 0).unwrap();

    let mut tail = good.clone();
    tail[end] ^= 0x01;
    fs::write(&seg, &tail).unwrap();
    let (_, c) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(c.entries, vec![entry(1, 1), entry(2, 1)]);

    let mut middle = good.clone();
    let pos = good.windows(9).position(|w| w == b"entry-1-1").unwrap();
    middle[pos] ^= 0x01;
    fs::write(&seg, &middle).unwrap();
    assert!(matches!(Wal::open(dir.path(), WalOptions::default()), Err(WalError::Corrupt(_))));
}

#[test]
fn segments_roll_and_release_keeps_state_and_later_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m", small()).unwrap();
    for i in 1..=200 {
        wal.save(Some(&HardState { term: 1, vote: 1, commit: i }), &[entry(i, 1)]).unwrap();
        wal.sync().unwrap();
    }
    assert!(wal.segment_count() > 3, "{} segments", wal.segment_count());
    wal.save_snapshot(SnapshotMarker { index: 150, term: 1, data: b"membership".to_vec() }).unwrap();
    wal.sync().unwrap();
    let before = wal.segment_count();
    wal.release_to(150).unwrap();
    assert!(wal.segment_count() < before);
    drop(wal);
    let (_, c) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(c.hard_state.commit, 200);
    assert_eq!(c.snapshot.as_ref().map(|s| (s.index, s.data.as_slice())), Some((150, &b"membership"[..])));
    assert_eq!(c.entries, (151..=200).map(|i| entry(i, 1)).collect::<Vec<_>>());
}

#[test]
fn a_snapshot_marker_past_the_last_entry_starts_the_log_anew() {
    // A follower far behind installs the leader's snapshot at 100, then appends from 101.
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m", small()).unwrap();
    wal.save(None, &[entry(1, 1), entry(2, 1)]).unwrap();
    wal.save_snapshot(SnapshotMarker { index: 100, term: 2, data: Vec::new() }).unwrap();
    wal.save(Some(&HardState { term: 2, vote: 0, commit: 101 }), &[entry(101, 2)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, c) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(c.snapshot.map(|s| s.index), Some(100));
    assert_eq!(c.entries, vec![entry(101, 2)]);
}

#[test]
fn a_failed_fsync_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&fail);
    let opts = WalOptions {
        segment_size: 1 << 20,
        fault: Some(Arc::new(move |point| {
            if point == FaultPoint::Sync && f.load(Ordering::SeqCst) {
                Err(io::Error::other("injected fsync failure"))
            } else {
                Ok(())
            }
        })),
    };
    let mut wal = Wal::create(dir.path(), b"m", opts).unwrap();
    wal.save(None, &[entry(1, 1)]).unwrap();
    wal.sync().unwrap();
    fail.store(true, Ordering::SeqCst);
    wal.save(None, &[entry(2, 1)]).unwrap();
    assert!(matches!(wal.sync(), Err(WalError::Io { .. })));
    fail.store(false, Ordering::SeqCst);
    assert!(matches!(wal.save(None, &[entry(3, 1)]), Err(WalError::Poisoned)));
    assert!(matches!(wal.sync(), Err(WalError::Poisoned)));
}

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` entries at `term`, starting `back` entries before the end (overwriting them).
    Save {
        n: u8,
        back: u8,
        term: u8,
    },
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..5, 0u8..3, 1u8..4).prop_map(|(n, back, term)| Op::Save { n, back, term }),
        3 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn wal_matches_a_model_across_reopens(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions { segment_size: 2048, fault: None };
        let mut wal = Wal::create(dir.path(), b"m", opts.clone()).unwrap();
        let mut synced: Vec<Entry> = Vec::new();
        let mut pending: Vec<Entry> = Vec::new();
        for op in ops {
            match op {
                Op::Save { n, back, term } => {
                    let last = pending.last().map_or(0, |e| e.index);
                    let first = (last + 1).saturating_sub(u64::from(back)).max(1);
                    let es: Vec<Entry> = (first..first + u64::from(n)).map(|i| entry(i, u64::from(term))).collect();
                    wal.save(None, &es).unwrap();
                    pending.retain(|e| e.index < first);
                    pending.extend(es);
                }
                Op::Sync => {
                    wal.sync().unwrap();
                    synced.clone_from(&pending);
                }
                Op::Reopen => {
                    drop(wal);
                    let (w, c) = Wal::open(dir.path(), opts.clone()).unwrap();
                    prop_assert_eq!(&c.entries, &synced);
                    wal = w;
                    pending.clone_from(&synced);
                }
            }
        }
    }
}

/// Blocks the file has on disk, in bytes.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn appends_land_on_blocks_zeroed_ahead_of_them() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m", WalOptions::default()).unwrap();
    let seg = only_segment(dir.path());
    assert!(allocated(&seg) >= MIB, "the header's sync zeroes ahead: {} bytes", allocated(&seg));
    assert!(allocated(&seg) < 4 * MIB, "{} bytes allocated", allocated(&seg));
    let big = |i| Entry { index: i, term: 1, kind: 0, data: vec![7; 64 * 1024] };
    // 2.5 MiB of records: the frontier moves ahead of them, a MiB at a time.
    for i in 1..=40 {
        wal.save(None, &[big(i)]).unwrap();
        wal.sync().unwrap();
        // Each record is its data and 26 bytes of framing (the segment's header comes on top).
        let written = i * (64 * 1024 + 26);
        let ahead = allocated(&seg) as i64 - written as i64;
        assert!(
            ahead > 0 && ahead < 16 * MIB as i64,
            "after {i}: {ahead} bytes allocated past the records (not the whole segment at once)"
        );
    }
    drop(wal);
    // The zeros read as the end of the log, and appends after a reopen go on from the last record.
    let (mut wal, c) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(c.entries.len(), 40);
    wal.save(None, &[entry(41, 1)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, c) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(c.entries.last(), Some(&entry(41, 1)));
    assert_eq!(c.entries.len(), 41);
}

#[test]
fn zeroing_ahead_stops_at_the_segment_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m", small()).unwrap();
    wal.save(None, &[entry(1, 1)]).unwrap();
    wal.sync().unwrap();
    let seg = only_segment(dir.path());
    assert_eq!(fs::metadata(&seg).unwrap().len(), 4096);
}
