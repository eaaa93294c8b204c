//! The Raft paper's rules, one test each, named after the section they check (as etcd's raft_paper_test.go),
//! plus etcd's extensions: pre-vote, check-quorum, learners, leader transfer, ReadIndex, snapshots, bad input.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use cairn_raft::{
    ConfChange, ConfChangeType, ConfState, Config, Entry, Error, MemStorage, Message, MessageType, RawNode,
    Snapshot, SnapshotMetadata, StateRole, Storage,
};
use common::{config, Cluster, Node};

#[test]
fn section_5_2_a_single_node_elects_itself_and_commits_alone() {
    let mut c = Cluster::new(&[1]);
    c.elect(1);
    c.propose(1, b"x");
    assert_eq!(c.node(1).applied_data(), vec![b"x".to_vec()]);
}

#[test]
fn section_5_2_a_follower_campaigns_after_its_election_timeout() {
    let mut c = Cluster::new(&[1, 2, 3]);
    // Randomized in [10, 20): 20 ticks always suffice, 9 never do.
    c.tick(1, 9);
    c.stabilize();
    assert_eq!(c.leader(), None);
    c.tick(1, 11);
    c.stabilize();
    assert_eq!(c.leader(), Some(1));
    assert_eq!(c.node(2).role(), StateRole::Follower);
    assert_eq!(c.node(2).raw.status().soft_state.leader_id, 1);
}

#[test]
fn section_5_2_a_candidate_without_a_quorum_does_not_win() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.isolate(1);
    c.node(1).raw.campaign().unwrap();
    c.stabilize();
    assert_ne!(c.node(1).role(), StateRole::Leader);
}

#[test]
fn section_5_2_at_most_one_vote_per_term() {
    let mut c = Cluster::with_config(&[1, 2, 3], |id| Config { pre_vote: false, ..config(id) });
    c.node(1).raw.campaign().unwrap();
    c.node(3).raw.campaign().unwrap();
    c.stabilize();
    let leaders: Vec<u64> =
        c.nodes.iter().filter(|(_, n)| n.role() == StateRole::Leader).map(|(&id, _)| id).collect();
    assert!(leaders.len() <= 1, "two leaders: {leaders:?}");
}

#[test]
fn section_5_3_committed_entries_reach_every_state_machine_in_order() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    for i in 0..10u8 {
        c.propose(1, &[i]);
    }
    let expected: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
    for id in [1, 2, 3] {
        assert_eq!(c.node(id).applied_data(), expected, "node {id}");
    }
}

#[test]
fn section_5_3_a_follower_forwards_proposals_to_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(3, b"via follower");
    assert_eq!(c.node(1).applied_data(), vec![b"via follower".to_vec()]);
}

#[test]
fn section_5_3_a_followers_conflicting_uncommitted_entries_are_replaced() {
    // Without check-quorum, node 3 does not hold a lease for the old leader and votes for 2 at once.
    let mut c = Cluster::with_config(&[1, 2, 3], |id| Config { check_quorum: false, ..config(id) });
    c.elect(1);
    c.propose(1, b"committed");
    // Leader 1 appends entries nobody else sees, then loses leadership.
    c.isolate(1);
    c.node(1).raw.propose(b"lost-1".to_vec()).unwrap();
    c.node(1).raw.propose(b"lost-2".to_vec()).unwrap();
    c.stabilize();
    c.elect(2);
    c.propose(2, b"new");
    c.heal();
    c.tick(2, 1);
    c.stabilize();
    for id in [1, 2, 3] {
        assert_eq!(c.node(id).applied_data(), vec![b"committed".to_vec(), b"new".to_vec()], "node {id}");
    }
}

#[test]
fn section_5_4_1_a_candidate_with_a_stale_log_cannot_win() {
    let mut c = Cluster::with_config(&[1, 2, 3], |id| Config { pre_vote: false, ..config(id) });
    c.elect(1);
    c.isolate(3);
    c.propose(1, b"x");
    c.heal();
    // 3 missed "x": 1 and 2 refuse to vote for it.
    c.node(3).raw.campaign().unwrap();
    c.stabilize();
    assert_ne!(c.node(3).role(), StateRole::Leader);
}

#[test]
fn section_5_4_3_leader_completeness_after_a_leader_crash() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"a");
    c.isolate(1);
    for _ in 0..30 {
        c.tick(2, 1);
        c.tick(3, 1);
        c.stabilize();
    }
    let new_leader =
        c.leader().filter(|&l| l != 1).or_else(|| (2..=3).find(|&i| c.nodes[&i].role() == StateRole::Leader));
    let l = new_leader.expect("a new leader among 2 and 3");
    c.propose(l, b"b");
    assert_eq!(c.node(l).applied_data(), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn pre_vote_keeps_a_partitioned_node_from_inflating_terms() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let term = c.node(1).term();
    c.isolate(3);
    for _ in 0..100 {
        c.tick(3, 1);
        c.stabilize();
    }
    assert_eq!(c.node(3).term(), term, "pre-candidates do not bump their term");
    c.heal();
    c.tick(1, 1);
    c.stabilize();
    assert_eq!(c.leader(), Some(1), "rejoining does not depose the leader");
    assert_eq!(c.node(1).term(), term);
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(1);
    for _ in 0..25 {
        c.tick(1, 1);
        c.stabilize();
    }
    assert_eq!(c.node(1).role(), StateRole::Follower);
}

