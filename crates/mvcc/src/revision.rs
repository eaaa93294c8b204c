//! Revisions as etcd numbers them: `main` counts committed write transactions (1 on a fresh store), `sub` counts
//! the changes inside one of them. In the backend's `key` table a revision is the key: 8 bytes of main (big
//! endian), `_`, 8 bytes of sub, and a trailing `t` when the change is a tombstone, so byte order is revision order.

/// A change's position in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Length of an encoded revision without the tombstone marker.
pub const REV_BYTES_LEN: usize = 17;
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The `key` table key for this revision; `tombstone` appends etcd's `t` marker.
    pub fn to_bytes(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(REV_BYTES_LEN + 1);
        b.extend_from_slice(&self.main.to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            b.push(TOMBSTONE_MARK);
        }
        b
    }

    /// Decodes a `key` table key: the revision and whether it marks a tombstone; None if malformed.
    pub fn from_bytes(b: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match b.len() {
            REV_BYTES_LEN => false,
            n if n == REV_BYTES_LEN + 1 && b[REV_BYTES_LEN] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        if b[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(b[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..17].try_into().ok()?);
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_sorts_as_revisions() {
        let revs = [Revision::new(1, 0), Revision::new(1, 1), Revision::new(2, 0), Revision::new(300, 7)];
        for r in revs {
            assert_eq!(Revision::from_bytes(&r.to_bytes(false)), Some((r, false)));
            assert_eq!(Revision::from_bytes(&r.to_bytes(true)), Some((r, true)));
        }
        for pair in revs.windows(2) {
            assert!(pair[0].to_bytes(true) < pair[1].to_bytes(false));
        }
    }

    #[test]
    fn malformed_keys_are_rejected() {
        assert_eq!(Revision::from_bytes(b"short"), None);
        let mut b = Revision::new(1, 1).to_bytes(false);
        b[8] = b'x';
        assert_eq!(Revision::from_bytes(&b), None);
        let mut b = Revision::new(1, 1).to_bytes(false);
        b.push(b'q');
        assert_eq!(Revision::from_bytes(&b), None);
    }
}
