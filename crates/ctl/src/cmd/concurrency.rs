//! lock and elect (etcdctl's lock_command.go and elect_command.go) on the Lock and Election services, with a
//! session lease kept alive in the background, released on SIGINT/SIGTERM.

use std::time::Duration;

use cairn_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, RangeResponse};
use cairn_api::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use cairn_api::v3lockpb::{LockRequest, UnlockRequest};
use cairn_client::{Client, GetOptions};

use crate::cli::{ElectArgs, LockArgs};
use crate::ctx::Ctx;
use crate::error::{CtlError, ExitCode, Result};

/// A lease kept alive until dropped: concurrency.Session.
#[derive(Debug)]
struct Session {
    lease: i64,
    keeper: tokio::task::JoinHandle<()>,
    /// Fires when the keep-alive stream ends (the session expired).
    expired: tokio::sync::oneshot::Receiver<()>,
}

impl Session {
    async fn new(ctx: &mut Ctx, client: &Client, ttl: i64) -> Result<Session> {
        let lease = ctx.call(client.lease_grant(LeaseGrantRequest { ttl, id: 0 })).await?.id;
        let mut stream = client.lease_keep_alive(LeaseKeepAliveRequest { id: lease }).await?;
        let (tx, expired) = tokio::sync::oneshot::channel();
        let keeper = tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(r)) if r.ttl > 0 => {}
                    _ => break,
                }
                let wait = u64::try_from(ttl).unwrap_or(1).max(3) * 1000 / 3;
                tokio::time::sleep(Duration::from_millis(wait)).await;
                if stream.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                    break;
                }
            }
            let _ = tx.send(());
        });
        Ok(Session { lease, keeper, expired })
    }

    async fn close(self, client: &Client) {
        self.keeper.abort();
        let _ = client.lease_revoke(LeaseRevokeRequest { id: self.lease }).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

async fn print_key(ctx: &mut Ctx, client: &Client, key: &[u8]) -> Result<()> {
    let resp = ctx.call(client.get(key.to_vec(), GetOptions::default())).await?;
    ctx.printer.get(&mut ctx.out, &resp)?;
    ctx.flush();
    Ok(())
}

pub async fn lock(ctx: &mut Ctx, a: LockArgs) -> Result<()> {
    let Some((name, command)) = a.args.split_first() else {
        return Err(CtlError::bad_args("lock takes a lock name argument and an optional command to execute"));
    };
    let client = ctx.client().await?;
    let session = Session::new(ctx, &client, a.ttl).await?;
    let locked = tokio::select! {
        r = client.lock(LockRequest { name: name.clone().into_bytes(), lease: session.lease }) => r,
        () = interrupted() => {
            session.close(&client).await;
            return Err(CtlError::new(ExitCode::Error, "context canceled"));
        }
    };
    let resp = match locked {
        Ok(r) => r,
        Err(e) => {
            session.close(&client).await;
            return Err(e.into());
        }
    };
    let unlock = |key: Vec<u8>| client.unlock(UnlockRequest { key });
    if let Some((program, args)) = command.split_first() {
        let rev = resp.header.map_or(0, |h| h.revision);
        let status = std::process::Command::new(program)
            .args(args)
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&resp.key).into_owned())
            .env("ETCD_LOCK_REV", rev.to_string())
            .status();
        let unlocked = unlock(resp.key.clone()).await;
        session.close(&client).await;
        return match status {
            Ok(s) if s.success() => unlocked.map(|_| ()).map_err(CtlError::from),
            Ok(s) => Err(CtlError::new(ExitCode::Error, format!("exit status {}", s.code().unwrap_or(-1)))),
            Err(e) => Err(CtlError::new(ExitCode::Error, format!("exec: {:?}: {e}", program))),
        };
    }
    print_key(ctx, &client, &resp.key).await?;
    let mut session = session;
    tokio::select! {
        () = interrupted() => {
            let r = unlock(resp.key.clone()).await;
            session.close(&client).await;
            r.map(|_| ()).map_err(CtlError::from)
        }
        _ = &mut session.expired => Err(CtlError::new(ExitCode::Error, "session expired")),
    }
}

pub async fn elect(ctx: &mut Ctx, a: ElectArgs) -> Result<()> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args(
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    let name = a.args[0].clone().into_bytes();
    let client = ctx.client().await?;
    if a.args.len() == 1 {
        if !a.listen {
            return Err(CtlError::bad_args("no proposal argument but -l not set"));
        }
        let mut stream = client.observe(LeaderRequest { name }).await?;
        loop {
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(r)) => {
                        let kvs: Vec<_> = r.kv.into_iter().collect();
                        let count = i64::try_from(kvs.len()).unwrap_or(0);
                        let resp = RangeResponse { header: r.header, kvs, more: false, count };
                        ctx.printer.get(&mut ctx.out, &resp)?;
                        ctx.flush();
                    }
                    Ok(None) => return Err(CtlError::new(ExitCode::Error, "elect: observer lost")),
                    Err(e) => return Err(e.into()),
                },
                () = interrupted() => return Ok(()),
            }
        }
    }
    if a.listen {
        return Err(CtlError::bad_args("proposal given but -l is set"));
    }
    let mut session = Session::new(ctx, &client, 60).await?;
    let req = CampaignRequest { name, lease: session.lease, value: a.args[1].clone().into_bytes() };
    let campaigned = tokio::select! {
        r = client.campaign(req) => r,
        () = interrupted() => {
            session.close(&client).await;
            return Err(CtlError::new(ExitCode::Error, "context canceled"));
        }
    };
    let leader = match campaigned {
        Ok(r) => r.leader.unwrap_or_default(),
        Err(e) => {
            session.close(&client).await;
            return Err(e.into());
        }
    };
    print_key(ctx, &client, &leader.key).await?;
    tokio::select! {
        () = interrupted() => {
            let r = client.resign(ResignRequest { leader: Some(leader) }).await;
            session.close(&client).await;
            r.map(|_| ()).map_err(CtlError::from)
        }
        _ = &mut session.expired => Err(CtlError::new(ExitCode::Error, "elect: session expired")),
    }
}
