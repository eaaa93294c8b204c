//! The cluster's membership as the server knows it: each member's id, name and URLs (raft itself knows only
//! ids), kept in the backend's `members` and `members_removed` tables in the same transaction as the apply
//! that changed them, so a restarted member, and one installing a snapshot, knows every peer's URLs.
//!
//! A conf change entry's context carries the request id (8 bytes, big endian: how the proposer finds its
//! waiter) followed by the member (`etcdserverpb.Member`, protobuf) the change adds or updates.

use std::collections::{BTreeMap, BTreeSet};

use cairn_api::etcdserverpb::Member;
use cairn_raft::{ConfChange, ConfChangeType};
use cairn_storage::{Backend, BackendError, Table};
use prost::Message as _;

/// Members and removed ids; every member has the same view once it has applied the same entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    pub members: BTreeMap<u64, Member>,
    /// Removed ids are never reused: messages from them are dropped (etcd's members_removed).
    pub removed: BTreeSet<u64>,
}

/// A change to write into the backend with the apply batch.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberWrite {
    Put(Member),
    Remove(u64),
}

/// Encodes a conf change context: request id then member.
pub fn encode_context(request_id: u64, member: Option<&Member>) -> Vec<u8> {
    let mut b = request_id.to_be_bytes().to_vec();
    if let Some(m) = member {
        b.extend_from_slice(&m.encode_to_vec());
    }
    b
}

/// (request id, member) of a conf change context; a context too short or undecodable gives (0, None).
pub fn decode_context(ctx: &[u8]) -> (u64, Option<Member>) {
    let Some(id) = ctx.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else {
        return (0, None);
    };
    let rest = &ctx[8..];
    if rest.is_empty() {
        return (id, None);
    }
    (id, Member::decode(rest).ok())
}

impl Membership {
    /// The initial members of a new cluster.
    pub fn from_members(members: impl IntoIterator<Item = Member>) -> Membership {
        Membership { members: members.into_iter().map(|m| (m.id, m)).collect(), removed: BTreeSet::new() }
    }

    /// Reads the tables.
    pub fn load(backend: &Backend) -> Result<Membership, BackendError> {
        let tx = backend.begin_read()?;
        let mut m = Membership::default();
        tx.for_each(Table::Members, .., |_, v| {
            if let Ok(member) = Member::decode(v) {
                m.members.insert(member.id, member);
            }
            true
        })?;
        tx.for_each(Table::MembersRemoved, .., |k, _| {
            if let Some(id) = k.try_into().ok().map(u64::from_be_bytes) {
                m.removed.insert(id);
            }
            true
        })?;
        Ok(m)
    }

    pub fn list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    pub fn voters(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| !m.is_learner)
    }

    /// Voters that have started: published their name (etcd's IsStarted). A member added but never run has not.
    fn started_voters(&self) -> usize {
        self.voters().filter(|m| !m.name.is_empty()).count()
    }

    /// etcd's IsReadyToAddVotingMember: with the new voter counted (not started), the started voters still make
    /// a quorum. A lone started voter may always add a second (etcd's restore-a-cluster case).
    pub fn ready_to_add_voter(&self) -> bool {
        let members = self.voters().count() + 1;
        let started = self.started_voters();
        (started == 1 && members == 2) || started >= quorum(members)
    }

    /// etcd's IsReadyToRemoveVotingMember: without voter `id`, the started voters still make a quorum.
    pub fn ready_to_remove_voter(&self, id: u64) -> bool {
        let rest = self.voters().filter(|m| m.id != id);
        let (members, started) = rest.fold((0, 0), |(n, s), m| (n + 1, s + usize::from(!m.name.is_empty())));
        started >= quorum(members)
    }

    /// etcd's IsReadyToPromoteMember: with the learner counted as a started voter, the started voters make a
    /// quorum.
    pub fn ready_to_promote(&self) -> bool {
        let members = self.voters().count() + 1;
        self.started_voters() + 1 >= quorum(members)
    }

    /// The member owning any of `urls` as a peer URL, other than `except`.
    pub fn peer_url_owner(&self, urls: &[String], except: u64) -> Option<u64> {
        self.members
            .values()
            .find(|m| m.id != except && m.peer_ur_ls.iter().any(|u| urls.contains(u)))
            .map(|m| m.id)
    }

    /// Applies a committed conf change; returns what to write to the backend.
    pub fn apply(&mut self, cc: &ConfChange) -> Option<MemberWrite> {
        let (_, ctx_member) = decode_context(&cc.context);
        let id = cc.node_id;
        match cc.change_type {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if self.removed.contains(&id) {
                    return None;
                }
                let learner = cc.change_type == ConfChangeType::AddLearnerNode;
                let entry = self.members.entry(id).or_insert_with(|| Member { id, ..Member::default() });
                if let Some(m) = ctx_member {
                    merge(entry, m);
                }
                entry.is_learner = learner;
                Some(MemberWrite::Put(entry.clone()))
            }
            ConfChangeType::UpdateNode => {
                let entry = self.members.get_mut(&id)?;
                merge(entry, ctx_member?);
                Some(MemberWrite::Put(entry.clone()))
            }
            ConfChangeType::RemoveNode => {
                self.members.remove(&id);
                self.removed.insert(id);
                Some(MemberWrite::Remove(id))
            }
        }
    }
}

