//! The write-ahead log: the source of truth for everything a member has promised (DESIGN.md, "Durability").
//!
//! # On-disk layout
//! A directory of segment files named `{seq:016x}-{first_index:016x}.wal` (etcd's naming): `seq` counts segments
//! from 0, `first_index` is the index the first entry written to the segment would have. Each segment is
//! preallocated to `segment_size` bytes (zeros) and holds a sequence of records (see `record`):
//!
//! ```text
//! record  = len: u32 LE | crc: u32 LE | type: u8 | body         (len counts type + body)
//! crc     = CRC32C(type | body) continued from the previous record's crc, across segments
//! types   = 1 Crc(prev crc: u32) | 2 Metadata(bytes) | 3 Entry(index u64, term u64, kind u8, data)
//!         | 4 HardState(term u64, vote u64, commit u64) | 5 Snapshot(index u64, term u64, data)
//! segment = Crc(previous segment's last crc) Metadata [HardState] [Snapshot] record*  zeros...
//! ```
//! A new segment repeats the newest hard state and snapshot marker, so deleting older segments loses neither.
//!
//! # Rules
//! - An entry whose index is at or below the last one replaces that suffix (a new leader overwrote it), also on
//!   replay.
//! - Group commit: `save` only encodes; `sync` writes everything saved since the last sync and fsyncs once.
//! - Zero-ahead: a segment is preallocated sparse (`set_len`), and the write that first reaches past the zeroed
//!   part also writes [`ZERO_AHEAD`] bytes of zeros after its records. Appends then land on blocks the file
//!   already has, so the fsync after them writes only data: allocating blocks at every fsync made it also write
//!   the inode (about 190 us a sync instead of 105 on our test VM's ext4, and a third more CPU).
//! - Torn tail: on open, an invalid record in the last segment followed only by zeros (or the end of the file)
//!   is a write cut short by a crash: the segment is truncated to the last valid record. An invalid record with
//!   anything else after it, or in an older segment, is corruption: `open` fails with [`WalError::Corrupt`].
//! - A failed write or fsync poisons the WAL: every later call fails, so nothing unsynced is ever acknowledged.

mod record;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use record::{read_at, Read, Record, HEADER_LEN};

/// A raft log entry as the WAL stores it (cairn-storage does not know raft's types).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    /// 0 normal, 1 conf change (the server's convention).
    pub kind: u8,
    pub data: Vec<u8>,
}

/// An entry to save, borrowed from wherever the caller keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub index: u64,
    pub term: u64,
    pub kind: u8,
    pub data: &'a [u8],
}

impl<'a> From<&'a Entry> for EntryRef<'a> {
    fn from(e: &'a Entry) -> Self {
        EntryRef { index: e.index, term: e.term, kind: e.kind, data: &e.data }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// "The state at (index, term) is saved elsewhere": entries up to `index` are no longer needed. `data` is
/// opaque (the server stores the membership there).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMarker {
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

/// Where a fault can be injected (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    Write,
    Sync,
}

/// Called before each write and fsync; an error is returned as if the disk had failed.
pub type FaultHook = Arc<dyn Fn(FaultPoint) -> io::Result<()> + Send + Sync>;

#[derive(Clone)]
pub struct WalOptions {
    pub segment_size: u64,
    pub fault: Option<FaultHook>,
}

impl Default for WalOptions {
    fn default() -> Self {
        // etcd's segment size.
        WalOptions { segment_size: 64 * 1024 * 1024, fault: None }
    }
}

impl std::fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalOptions").field("segment_size", &self.segment_size).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal: {context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("wal: corrupt: {0}")]
    Corrupt(String),
    #[error("wal: a previous write or fsync failed; the log refuses further writes")]
    Poisoned,
    #[error("wal: {0} already holds a WAL")]
    Exists(PathBuf),
    #[error("wal: no WAL in {0}")]
    NotFound(PathBuf),
}

/// How far ahead of the records a segment is filled with zeros (see "Zero-ahead" above).
const ZERO_AHEAD: u64 = 1024 * 1024;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> WalError {
    let context = context.into();
    move |source| WalError::Io { context, source }
}

