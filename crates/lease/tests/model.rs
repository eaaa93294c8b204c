//! The lessor against a model that keeps every lease in a sorted map and scans all of them: random sequences of
//! applied and local operations must give the same answers, and the same expired-lease hand-outs, on both.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cairn_lease::{LeaseError, Lessor, LessorConfig, Renewal, FOREVER_REMAINING_SECS, MAX_LEASE_TTL};
use proptest::prelude::*;

const MIN_TTL: i64 = 2;
const RETRY_MS: u64 = 3000;
const KEYS: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

#[derive(Debug, Clone)]
enum Op {
    Grant { id: i64, ttl: i64 },
    Revoke(i64),
    Renew(i64),
    Checkpoint { id: i64, remaining: i64 },
    Attach { id: i64, key: usize },
    Detach { id: i64, key: usize },
    Advance(u64),
    Promote { extend_ms: u64 },
    Demote,
    Expired { limit: usize },
    TimeToLive(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0i64..6;
    prop_oneof![
        3 => (id.clone(), prop_oneof![-1i64..20, Just(MAX_LEASE_TTL + 1)])
            .prop_map(|(id, ttl)| Op::Grant { id, ttl }),
        1 => id.clone().prop_map(Op::Revoke),
        2 => id.clone().prop_map(Op::Renew),
        1 => (id.clone(), 0i64..20).prop_map(|(id, remaining)| Op::Checkpoint { id, remaining }),
        2 => (id.clone(), 0..KEYS.len()).prop_map(|(id, key)| Op::Attach { id, key }),
        1 => (id.clone(), 0..KEYS.len()).prop_map(|(id, key)| Op::Detach { id, key }),
        // Whole and half seconds often, so time lands exactly on deadlines and retry times.
        3 => prop_oneof![0u64..6000, (0u64..12).prop_map(|h| h * 500)].prop_map(Op::Advance),
        1 => prop_oneof![0u64..3000, (0u64..3).prop_map(|s| s * 1000)].prop_map(|extend_ms| Op::Promote { extend_ms }),
        1 => Just(Op::Demote),
        3 => (0usize..4).prop_map(|limit| Op::Expired { limit }),
        2 => id.prop_map(Op::TimeToLive),
    ]
}

#[derive(Debug, Default)]
struct ModelLease {
    ttl: i64,
    remaining_ttl: i64,
    /// Milliseconds after the base instant; None = never.
    expiry: Option<u64>,
    /// When the lease is next handed out as expired.
    hand_out_at: Option<u64>,
    keys: BTreeSet<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Model {
    leases: BTreeMap<i64, ModelLease>,
    primary: bool,
    now: u64,
}

impl Model {
    fn refresh(now: u64, extend: u64, l: &mut ModelLease) {
        let ttl = if l.remaining_ttl > 0 { l.remaining_ttl } else { l.ttl };
        let at = now + extend + u64::try_from(ttl).unwrap() * 1000;
        l.expiry = Some(at);
        l.hand_out_at = Some(at);
    }

    fn owner(&self, key: &[u8]) -> Option<i64> {
        self.leases.iter().find(|(_, l)| l.keys.contains(key)).map(|(&id, _)| id)
    }