#[test]
fn learners_receive_the_log_but_are_never_asked_to_vote_and_never_campaign() {
    let cs = ConfState { voters: vec![1, 2], learners: vec![3] };
    let mut c = Cluster::bootstrapped(&cs, config);
    c.elect(1);
    c.propose(1, b"x");
    assert_eq!(c.node(3).applied_data(), vec![b"x".to_vec()]);
    for _ in 0..100 {
        c.tick(3, 1);
        c.stabilize();
    }
    assert_eq!(c.node(3).role(), StateRole::Follower, "a learner never campaigns");
    assert_eq!(c.leader(), Some(1));
    // An election among the voters: no vote request goes to the learner.
    c.isolate(1);
    let mut asked_learner = false;
    for _ in 0..60 {
        c.tick(2, 1);
        c.collect();
        for m in std::mem::take(&mut c.queue) {
            asked_learner |= m.to == 3 && matches!(m.msg_type, MessageType::Vote | MessageType::PreVote);
            c.deliver(m);
        }
    }
    assert!(!asked_learner, "a candidate asked the learner for its vote");
}

#[test]
fn membership_add_learner_promote_and_remove_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"before");
    c.nodes.insert(4, Node::new(&config(4), MemStorage::new()));
    c.node(1)
        .raw
        .propose_conf_change(&ConfChange {
            change_type: ConfChangeType::AddLearnerNode,
            node_id: 4,
            context: vec![],
        })
        .unwrap();
    c.stabilize();
    c.tick(1, 1);
    c.stabilize();
    assert_eq!(c.node(4).applied_data(), vec![b"before".to_vec()], "a new learner catches up");
    assert_eq!(c.node(1).conf_state.learners, vec![4]);
    c.node(1)
        .raw
        .propose_conf_change(&ConfChange {
            change_type: ConfChangeType::AddNode,
            node_id: 4,
            context: vec![],
        })
        .unwrap();
    c.stabilize();
    assert_eq!(c.node(1).conf_state.voters, vec![1, 2, 3, 4]);
    // Remove the leader: it steps down and the rest elect a leader that still has everything.
    c.node(1)
        .raw
        .propose_conf_change(&ConfChange {
            change_type: ConfChangeType::RemoveNode,
            node_id: 1,
            context: vec![],
        })
        .unwrap();
    c.stabilize();
    assert_ne!(c.node(1).role(), StateRole::Leader);
    c.isolate(1);
    for _ in 0..40 {
        for id in [2, 3, 4] {
            c.tick(id, 1);
        }
        c.stabilize();
    }
    let l = c.leader().expect("a leader among the remaining voters");
    assert_ne!(l, 1);
    c.propose(l, b"after");
    assert_eq!(c.node(4).applied_data(), vec![b"before".to_vec(), b"after".to_vec()]);
}

#[test]
fn only_one_conf_change_may_be_pending() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(1);
    let add = |id| ConfChange { change_type: ConfChangeType::AddLearnerNode, node_id: id, context: vec![] };
    c.node(1).raw.propose_conf_change(&add(4)).unwrap();
    c.node(1).raw.propose_conf_change(&add(5)).unwrap();
    c.heal();
    c.tick(1, 1);
    c.stabilize();
    assert_eq!(c.node(1).conf_state.learners, vec![4], "the second change was replaced by an empty entry");
}

#[test]
fn leader_transfer_hands_over_to_an_up_to_date_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"x");
    c.node(1).raw.transfer_leader(3);
    c.stabilize();
    assert_eq!(c.leader(), Some(3));
    c.propose(3, b"y");
    assert_eq!(c.node(1).applied_data(), vec![b"x".to_vec(), b"y".to_vec()]);
}

#[test]
fn leader_transfer_catches_a_lagging_target_up_first() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    c.propose(1, b"x");
    c.heal();
    c.node(1).raw.transfer_leader(3);
    c.stabilize();
    assert_eq!(c.leader(), Some(3));
    assert_eq!(c.node(3).applied_data(), vec![b"x".to_vec()]);
}

#[test]
fn read_index_is_served_after_a_heartbeat_round_on_leader_and_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"x");
    let commit = c.node(1).commit();
    c.node(1).raw.read_index(b"r1".to_vec());
    c.node(2).raw.read_index(b"r2".to_vec());
    let mut seen = Vec::new();
    for _ in 0..10 {
        for id in [1, 2] {
            let n = c.node(id);
            if n.raw.has_ready() {
                let rd = n.raw.ready();
                seen.extend(rd.read_states.iter().map(|rs| (id, rs.index, rs.request_ctx.clone())));
                c.queue.extend(rd.messages.clone());
                c.node(id).raw.advance(rd);
            }
        }
        c.collect();
        for m in std::mem::take(&mut c.queue) {
            c.deliver(m);
        }
    }
    seen.sort();
    assert_eq!(seen, vec![(1, commit, b"r1".to_vec()), (2, commit, b"r2".to_vec())]);
}

