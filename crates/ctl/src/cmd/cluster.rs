//! member add|remove|update|list|promote and endpoint health|status|hashkv (etcdctl's member_command.go and
//! ep_command.go).

use std::time::Instant;

use cairn_api::etcdserverpb::{
    HashKvRequest, MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest,
};
use cairn_api::EtcdError;
use cairn_client::{ClientError, GetOptions};

use crate::cli::{EndpointArgs, EndpointCommand, MemberAddArgs, MemberCommand, MemberUpdateArgs, Positional};
use crate::ctx::Ctx;
use crate::error::{client_message, CtlError, ExitCode, Result};
use crate::gofmt::{duration_string, quote};
use crate::printer::{EpHashKv, EpHealth, EpStatus, Format};

fn member_id(args: &[String]) -> Result<u64> {
    let [arg] = args else {
        return Err(CtlError::bad_args("member ID is not provided"));
    };
    u64::from_str_radix(arg, 16).map_err(|_| {
        CtlError::bad_args(format!(
            "bad member ID arg (strconv.ParseUint: parsing {}: invalid syntax), expecting ID in Hex",
            quote(arg.as_bytes())
        ))
    })
}

pub async fn member(ctx: &mut Ctx, c: MemberCommand) -> Result<()> {
    match c {
        MemberCommand::Add(a) => add(ctx, a).await,
        MemberCommand::Remove(a) => {
            let id = member_id(&a.args)?;
            let client = ctx.client().await?;
            let resp = ctx.call(client.member_remove(MemberRemoveRequest { id })).await?;
            ctx.printer.member_remove(&mut ctx.out, id, &resp)
        }
        MemberCommand::Update(a) => update(ctx, a).await,
        MemberCommand::List(_) => {
            let client = ctx.client().await?;
            let resp = ctx.call(client.member_list()).await?;
            ctx.printer.member_list(&mut ctx.out, &resp)
        }
        MemberCommand::Promote(a) => {
            let id = member_id(&a.args)?;
            let client = ctx.client().await?;
            let resp = ctx.call(client.member_promote(MemberPromoteRequest { id })).await?;
            ctx.printer.member_promote(&mut ctx.out, id, &resp)
        }
    }
}

async fn add(ctx: &mut Ctx, a: MemberAddArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("member name not provided"));
    }
    let name = a.args[0].clone();
    if a.peer_urls.is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    let urls: Vec<String> = a.peer_urls.split(',').map(str::to_owned).collect();
    let client = ctx.client().await?;
    let resp =
        ctx.call(client.member_add(MemberAddRequest { peer_ur_ls: urls, is_learner: a.learner })).await?;
    if ctx.printer.format != Format::Simple {
        return ctx.printer.member_add(&mut ctx.out, &resp);
    }
    let new = resp.member.clone().unwrap_or_default();
    let cluster = resp.header.map_or(0, |h| h.cluster_id);
    let mut text = format!("Member {:16x} added to cluster {cluster:16x}\n", new.id);
    let mut conf = Vec::new();
    for m in &resp.members {
        for u in &m.peer_ur_ls {
            let n = if m.id == new.id { &name } else { &m.name };
            conf.push(format!("{n}={u}"));
        }
    }
    text.push('\n');
    text.push_str(&format!("ETCD_NAME={}\n", quote(name.as_bytes())));
    text.push_str(&format!("ETCD_INITIAL_CLUSTER={}\n", quote(conf.join(",").as_bytes())));
    text.push_str(&format!("ETCD_INITIAL_ADVERTISE_PEER_URLS={}\n", quote(a.peer_urls.as_bytes())));
    text.push_str("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
    ctx.out.extend_from_slice(text.as_bytes());
    Ok(())
}

async fn update(ctx: &mut Ctx, a: MemberUpdateArgs) -> Result<()> {
    let id = member_id(&a.args)?;
    if a.peer_urls.is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    let urls: Vec<String> = a.peer_urls.split(',').map(str::to_owned).collect();
    let client = ctx.client().await?;
    let resp = ctx.call(client.member_update(MemberUpdateRequest { id, peer_ur_ls: urls })).await?;
    ctx.printer.member_update(&mut ctx.out, id, &resp)
}

