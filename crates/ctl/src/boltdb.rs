//! Just enough of bbolt's file format to compute `snapshot status` of an etcd snapshot: walk every bucket's
//! B+tree in key order, as etcd's snapshot status does with a bolt read transaction.
//!
//! Layout (bbolt `page.go`): each page starts with a 16-byte header {id u64, flags u16, count u16, overflow u32}.
//! Pages 0 and 1 are meta pages {magic u32 = 0xED0CDAED, version u32, page size u32, flags u32, root bucket
//! {root pgid u64, sequence u64}, freelist u64, pgid u64, txid u64, checksum u64}; the valid one with the
//! higher txid wins. Branch pages (flag 0x01) hold {pos u32, ksize u32, pgid u64} elements, leaf pages (0x02)
//! {flags u32, pos u32, ksize u32, vsize u32}; `pos` is relative to the element. A leaf element with flag 0x01 is
//! a sub-bucket whose value is {root u64, sequence u64}, followed by an inline page when root is 0.
//! All integers are little-endian.

const MAGIC: u32 = 0xED0C_DAED;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
const HEADER: usize = 16;
const ELEMENT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    #[error("invalid database")]
    Invalid,
    #[error("snapshot file integrity check failed: page {0} out of bounds")]
    OutOfBounds(u64),
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, BoltError> {
    let s = b.get(at..at + 2).ok_or(BoltError::Invalid)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BoltError> {
    let s = b.get(at..at + 4).ok_or(BoltError::Invalid)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, BoltError> {
    let s = b.get(at..at + 8).ok_or(BoltError::Invalid)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// A read-only view of a bolt file in memory.
#[derive(Debug)]
pub struct Bolt<'a> {
    data: &'a [u8],
    page_size: usize,
    root: u64,
    /// Pages in use (the meta's high-water mark): `tx.Size()` is this times the page size.
    pub pgid: u64,
}

/// One `(key, value)` visit; `bucket` is true for a sub-bucket entry.
pub type Visit<'v> = dyn FnMut(&[u8], &[u8], bool) -> Result<(), BoltError> + 'v;

impl<'a> Bolt<'a> {
    pub fn open(data: &'a [u8]) -> Result<Bolt<'a>, BoltError> {
        let mut best: Option<(u64, usize, u64, u64)> = None;
        for candidate in [0usize, 1] {
            // The first meta tells the page size; the second sits one page further.
            let page_size = if candidate == 0 { 0 } else { best.map_or(4096, |b| b.1) };
            let at = candidate * page_size + HEADER;
            let Ok(magic) = u32_at(data, at) else { continue };
            if magic != MAGIC {
                continue;
            }
            let ps = u32_at(data, at + 8)? as usize;
            let root = u64_at(data, at + 16)?;
            let pgid = u64_at(data, at + 40)?;
            let txid = u64_at(data, at + 48)?;
            let checksum = u64_at(data, at + 56)?;
            if fnv64a(data.get(at..at + 56).ok_or(BoltError::Invalid)?) != checksum {
                continue;
            }
            if best.is_none_or(|b| txid > b.0) {
                best = Some((txid, ps, root, pgid));
            }
        }
        let (_, page_size, root, pgid) = best.ok_or(BoltError::Invalid)?;
        if page_size < HEADER {
            return Err(BoltError::Invalid);
        }
        Ok(Bolt { data, page_size, root, pgid })
    }

    fn page(&self, id: u64) -> Result<&'a [u8], BoltError> {
        let start = usize::try_from(id).map_err(|_| BoltError::OutOfBounds(id))? * self.page_size;
        let overflow = u32_at(self.data, start + 12).map_err(|_| BoltError::OutOfBounds(id))? as usize;
        let end = (start + (overflow + 1) * self.page_size).min(self.data.len());
        self.data.get(start..end).ok_or(BoltError::OutOfBounds(id))
    }

    /// Visits the root bucket's entries (the top-level bucket names) in key order.
    pub fn each_root(&self, f: &mut Visit<'_>) -> Result<(), BoltError> {
        self.walk(self.page(self.root)?, f, 0)
    }

    /// Visits every key/value of the sub-bucket whose header value is `bucket`.
    pub fn each_in(&self, bucket: &[u8], f: &mut Visit<'_>) -> Result<(), BoltError> {
        let root = u64_at(bucket, 0)?;
        if root == 0 {
            return self.walk(bucket.get(16..).ok_or(BoltError::Invalid)?, f, 0);
        }
        self.walk(self.page(root)?, f, 0)
    }

    fn walk(&self, page: &[u8], f: &mut Visit<'_>, depth: usize) -> Result<(), BoltError> {
        if depth > 64 {
            return Err(BoltError::Invalid);
        }
        let flags = u16_at(page, 8)?;
        let count = usize::from(u16_at(page, 10)?);
        for i in 0..count {
            let el = HEADER + i * ELEMENT;
            if flags & BRANCH != 0 {
                let child = u64_at(page, el + 8)?;
                self.walk(self.page(child)?, f, depth + 1)?;
            } else if flags & LEAF != 0 {
                let eflags = u32_at(page, el)?;
                let pos = u32_at(page, el + 4)? as usize;
                let ksize = u32_at(page, el + 8)? as usize;
                let vsize = u32_at(page, el + 12)? as usize;
                let k0 = el + pos;
                let key = page.get(k0..k0 + ksize).ok_or(BoltError::Invalid)?;
                let value = page.get(k0 + ksize..k0 + ksize + vsize).ok_or(BoltError::Invalid)?;
                f(key, value, eflags & BUCKET_LEAF != 0)?;
            } else {
                return Err(BoltError::Invalid);
            }
        }
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.pgid * self.page_size as u64
    }
}

/// FNV-1a, 64 bits: bolt's meta checksum.
fn fnv64a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_database() {
        assert!(matches!(Bolt::open(b"not a bolt file at all"), Err(BoltError::Invalid)));
        assert_eq!(fnv64a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
