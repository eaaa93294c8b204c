//! The in-memory index from user keys to their revisions, as etcd's `key_index.go` and `index.go`.
//!
//! A key's history is a list of generations: a generation starts with the put that creates the key and ends with
//! the tombstone that deletes it; the last generation is empty while the key is deleted. Values live in the
//! backend under their revision; the index only says which revision of a key is visible at a given revision.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::revision::Revision;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    /// Number of puts in this generation so far (the tombstone counts too, as in etcd).
    ver: i64,
    created: Revision,
    revs: Vec<Revision>,
}

/// One key's generations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    modified: Revision,
    generations: Vec<Generation>,
    /// The lease of the key's newest value (0 while deleted), so a put learns the lease it replaces without
    /// reading the value (etcd asks its lessor).
    lease: i64,
}

/// What a key looks like at a revision: the revision holding its value, its creation and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

impl KeyIndex {
    fn put(&mut self, rev: Revision) {
        debug_assert!(rev > self.modified, "revisions of a key only grow: {rev:?} after {:?}", self.modified);
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[last];
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Rebuilds from a stored key-value: creation, version and lease come from the value, not from counting.
    fn restore_put(&mut self, rev: Revision, created_main: i64, version: i64, lease: i64) {
        self.put(rev);
        self.lease = lease;
        let last = self.generations.len() - 1;
        let g = &mut self.generations[last];
        if g.revs.len() == 1 {
            g.created = Revision::new(created_main, 0);
        }
        g.ver = version;
    }

    /// Ends the current generation. False if the key is not alive.
    fn tombstone(&mut self, rev: Revision) -> bool {
        if self.generations.last().is_none_or(|g| g.revs.is_empty()) {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        self.lease = 0;
        true
    }

    fn put_with_lease(&mut self, rev: Revision, lease: Option<i64>) -> Option<(KeyAt, i64)> {
        let before = self.current();
        self.put(rev);
        self.lease = lease.unwrap_or(before.map_or(0, |(_, l)| l));
        before
    }

    /// The key's newest state and lease, if it is alive.
    fn current(&self) -> Option<(KeyAt, i64)> {
        let g = self.generations.last().filter(|g| !g.revs.is_empty())?;
        Some((KeyAt { modified: self.modified, created: g.created, version: g.ver }, self.lease))
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let Some(first) = g.revs.first() else { continue };
            if i != last {
                let tomb = g.revs[g.revs.len() - 1].main;
                if tomb <= at {
                    return None;
                }
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The key as of revision `at`, if it existed then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.find_generation(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        let newer = i64::try_from(g.revs.len() - n - 1).ok()?;
        Some(KeyAt { modified: g.revs[n], created: g.created, version: g.ver - newer })
    }

    /// Drops history older than `at`, keeping what a read at `at` still needs; the kept revisions at or below
    /// `at` go into `available` (etcd's keyIndex.compact).
    fn compact(&mut self, at: i64, available: &mut HashSet<Revision>) {
        let mut gen_idx = 0;
        while gen_idx < self.generations.len() - 1 {
            let g = &self.generations[gen_idx];
            if g.revs.last().is_some_and(|tomb| tomb.main > at) {
                break;
            }
            gen_idx += 1;
        }
        let is_last = gen_idx == self.generations.len() - 1;
        let g = &mut self.generations[gen_idx];
        if let Some(keep_from) = g.revs.iter().rposition(|r| r.main <= at) {
            available.insert(g.revs[keep_from]);
            g.revs.drain(..keep_from);
            // A generation left holding only its tombstone is gone for good.
            if g.revs.len() == 1 && !is_last {
                available.remove(&g.revs[0]);
                gen_idx += 1;
            }
        }
        self.generations.drain(..gen_idx);
    }

    fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }
}

/// Which keys a request names, with etcd's conventions already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// Exactly one key (empty range_end).
    Single(&'a [u8]),
    /// `[start, end)`; `end` None means unbounded (range_end "\0").
    Range { start: &'a [u8], end: Option<&'a [u8]> },
}

impl<'a> KeyRange<'a> {
    /// etcd's reading of (key, range_end): empty end is one key, "\0" is every key >= key.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::Range { start: key, end: None },
            end => KeyRange::Range { start: key, end: Some(end) },
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeyRange::Single(k) => k == key,
            KeyRange::Range { start, end } => key >= start && end.is_none_or(|e| key < e),
        }
    }
}

/// Bytes of a key kept inside the index's own tree nodes.
const INLINE: usize = 22;

/// A key as the index holds it: up to [`INLINE`] bytes inline, so a lookup compares the keys of a tree node
/// without loading another cache line for each (with 100,000 heap-held keys that was most of a put's index
/// walk); longer keys on the heap. Ordered, compared and borrowed as its bytes. The same 24 bytes as a `Vec`.
#[derive(Clone)]
enum IndexKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl IndexKey {
    fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..key.len()].copy_from_slice(key);
                IndexKey::Inline { len, bytes }
            }
            _ => IndexKey::Heap(key.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            IndexKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IndexKey::Heap(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IndexKey {}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexKey {
    /// Byte order. Two inline keys compare as their zero-padded arrays, eight bytes at a time, then by length
    /// (a key sorts before the same key with zeros appended): no call to memcmp in a tree walk.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (IndexKey::Inline { len: la, bytes: a }, IndexKey::Inline { len: lb, bytes: b }) => {
                words(a).cmp(&words(b)).then(la.cmp(lb))
            }
            _ => self.as_bytes().cmp(other.as_bytes()),
        }
    }
}