/// `--endpoints`, or with `--cluster` every member's client URLs.
pub async fn endpoints(ctx: &mut Ctx, cluster: bool) -> Result<Vec<String>> {
    if !cluster {
        return Ok(ctx.global.endpoints.clone());
    }
    let client = ctx.client().await?;
    let resp = ctx.call(client.member_list()).await?;
    Ok(resp.members.iter().flat_map(|m| m.client_ur_ls.iter().cloned()).collect())
}

pub async fn endpoint(ctx: &mut Ctx, a: EndpointArgs) -> Result<()> {
    let eps = endpoints(ctx, a.cluster).await?;
    match a.command {
        EndpointCommand::Health(_) => health(ctx, eps).await,
        EndpointCommand::Status(Positional { .. }) => {
            let mut list = Vec::new();
            let mut failed = false;
            for ep in eps {
                match per_endpoint(ctx, &ep, |c| async move { c.status().await }).await {
                    Ok(resp) => list.push(EpStatus { ep, resp }),
                    Err(m) => {
                        failed = true;
                        ctx.err.extend_from_slice(
                            format!("Failed to get the status of endpoint {ep} ({m})\n").as_bytes(),
                        );
                    }
                }
            }
            ctx.printer.endpoint_status(&mut ctx.out, &list)?;
            exit_if(failed)
        }
        EndpointCommand::Hashkv(h) => {
            let mut list = Vec::new();
            let mut failed = None;
            for ep in eps {
                let req = HashKvRequest { revision: h.rev };
                match per_endpoint(ctx, &ep, |c| async move { c.hash_kv(req).await }).await {
                    Ok(resp) => list.push(EpHashKv { ep, resp }),
                    Err(m) => {
                        ctx.err.extend_from_slice(
                            format!("Failed to get the hash of endpoint {ep} ({m})\n").as_bytes(),
                        );
                        failed = Some(m);
                    }
                }
            }
            ctx.printer.endpoint_hashkv(&mut ctx.out, &list)?;
            failed.map_or(Ok(()), |m| Err(CtlError::new(ExitCode::Error, m)))
        }
    }
}

/// One call on a client of `ep` alone; the error as clientv3 words it.
async fn per_endpoint<T, F, Fut>(ctx: &mut Ctx, ep: &str, call: F) -> std::result::Result<T, String>
where
    F: FnOnce(cairn_client::Client) -> Fut,
    Fut: std::future::Future<Output = cairn_client::Result<T>>,
{
    let client = ctx.connect(&[ep.to_owned()]).await.map_err(|e| e.to_string())?;
    ctx.call_raw(call(client)).await.map_err(|e| client_message(&e))
}

/// etcdctl exits 1 without another message after printing what it could.
fn exit_if(failed: bool) -> Result<()> {
    if failed {
        Err(CtlError::verbatim(ExitCode::Error as i32, ""))
    } else {
        Ok(())
    }
}

/// One endpoint's health: a linearizable read answers (permission denied counts: the request got through
/// consensus). etcdctl 3.4 does not look at alarms.
async fn check_health(mut ctx: Ctx, ep: String) -> (EpHealth, Vec<u8>) {
    let start = Instant::now();
    let mut h = EpHealth { ep: ep.clone(), health: false, took: String::new(), error: String::new() };
    match ctx.connect(std::slice::from_ref(&ep)).await {
        Ok(c) => match ctx.call_raw(c.get("health", GetOptions::default())).await {
            Ok(_) | Err(ClientError::Etcd(EtcdError::PermissionDenied)) => h.health = true,
            Err(e) => h.error = client_message(&e),
        },
        Err(e) => h.error = e.to_string(),
    }
    h.took = duration_string(start.elapsed());
    (h, ctx.err)
}

/// Checks every endpoint at once; results in the order they complete, as etcdctl collects them.
async fn health(ctx: &mut Ctx, eps: Vec<String>) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for ep in eps {
        tasks.spawn(check_health(ctx.fork(), ep));
    }
    let mut list = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((h, err)) = done {
            ctx.err.extend_from_slice(&err);
            list.push(h);
        }
    }
    let failed = list.iter().any(|h| !h.error.is_empty());
    ctx.printer.endpoint_health(&mut ctx.out, &mut ctx.err, &list)?;
    if failed {
        return Err(CtlError::new(ExitCode::Error, "unhealthy cluster"));
    }
    Ok(())
}
