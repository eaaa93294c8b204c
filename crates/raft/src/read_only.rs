//! Linearizable reads by ReadIndex (Raft thesis §6.4): the leader notes its commit index, confirms it is still
//! leader with a heartbeat round carrying the request's context, then answers with that index.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::types::Message;

#[derive(Debug, Clone)]
pub struct ReadIndexStatus {
    pub req: Message,
    pub index: u64,
    pub acks: HashSet<u64>,
}

/// Pending read requests, in arrival order, keyed by their context.
#[derive(Debug, Default)]
pub struct ReadOnly {
    pending: HashMap<Vec<u8>, ReadIndexStatus>,
    queue: VecDeque<Vec<u8>>,
}

/// Bound on pending reads: past it new reads are dropped (the client retries) rather than queued without limit.
pub const MAX_PENDING_READS: usize = 65_536;

impl ReadOnly {
    /// Queues a read at `index`; false if dropped (duplicate context or too many pending).
    pub fn add_request(&mut self, index: u64, req: Message, ctx: Vec<u8>, self_id: u64) -> bool {
        if self.pending.contains_key(&ctx) || self.queue.len() >= MAX_PENDING_READS {
            return false;
        }
        self.pending.insert(ctx.clone(), ReadIndexStatus { req, index, acks: HashSet::from([self_id]) });
        self.queue.push_back(ctx);
        true
    }

    /// Records a heartbeat ack for `ctx`; returns the number of acks so far.
    pub fn recv_ack(&mut self, id: u64, ctx: &[u8]) -> Option<usize> {
        let rs = self.pending.get_mut(ctx)?;
        rs.acks.insert(id);
        Some(rs.acks.len())
    }

    pub fn acks(&self, ctx: &[u8]) -> Option<&HashSet<u64>> {
        self.pending.get(ctx).map(|rs| &rs.acks)
    }

    /// Everything queued up to and including `ctx`, now confirmed (a later read's confirmation confirms earlier
    /// ones too, since the heartbeat round happened after they were queued).
    pub fn advance(&mut self, ctx: &[u8]) -> Vec<ReadIndexStatus> {
        let Some(pos) = self.queue.iter().position(|c| c.as_slice() == ctx) else { return Vec::new() };
        self.queue.drain(..=pos).filter_map(|c| self.pending.remove(&c)).collect()
    }

    pub fn last_pending_ctx(&self) -> Option<&[u8]> {
        self.queue.back().map(Vec::as_slice)
    }

    pub fn reset(&mut self) {
        self.pending.clear();
        self.queue.clear();
    }
}
