#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cairn_storage::Backend;

use super::*;
use crate::config::LessorConfig;

const MIN_TTL: i64 = 2;

/// Deterministic time: `Clock(base).at(s)` is `base + s seconds`.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }
    fn at(self, secs: u64) -> Instant {
        self.0 + Duration::from_secs(secs)
    }
    fn at_ms(self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn lessor() -> Lessor {
    Lessor::new(LessorConfig::new(MIN_TTL))
}

fn primary(now: Instant) -> Lessor {
    let mut l = lessor();
    l.promote(Duration::ZERO, now);
    l
}

fn with_checkpoints(interval_secs: u64) -> LessorConfig {
    LessorConfig {
        checkpoint_interval: Some(Duration::from_secs(interval_secs)),
        ..LessorConfig::new(MIN_TTL)
    }
}

fn remaining(l: &Lessor, id: i64, now: Instant) -> i64 {
    l.time_to_live(id, now, false).unwrap().ttl
}

#[test]
fn grant_raises_short_ttls_and_refuses_id_zero_too_large_and_duplicates() {
    let c = Clock::new();
    let mut l = lessor();
    assert_eq!(l.grant(1, 1, c.at(0)).unwrap(), MIN_TTL);
    assert_eq!(l.grant(2, -5, c.at(0)).unwrap(), MIN_TTL);
    assert_eq!(l.grant(3, 60, c.at(0)).unwrap(), 60);
    assert_eq!(l.grant(4, crate::MAX_LEASE_TTL, c.at(0)).unwrap(), crate::MAX_LEASE_TTL);
    assert!(matches!(l.grant(5, crate::MAX_LEASE_TTL + 1, c.at(0)), Err(LeaseError::TtlTooLarge)));
    assert!(matches!(l.grant(3, 10, c.at(0)), Err(LeaseError::LeaseExists)));
    assert!(matches!(l.grant(NO_LEASE, 10, c.at(0)), Err(LeaseError::NotFound)));
    assert_eq!(l.leases(), vec![1, 2, 3, 4]);
    assert_eq!(l.time_to_live(3, c.at(0), false).unwrap().granted_ttl, 60);
    assert!(l.exists(4) && !l.exists(5));
    assert_eq!((l.len(), l.is_empty()), (4, false));
}

#[test]
fn error_messages_are_etcds() {
    assert_eq!(LeaseError::NotFound.to_string(), "lease not found");
    assert_eq!(LeaseError::LeaseExists.to_string(), "lease already exists");
    assert_eq!(LeaseError::TtlTooLarge.to_string(), "too large lease TTL");
    assert_eq!(LeaseError::NotPrimary.to_string(), "not a primary lessor");
}

#[test]
fn revoke_returns_the_attached_keys_sorted_and_forgets_them() {
    let c = Clock::new();
    let mut l = lessor();
    l.grant(1, 10, c.at(0)).unwrap();
    l.grant(2, 10, c.at(0)).unwrap();
    l.attach(1, [&b"zeta"[..], b"alpha", b"mid"]).unwrap();
    l.attach(2, [b"other"]).unwrap();
    // A key put again with another lease moves to it.
    l.attach(2, [b"mid"]).unwrap();
    l.detach(1, [b"alpha", b"other"]).unwrap();
    assert_eq!(l.lease_for_key(b"mid"), Some(2));
    assert_eq!(l.lease_for_key(b"other"), Some(2));
    assert_eq!(l.lease_for_key(b"alpha"), None);
    assert!(matches!(l.attach(9, [b"k"]), Err(LeaseError::NotFound)));
    assert!(matches!(l.detach(9, [b"k"]), Err(LeaseError::NotFound)));

    assert_eq!(l.revoke(1).unwrap(), vec![b"zeta".to_vec()]);
    assert_eq!(l.lease_for_key(b"zeta"), None);
    assert_eq!(l.revoke(2).unwrap(), vec![b"mid".to_vec(), b"other".to_vec()]);
    assert!(matches!(l.revoke(2), Err(LeaseError::NotFound)));
    assert!(l.is_empty());
    assert!(l.key_leases.is_empty());
}

#[test]
fn leases_expire_only_on_the_primary() {
    let c = Clock::new();
    let mut follower = lessor();
    follower.grant(1, 5, c.at(0)).unwrap();
    assert_eq!(follower.expired(c.at(1000), 10), Vec::<i64>::new());
    assert_eq!(remaining(&follower, 1, c.at(1000)), crate::FOREVER_REMAINING_SECS);
    assert!(matches!(follower.renew(1, c.at(0)), Err(LeaseError::NotPrimary)));

    let mut leader = primary(c.at(0));
    leader.grant(1, 5, c.at(0)).unwrap();
    assert_eq!(leader.expired(c.at_ms(4999), 10), Vec::<i64>::new());
    assert_eq!(leader.expired(c.at(5), 10), vec![1]);
}

#[test]
fn renew_restarts_the_deadline_from_the_full_ttl() {
    let c = Clock::new();
    let mut l = primary(c.at(0));
    l.grant(1, 10, c.at(0)).unwrap();
    assert_eq!(remaining(&l, 1, c.at(4)), 6);
    assert_eq!(l.renew(1, c.at(8)).unwrap(), Renewal { ttl: 10, clear_checkpoint: false });
    assert_eq!(remaining(&l, 1, c.at(8)), 10);
    assert_eq!(l.expired(c.at(17), 10), Vec::<i64>::new());
    assert_eq!(l.expired(c.at(18), 10), vec![1]);
    // Past its deadline a lease cannot be renewed: it is being revoked.
    assert!(matches!(l.renew(1, c.at(18)), Err(LeaseError::NotFound)));
    assert!(matches!(l.renew(7, c.at(0)), Err(LeaseError::NotFound)));
}

#[test]
fn time_to_live_rounds_toward_zero_and_goes_negative_past_the_deadline() {
    let c = Clock::new();
    let mut l = primary(c.at(0));
    l.grant(1, 10, c.at(0)).unwrap();
    l.attach(1, [b"b", b"a"]).unwrap();
    let ttl = l.time_to_live(1, c.at_ms(500), true).unwrap();
    assert_eq!(ttl, TimeToLive { id: 1, granted_ttl: 10, ttl: 9, keys: vec![b"a".to_vec(), b"b".to_vec()] });
    assert!(l.time_to_live(1, c.at(0), false).unwrap().keys.is_empty());
    assert_eq!(remaining(&l, 1, c.at_ms(10_500)), 0);
    assert_eq!(remaining(&l, 1, c.at_ms(11_500)), -1);
    assert!(matches!(l.time_to_live(2, c.at(0), false), Err(LeaseError::NotFound)));
}

#[test]
fn promote_restarts_deadlines_at_ttl_plus_extend_and_demote_stops_them() {
    let c = Clock::new();
    let mut l = lessor();
    l.grant(1, 10, c.at(0)).unwrap();
    l.grant(2, 30, c.at(0)).unwrap();
    l.promote(Duration::from_secs(3), c.at(100));
    assert!(l.is_primary());
    assert_eq!(remaining(&l, 1, c.at(100)), 13);
    assert_eq!(remaining(&l, 2, c.at(100)), 33);
    assert_eq!(l.expired(c.at(112), 10), Vec::<i64>::new());
    assert_eq!(l.expired(c.at(113), 10), vec![1]);

    l.demote();
    assert!(!l.is_primary());
    assert_eq!(l.expired(c.at(1000), 10), Vec::<i64>::new());
    assert_eq!(remaining(&l, 2, c.at(1000)), crate::FOREVER_REMAINING_SECS);
    assert_eq!(l.expiries.len(), 0);

    // A lease granted while not primary waits for promote too.
    l.grant(3, 5, c.at(1000)).unwrap();
    l.promote(Duration::from_secs(1), c.at(2000));
    assert_eq!(l.expired(c.at(2005), 10), Vec::<i64>::new());
    assert_eq!(l.expired(c.at(2006), 10), vec![3]);
}

#[test]
fn expired_honours_the_limit_hands_out_once_and_again_after_the_retry_interval() {
    let c = Clock::new();
    let mut l = primary(c.at(0));
    for id in 1..=5 {
        l.grant(id, 10 + id, c.at(0)).unwrap();
    }
    assert_eq!(l.expired(c.at(100), 2), vec![1, 2]);
    assert_eq!(l.expired(c.at(100), 2), vec![3, 4]);
    assert_eq!(l.expired(c.at(100), 2), vec![5]);
    assert_eq!(l.expired(c.at(100), 2), Vec::<i64>::new());
    assert_eq!(l.expired(c.at(102), 10), Vec::<i64>::new());
    // Lease 2's revoke was applied; the others' proposals were lost: after 3 s they come back.
    l.revoke(2).unwrap();
    assert_eq!(l.expired(c.at(103), 10), vec![1, 3, 4, 5]);
    assert_eq!(l.expired(c.at(105), 10), Vec::<i64>::new());
    // A new leader starts over: nothing is handed out before the new deadlines.
    l.demote();
    l.promote(Duration::from_secs(1), c.at(200));
    assert_eq!(l.expired(c.at(211), 10), Vec::<i64>::new());
    assert_eq!(l.expired(c.at(212), 10), vec![1]);
    assert_eq!(l.expired(c.at(212), 0), Vec::<i64>::new());
}

#[test]
fn expired_visits_only_due_entries_among_ten_thousand_leases() {
    let c = Clock::new();
    let mut l = primary(c.at(0));
    for id in 1..=10_000 {
        l.grant(id, 100 + id, c.at(0)).unwrap();
    }
    assert_eq!(l.expired(c.at(100), 1000), Vec::<i64>::new());
    assert_eq!(l.queue_steps, 0);
    assert_eq!(l.expired(c.at(110), 1000), (1..=10).collect::<Vec<i64>>());
    assert_eq!(l.queue_steps, 10);
    assert_eq!(l.expired(c.at(111), 1000), vec![11]);
    assert_eq!(l.queue_steps, 11);
    assert_eq!(l.expiries.len(), 10_000);
}

#[test]
fn promote_spreads_deadlines_that_would_pile_up() {
    let c = Clock::new();
    // Revoke rate 8: at most 6 deadlines per second once 8 or more leases exist.
    let config = LessorConfig { revoke_rate: 8, ..LessorConfig::new(MIN_TTL) };
    let mut l = Lessor::new(config);
    for id in 1..=20 {
        l.grant(id, 10, c.at(0)).unwrap();
    }
    l.promote(Duration::from_secs(2), c.at(0));
    let mut deadlines: Vec<Instant> = l.leases.values().map(|lease| lease.expiry.unwrap()).collect();
    deadlines.sort();
    assert_eq!(deadlines[0], c.at(12));
    assert_eq!(deadlines[5], c.at(12));
    assert!(deadlines[6] > c.at(13));
    for w in deadlines.windows(7) {
        assert!(w[6] - w[0] >= Duration::from_secs(1), "more than 6 deadlines within a second");
    }
    assert!(*deadlines.last().unwrap() < c.at(16));
    assert_eq!(l.expired(c.at(12), 100).len(), 6);

    // Fewer leases than the revoke rate: no spreading.
    let mut l = Lessor::new(LessorConfig { revoke_rate: 8, ..LessorConfig::new(MIN_TTL) });
    for id in 1..=7 {
        l.grant(id, 10, c.at(0)).unwrap();
    }
    l.promote(Duration::ZERO, c.at(0));
    assert_eq!(l.expired(c.at(10), 100).len(), 7);
}

#[test]
fn checkpoints_are_scheduled_for_long_leases_and_report_whole_seconds_left() {
    let c = Clock::new();
    let mut l = Lessor::new(with_checkpoints(60));
    l.promote(Duration::ZERO, c.at(0));
    l.grant(1, 600, c.at(0)).unwrap();
    l.grant(2, 60, c.at(0)).unwrap(); // not longer than the interval: never checkpointed
    l.grant(3, 600, c.at(0)).unwrap();
    assert_eq!(l.checkpoints_due(c.at(59), 10), vec![]);
    assert_eq!(l.checkpoints_due(c.at_ms(60_500), 1), vec![(1, 540)]);
    assert_eq!(l.checkpoints_due(c.at_ms(60_500), 10), vec![(3, 540)]);
    assert_eq!(l.checkpoints_due(c.at(1000), 10), vec![]);
    // Applying the checkpoint schedules the next one.
    assert!(l.checkpoint(1, 540, c.at(61)));
    assert!(!l.checkpoint(9, 540, c.at(61)));
    assert_eq!(l.checkpoints_due(c.at(121), 10), vec![(1, 479)]);
    // Renewed to its full TTL when the checkpoint falls due: nothing to checkpoint.
    l.checkpoint(1, 479, c.at(121));
    l.renew(1, c.at(181)).unwrap();
    assert_eq!(l.checkpoints_due(c.at(181), 10), vec![]);

    // Checkpointing off: nothing is ever due.
    let mut off = primary(c.at(0));
    off.grant(1, 600, c.at(0)).unwrap();
    assert_eq!(off.checkpoints_due(c.at(500), 10), vec![]);
}

#[test]
fn a_checkpointed_remaining_ttl_survives_a_leader_change_until_renewed() {
    let c = Clock::new();
    let mut leader = Lessor::new(with_checkpoints(60));
    let mut follower = Lessor::new(with_checkpoints(60));
    leader.promote(Duration::ZERO, c.at(0));
    leader.grant(1, 600, c.at(0)).unwrap();
    follower.grant(1, 600, c.at(0)).unwrap();
    let due = leader.checkpoints_due(c.at(60), 10);
    assert_eq!(due, vec![(1, 540)]);
    for l in [&mut leader, &mut follower] {
        l.checkpoint(1, 540, c.at(60));
    }
    // The leader's own deadline is unchanged by the checkpoint.
    assert_eq!(remaining(&leader, 1, c.at(60)), 540);

    // Leadership moves to the follower: it counts from the checkpoint, not from 600.
    leader.demote();
    follower.promote(Duration::from_secs(2), c.at(100));
    assert_eq!(remaining(&follower, 1, c.at(100)), 542);
    // And back: the old leader too.
    follower.demote();
    leader.promote(Duration::from_secs(2), c.at(200));
    assert_eq!(remaining(&leader, 1, c.at(200)), 542);

    // A keep-alive clears the remainder; the server replicates that as a checkpoint of 0.
    let renewal = leader.renew(1, c.at(210)).unwrap();
    assert_eq!(renewal, Renewal { ttl: 600, clear_checkpoint: true });
    assert_eq!(remaining(&leader, 1, c.at(210)), 600);
    for l in [&mut leader, &mut follower] {
        l.checkpoint(1, 0, c.at(211));
    }
    assert_eq!(leader.renew(1, c.at(220)).unwrap(), Renewal { ttl: 600, clear_checkpoint: false });
    leader.demote();
    follower.promote(Duration::from_secs(2), c.at(300));
    assert_eq!(remaining(&follower, 1, c.at(300)), 602);
}

#[test]
fn records_round_trip_through_the_backend() {
    let c = Clock::new();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::open(&dir.path().join("db")).unwrap();
    let mut l = Lessor::new(with_checkpoints(60));
    l.grant(7, 600, c.at(0)).unwrap();
    l.grant(0x1234_5678, 1, c.at(0)).unwrap();
    l.checkpoint(7, 300, c.at(0));
    assert_eq!(l.record(99), None);
    let records: Vec<(Vec<u8>, Vec<u8>)> = l.leases().into_iter().map(|id| l.record(id).unwrap()).collect();
    assert_eq!(records[0].0, 7i64.to_be_bytes().to_vec());
    let mut w = backend.begin_write().unwrap();
    w.put_all(TABLE, records.iter().map(|(k, v)| (&k[..], &v[..]))).unwrap();
    w.commit(true).unwrap();

    let mut r = Lessor::recover(with_checkpoints(60), &backend.begin_read().unwrap()).unwrap();
    assert_eq!(r.leases(), vec![7, 0x1234_5678]);
    assert!(!r.is_primary());
    assert_eq!(r.expired(c.at(10_000), 10), Vec::<i64>::new());
    r.promote(Duration::from_secs(1), c.at(50));
    assert_eq!(remaining(&r, 7, c.at(50)), 301);
    assert_eq!(r.time_to_live(0x1234_5678, c.at(50), false).unwrap().granted_ttl, MIN_TTL);
    assert_eq!(r.record(7), l.record(7));

    // A raised minimum applies to recovered leases too.
    let r = Lessor::recover(LessorConfig::new(1000), &backend.begin_read().unwrap()).unwrap();
    assert_eq!(r.time_to_live(7, c.at(0), false).unwrap().granted_ttl, 1000);

    let mut w = backend.begin_write().unwrap();
    w.put_all(TABLE, [(&record_key(8)[..], &b"\xff\xff"[..])]).unwrap();
    w.commit(true).unwrap();
    let err = Lessor::recover(LessorConfig::new(MIN_TTL), &backend.begin_read().unwrap()).unwrap_err();
    assert!(matches!(err, LeaseError::Corrupt(_)), "{err}");
}

#[test]
fn from_records_refuses_id_zero_and_duplicates() {
    let rec = |id| LeaseRecord { id, ttl: 10, remaining_ttl: 0 };
    assert!(matches!(Lessor::from_records(LessorConfig::new(2), [rec(0)]), Err(LeaseError::Corrupt(_))));
    assert!(matches!(
        Lessor::from_records(LessorConfig::new(2), [rec(1), rec(1)]),
        Err(LeaseError::Corrupt(_))
    ));
}
