//! A time-ordered queue of lease ids holding at most one time per id: setting an id again moves it. The lessor
//! keeps two (expiries, checkpoints). etcd uses a heap and skips stale entries when they surface; an ordered set
//! plus an index keeps the queue exactly as large as the set of scheduled leases and makes removal O(log n).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct TimeQueue {
    by_time: BTreeSet<(Instant, i64)>,
    by_id: HashMap<i64, Instant>,
}

impl TimeQueue {
    /// Schedules `id` at `at`, replacing any earlier schedule of it.
    pub(crate) fn set(&mut self, id: i64, at: Instant) {
        if let Some(old) = self.by_id.insert(id, at) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((at, id));
    }

    /// Unschedules `id`; nothing happens if it was not scheduled.
    pub(crate) fn remove(&mut self, id: i64) {
        if let Some(old) = self.by_id.remove(&id) {
            self.by_time.remove(&(old, id));
        }
    }

    /// When `id` is scheduled.
    pub(crate) fn get(&self, id: i64) -> Option<Instant> {
        self.by_id.get(&id).copied()
    }

    /// Removes and returns the earliest id scheduled at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, i64)> {
        let &(at, id) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.by_id.remove(&id);
        Some((at, id))
    }

    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.by_time.len(), self.by_id.len());
        self.by_id.len()
    }

    pub(crate) fn clear(&mut self) {
        self.by_time.clear();
        self.by_id.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pops_due_ids_in_time_then_id_order_and_moves_rescheduled_ids() {
        let base = Instant::now();
        let at = |s| base + Duration::from_secs(s);
        let mut q = TimeQueue::default();
        q.set(3, at(5));
        q.set(1, at(5));
        q.set(2, at(1));
        q.set(4, at(9));
        q.set(4, at(2)); // moved, not duplicated
        assert_eq!(q.len(), 4);
        assert_eq!(q.get(4), Some(at(2)));
        q.remove(2);
        q.remove(7);
        assert_eq!(q.pop_due(at(0)), None);
        assert_eq!(q.pop_due(at(5)), Some((at(2), 4)));
        assert_eq!(q.pop_due(at(5)), Some((at(5), 1)));
        assert_eq!(q.pop_due(at(5)), Some((at(5), 3)));
        assert_eq!(q.pop_due(at(100)), None);
        assert_eq!(q.len(), 0);
        q.set(8, at(1));
        q.clear();
        assert_eq!((q.len(), q.get(8)), (0, None));
    }
}