/// What a WAL holds, read on open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalContents {
    pub metadata: Vec<u8>,
    pub hard_state: HardState,
    /// The newest snapshot marker, if any.
    pub snapshot: Option<SnapshotMarker>,
    /// Entries after the snapshot marker, in index order.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Segment {
    seq: u64,
    first_index: u64,
    path: PathBuf,
}

#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    metadata: Vec<u8>,
    file: File,
    /// Write position in the current segment.
    offset: u64,
    /// The current segment holds written blocks (records or zeros) up to here; past it, it may be sparse.
    zeroed: u64,
    crc: u32,
    /// Records saved but not yet written.
    buf: Vec<u8>,
    segments: Vec<Segment>,
    last_index: u64,
    hard_state: HardState,
    snapshot: Option<SnapshotMarker>,
    poisoned: bool,
}

fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, index) = stem.split_once('-')?;
    Some((u64::from_str_radix(seq, 16).ok()?, u64::from_str_radix(index, 16).ok()?))
}

fn list_segments(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
    };
    for entry in read {
        let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
        let name = entry.file_name();
        if let Some((seq, first_index)) = name.to_str().and_then(parse_segment_name) {
            segments.push(Segment { seq, first_index, path: entry.path() });
        }
    }
    segments.sort_by_key(|s| s.seq);
    for pair in segments.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(WalError::Corrupt(format!("segment {} follows {}", pair[1].seq, pair[0].seq)));
        }
    }
    Ok(segments)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(format!("syncing directory {}", dir.display())))
}

impl Wal {
    pub fn exists(dir: &Path) -> bool {
        list_segments(dir).is_ok_and(|s| !s.is_empty())
    }

    /// Creates a new WAL in `dir` (created if missing) carrying `metadata`.
    pub fn create(dir: &Path, metadata: &[u8], opts: WalOptions) -> Result<Wal, WalError> {
        if Wal::exists(dir) {
            return Err(WalError::Exists(dir.to_owned()));
        }
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let path = dir.join(segment_name(0, 0));
        let file = create_segment_file(&path, opts.segment_size)?;
        let mut wal = Wal {
            dir: dir.to_owned(),
            opts,
            metadata: metadata.to_vec(),
            file,
            offset: 0,
            zeroed: 0,
            crc: 0,
            buf: Vec::new(),
            segments: vec![Segment { seq: 0, first_index: 0, path }],
            last_index: 0,
            hard_state: HardState::default(),
            snapshot: None,
            poisoned: false,
        };
        wal.write_segment_header();
        wal.sync()?;
        sync_dir(dir)?;
        Ok(wal)
    }

