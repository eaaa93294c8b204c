//! The node loop's cluster duties: proposing membership changes (with etcd's promotion check), following
//! leadership (the leader hook, reads and proposals a leader change lost), installing a snapshot from the
//! leader, and keeping the shared membership and the transport's peers in step with what was applied.

use std::sync::atomic::Ordering;

use cairn_api::EtcdError;
use cairn_raft::{ConfChange, ConfChangeType, Snapshot, StateRole};
use cairn_storage::wal::SnapshotMarker;
use tokio::sync::oneshot;

use super::open::encode_conf_state;
use super::Node;
use crate::error::ServerError;
use crate::membership::{self, Membership};

impl Node {
    pub(super) fn propose_conf_change(
        &mut self,
        mut change: ConfChange,
        member: Option<cairn_api::etcdserverpb::Member>,
        refusal: Option<EtcdError>,
        reply: oneshot::Sender<Result<(), EtcdError>>,
    ) {
        let promoting = change.change_type == ConfChangeType::AddNode
            && self.conf_state.learners.contains(&change.node_id);
        if promoting {
            // etcd's isLearnerReady: only the leader knows, and the learner must have 90% of its log.
            let status = self.raw.status();
            if status.soft_state.role != StateRole::Leader {
                let _ = reply.send(Err(EtcdError::NotLeader));
                return;
            }
            let leader_match = status.progress.get(&self.shared.member_id).map_or(0, |p| p.matched);
            let learner_match = status.progress.get(&change.node_id).map_or(0, |p| p.matched);
            if (learner_match as f64) < (leader_match as f64) * 0.9 {
                let _ = reply.send(Err(EtcdError::LearnerNotReady));
                return;
            }
        }
        if let Some(e) = refusal {
            let _ = reply.send(Err(crate::membership_api::refused("member promote", e)));
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        change.context = membership::encode_context(id, member.as_ref());
        match self.raw.propose_conf_change(&change) {
            Ok(()) => {
                self.conf_waiters.insert(id, reply);
            }
            Err(_) => {
                let _ = reply.send(Err(EtcdError::NoLeader));
            }
        }
    }

    /// Leadership moved (or was lost): publish it, and stop waiting for what the old leader may have lost.
    pub(super) fn leader_changed(&mut self, ss: cairn_raft::SoftState) {
        let previous = self.shared.leader.swap(ss.leader_id, Ordering::SeqCst);
        let leading = ss.role == StateRole::Leader;
        self.is_leader.send_if_modified(|l| std::mem::replace(l, leading) != leading);
        if ss.leader_id == previous {
            return;
        }
        if previous != 0 || ss.leader_id == 0 {
            tracing::info!(
                leader = format!("{:x}", ss.leader_id),
                previous = format!("{previous:x}"),
                "raft leader changed"
            );
        }
        // Reads waiting on a leader that is gone will never be confirmed: let clients retry.
        for (_, waiters) in self.reads_pending.drain() {
            for w in waiters {
                let _ = w.send(Err(EtcdError::LeaderChanged));
            }
        }
        if ss.leader_id != 0 {
            let ids: Vec<u64> = self.waiters.keys().chain(self.conf_waiters.keys()).copied().collect();
            if !ids.is_empty() {
                let term = self.raw.status().hard_state.term;
                self.fences.push_back((term, ids));
            }
        }
    }

    /// Installs a snapshot raft accepted: the WAL marker first (a restart installs the staged file if we stop
    /// midway), then the backend file, then the log and the membership it carries.
    pub(super) fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ServerError> {
        let index = snapshot.metadata.index;
        let Some(path) = self.snapshot_files.remove(&index) else {
            return Err(ServerError::Fatal(format!(
                "raft installs snapshot {index} but no such file was received"
            )));
        };
        let stale: Vec<u64> = self.snapshot_files.range(..index).map(|(&i, _)| i).collect();
        for i in stale {
            if let Some(p) = self.snapshot_files.remove(&i) {
                let _ = std::fs::remove_file(p);
            }
        }
        let fatal = |what: &str, e: &dyn std::fmt::Display| ServerError::Fatal(format!("{what}: {e}"));
        let data = encode_conf_state(&snapshot.metadata.conf_state);
        self.wal.save_snapshot(SnapshotMarker { index, term: snapshot.metadata.term, data })?;
        self.wal.sync()?;
        let point = self
            .shared
            .store
            .restore_from(&path, &self.backend_path)
            .map_err(|e| fatal("installing the snapshot", &e))?;
        self.shared.leases.reload(&self.shared.store)?;
        self.shared.alarms.reload(&self.shared.store)?;
        self.raw.storage_mut().apply_snapshot(snapshot.clone()).map_err(|e| fatal("raft log", &e))?;
        self.conf_state = snapshot.metadata.conf_state.clone();
        self.membership = Membership::load(&self.shared.store.backend())?;
        self.membership_changed();
        self.applied = index;
        self.snapshot_index = index;
        self.shared.applied_index.store(point.consistent_index.max(index), Ordering::SeqCst);
        tracing::info!(index, backend_index = point.consistent_index, "installed a snapshot from the leader");
        Ok(())
    }

    pub(super) fn membership_changed(&mut self) {
        let me = self.shared.member_id;
        self.shared
            .is_learner
            .store(self.membership.members.get(&me).is_some_and(|m| m.is_learner), Ordering::SeqCst);
        if let Ok(mut m) = self.shared.membership.write() {
            *m = self.membership.clone();
        }
        self.transport.set_peers(&self.membership);
    }
}