/// A majority of `voters`.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Takes what `from` says (empty fields say nothing): MemberUpdate sends only peer URLs, a member publishing
/// itself its name and client URLs.
fn merge(into: &mut Member, from: Member) {
    if !from.name.is_empty() {
        into.name = from.name;
    }
    if !from.peer_ur_ls.is_empty() {
        into.peer_ur_ls = from.peer_ur_ls;
    }
    if !from.client_ur_ls.is_empty() {
        into.client_ur_ls = from.client_ur_ls;
    }
}

/// Adds the backend writes for `w` to an apply batch.
pub fn write(batch: &mut cairn_mvcc::Batch<'_>, w: MemberWrite) {
    match w {
        MemberWrite::Put(m) => {
            let (key, value) = cairn_storage::member::member_row(&m);
            batch.put_raw(Table::Members, key, value);
        }
        MemberWrite::Remove(id) => {
            batch.delete_raw(Table::Members, id.to_be_bytes().to_vec());
            batch.put_raw(Table::MembersRemoved, id.to_be_bytes().to_vec(), Vec::new());
        }
    }
}

/// etcd's check of a member's peer URLs: absolute http(s) URLs with host and port, no path.
pub fn valid_peer_urls(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|u| {
            let Some(rest) = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://")) else {
                return false;
            };
            let Some((host, port)) = rest.rsplit_once(':') else { return false };
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, url: &str) -> Member {
        Member { id, name: name.into(), peer_ur_ls: vec![url.into()], ..Member::default() }
    }

    #[test]
    fn context_round_trips_and_garbage_is_harmless() {
        let m = member(7, "n7", "http://127.0.0.1:1");
        assert_eq!(decode_context(&encode_context(42, Some(&m))), (42, Some(m)));
        assert_eq!(decode_context(&encode_context(5, None)), (5, None));
        assert_eq!(decode_context(&[1, 2]), (0, None));
        assert_eq!(decode_context(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff]).1, None);
    }

    #[test]
    fn add_promote_update_remove() {
        let mut ms = Membership::from_members([member(1, "n1", "http://a:1")]);
        let add = ConfChange {
            change_type: ConfChangeType::AddLearnerNode,
            node_id: 2,
            context: encode_context(9, Some(&member(2, "", "http://b:2"))),
        };
        assert!(matches!(ms.apply(&add), Some(MemberWrite::Put(m)) if m.is_learner));
        let publish = ConfChange {
            change_type: ConfChangeType::UpdateNode,
            node_id: 2,
            context: encode_context(
                10,
                Some(&Member {
                    id: 2,
                    name: "n2".into(),
                    client_ur_ls: vec!["http://b:3".into()],
                    ..Member::default()
                }),
            ),
        };
        ms.apply(&publish);
        let promote = ConfChange {
            change_type: ConfChangeType::AddNode,
            node_id: 2,
            context: encode_context(11, None),
        };
        ms.apply(&promote);
        let m2 = &ms.members[&2];
        assert_eq!((m2.name.as_str(), m2.is_learner, m2.peer_ur_ls.len()), ("n2", false, 1));
        assert_eq!(ms.peer_url_owner(&["http://b:2".into()], 0), Some(2));
        ms.apply(&ConfChange { change_type: ConfChangeType::RemoveNode, node_id: 2, context: vec![] });
        assert!(ms.removed.contains(&2) && !ms.members.contains_key(&2));
        assert_eq!(ms.apply(&add), None, "a removed id never comes back");
    }

    #[test]
    fn readiness_counts_started_voters_as_etcd() {
        let unstarted = |id: u64| Member { id, ..Member::default() };
        let learner = |id: u64| Member { is_learner: true, ..member(id, "l", "http://l:1") };
        // One started voter may add a second; a second unstarted voter blocks a third.
        let mut ms = Membership::from_members([member(1, "n1", "http://a:1")]);
        assert!(ms.ready_to_add_voter() && ms.ready_to_promote());
        ms.members.insert(2, unstarted(2));
        assert!(!ms.ready_to_add_voter(), "3 voters, 1 started: no quorum");
        assert!(ms.ready_to_promote(), "the learner counts as started: 2 of 3");
        assert!(ms.ready_to_remove_voter(2), "without the unstarted voter, 1 of 1");
        assert!(!ms.ready_to_remove_voter(1), "without the started voter, 0 of 1");
        // Three started voters, two never started: removing a started one leaves 2 of 4.
        let mut ms = Membership::from_members([
            member(1, "n1", "http://a:1"),
            member(2, "n2", "http://b:1"),
            member(3, "n3", "http://c:1"),
            unstarted(4),
            unstarted(5),
            learner(6),
        ]);
        assert!(!ms.ready_to_remove_voter(1));
        assert!(ms.ready_to_remove_voter(4), "3 of 4 started");
        assert!(!ms.ready_to_add_voter(), "3 of 6 started");
        assert!(ms.ready_to_promote(), "4 of 6");
        ms.members.remove(&5);
        assert!(ms.ready_to_add_voter(), "3 of 5, learners not counted");
        assert!(ms.ready_to_remove_voter(6), "a learner is not among the voters");
    }

    #[test]
    fn peer_url_validation_is_etcds() {
        assert!(valid_peer_urls(&["http://127.0.0.1:2380".into()]));
        assert!(!valid_peer_urls(&["127.0.0.1:2380".into()]));
        assert!(!valid_peer_urls(&["http://127.0.0.1".into()]));
        assert!(!valid_peer_urls(&[]));
    }
}
