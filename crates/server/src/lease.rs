//! Leases on the server: etcd's Lease service (grant, revoke, keep-alive, time-to-live, list), the applying of
//! lease entries from the raft log into the lessor and the backend, and the leader's duties (expiry and
//! checkpoints) driven by a timer while this member leads.
//!
//! The lessor (crates/lease) is shared behind a mutex between the node loop, which applies grants, revokes,
//! checkpoints and key attachments in log order, and the gRPC side, which renews and reads. Its critical
//! sections do no I/O.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_api::cairnpb::internal_request::Request;
use cairn_api::etcdserverpb::lease_client::LeaseClient;
use cairn_api::etcdserverpb::lease_server::Lease;
use cairn_api::etcdserverpb::request_op::Request as Op;
use cairn_api::etcdserverpb::{
    DeleteRangeRequest, LeaseCheckpoint, LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, RequestOp, ResponseHeader, TxnRequest,
};
use cairn_api::EtcdError;
use cairn_lease::{LeaseError, Lessor, LessorConfig};
use cairn_mvcc::{Batch, LeaseChange, LeaseLookup, Store};
use cairn_storage::Table;
use futures::StreamExt;
use tonic::codegen::BoxStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request as GrpcRequest, Response, Status, Streaming};

use crate::error::{mvcc_to_etcd, ServerError};
use crate::kv::write;
use crate::member::MemberState;
use crate::node::Applied;

/// How often the leader looks for expired leases and due checkpoints (etcd's lessor runLoop).
const LEADER_DUTY_INTERVAL: Duration = Duration::from_millis(500);
/// How long a follower waits to reach the leader for a lease call (and a new leader for its lessor).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Checkpoints proposed in one request (etcd's maxLeaseCheckpointBatchSize).
const CHECKPOINT_BATCH: usize = 1000;

/// The lessor as the server shares it, and a connection to the leader for what only the leader answers.
#[derive(Debug)]
pub struct Leases {
    lessor: Mutex<Lessor>,
    /// (leader id, channel to its client URL): keep-alive and time-to-live on a follower go there, as etcd
    /// forwards them.
    leader: Mutex<Option<(u64, Channel)>>,
}

impl Leases {
    pub fn lock(&self) -> MutexGuard<'_, Lessor> {
        // Every lessor call completes or changes nothing before it could panic: keep serving.
        self.lessor.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A channel to the current leader's client URL (made lazily, reused while it leads).
    fn leader_channel(&self, m: &MemberState, leader: u64) -> Result<Channel, EtcdError> {
        let mut cached = self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((id, ch)) = cached.as_ref() {
            if *id == leader {
                return Ok(ch.clone());
            }
        }
        let url = m
            .shared
            .members()
            .members
            .get(&leader)
            .and_then(|l| l.client_ur_ls.first().cloned())
            .ok_or(EtcdError::NoLeader)?;
        let ch = Endpoint::from_shared(url)
            .map_err(|_| EtcdError::NoLeader)?
            .connect_timeout(FORWARD_TIMEOUT)
            .connect_lazy();
        *cached = Some((leader, ch.clone()));
        Ok(ch)
    }

    /// The leases the backend holds, with the keys the store says are attached to them (on start, and after a
    /// snapshot replaced the store).
    pub fn recover(store: &Store, config: LessorConfig) -> Result<Leases, ServerError> {
        let backend = store.backend();
        let tx = backend.begin_read()?;
        let mut lessor = Lessor::recover(config, &tx).map_err(|e| ServerError::Startup(e.to_string()))?;
        for (key, lease) in store.leased_keys() {
            if lessor.attach(lease, [&key]).is_err() {
                tracing::warn!(lease = format!("{lease:x}"), "a key names a lease that does not exist");
            }
        }
        Ok(Leases { lessor: Mutex::new(lessor), leader: Mutex::new(None) })
    }

    /// Replaces the leases with those of a newly installed snapshot.
    pub fn reload(&self, store: &Store) -> Result<(), ServerError> {
        let config = self.lock().config().clone();
        let fresh = Leases::recover(store, config)?.lessor.into_inner().unwrap_or_else(|e| e.into_inner());
        *self.lock() = fresh;
        Ok(())
    }
}

/// What mvcc asks about leases, answered by the lessor.
struct Known<'a>(&'a Lessor);

