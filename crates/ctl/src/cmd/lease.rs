//! lease grant|revoke|timetolive|list|keep-alive, as etcdctl's lease_command.go.

use std::time::Duration;

use cairn_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use cairn_api::EtcdError;
use cairn_client::ClientError;

use super::parse_int;
use crate::cli::{KeepAliveArgs, LeaseCommand, Positional, TtlArgs};
use crate::ctx::Ctx;
use crate::error::{wrap, CtlError, ExitCode, Result};
use crate::printer::Format;

fn lease_id(arg: &str) -> Result<i64> {
    parse_int(arg, 16).map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

pub async fn lease(ctx: &mut Ctx, c: LeaseCommand) -> Result<()> {
    match c {
        LeaseCommand::Grant(a) => grant(ctx, a).await,
        LeaseCommand::Revoke(a) => revoke(ctx, a).await,
        LeaseCommand::Timetolive(a) => time_to_live(ctx, a).await,
        LeaseCommand::List(_) => list(ctx).await,
        LeaseCommand::KeepAlive(a) => keep_alive(ctx, a).await,
    }
}

async fn grant(ctx: &mut Ctx, a: Positional) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("lease grant command needs TTL argument"));
    }
    let ttl = parse_int(&a.args[0], 10).map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
    let client = ctx.client().await?;
    let resp = ctx
        .call_raw(client.lease_grant(LeaseGrantRequest { ttl, id: 0 }))
        .await
        .map_err(|e| wrap(&e, |m| format!("failed to grant lease ({m})")))?;
    ctx.printer.grant(&mut ctx.out, &resp)
}

async fn revoke(ctx: &mut Ctx, a: Positional) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("lease revoke command needs 1 argument"));
    }
    let id = lease_id(&a.args[0])?;
    let client = ctx.client().await?;
    let resp = ctx
        .call_raw(client.lease_revoke(LeaseRevokeRequest { id }))
        .await
        .map_err(|e| wrap(&e, |m| format!("failed to revoke lease ({m})")))?;
    ctx.printer.revoke(&mut ctx.out, id, &resp)
}

async fn time_to_live(ctx: &mut Ctx, a: TtlArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("lease timetolive command needs lease ID as argument"));
    }
    let id = lease_id(&a.args[0])?;
    let client = ctx.client().await?;
    let resp = ctx
        .call_raw(client.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: a.keys }))
        .await
        .map_err(|e| {
            CtlError::new(
                ExitCode::BadConnection,
                wrap(&e, |m| format!("failed to retrieve lease information ({m})")).to_string(),
            )
        })?;
    ctx.printer.time_to_live(&mut ctx.out, &resp, a.keys)
}

async fn list(ctx: &mut Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let resp = ctx.call_raw(client.lease_leases(LeaseLeasesRequest {})).await.map_err(|e| {
        CtlError::new(
            ExitCode::BadConnection,
            wrap(&e, |m| format!("failed to list leases ({m})")).to_string(),
        )
    })?;
    ctx.printer.leases(&mut ctx.out, &resp)
}

async fn keep_alive(ctx: &mut Ctx, a: KeepAliveArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("lease keep-alive command needs lease ID as argument"));
    }
    let id = lease_id(&a.args[0])?;
    let client = ctx.client().await?;
    let bad = |e: ClientError| CtlError::new(ExitCode::BadConnection, crate::error::client_message(&e));
    let mut stream = client.lease_keep_alive(LeaseKeepAliveRequest { id }).await.map_err(bad)?;
    loop {
        let resp = match tokio::time::timeout(ctx.command_timeout, stream.message()).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(bad(e)),
            Err(_) => return Err(CtlError::new(ExitCode::BadConnection, "context deadline exceeded")),
        };
        if resp.ttl <= 0 {
            if a.once {
                return Err(bad(ClientError::Etcd(EtcdError::LeaseNotFound)));
            }
            break;
        }
        ctx.printer.keep_alive(&mut ctx.out, &resp)?;
        ctx.flush();
        if a.once {
            return Ok(());
        }
        // clientv3 refreshes a third of the TTL after each answer.
        let wait = u64::try_from(resp.ttl).unwrap_or(1).max(3) * 1000 / 3;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        stream.send(LeaseKeepAliveRequest { id }).await.map_err(bad)?;
    }
    if ctx.printer.format == Format::Simple {
        ctx.out.extend_from_slice(format!("lease {id:016x} expired or revoked.\n").as_bytes());
    }
    Ok(())
}
