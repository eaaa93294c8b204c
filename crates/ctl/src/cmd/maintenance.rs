//! alarm list|disarm, defrag, move-leader (etcdctl's alarm_command.go, defrag_command.go,
//! move_leader_command.go).

use cairn_api::etcdserverpb::alarm_request::AlarmAction;
use cairn_api::etcdserverpb::{AlarmRequest, AlarmResponse, DefragmentRequest, MoveLeaderRequest};

use super::cluster::endpoints;
use crate::cli::{AlarmCommand, DefragArgs, Positional};
use crate::ctx::Ctx;
use crate::error::{client_message, CtlError, ExitCode, Result};
use crate::printer::{json, Format};

pub async fn alarm(ctx: &mut Ctx, c: AlarmCommand) -> Result<()> {
    match c {
        AlarmCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("alarm list command accepts no arguments"));
            }
            let client = ctx.client().await?;
            let resp = ctx.call(client.alarm(AlarmRequest::default())).await?;
            ctx.printer.alarm(&mut ctx.out, &resp)
        }
        AlarmCommand::Disarm(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("alarm disarm command accepts no arguments"));
            }
            let client = ctx.client().await?;
            let list = ctx.call(client.alarm(AlarmRequest::default())).await?;
            // clientv3 disarms each raised alarm and gathers what the server answers.
            let mut ret = AlarmResponse::default();
            for a in list.alarms {
                let req = AlarmRequest {
                    action: AlarmAction::Deactivate as i32,
                    member_id: a.member_id,
                    alarm: a.alarm,
                };
                let r = ctx.call(client.alarm(req)).await?;
                ret.alarms.extend(r.alarms);
            }
            ctx.printer.alarm(&mut ctx.out, &ret)
        }
    }
}

pub async fn defrag(ctx: &mut Ctx, a: DefragArgs) -> Result<()> {
    if a.data_dir.is_some() {
        return Err(CtlError::new(
            ExitCode::Error,
            "defrag --data-dir is not supported by cairnctl: cairn's backend is not a bolt file",
        ));
    }
    let mut failures = 0;
    for ep in endpoints(ctx, a.cluster).await? {
        let result = match ctx.connect(std::slice::from_ref(&ep)).await {
            Ok(c) => {
                let timeout = ctx.command_timeout.max(std::time::Duration::from_secs(30));
                match tokio::time::timeout(timeout, c.defragment(DefragmentRequest {})).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => {
                        ctx.warn_retry(&e);
                        Err(client_message(&e))
                    }
                    Err(_) => Err("context deadline exceeded".to_owned()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                ctx.out.extend_from_slice(format!("Finished defragmenting etcd member[{ep}]\n").as_bytes())
            }
            Err(m) => {
                failures += 1;
                ctx.err
                    .extend_from_slice(format!("Failed to defragment etcd member[{ep}] ({m})\n").as_bytes());
            }
        }
    }
    if failures > 0 {
        return Err(CtlError::verbatim(ExitCode::Error as i32, ""));
    }
    Ok(())
}

pub async fn move_leader(ctx: &mut Ctx, a: Positional) -> Result<()> {
    let [arg] = a.args.as_slice() else {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    };
    let target = u64::from_str_radix(arg, 16).map_err(|_| {
        CtlError::bad_args(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            crate::gofmt::quote(arg.as_bytes())
        ))
    })?;
    let eps = ctx.global.endpoints.clone();
    let mut leader = None;
    for ep in &eps {
        let c = ctx.connect(std::slice::from_ref(ep)).await?;
        let s = ctx.call(c.status()).await?;
        if s.header.map(|h| h.member_id) == Some(s.leader) {
            leader = Some((c, s.leader));
            break;
        }
    }
    let Some((client, leader_id)) = leader else {
        return Err(CtlError::bad_args(format!("no leader endpoint given at [{}]", eps.join(" "))));
    };
    let resp = ctx.call(client.move_leader(MoveLeaderRequest { target_id: target })).await?;
    match ctx.printer.format {
        Format::Simple => ctx.out.extend_from_slice(
            format!("Leadership transferred from {leader_id:x} to {target:x}\n").as_bytes(),
        ),
        Format::Json => {
            ctx.out.extend_from_slice(format!("{}\n", json::header_only(resp.header.as_ref())).as_bytes())
        }
        _ => return ctx.printer.header_only(&mut ctx.out, resp.header.as_ref(), "", &resp),
    }
    Ok(())
}
