//! Raft messages on the wire: cairn-raft's types to and from `cairnpb` (proto/cairn/cairn.proto). Decoding
//! takes bytes from the network: anything malformed is an error, never a panic.

use cairn_api::cairnpb;
use cairn_raft::{ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("unknown raft message type {0}")]
    UnknownType(i32),
    #[error("unknown raft entry type {0}")]
    UnknownEntryType(i32),
}

const TYPES: [MessageType; 19] = [
    MessageType::Hup,
    MessageType::Beat,
    MessageType::Prop,
    MessageType::App,
    MessageType::AppResp,
    MessageType::Vote,
    MessageType::VoteResp,
    MessageType::Snap,
    MessageType::Heartbeat,
    MessageType::HeartbeatResp,
    MessageType::Unreachable,
    MessageType::SnapStatus,
    MessageType::CheckQuorum,
    MessageType::TransferLeader,
    MessageType::TimeoutNow,
    MessageType::ReadIndex,
    MessageType::ReadIndexResp,
    MessageType::PreVote,
    MessageType::PreVoteResp,
];

fn type_number(t: MessageType) -> i32 {
    TYPES.iter().position(|&x| x == t).map_or(0, |i| i32::try_from(i).unwrap_or(0))
}

fn entry_to_pb(e: &Entry) -> cairnpb::Entry {
    cairnpb::Entry {
        term: e.term,
        index: e.index,
        r#type: i32::from(e.entry_type == EntryType::ConfChange),
        data: e.data.clone(),
    }
}

fn entry_from_pb(e: cairnpb::Entry) -> Result<Entry, WireError> {
    let entry_type = match e.r#type {
        0 => EntryType::Normal,
        1 => EntryType::ConfChange,
        other => return Err(WireError::UnknownEntryType(other)),
    };
    Ok(Entry { term: e.term, index: e.index, entry_type, data: e.data })
}

pub fn snapshot_to_pb(s: &Snapshot) -> cairnpb::Snapshot {
    let cs = &s.metadata.conf_state;
    cairnpb::Snapshot {
        metadata: Some(cairnpb::SnapshotMetadata {
            index: s.metadata.index,
            term: s.metadata.term,
            conf_state: Some(cairnpb::ConfState { voters: cs.voters.clone(), learners: cs.learners.clone() }),
        }),
        data: s.data.clone(),
    }
}

fn snapshot_from_pb(s: cairnpb::Snapshot) -> Snapshot {
    let md = s.metadata.unwrap_or_default();
    let cs = md.conf_state.unwrap_or_default();
    Snapshot {
        metadata: SnapshotMetadata {
            index: md.index,
            term: md.term,
            conf_state: ConfState { voters: cs.voters, learners: cs.learners },
        },
        data: s.data,
    }
}

pub fn to_pb(m: &Message) -> cairnpb::Message {
    cairnpb::Message {
        r#type: type_number(m.msg_type),
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m.entries.iter().map(entry_to_pb).collect(),
        commit: m.commit,
        snapshot: m.snapshot.as_ref().map(snapshot_to_pb),
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context.clone(),
    }
}

pub fn from_pb(m: cairnpb::Message) -> Result<Message, WireError> {
    let msg_type = usize::try_from(m.r#type)
        .ok()
        .and_then(|i| TYPES.get(i).copied())
        .ok_or(WireError::UnknownType(m.r#type))?;
    Ok(Message {
        msg_type,
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m.entries.into_iter().map(entry_from_pb).collect::<Result<_, _>>()?,
        commit: m.commit,
        snapshot: m.snapshot.map(snapshot_from_pb),
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_etcds_type_numbers() {
        let m = Message {
            msg_type: MessageType::App,
            to: 2,
            from: 1,
            term: 3,
            log_term: 2,
            index: 9,
            entries: vec![Entry {
                term: 3,
                index: 10,
                entry_type: EntryType::ConfChange,
                data: vec![1, 2].into(),
            }],
            commit: 8,
            snapshot: Some(Snapshot {
                metadata: SnapshotMetadata {
                    index: 5,
                    term: 1,
                    conf_state: ConfState { voters: vec![1, 2], learners: vec![3] },
                },
                data: vec![],
            }),
            reject: true,
            reject_hint: 4,
            context: b"ctx".to_vec(),
        };
        let pb = to_pb(&m);
        assert_eq!(pb.r#type, 3, "MsgApp is 3 in etcd's raftpb");
        assert_eq!(from_pb(pb).unwrap(), m);
        assert_eq!(type_number(MessageType::PreVoteResp), 18);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let bad = cairnpb::Message { r#type: 99, ..Default::default() };
        assert_eq!(from_pb(bad), Err(WireError::UnknownType(99)));
        let bad = cairnpb::Message { r#type: -1, ..Default::default() };
        assert!(from_pb(bad).is_err());
        let bad_entry = cairnpb::Message {
            r#type: 3,
            entries: vec![cairnpb::Entry { r#type: 7, ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(from_pb(bad_entry), Err(WireError::UnknownEntryType(7)));
    }
}
