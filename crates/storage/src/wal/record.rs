//! WAL record framing: `len: u32 LE | crc: u32 LE | type: u8 | body`, where `len` counts `type` and `body` and
//! `crc` is CRC32C over `type | body` continued from the previous record's crc (the chain spans segments).
//! A zero `len` marks the end of the written part of a preallocated segment.

use super::{Entry, EntryRef, HardState, SnapshotMarker};

pub const HEADER_LEN: usize = 8;
/// No record is larger: a longer length field is corruption, never an allocation.
pub const MAX_RECORD_LEN: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The previous segment's final crc, first in every segment: checks the chain across files.
    Crc(u32),
    /// The WAL's metadata (node and cluster ids), second in every segment.
    Metadata(Vec<u8>),
    Entry(Entry),
    HardState(HardState),
    Snapshot(SnapshotMarker),
}

const CRC: u8 = 1;
const METADATA: u8 = 2;
const ENTRY: u8 = 3;
const HARD_STATE: u8 = 4;
const SNAPSHOT: u8 = 5;

impl Record {
    /// Appends the framed record to `buf`, continuing the crc chain from `prev_crc`; returns the new crc.
    pub fn encode(&self, prev_crc: u32, buf: &mut Vec<u8>) -> u32 {
        match self {
            Record::Crc(c) => frame(prev_crc, buf, CRC, |b| b.extend_from_slice(&c.to_le_bytes())),
            Record::Metadata(m) => frame(prev_crc, buf, METADATA, |b| b.extend_from_slice(m)),
            Record::Entry(e) => encode_entry(EntryRef::from(e), prev_crc, buf),
            Record::HardState(h) => frame(prev_crc, buf, HARD_STATE, |b| {
                for v in [h.term, h.vote, h.commit] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }),
            Record::Snapshot(s) => frame(prev_crc, buf, SNAPSHOT, |b| {
                b.extend_from_slice(&s.index.to_le_bytes());
                b.extend_from_slice(&s.term.to_le_bytes());
                b.extend_from_slice(&s.data);
            }),
        }
    }

    /// Decodes a record payload (`type | body`); None if malformed.
    pub fn decode(payload: &[u8]) -> Option<Record> {
        let (&kind, body) = payload.split_first()?;
        let u64_at = |i: usize| body.get(i..i + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        Some(match kind {
            CRC => Record::Crc(u32::from_le_bytes(body.try_into().ok()?)),
            METADATA => Record::Metadata(body.to_vec()),
            ENTRY => Record::Entry(Entry {
                index: u64_at(0)?,
                term: u64_at(8)?,
                kind: *body.get(16)?,
                data: body[17..].to_vec(),
            }),
            HARD_STATE if body.len() == 24 => {
                Record::HardState(HardState { term: u64_at(0)?, vote: u64_at(8)?, commit: u64_at(16)? })
            }
            SNAPSHOT => Record::Snapshot(SnapshotMarker {
                index: u64_at(0)?,
                term: u64_at(8)?,
                data: body.get(16..)?.to_vec(),
            }),
            _ => return None,
        })
    }
}

/// The result of reading one record at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A valid record, its crc, and the offset after it.
    Record(Record, u32, usize),
    /// Zero length: nothing was written here.
    End,
    /// Not a valid record (truncated, bad length, bad crc or undecodable); `extent` is where its bytes end as far
    /// as its length field can be trusted.
    Bad { extent: usize },
}

pub fn read_at(buf: &[u8], offset: usize, prev_crc: u32) -> Read {
    let Some(header) = buf.get(offset..offset + HEADER_LEN) else {
        return if buf[offset.min(buf.len())..].iter().all(|&b| b == 0) {
            Read::End
        } else {
            Read::Bad { extent: buf.len() }
        };
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 && crc == 0 {
        return Read::End;
    }
    let start = offset + HEADER_LEN;
    if len == 0 || len > MAX_RECORD_LEN || start + len > buf.len() {
        return Read::Bad { extent: buf.len() };
    }
    let payload = &buf[start..start + len];
    if crc32c::crc32c_append(prev_crc, payload) != crc {
        return Read::Bad { extent: start + len };
    }
    match Record::decode(payload) {
        Some(r) => Read::Record(r, crc, start + len),
        None => Read::Bad { extent: start + len },
    }
}

/// Appends an entry record without copying its data first (the WAL's hot path).
pub fn encode_entry(e: EntryRef<'_>, prev_crc: u32, buf: &mut Vec<u8>) -> u32 {
    frame(prev_crc, buf, ENTRY, |b| {
        b.extend_from_slice(&e.index.to_le_bytes());
        b.extend_from_slice(&e.term.to_le_bytes());
        b.push(e.kind);
        b.extend_from_slice(e.data);
    })
}

/// Appends `len | crc | kind | body` (the body written by `body`) and returns the new crc.
fn frame(prev_crc: u32, buf: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) -> u32 {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    buf.push(kind);
    body(buf);
    let payload = &buf[start + HEADER_LEN..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c_append(prev_crc, payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_type_round_trips_and_chains() {
        let records = [
            Record::Crc(7),
            Record::Metadata(b"meta".to_vec()),
            Record::Entry(Entry { index: 3, term: 2, kind: 1, data: b"payload".to_vec() }),
            Record::HardState(HardState { term: 2, vote: 1, commit: 3 }),
            Record::Snapshot(SnapshotMarker { index: 9, term: 4, data: b"cs".to_vec() }),
        ];
        let mut buf = Vec::new();
        let mut crc = 0;
        for r in &records {
            crc = r.encode(crc, &mut buf);
        }
        let (mut offset, mut crc) = (0, 0);
        for r in &records {
            match read_at(&buf, offset, crc) {
                Read::Record(got, c, next) => {
                    assert_eq!(&got, r);
                    crc = c;
                    offset = next;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(read_at(&buf, offset, crc), Read::End);
        assert!(matches!(read_at(&buf, 0, 12345), Read::Bad { .. }), "a broken chain is detected");
    }

    #[test]
    fn absurd_lengths_are_bad_records_not_allocations() {
        let mut buf = vec![0xffu8; 16];
        buf[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_at(&buf, 0, 0), Read::Bad { .. }));
    }
}