/// An inline key's padded bytes as big-endian words: comparing them compares the bytes.
fn words(b: &[u8; INLINE]) -> [u64; 3] {
    let mut last = [0; 8];
    last[..INLINE - 16].copy_from_slice(&b[16..]);
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_be_bytes(w)
    };
    [word(0), word(8), u64::from_be_bytes(last)]
}

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Every key's index, ordered by key.
#[derive(Debug, Default)]
pub struct TreeIndex {
    keys: BTreeMap<IndexKey, KeyIndex>,
}

impl TreeIndex {
    /// Records a put of `key` at `rev` with `lease` (None: the key keeps its lease) and returns the key's state
    /// and lease before it, if it was alive: one walk of the index for what a put needs to know.
    pub fn put(&mut self, key: &[u8], rev: Revision, lease: Option<i64>) -> Option<(KeyAt, i64)> {
        if key.len() > INLINE {
            if let Some(ki) = self.keys.get_mut(key) {
                return ki.put_with_lease(rev, lease);
            }
        }
        // A short key walks the tree as an inline key (the cheap comparison), and is inserted as one if new.
        self.keys.entry(IndexKey::new(key)).or_default().put_with_lease(rev, lease)
    }

    /// The key's newest state and lease, if it is alive.
    pub fn current(&self, key: &[u8]) -> Option<(KeyAt, i64)> {
        self.keys.get(key)?.current()
    }

