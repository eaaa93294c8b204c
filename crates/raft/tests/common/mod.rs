//! An in-memory cluster of RawNodes for tests: every node follows the Ready contract (persist, send, apply,
//! advance) against a MemStorage that stands for its disk; the network is a queue the test controls.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries, each using part of it

use std::collections::{BTreeMap, BTreeSet};

use cairn_raft::{
    ConfChange, ConfState, Config, Entry, EntryType, MemStorage, Message, RawNode, Ready, StateRole, Storage,
};

pub fn config(id: u64) -> Config {
    Config { id, election_tick: 10, heartbeat_tick: 1, seed: 7, ..Config::default() }
}

/// One member: its node, its "disk", and its state machine (applied normal entries with data).
pub struct Node {
    pub raw: RawNode<MemStorage>,
    pub applied: Vec<Entry>,
    pub conf_state: ConfState,
}

impl Node {
    pub fn new(cfg: &Config, storage: MemStorage) -> Node {
        let conf_state = storage.initial_state().unwrap().1;
        Node { raw: RawNode::new(cfg, storage).unwrap(), applied: Vec::new(), conf_state }
    }

    pub fn role(&self) -> StateRole {
        self.raw.status().soft_state.role
    }

    pub fn term(&self) -> u64 {
        self.raw.status().hard_state.term
    }

    pub fn commit(&self) -> u64 {
        self.raw.status().hard_state.commit
    }

    /// Handles one Ready the way a server must; returns its messages.
    pub fn handle_ready(&mut self) -> Vec<Message> {
        if !self.raw.has_ready() {
            return Vec::new();
        }
        let rd: Ready = self.raw.ready();
        let s = self.raw.storage_mut();
        if let Some(snap) = &rd.snapshot {
            s.apply_snapshot(snap.clone()).unwrap();
            self.conf_state = snap.metadata.conf_state.clone();
        }
        s.append(&rd.entries).unwrap();
        if let Some(hs) = rd.hard_state {
            s.set_hard_state(hs);
        }
        let messages = rd.messages.clone();
        for e in &rd.committed_entries {
            match e.entry_type {
                EntryType::Normal if !e.data.is_empty() => self.applied.push(e.clone()),
                EntryType::Normal => {}
                EntryType::ConfChange => {
                    let cc = ConfChange::decode(&e.data).unwrap();
                    self.conf_state = self.raw.apply_conf_change(&cc);
                }
            }
        }
        self.raw.advance(rd);
        messages
    }

    pub fn applied_data(&self) -> Vec<Vec<u8>> {
        self.applied.iter().map(|e| e.data.to_vec()).collect()
    }
}

/// Nodes plus a network of queued messages with optional cut links.
pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    pub queue: Vec<Message>,
    /// Directed links that drop everything.
    pub cut: BTreeSet<(u64, u64)>,
}

impl Cluster {
    pub fn new(ids: &[u64]) -> Cluster {
        Self::with_config(ids, config)
    }

    pub fn with_config(ids: &[u64], cfg: impl Fn(u64) -> Config) -> Cluster {
        Self::bootstrapped(&ConfState { voters: ids.to_vec(), learners: vec![] }, cfg)
    }

    /// Every member of `cs` bootstrapped as etcd does: the membership as the first log entries.
    pub fn bootstrapped(cs: &ConfState, cfg: impl Fn(u64) -> Config) -> Cluster {
        let mut nodes = BTreeMap::new();
        for &id in cs.voters.iter().chain(&cs.learners) {
            let mut node = Node::new(&cfg(id), MemStorage::new());
            node.raw.bootstrap(cs).unwrap();
            node.handle_ready();
            nodes.insert(id, node);
        }
        Cluster { nodes, queue: Vec::new(), cut: BTreeSet::new() }
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Collects every node's Ready output into the queue.
    pub fn collect(&mut self) {
        for node in self.nodes.values_mut() {
            let msgs = node.handle_ready();
            self.queue.extend(msgs);
        }
    }

    /// Delivers messages and handles readies until quiet (bounded).
    pub fn stabilize(&mut self) {
        for _ in 0..1000 {
            self.collect();
            if self.queue.is_empty() {
                return;
            }
            for m in std::mem::take(&mut self.queue) {
                self.deliver(m);
            }
        }
        panic!("cluster did not stabilize");
    }

    pub fn deliver(&mut self, m: Message) {
        if self.cut.contains(&(m.from, m.to)) {
            return;
        }
        if let Some(n) = self.nodes.get_mut(&m.to) {
            let _ = n.raw.step(m);
        }
    }

    pub fn isolate(&mut self, id: u64) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn tick(&mut self, id: u64, n: usize) {
        for _ in 0..n {
            self.node(id).raw.tick();
        }
    }

    /// Elects `id` (campaign, then deliver everything).
    pub fn elect(&mut self, id: u64) {
        self.node(id).raw.campaign().unwrap();
        self.stabilize();
        assert_eq!(self.node(id).role(), StateRole::Leader, "node {id} should lead");
    }

    pub fn leader(&self) -> Option<u64> {
        self.nodes.iter().find(|(_, n)| n.role() == StateRole::Leader).map(|(&id, _)| id)
    }

    pub fn propose(&mut self, id: u64, data: &[u8]) {
        self.node(id).raw.propose(data.to_vec()).unwrap();
        self.stabilize();
    }
}