impl LeaseLookup for Known<'_> {
    fn lease_exists(&self, id: i64) -> bool {
        self.0.exists(id)
    }
}

/// Runs `f` with the lessor as mvcc's lease lookup, then keeps attachments in step with the keys it changed.
pub fn with_leases<T>(
    leases: &Leases,
    batch: &mut Batch<'_>,
    f: impl FnOnce(&mut Batch<'_>, &dyn LeaseLookup) -> T,
) -> T {
    let mut lessor = leases.lock();
    let out = f(batch, &Known(&lessor));
    apply_lease_changes(&mut lessor, batch.take_lease_changes());
    out
}

fn apply_lease_changes(lessor: &mut Lessor, changes: Vec<LeaseChange>) {
    for c in changes {
        // A detach from a lease being revoked, or a put naming a lease that is gone: nothing to keep in step.
        if c.old != 0 {
            let _ = lessor.detach(c.old, [&c.key]);
        }
        if c.new != 0 {
            let _ = lessor.attach(c.new, [&c.key]);
        }
    }
}

fn lease_error(e: &LeaseError) -> EtcdError {
    match e {
        LeaseError::NotFound => EtcdError::LeaseNotFound,
        LeaseError::LeaseExists => EtcdError::LeaseExist,
        LeaseError::TtlTooLarge => EtcdError::LeaseTtlTooLarge,
        LeaseError::NotPrimary => EtcdError::NotLeader,
        LeaseError::Corrupt(_) | LeaseError::Backend(_) => EtcdError::Corrupt,
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// Applied on every member: grants the lease and records it in the batch's transaction.
pub fn apply_grant(
    leases: &Leases,
    batch: &mut Batch<'_>,
    r: &LeaseGrantRequest,
) -> Result<Applied, EtcdError> {
    let mut lessor = leases.lock();
    let ttl = lessor.grant(r.id, r.ttl, Instant::now()).map_err(|e| lease_error(&e))?;
    if let Some((k, v)) = lessor.record(r.id) {
        batch.put_raw(Table::Lease, k, v);
    }
    Ok(Applied::LeaseGrant(LeaseGrantResponse {
        header: header(batch.current_revision()),
        id: r.id,
        ttl,
        error: String::new(),
    }))
}

/// Applied on every member: removes the lease and deletes its keys, all at one revision.
pub fn apply_revoke(
    leases: &Leases,
    batch: &mut Batch<'_>,
    r: &LeaseRevokeRequest,
) -> Result<Result<Applied, EtcdError>, ServerError> {
    let keys = match leases.lock().revoke(r.id) {
        Ok(keys) => keys,
        Err(e) => return Ok(Err(lease_error(&e))),
    };
    batch.delete_raw(Table::Lease, cairn_lease::record_key(r.id).to_vec());
    if !keys.is_empty() {
        let ops = keys
            .into_iter()
            .map(|key| RequestOp {
                request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key, ..Default::default() })),
            })
            .collect();
        let txn = TxnRequest { success: ops, ..Default::default() };
        with_leases(leases, batch, |b, l| b.txn(&txn, l)).map_err(|e| fatal_or(&e))?;
    }
    Ok(Ok(Applied::LeaseRevoke(LeaseRevokeResponse { header: header(batch.current_revision()) })))
}

/// Applied on every member: records the leases' remaining TTLs (persisted, as etcd 3.5's checkpoint-persist,
/// so a restart keeps them too).
pub fn apply_checkpoint(leases: &Leases, batch: &mut Batch<'_>, r: &LeaseCheckpointRequest) -> Applied {
    let mut lessor = leases.lock();
    let now = Instant::now();
    for c in &r.checkpoints {
        if lessor.checkpoint(c.id, c.remaining_ttl, now) {
            if let Some((k, v)) = lessor.record(c.id) {
                batch.put_raw(Table::Lease, k, v);
            }
        }
    }
    Applied::LeaseCheckpoint(LeaseCheckpointResponse { header: header(batch.current_revision()) })
}

fn fatal_or(e: &cairn_mvcc::MvccError) -> ServerError {
    ServerError::Fatal(format!("revoking a lease's keys: {e} ({})", mvcc_to_etcd(e).message()))
}

/// etcd's lease ids: positive, from the member id's low bits, the time and a counter (idutil), never 0.
fn new_lease_id(member_id: u64) -> i64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let base = ((member_id & 0xffff) << 48) | ((millis << 8) & 0x0000_ffff_ffff_ffff);
    let id = base.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed)) & (i64::MAX as u64);
    i64::try_from(id).unwrap_or(1).max(1)
}