#[test]
fn a_partitioned_leader_cannot_serve_a_read_index() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(1);
    c.node(1).raw.read_index(b"stale?".to_vec());
    for _ in 0..5 {
        c.tick(1, 1);
        let rd = c.node(1).raw.ready();
        assert!(rd.read_states.is_empty(), "no quorum, no read");
        c.node(1).raw.advance(rd);
    }
}

#[test]
fn a_follower_behind_a_compacted_log_catches_up_by_snapshot() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for i in 0..20u8 {
        c.propose(1, &[i]);
    }
    let applied = c.node(1).raw.status().applied;
    let cs = c.node(1).conf_state.clone();
    let s = c.node(1).raw.storage_mut();
    s.create_snapshot(applied, Some(cs), b"state".to_vec()).unwrap();
    s.compact(applied).unwrap();
    c.heal();
    for _ in 0..3 {
        c.tick(1, 1);
        c.stabilize();
    }
    let snap_index = c.node(3).raw.storage().snapshot().unwrap().metadata.index;
    assert_eq!(snap_index, applied, "node 3 installed the snapshot");
    c.node(1).raw.report_snapshot(3, false);
    c.propose(1, b"after");
    assert_eq!(c.node(3).applied_data(), vec![b"after".to_vec()], "then replicates normally");
}

#[test]
fn proposals_between_readies_go_out_as_one_append_per_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    for i in 0..50u8 {
        c.node(1).raw.propose(vec![i]).unwrap();
    }
    let rd = c.node(1).raw.ready();
    let apps: Vec<&Message> = rd.messages.iter().filter(|m| m.msg_type == MessageType::App).collect();
    assert_eq!(apps.len(), 2, "{apps:?}");
    assert!(apps.iter().all(|m| m.entries.len() == 50));
    assert_eq!(rd.entries.len(), 50);
    c.node(1).raw.advance(rd);
}

#[test]
fn proposals_without_a_leader_are_dropped() {
    let mut c = Cluster::new(&[1, 2, 3]);
    assert_eq!(c.node(2).raw.propose(b"x".to_vec()), Err(Error::ProposalDropped));
}

#[test]
fn bad_input_is_refused_without_panicking() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let n = &mut c.node(2).raw;
    let term = n.status().hard_state.term;
    // A local message type from the network.
    assert_eq!(
        n.step(Message { msg_type: MessageType::Hup, from: 1, to: 2, term, ..Message::default() }),
        Err(Error::StepLocalMsg)
    );
    // A response from a member that does not exist.
    assert_eq!(
        n.step(Message { msg_type: MessageType::AppResp, from: 9, to: 2, term, ..Message::default() }),
        Err(Error::StepPeerNotFound)
    );
    // An append whose entries are not consecutive.
    let bad = Message {
        msg_type: MessageType::App,
        from: 1,
        to: 2,
        term,
        index: 1,
        log_term: 1,
        entries: vec![Entry { index: 5, term, ..Entry::default() }],
        ..Message::default()
    };
    assert!(matches!(n.step(bad), Err(Error::MalformedMessage(_))));
    // Messages from an old term and a snapshot older than the log change nothing.
    let before = n.status();
    n.step(Message { msg_type: MessageType::App, from: 3, to: 2, term: 0x0, ..Message::default() }).ok();
    let old_snap = Snapshot {
        metadata: SnapshotMetadata {
            index: 1,
            term: 1,
            conf_state: ConfState { voters: vec![1, 2, 3], learners: vec![] },
        },
        data: vec![],
    };
    n.step(Message {
        msg_type: MessageType::Snap,
        from: 1,
        to: 2,
        term,
        snapshot: Some(old_snap),
        ..Message::default()
    })
    .unwrap();
    assert_eq!(n.status().hard_state.commit, before.hard_state.commit);
    c.stabilize();
    c.propose(1, b"still fine");
    assert_eq!(c.node(2).applied_data(), vec![b"still fine".to_vec()]);
}

#[test]
fn a_restarted_node_resumes_from_its_persisted_state() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"a");
    let storage = c.node(2).raw.storage().clone();
    let applied = c.node(2).raw.status().applied;
    let mut restarted = RawNode::new(&Config { applied, ..config(2) }, storage).unwrap();
    let status = restarted.status();
    assert_eq!(status.applied, applied);
    assert!(status.hard_state.commit >= applied);
    assert!(!restarted.ready().committed_entries.iter().any(|e| !e.data.is_empty()), "nothing re-applied");
}

#[test]
fn a_corrupt_hard_state_is_an_error_not_a_panic() {
    let mut s = MemStorage::new_with_conf_state(ConfState { voters: vec![1], learners: vec![] });
    s.set_hard_state(cairn_raft::HardState { term: 1, vote: 1, commit: 99 });
    assert!(matches!(RawNode::new(&config(1), s), Err(Error::Storage(_))));
}
