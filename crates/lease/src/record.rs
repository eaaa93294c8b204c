//! Leases on disk, byte for byte as etcd keeps them: in the backend's `lease` table ([`TABLE`]) the key is the
//! lease id as 8 big-endian bytes and the value is the protobuf message `leasepb.Lease`:
//!
//! ```text
//! message Lease {
//!   int64 ID = 1;
//!   int64 TTL = 2;           // granted TTL in seconds, after raising it to the minimum
//!   int64 RemainingTTL = 3;  // last checkpointed remaining TTL, 0 = none
//! }
//! ```
//!
//! Attached keys are not stored here: they are rebuilt from the key-value store, whose entries carry their lease.

use cairn_storage::Table;
use prost::Message;

use crate::LeaseError;

/// The backend table holding lease records.
pub const TABLE: Table = Table::Lease;

/// etcd's `leasepb.Lease`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct LeaseRecord {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// The key of lease `id`'s record.
pub fn record_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

impl LeaseRecord {
    /// The record's protobuf bytes.
    pub fn encode_value(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Decodes one entry of the `lease` table; the key must be the 8-byte form of the record's own id.
    pub fn decode_entry(key: &[u8], value: &[u8]) -> Result<LeaseRecord, LeaseError> {
        let record = LeaseRecord::decode(value)
            .map_err(|e| LeaseError::Corrupt(format!("lease record under key {key:02x?}: {e}")))?;
        if key != record_key(record.id) {
            return Err(LeaseError::Corrupt(format!(
                "lease record for id {:x} stored under key {key:02x?}",
                record.id
            )));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_etcds() {
        // gogoproto's leasepb.Lease{ID: 0x1234, TTL: 60} marshals to these bytes (zero fields omitted).
        let r = LeaseRecord { id: 0x1234, ttl: 60, remaining_ttl: 0 };
        assert_eq!(r.encode_value(), vec![0x08, 0xb4, 0x24, 0x10, 0x3c]);
        let r = LeaseRecord { id: 1, ttl: 600, remaining_ttl: 300 };
        assert_eq!(r.encode_value(), vec![0x08, 0x01, 0x10, 0xd8, 0x04, 0x18, 0xac, 0x02]);
        assert_eq!(record_key(0x0102_0304_0506_0708), [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn decode_round_trips_and_rejects_garbage() {
        let r = LeaseRecord { id: 42, ttl: 10, remaining_ttl: 7 };
        assert_eq!(LeaseRecord::decode_entry(&record_key(42), &r.encode_value()).unwrap(), r);
        assert!(matches!(
            LeaseRecord::decode_entry(&record_key(43), &r.encode_value()),
            Err(LeaseError::Corrupt(_))
        ));
        assert!(matches!(
            LeaseRecord::decode_entry(b"short", &r.encode_value()),
            Err(LeaseError::Corrupt(_))
        ));
        assert!(matches!(
            LeaseRecord::decode_entry(&record_key(42), &[0xff, 0xff]),
            Err(LeaseError::Corrupt(_))
        ));
    }
}