    pub fn restore_put(&mut self, key: &[u8], rev: Revision, created_main: i64, version: i64, lease: i64) {
        self.keys.entry(IndexKey::new(key)).or_default().restore_put(rev, created_main, version, lease);
    }

    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// Restores a tombstone read from the backend; a key whose earlier history was compacted away starts empty.
    pub fn restore_tombstone(&mut self, key: &[u8], rev: Revision) {
        let ki = self.keys.entry(IndexKey::new(key)).or_default();
        if !ki.tombstone(rev) {
            // Only the tombstone survived compaction: nothing is visible before or after it.
            if ki.generations.is_empty() {
                ki.generations.push(Generation::default());
            }
            ki.modified = rev;
        }
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// Calls `f` for every key in `range` alive at `at`, in key order, until `f` returns false.
    pub fn visit(&self, range: KeyRange<'_>, at: i64, mut f: impl FnMut(&[u8], KeyAt) -> bool) {
        match range {
            KeyRange::Single(key) => {
                if let Some(k) = self.get(key, at) {
                    f(key, k);
                }
            }
            KeyRange::Range { start, end } => {
                if end.is_some_and(|e| e <= start) {
                    return;
                }
                let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                for (key, ki) in self.keys.range::<[u8], _>((Bound::Included(start), upper)) {
                    if let Some(k) = ki.get(at) {
                        if !f(key.as_bytes(), k) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Every live key with a lease, and the lease.
    pub fn leased_keys(&self) -> Vec<(Vec<u8>, i64)> {
        self.keys
            .iter()
            .filter_map(|(k, ki)| {
                ki.current().filter(|(_, lease)| *lease != 0).map(|(_, l)| (k.as_bytes().to_vec(), l))
            })
            .collect()
    }

    /// The revisions a compaction at `at` would keep, without compacting (etcd's `Keep`): each live key's
    /// newest revision at or below `at`.
    pub fn keep(&self, at: i64) -> HashSet<Revision> {
        self.keys.values().filter_map(|ki| ki.get(at)).map(|k| k.modified).collect()
    }

    /// Compacts every key at `at`; returns the revisions at or below `at` that must stay in the backend.
    pub fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut available);
            !ki.is_empty()
        });
        available
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// etcd's key_index_test shape: foo put at 2, 4, 6(tomb); 8, 10, 12(tomb); 14, 16.
    fn history() -> TreeIndex {
        let mut t = TreeIndex::default();
        for (main, tomb) in
            [(2, false), (4, false), (6, true), (8, false), (10, false), (12, true), (14, false), (16, false)]
        {
            if tomb {
                assert!(t.tombstone(b"foo", rev(main)));
            } else {
                t.put(b"foo", rev(main), None);
            }
        }
        t
    }

    #[test]
    fn get_sees_the_generation_alive_at_the_revision() {
        let t = history();
        assert_eq!(t.get(b"foo", 1), None);
        assert_eq!(t.get(b"foo", 3), Some(KeyAt { modified: rev(2), created: rev(2), version: 1 }));
        assert_eq!(t.get(b"foo", 5), Some(KeyAt { modified: rev(4), created: rev(2), version: 2 }));
        assert_eq!(t.get(b"foo", 6), None, "deleted at 6");
        assert_eq!(t.get(b"foo", 7), None);
        assert_eq!(t.get(b"foo", 11), Some(KeyAt { modified: rev(10), created: rev(8), version: 2 }));
        assert_eq!(t.get(b"foo", 13), None);
        assert_eq!(t.get(b"foo", 100), Some(KeyAt { modified: rev(16), created: rev(14), version: 2 }));
    }

    #[test]
    fn compaction_keeps_what_reads_at_or_after_it_need() {
        let mut t = history();
        let available = t.compact(5);
        assert_eq!(available, HashSet::from([rev(4)]));
        assert_eq!(t.get(b"foo", 5).map(|k| k.modified), Some(rev(4)));

        let available = t.compact(7);
        assert!(
            available.is_empty(),
            "a generation ended by a tombstone at or below 7 is dropped: {available:?}"
        );
        assert_eq!(t.get(b"foo", 9).map(|k| k.modified), Some(rev(8)));

        let available = t.compact(16);
        assert_eq!(available, HashSet::from([rev(16)]));
        assert_eq!(t.get(b"foo", 16), Some(KeyAt { modified: rev(16), created: rev(14), version: 2 }));
    }

    #[test]
    fn a_deleted_key_leaves_the_index_once_compacted_past_its_tombstone() {
        let mut t = TreeIndex::default();
        t.put(b"a", rev(1), None);
        assert!(t.tombstone(b"a", rev(2)));
        assert!(!t.tombstone(b"a", rev(3)), "already deleted");
        assert!(t.compact(2).is_empty());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn visit_walks_ranges_in_key_order_and_honours_bounds() {
        let mut t = TreeIndex::default();
        for (i, k) in [&b"a"[..], b"b", b"c", b"d"].iter().enumerate() {
            t.put(k, rev(i as i64 + 1), None);
        }
        let keys = |range| {
            let mut out = Vec::new();
            t.visit(range, 10, |k, _| {
                out.push(k.to_vec());
                true
            });
            out
        };
        assert_eq!(keys(KeyRange::new(b"b", b"d")), vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(keys(KeyRange::new(b"b", b"\0")).len(), 3);
        assert_eq!(keys(KeyRange::new(b"c", b"")), vec![b"c".to_vec()]);
        assert!(keys(KeyRange::new(b"d", b"a")).is_empty(), "end before start is empty, not a panic");
        assert!(keys(KeyRange::new(b"x", b"")).is_empty());
    }

    #[test]
    fn restore_takes_creation_and_version_from_the_stored_value() {
        let mut t = TreeIndex::default();
        t.restore_put(b"k", rev(9), 3, 4, 7);
        assert_eq!(t.get(b"k", 9), Some(KeyAt { modified: rev(9), created: rev(3), version: 4 }));
        assert_eq!(t.current(b"k").map(|(_, lease)| lease), Some(7));
        t.put(b"k", rev(10), None);
        assert_eq!(t.get(b"k", 10), Some(KeyAt { modified: rev(10), created: rev(3), version: 5 }));
        assert_eq!(t.current(b"k").map(|(_, lease)| lease), Some(7), "a put without a lease keeps it");
    }

    #[test]
    fn keys_order_as_their_bytes_inline_or_not() {
        let long = vec![b'a'; INLINE + 1];
        let mut keys: Vec<&[u8]> = vec![b"b", b"", &long, b"a", b"a\0", &long[..INLINE], b"\xff"];
        let mut index = TreeIndex::default();
        for (i, k) in keys.iter().enumerate() {
            index.put(k, rev(i as i64 + 1), None);
        }
        keys.sort();
        let mut seen = Vec::new();
        index.visit(KeyRange::Range { start: b"", end: None }, 100, |k, _| {
            seen.push(k.to_vec());
            true
        });
        assert_eq!(seen, keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>());
        assert!(matches!(IndexKey::new(&long[..INLINE]), IndexKey::Inline { .. }));
        assert!(matches!(IndexKey::new(&long), IndexKey::Heap(_)));
        assert_eq!(index.get(&long, 100).map(|k| k.modified), Some(rev(3)));
        assert_eq!(std::mem::size_of::<IndexKey>(), std::mem::size_of::<Vec<u8>>());
    }

    #[test]
    fn inline_keys_compare_as_their_bytes() {
        // Short keys from a few telling bytes, and the same with prefixes around the word boundaries.
        let alphabet = [0u8, 1, 0x7f, 0x80, 0xff];
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=3 {
            let mut next = Vec::new();
            for k in keys.iter().filter(|k| k.len() == len - 1) {
                for b in alphabet {
                    let mut k = k.clone();
                    k.push(b);
                    next.push(k);
                }
            }
            keys.extend(next);
        }
        let short = keys.clone();
        for prefix in [5, 7, 8, 13, 16, 19, 20] {
            for k in &short {
                let mut long = vec![b'p'; prefix];
                long.extend_from_slice(k);
                keys.push(long);
            }
        }
        for a in &keys {
            for b in &keys {
                let (ka, kb) = (IndexKey::new(a), IndexKey::new(b));
                assert_eq!(ka.cmp(&kb), a.as_slice().cmp(b.as_slice()), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn put_returns_the_state_it_replaces_and_tracks_the_lease() {
        let mut t = TreeIndex::default();
        assert_eq!(t.put(b"k", rev(2), Some(5)), None, "a new key replaces nothing");
        let before = t.put(b"k", rev(3), Some(0));
        assert_eq!(before, Some((KeyAt { modified: rev(2), created: rev(2), version: 1 }, 5)));
        assert_eq!(t.current(b"k"), Some((KeyAt { modified: rev(3), created: rev(2), version: 2 }, 0)));
        t.put(b"k", rev(4), Some(9));
        assert!(t.tombstone(b"k", rev(5)));
        assert_eq!(t.current(b"k"), None, "deleted");
        assert_eq!(t.put(b"k", rev(6), None), None, "a put after a delete starts a new generation");
        assert_eq!(t.current(b"k"), Some((KeyAt { modified: rev(6), created: rev(6), version: 1 }, 0)));
        assert_eq!(t.get(b"k", 4), Some(KeyAt { modified: rev(4), created: rev(2), version: 3 }));
    }
}