    /// The result each operation gives, as a string both sides are compared on.
    fn apply(&mut self, op: &Op) -> String {
        let now = self.now;
        match *op {
            Op::Grant { id, ttl } => {
                if id == 0 {
                    return format!("{:?}", Err::<i64, _>(LeaseError::NotFound));
                }
                if ttl > MAX_LEASE_TTL {
                    return format!("{:?}", Err::<i64, _>(LeaseError::TtlTooLarge));
                }
                if self.leases.contains_key(&id) {
                    return format!("{:?}", Err::<i64, _>(LeaseError::LeaseExists));
                }
                let mut l = ModelLease { ttl: ttl.max(MIN_TTL), ..ModelLease::default() };
                if self.primary {
                    Model::refresh(now, 0, &mut l);
                }
                let granted = l.ttl;
                self.leases.insert(id, l);
                format!("{:?}", Ok::<i64, LeaseError>(granted))
            }
            Op::Revoke(id) => match self.leases.remove(&id) {
                Some(l) => format!("{:?}", Ok::<_, LeaseError>(l.keys.into_iter().collect::<Vec<_>>())),
                None => format!("{:?}", Err::<Vec<Vec<u8>>, _>(LeaseError::NotFound)),
            },
            Op::Renew(id) => {
                let r = if !self.primary {
                    Err(LeaseError::NotPrimary)
                } else {
                    match self.leases.get_mut(&id) {
                        Some(l) if l.expiry.is_some_and(|e| e > now) => {
                            let clear_checkpoint = l.remaining_ttl > 0;
                            l.remaining_ttl = 0;
                            Model::refresh(now, 0, l);
                            Ok(Renewal { ttl: l.ttl, clear_checkpoint })
                        }
                        _ => Err(LeaseError::NotFound),
                    }
                };
                format!("{r:?}")
            }
            Op::Checkpoint { id, remaining } => match self.leases.get_mut(&id) {
                Some(l) => {
                    l.remaining_ttl = remaining;
                    "true".to_owned()
                }
                None => "false".to_owned(),
            },
            Op::Attach { id, key } | Op::Detach { id, key } => {
                if !self.leases.contains_key(&id) {
                    return format!("{:?}", Err::<(), _>(LeaseError::NotFound));
                }
                let key = KEYS[key];
                let attach = matches!(op, Op::Attach { .. });
                if attach {
                    if let Some(old) = self.owner(key) {
                        self.leases.get_mut(&old).unwrap().keys.remove(key);
                    }
                    self.leases.get_mut(&id).unwrap().keys.insert(key.to_vec());
                } else {
                    self.leases.get_mut(&id).unwrap().keys.remove(key);
                }
                format!("{:?}", Ok::<(), LeaseError>(()))
            }
            Op::Advance(ms) => {
                self.now += ms;
                String::new()
            }
            Op::Promote { extend_ms } => {
                self.primary = true;
                for l in self.leases.values_mut() {
                    Model::refresh(now, extend_ms, l);
                }
                String::new()
            }
            Op::Demote => {
                self.primary = false;
                for l in self.leases.values_mut() {
                    l.expiry = None;
                    l.hand_out_at = None;
                }
                String::new()
            }
            Op::Expired { limit } => {
                let mut due: Vec<(u64, i64)> = self
                    .leases
                    .iter()
                    .filter_map(|(&id, l)| l.hand_out_at.filter(|&at| at <= now).map(|at| (at, id)))
                    .collect();
                due.sort_unstable();
                due.truncate(limit);
                for &(_, id) in &due {
                    self.leases.get_mut(&id).unwrap().hand_out_at = Some(now + RETRY_MS);
                }
                format!("{:?}", due.iter().map(|&(_, id)| id).collect::<Vec<_>>())
            }
            Op::TimeToLive(id) => match self.leases.get(&id) {
                Some(l) => {
                    let ttl = match l.expiry {
                        None => FOREVER_REMAINING_SECS,
                        Some(e) => (i64::try_from(e).unwrap() - i64::try_from(now).unwrap()) / 1000,
                    };
                    format!("{} {} {:?}", l.ttl, ttl, l.keys.iter().collect::<Vec<_>>())
                }
                None => format!("{:?}", LeaseError::NotFound),
            },
        }
    }
}

fn run(l: &mut Lessor, op: &Op, base: Instant, now_ms: &mut u64) -> String {
    let now = base + Duration::from_millis(*now_ms);
    match *op {
        Op::Grant { id, ttl } => format!("{:?}", l.grant(id, ttl, now)),
        Op::Revoke(id) => format!("{:?}", l.revoke(id)),
        Op::Renew(id) => format!("{:?}", l.renew(id, now)),
        Op::Checkpoint { id, remaining } => l.checkpoint(id, remaining, now).to_string(),
        Op::Attach { id, key } => format!("{:?}", l.attach(id, [KEYS[key]])),
        Op::Detach { id, key } => format!("{:?}", l.detach(id, [KEYS[key]])),
        Op::Advance(ms) => {
            *now_ms += ms;
            String::new()
        }
        Op::Promote { extend_ms } => {
            l.promote(Duration::from_millis(extend_ms), now);
            String::new()
        }
        Op::Demote => {
            l.demote();
            String::new()
        }
        Op::Expired { limit } => format!("{:?}", l.expired(now, limit)),
        Op::TimeToLive(id) => match l.time_to_live(id, now, true) {
            Ok(t) => format!("{} {} {:?}", t.granted_ttl, t.ttl, t.keys.iter().collect::<Vec<_>>()),
            Err(e) => format!("{e:?}"),
        },
    }
}

proptest! {
    #[test]
    fn lessor_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let base = Instant::now();
        let mut lessor = Lessor::new(LessorConfig::new(MIN_TTL));
        let mut model = Model::default();
        let mut now_ms = 0;
        for (step, op) in ops.iter().enumerate() {
            let got = run(&mut lessor, op, base, &mut now_ms);
            let want = model.apply(op);
            prop_assert_eq!(&got, &want, "step {} {:?}", step, op);
            prop_assert_eq!(lessor.leases(), model.leases.keys().copied().collect::<Vec<_>>());
            prop_assert_eq!(lessor.is_primary(), model.primary);
            for key in KEYS {
                prop_assert_eq!(lessor.lease_for_key(key), model.owner(key), "owner of {:?}", key);
            }
        }
    }
}
