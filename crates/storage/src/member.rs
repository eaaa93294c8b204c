//! A member's identity and its cluster's membership on disk, shared by the server (bootstrapping a new
//! cluster) and `cairnctl snapshot restore` (writing a data dir that starts one), so both derive the same ids
//! and write the same rows.
//!
//! - Ids are etcd's: a member id is the first 8 bytes (big endian) of SHA-1 over its sorted peer URLs joined,
//!   then the cluster token; the cluster id is the same over the sorted member ids (8 bytes big endian each).
//! - The WAL's Metadata record names the member and its cluster: member id u64 BE | cluster id u64 BE.
//! - The backend's `members` table maps a member id (u64 BE) to its `etcdserverpb.Member` (protobuf);
//!   `members_removed` maps a removed id to nothing.
//! - A WAL Snapshot record's data is the raft membership at its index: `cairnpb.ConfState` (protobuf).

use cairn_api::etcdserverpb::Member;
use prost::Message as _;
use sha1::{Digest, Sha1};

/// etcd's member id for `peer_urls` in the cluster named by `token` (`--initial-cluster-token`).
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// etcd's cluster id for the initial members' ids.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// The WAL's Metadata record for `member_id` of `cluster_id`.
pub fn wal_metadata(member_id: u64, cluster_id: u64) -> Vec<u8> {
    let mut m = member_id.to_be_bytes().to_vec();
    m.extend_from_slice(&cluster_id.to_be_bytes());
    m
}

/// (member id, cluster id) of a WAL's Metadata record.
pub fn decode_wal_metadata(m: &[u8]) -> Option<(u64, u64)> {
    let member = u64::from_be_bytes(m.get(..8)?.try_into().ok()?);
    let cluster = u64::from_be_bytes(m.get(8..16)?.try_into().ok()?);
    Some((member, cluster))
}

/// The `members` table row (key, value) of `m`.
pub fn member_row(m: &Member) -> (Vec<u8>, Vec<u8>) {
    (m.id.to_be_bytes().to_vec(), m.encode_to_vec())
}

/// The data of a WAL Snapshot record: the voters and learners at its index.
pub fn conf_state_data(voters: &[u64], learners: &[u64]) -> Vec<u8> {
    cairn_api::cairnpb::ConfState { voters: voters.to_vec(), learners: learners.to_vec() }.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_etcds() {
        let default = member_id(&["http://localhost:2380".into()], "etcd-cluster");
        assert_eq!(default, 0x8e9e_05c5_2164_694d, "etcd's well-known default member id");
        assert_eq!(cluster_id(&[default]), 0xcdf8_1819_4e3a_8c32, "etcd's default cluster id");
        // etcdctl snapshot restore --initial-cluster a=http://127.0.0.1:1,b=...:2,c=...:3
        // --initial-cluster-token tok logs these.
        let ids: Vec<u64> = (1..=3).map(|p| member_id(&[format!("http://127.0.0.1:{p}")], "tok")).collect();
        assert_eq!(ids, [0x0b64_7f29_678b_82df, 0xd1dd_0451_a6b7_4da3, 0x1b86_cb6f_4861_f3fd]);
        assert_eq!(cluster_id(&ids), 0xe6b4_9e3f_120a_2cdb);
    }

    #[test]
    fn wal_metadata_round_trips() {
        assert_eq!(decode_wal_metadata(&wal_metadata(7, 9)), Some((7, 9)));
        assert_eq!(decode_wal_metadata(&[1, 2, 3]), None);
    }
}