pub async fn grant(m: Arc<MemberState>, mut r: LeaseGrantRequest) -> Result<LeaseGrantResponse, EtcdError> {
    // As etcd's quotaLeaseServer, the quota is checked first.
    crate::alarm::check_quota(&m, crate::alarm::LEASE_COST).await?;
    if r.id == 0 {
        r.id = new_lease_id(m.shared.member_id);
    }
    write(&m, Request::LeaseGrant(r), |a| match a {
        Applied::LeaseGrant(x) => Ok(x),
        other => Err(other),
    })
    .await
}

pub async fn revoke(m: Arc<MemberState>, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse, EtcdError> {
    write(&m, Request::LeaseRevoke(r), |a| match a {
        Applied::LeaseRevoke(x) => Ok(x),
        other => Err(other),
    })
    .await
}

fn revision(m: &MemberState) -> i64 {
    m.shared.store.current_revision()
}

/// Where a call that only the leader can answer goes.
enum Answerer {
    Here,
    Leader(Channel),
}

/// Only the leader knows deadlines: it answers; a follower forwards to it, as etcd does. A member that has just
/// become leader may not have promoted its lessor yet: wait for that, briefly.
async fn answerer(m: &MemberState) -> Result<Answerer, EtcdError> {
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    loop {
        if m.shared.leases.lock().is_primary() {
            return Ok(Answerer::Here);
        }
        let leader = m.shared.leader.load(std::sync::atomic::Ordering::SeqCst);
        if leader != 0 && leader != m.shared.member_id {
            return Ok(Answerer::Leader(m.shared.leases.leader_channel(m, leader)?));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(if leader == 0 { EtcdError::NoLeader } else { EtcdError::NotLeader });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A forwarded call's failure, as the client should see it.
fn forwarded(status: &Status) -> EtcdError {
    EtcdError::from_status(status).unwrap_or(EtcdError::LeaderChanged)
}

pub async fn time_to_live(
    m: Arc<MemberState>,
    r: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, EtcdError> {
    if let Answerer::Leader(ch) = answerer(&m).await? {
        let resp = LeaseClient::new(ch).lease_time_to_live(r).await.map_err(|s| forwarded(&s))?.into_inner();
        return Ok(LeaseTimeToLiveResponse { header: m.header(revision(&m)), ..resp });
    }
    let answer = m.shared.leases.lock().time_to_live(r.id, Instant::now(), r.keys);
    let resp = match answer {
        Ok(t) => LeaseTimeToLiveResponse {
            header: None,
            id: t.id,
            ttl: t.ttl,
            granted_ttl: t.granted_ttl,
            keys: t.keys,
        },
        // etcd answers an unknown lease with TTL -1 rather than an error.
        Err(LeaseError::NotFound) => LeaseTimeToLiveResponse { id: r.id, ttl: -1, ..Default::default() },
        Err(e) => return Err(lease_error(&e)),
    };
    Ok(LeaseTimeToLiveResponse { header: m.header(revision(&m)), ..resp })
}

pub async fn leases(m: Arc<MemberState>, _r: LeaseLeasesRequest) -> Result<LeaseLeasesResponse, EtcdError> {
    // etcd lists leases by expiry (its lessor's Leases()), which on the leader is by time left.
    let now = Instant::now();
    let ids = {
        let lessor = m.shared.leases.lock();
        let mut ids: Vec<(i64, i64)> = lessor
            .leases()
            .into_iter()
            .map(|id| (lessor.time_to_live(id, now, false).map_or(i64::MAX, |t| t.ttl), id))
            .collect();
        ids.sort_unstable();
        ids
    };
    let leases = ids.into_iter().map(|(_, id)| LeaseStatus { id }).collect();
    Ok(LeaseLeasesResponse { header: m.header(revision(&m)), leases })
}

/// One keep-alive: renews on the leader; an unknown or expired lease gets TTL 0, as etcd answers.
pub async fn keep_alive_once(
    m: Arc<MemberState>,
    r: LeaseKeepAliveRequest,
) -> Result<LeaseKeepAliveResponse, EtcdError> {
    if let Answerer::Leader(ch) = answerer(&m).await? {
        let mut answers = LeaseClient::new(ch)
            .lease_keep_alive(futures::stream::iter([r]))
            .await
            .map_err(|s| forwarded(&s))?
            .into_inner();
        let resp = answers.message().await.map_err(|s| forwarded(&s))?.ok_or(EtcdError::LeaderChanged)?;
        return Ok(LeaseKeepAliveResponse { header: m.header(revision(&m)), ..resp });
    }
    let renewed = m.shared.leases.lock().renew(r.id, Instant::now());
    let ttl = match renewed {
        Ok(renewal) => {
            if renewal.clear_checkpoint {
                // Every member must forget the checkpointed remainder, or a later leader counts from it.
                let cp = LeaseCheckpoint { id: r.id, remaining_ttl: 0 };
                let m = Arc::clone(&m);
                tokio::spawn(async move {
                    let req = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints: vec![cp] });
                    if let Err(e) = m.propose(req).await {
                        tracing::debug!(error = %e, "clearing a lease checkpoint failed");
                    }
                });
            }
            renewal.ttl
        }
        Err(LeaseError::NotFound) => 0,
        Err(e) => return Err(lease_error(&e)),
    };
    Ok(LeaseKeepAliveResponse { header: m.header(revision(&m)), id: r.id, ttl })
}

/// The leader's duties: promote/demote the lessor as leadership comes and goes, and while leading propose the
/// revoke of expired leases and the checkpoints that are due. Ends when the member stops.
pub fn start_background(m: &Arc<MemberState>, extend: Duration) {
    let m = Arc::clone(m);
    tokio::spawn(async move {
        let mut leading = m.shared.is_leader.clone();
        let mut tick = tokio::time::interval(LEADER_DUTY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut primary = false;
        loop {
            let now_leader = *leading.borrow_and_update();
            if now_leader != primary {
                primary = now_leader;
                let mut lessor = m.shared.leases.lock();
                if primary {
                    lessor.promote(extend, Instant::now());
                } else {
                    lessor.demote();
                }
            }
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { return },
                _ = tick.tick() => if primary { leader_duties(&m) },
            }
        }
    });
}

fn leader_duties(m: &Arc<MemberState>) {
    let now = Instant::now();
    let (expired, due) = {
        let mut lessor = m.shared.leases.lock();
        let rate = lessor.config().revoke_rate;
        (lessor.expired(now, (rate / 2).max(1)), lessor.checkpoints_due(now, CHECKPOINT_BATCH))
    };
    for id in expired {
        let m = Arc::clone(m);
        tokio::spawn(async move {
            match m.propose(Request::LeaseRevoke(LeaseRevokeRequest { id })).await {
                Ok(_) | Err(EtcdError::LeaseNotFound) => {}
                Err(e) => {
                    tracing::debug!(lease = format!("{id:x}"), error = %e, "revoking an expired lease failed; will retry")
                }
            }
        });
    }
    if !due.is_empty() {
        let checkpoints =
            due.into_iter().map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl }).collect();
        let m = Arc::clone(m);
        tokio::spawn(async move {
            if let Err(e) = m.propose(Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints })).await
            {
                tracing::debug!(error = %e, "proposing lease checkpoints failed");
            }
        });
    }
}

#[derive(Debug, Clone)]
pub struct LeaseService(pub Arc<MemberState>);

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: GrpcRequest<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        Ok(Response::new(grant(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn lease_revoke(
        &self,
        req: GrpcRequest<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        Ok(Response::new(revoke(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn lease_keep_alive(
        &self,
        req: GrpcRequest<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<BoxStream<LeaseKeepAliveResponse>>, Status> {
        let m = Arc::clone(&self.0);
        // One answer per request, in order; the stream ends with the client's side or the first error.
        let responses = req.into_inner().then(move |r| {
            let m = Arc::clone(&m);
            async move {
                match r {
                    Ok(r) => keep_alive_once(m, r).await.map_err(Status::from),
                    // A request that cannot be read (over the size limit) ends the call in grpc-go's words.
                    Err(s) => Err(cairn_api::error::go_size_limit(&s).unwrap_or(s)),
                }
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        req: GrpcRequest<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(time_to_live(Arc::clone(&self.0), req.into_inner()).await?))
    }

    async fn lease_leases(
        &self,
        req: GrpcRequest<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(leases(Arc::clone(&self.0), req.into_inner()).await?))
    }
}