    /// Opens the WAL in `dir`, repairing a torn tail, and returns what it holds.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, WalContents), WalError> {
        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            return Err(WalError::NotFound(dir.to_owned()));
        }
        let mut contents = WalContents::default();
        let mut crc = 0;
        let mut end_offset = 0;
        let mut metadata: Option<Vec<u8>> = None;
        let count = segments.len();
        let mut i = 0;
        while i < segments.len() {
            let seg = segments[i].clone();
            let is_last = i + 1 == segments.len();
            let buf = fs::read(&seg.path).map_err(io_err(format!("reading {}", seg.path.display())))?;
            if i == 0 {
                // The chain starts from the first kept segment's recorded crc (older segments may be released).
                crc = first_crc(&buf).unwrap_or(0);
            }
            let mut offset = 0;
            let mut records = 0;
            loop {
                match read_at(&buf, offset, crc) {
                    Read::Record(r, c, next) => {
                        apply_record(&mut contents, &mut metadata, r, records, &seg, crc)?;
                        crc = c;
                        offset = next;
                        records += 1;
                    }
                    Read::End => break,
                    Read::Bad { extent } => {
                        let rest_is_zero = buf[extent.min(buf.len())..].iter().all(|&b| b == 0);
                        if !(is_last && rest_is_zero) {
                            return Err(WalError::Corrupt(format!(
                                "invalid record at offset {offset} of {} followed by more data",
                                seg.path.display()
                            )));
                        }
                        tracing::warn!(segment = %seg.path.display(), offset, "repairing torn WAL tail");
                        truncate_tail(&seg.path, offset as u64, opts.segment_size)?;
                        break;
                    }
                }
            }
            if is_last && records == 0 && count > 1 {
                // A crash while starting this segment left no valid header: drop it, resume in the previous one.
                tracing::warn!(segment = %seg.path.display(), "removing a segment left empty by a crash");
                fs::remove_file(&seg.path).map_err(io_err(format!("removing {}", seg.path.display())))?;
                segments.pop();
                return Wal::open(dir, opts);
            }
            end_offset = offset;
            i += 1;
        }
        let metadata = metadata.ok_or_else(|| WalError::Corrupt("no metadata record".into()))?;
        contents.metadata.clone_from(&metadata);
        if let Some(s) = &contents.snapshot {
            contents.entries.retain(|e| e.index > s.index);
        }
        let last = segments.last().cloned().ok_or_else(|| WalError::NotFound(dir.to_owned()))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&last.path)
            .map_err(io_err(format!("opening {}", last.path.display())))?;
        let last_index = contents
            .entries
            .last()
            .map_or_else(|| contents.snapshot.as_ref().map_or(0, |s| s.index), |e| e.index);
        let wal = Wal {
            dir: dir.to_owned(),
            opts,
            metadata,
            file,
            offset: end_offset as u64,
            // What lies past the records may be sparse (a torn tail is cut with set_len).
            zeroed: end_offset as u64,
            crc,
            buf: Vec::new(),
            segments,
            last_index,
            hard_state: contents.hard_state,
            snapshot: contents.snapshot.clone(),
            poisoned: false,
        };
        Ok((wal, contents))
    }

    /// Queues entries (and the hard state) for the next [`Wal::sync`].
    pub fn save<'a, E: Into<EntryRef<'a>>>(
        &mut self,
        hard_state: Option<&HardState>,
        entries: impl IntoIterator<Item = E>,
    ) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        for e in entries {
            let e = e.into();
            self.crc = record::encode_entry(e, self.crc, &mut self.buf);
            self.last_index = e.index;
        }
        if let Some(hs) = hard_state {
            self.crc = Record::HardState(*hs).encode(self.crc, &mut self.buf);
            self.hard_state = *hs;
        }
        Ok(())
    }

    /// Queues a snapshot marker for the next [`Wal::sync`].
    pub fn save_snapshot(&mut self, marker: SnapshotMarker) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        self.crc = Record::Snapshot(marker.clone()).encode(self.crc, &mut self.buf);
        self.last_index = self.last_index.max(marker.index);
        self.snapshot = Some(marker);
        Ok(())
    }

    /// Writes everything saved since the last sync and fsyncs once (group commit).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.write_and_sync() {
            self.poisoned = true;
            return Err(e);
        }
        if self.offset >= self.opts.segment_size {
            if let Err(e) = self.roll() {
                self.poisoned = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes whole segments holding only entries below `index` (already covered by a snapshot).
    pub fn release_to(&mut self, index: u64) -> Result<(), WalError> {
        let keep_from = self.segments.windows(2).take_while(|w| w[1].first_index <= index).count();
        for seg in self.segments.drain(..keep_from) {
            fs::remove_file(&seg.path).map_err(io_err(format!("removing {}", seg.path.display())))?;
        }
        if keep_from > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Number of segment files (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn write_and_sync(&mut self) -> Result<(), WalError> {
        if let Some(fault) = &self.opts.fault {
            fault(FaultPoint::Write).map_err(io_err("writing records"))?;
        }
        self.file.write_all_at(&self.buf, self.offset).map_err(io_err("writing records"))?;
        let end = self.offset + self.buf.len() as u64;
        self.offset = end;
        self.buf.clear();
        if end > self.zeroed {
            let target = (end + ZERO_AHEAD).next_multiple_of(4096).min(self.opts.segment_size);
            if target > end {
                // Once per ZERO_AHEAD bytes of records; the next fsync writes these blocks with the records.
                let zeros = vec![0u8; (target - end) as usize];
                self.file.write_all_at(&zeros, end).map_err(io_err("zeroing ahead of the records"))?;
            }
            self.zeroed = target.max(end);
        }
        if let Some(fault) = &self.opts.fault {
            fault(FaultPoint::Sync).map_err(io_err("fsync"))?;
        }
        self.file.sync_data().map_err(io_err("fsync"))
    }

    fn write_segment_header(&mut self) {
        self.crc = Record::Crc(self.crc).encode(self.crc, &mut self.buf);
        self.crc = Record::Metadata(self.metadata.clone()).encode(self.crc, &mut self.buf);
        if self.hard_state != HardState::default() {
            self.crc = Record::HardState(self.hard_state).encode(self.crc, &mut self.buf);
        }
        if let Some(s) = self.snapshot.clone() {
            self.crc = Record::Snapshot(s).encode(self.crc, &mut self.buf);
        }
    }

    /// Starts the next segment.
    fn roll(&mut self) -> Result<(), WalError> {
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let first_index = self.last_index + 1;
        let path = self.dir.join(segment_name(seq, first_index));
        self.file = create_segment_file(&path, self.opts.segment_size)?;
        self.offset = 0;
        self.zeroed = 0;
        self.segments.push(Segment { seq, first_index, path });
        self.write_segment_header();
        self.write_and_sync()?;
        sync_dir(&self.dir)
    }
}

fn create_segment_file(path: &Path, size: u64) -> Result<File, WalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    // Preallocate: appends then rarely change the file size, so fsync need not flush metadata.
    file.set_len(size).map_err(io_err(format!("preallocating {}", path.display())))?;
    Ok(file)
}

/// Cuts a torn tail: zeros from `offset` on, keeping the preallocated size.
fn truncate_tail(path: &Path, offset: u64, size: u64) -> Result<(), WalError> {
    let file =
        OpenOptions::new().write(true).open(path).map_err(io_err(format!("opening {}", path.display())))?;
    file.set_len(offset).map_err(io_err(format!("truncating {}", path.display())))?;
    file.set_len(size.max(offset)).map_err(io_err(format!("preallocating {}", path.display())))?;
    file.sync_all().map_err(io_err(format!("syncing {}", path.display())))
}

/// The crc a segment's leading Crc record carries.
fn first_crc(buf: &[u8]) -> Option<u32> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    match Record::decode(buf.get(HEADER_LEN..HEADER_LEN + len)?)? {
        Record::Crc(c) => Some(c),
        _ => None,
    }
}

fn apply_record(
    contents: &mut WalContents,
    metadata: &mut Option<Vec<u8>>,
    record: Record,
    position: usize,
    seg: &Segment,
    chain: u32,
) -> Result<(), WalError> {
    match record {
        Record::Crc(c) => {
            if position != 0 || c != chain {
                return Err(WalError::Corrupt(format!(
                    "crc chain broken at the start of {}",
                    seg.path.display()
                )));
            }
        }
        Record::Metadata(m) => match metadata {
            Some(existing) if *existing != m => {
                return Err(WalError::Corrupt(format!("metadata changes in {}", seg.path.display())));
            }
            Some(_) => {}
            None => *metadata = Some(m),
        },
        Record::Entry(e) => {
            if let Some(pos) = contents.entries.iter().position(|x| x.index >= e.index) {
                contents.entries.truncate(pos);
            }
            if let Some(last) = contents.entries.last() {
                if e.index != last.index + 1 {
                    return Err(WalError::Corrupt(format!("entry {} follows {}", e.index, last.index)));
                }
            }
            contents.entries.push(e);
        }
        Record::HardState(h) => contents.hard_state = h,
        Record::Snapshot(s) => {
            if contents.snapshot.as_ref().is_none_or(|old| s.index >= old.index) {
                // The snapshot covers everything up to its index: a follower that installed one from the
                // leader has older entries (a gap before it), and its log goes on right after the marker.
                contents.entries.retain(|e| e.index > s.index);
                contents.snapshot = Some(s);
            }
        }
    }
    Ok(())
}
