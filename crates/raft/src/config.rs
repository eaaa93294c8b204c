//! A node's Raft parameters, as etcd raft's Config.

use crate::Error;

#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id; never 0.
    pub id: u64,
    /// Ticks without hearing from a leader before campaigning (randomized in [election_tick, 2 * election_tick)).
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// The last index the state machine applied, when restarting.
    pub applied: u64,
    /// Bytes of entries per append message.
    pub max_size_per_msg: u64,
    /// Bytes of committed entries handed out per Ready.
    pub max_committed_size_per_ready: u64,
    /// Appends in flight per follower in replicate state.
    pub max_inflight_msgs: usize,
    /// A leader steps down when it has not heard from a quorum for an election timeout.
    pub check_quorum: bool,
    /// Campaign in two phases so a partitioned node cannot inflate terms (Raft thesis §9.6).
    pub pre_vote: bool,
    /// Seeds the election timeout randomization (with the id): runs are reproducible.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 0,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            max_size_per_msg: 1024 * 1024,
            max_committed_size_per_ready: 64 * 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            seed: 0,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why: &str| Err(Error::InvalidConfig(why.to_owned()));
        if self.id == 0 {
            return invalid("cannot use 0 as id");
        }
        if self.heartbeat_tick == 0 {
            return invalid("heartbeat tick must be greater than 0");
        }
        if self.election_tick <= self.heartbeat_tick {
            return invalid("election tick must be greater than heartbeat tick");
        }
        if self.max_inflight_msgs == 0 {
            return invalid("max inflight messages must be greater than 0");
        }
        Ok(())
    }
}
