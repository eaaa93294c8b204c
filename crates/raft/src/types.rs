//! The values Raft exchanges with its driver and its peers, as etcd's raftpb (encoding them is the server's job).

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryType {
    #[default]
    Normal,
    ConfChange,
}

/// One log entry; `data` is opaque to Raft (an encoded request, or an encoded [`ConfChange`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub entry_type: EntryType,
    /// Shared by the log, the WAL writer and every message that carries the entry: cloning is a count.
    pub data: Bytes,
}

impl Entry {
    /// Approximate encoded size, for message size limits.
    pub fn size(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// What must be persisted before a message that depends on it is sent (Raft paper, Figure 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

impl HardState {
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// The membership: who votes and who only learns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfState {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMetadata {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
}

/// The state machine as of `metadata.index`; `data` is opaque to Raft.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub metadata: SnapshotMetadata,
    pub data: Vec<u8>,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.metadata.index == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfChangeType {
    /// Adds a voter, or promotes a learner to voter.
    #[default]
    AddNode,
    RemoveNode,
    /// Changes nothing Raft knows (e.g. a member's URLs): committed through the log for the driver's sake.
    UpdateNode,
    AddLearnerNode,
}

/// A single-step membership change, proposed as an entry of type [`EntryType::ConfChange`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfChange {
    pub change_type: ConfChangeType,
    pub node_id: u64,
    pub context: Vec<u8>,
}

impl ConfChange {
    /// A compact encoding for entry data: type byte, node id, then the context.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(9 + self.context.len());
        b.push(match self.change_type {
            ConfChangeType::AddNode => 0,
            ConfChangeType::RemoveNode => 1,
            ConfChangeType::UpdateNode => 2,
            ConfChangeType::AddLearnerNode => 3,
        });
        b.extend_from_slice(&self.node_id.to_be_bytes());
        b.extend_from_slice(&self.context);
        b
    }

    /// Decodes [`ConfChange::encode`]'s output; None if malformed.
    pub fn decode(b: &[u8]) -> Option<ConfChange> {
        let change_type = match *b.first()? {
            0 => ConfChangeType::AddNode,
            1 => ConfChangeType::RemoveNode,
            2 => ConfChangeType::UpdateNode,
            3 => ConfChangeType::AddLearnerNode,
            _ => return None,
        };
        let node_id = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
        Some(ConfChange { change_type, node_id, context: b[9..].to_vec() })
    }
}

/// etcd's raftpb.MessageType, same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MessageType {
    #[default]
    Hup,
    Beat,
    Prop,
    App,
    AppResp,
    Vote,
    VoteResp,
    Snap,
    Heartbeat,
    HeartbeatResp,
    Unreachable,
    SnapStatus,
    CheckQuorum,
    TransferLeader,
    TimeoutNow,
    ReadIndex,
    ReadIndexResp,
    PreVote,
    PreVoteResp,
}

impl MessageType {
    /// Messages a node makes for itself; one arriving from the network is refused.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            MessageType::Hup
                | MessageType::Beat
                | MessageType::Unreachable
                | MessageType::SnapStatus
                | MessageType::CheckQuorum
        )
    }

    pub fn is_response(self) -> bool {
        matches!(
            self,
            MessageType::AppResp
                | MessageType::VoteResp
                | MessageType::HeartbeatResp
                | MessageType::Unreachable
                | MessageType::PreVoteResp
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub msg_type: MessageType,
    pub to: u64,
    pub from: u64,
    pub term: u64,
    pub log_term: u64,
    pub index: u64,
    pub entries: Vec<Entry>,
    pub commit: u64,
    pub snapshot: Option<Snapshot>,
    pub reject: bool,
    pub reject_hint: u64,
    pub context: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateRole {
    #[default]
    Follower,
    Candidate,
    PreCandidate,
    Leader,
}

/// Volatile state the driver may want to watch: who leads and what this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftState {
    pub leader_id: u64,
    pub role: StateRole,
}

/// A linearizable read may be served once the state machine has applied `index`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadState {
    pub index: u64,
    pub request_ctx: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_change_round_trips() {
        for change_type in [
            ConfChangeType::AddNode,
            ConfChangeType::RemoveNode,
            ConfChangeType::UpdateNode,
            ConfChangeType::AddLearnerNode,
        ] {
            let cc = ConfChange { change_type, node_id: 0xdead_beef, context: b"ctx".to_vec() };
            assert_eq!(ConfChange::decode(&cc.encode()), Some(cc));
        }
        assert_eq!(ConfChange::decode(&[9, 0, 0]), None);
        assert_eq!(ConfChange::decode(&[0, 1, 2]), None);
    }
}
