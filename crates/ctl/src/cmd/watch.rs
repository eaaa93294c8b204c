//! watch: stream events of a key, range or prefix; `watch key -- cmd args` runs a command per event with
//! ETCD_WATCH_* set; `-i` reads `watch ...` lines from stdin. As etcdctl's watch_command.go.

use std::io::{BufRead, Write};

use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use cairn_client::options::prefix_end;
use cairn_client::Client;
use clap::Parser;

use crate::cli::WatchArgs;
use crate::ctx::Ctx;
use crate::error::{CtlError, ExitCode, Result};
use crate::gofmt::quote;
use crate::printer::Printer;

/// What one watch asks for, and the command to run per event.
#[derive(Debug, Clone)]
struct Spec {
    create: WatchCreateRequest,
    exec: Vec<String>,
}

/// The watch of `key [range_end] [-- cmd args...]`.
fn spec(a: &WatchArgs) -> Result<Spec> {
    let rev = super::flag_int("rev", &a.rev)?;
    let exec = a.exec.clone();
    let mut args = a.args.clone();
    let (env_key, env_range) = (
        std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default(),
        std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default(),
    );
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(CtlError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={env_range:?}"
        )));
    }
    if args.is_empty() && !env_key.is_empty() {
        args.push(env_key);
        if !env_range.is_empty() {
            args.push(env_range);
        }
    }
    if args.is_empty() || args.len() > 2 {
        return Err(CtlError::bad_args("bad number of arguments"));
    }
    let key = args[0].clone().into_bytes();
    let mut range_end = Vec::new();
    if args.len() == 2 {
        if a.prefix {
            return Err(CtlError::bad_args("`range_end` and `--prefix` are mutually exclusive"));
        }
        range_end = args[1].clone().into_bytes();
    }
    if a.prefix {
        range_end = prefix_end(&key);
    }
    let create =
        WatchCreateRequest { key, range_end, start_revision: rev, prev_kv: a.prev_kv, ..Default::default() };
    Ok(Spec { create, exec })
}

pub async fn watch(ctx: &mut Ctx, a: WatchArgs) -> Result<()> {
    if a.interactive {
        return interactive(ctx).await;
    }
    let spec = spec(&a)?;
    let client = ctx.client().await?;
    ctx.flush();
    run_one(client, ctx.printer, spec).await?;
    Err(CtlError::new(ExitCode::Interrupted, "watch is canceled by the server"))
}

/// Prints every response of one watch until the stream ends.
async fn run_one(client: Client, printer: Printer, spec: Spec) -> Result<()> {
    let req = WatchRequest { request_union: Some(RequestUnion::CreateRequest(spec.create)) };
    let mut stream = client.watch(req).await?;
    while let Some(resp) = stream.message().await? {
        if resp.created && resp.events.is_empty() && !resp.canceled {
            continue;
        }
        if resp.canceled {
            let reason =
                if resp.cancel_reason.is_empty() { "<nil>".to_owned() } else { resp.cancel_reason.clone() };
            eprintln!("watch was canceled ({reason})");
        }
        if resp.events.is_empty() && !resp.canceled {
            continue;
        }
        let mut out = Vec::new();
        printer.watch(&mut out, &resp)?;
        {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
        }
        run_exec(&spec.exec, &resp)?;
        if resp.canceled {
            break;
        }
    }
    Ok(())
}

fn run_exec(exec: &[String], resp: &WatchResponse) -> Result<()> {
    let Some((program, args)) = exec.split_first() else { return Ok(()) };
    let revision = resp.header.map_or(0, |h| h.revision);
    for ev in &resp.events {
        let kv = ev.kv.clone().unwrap_or_default();
        let kind = if ev.r#type == 1 { "DELETE" } else { "PUT" };
        let status = std::process::Command::new(program)
            .args(args)
            .env("ETCD_WATCH_REVISION", revision.to_string())
            .env("ETCD_WATCH_EVENT_TYPE", quote(kind.as_bytes()))
            .env("ETCD_WATCH_KEY", quote(&kv.key))
            .env("ETCD_WATCH_VALUE", quote(&kv.value))
            .status();
        let failure = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(match s.code() {
                Some(c) => format!("exit status {c}"),
                None => "signal: killed".to_owned(),
            }),
            Err(e) => Some(format!("exec: {}: {}", quote(program.as_bytes()), e)),
        };
        if let Some(f) = failure {
            let list: Vec<String> = exec.iter().map(|s| quote(s.as_bytes())).collect();
            return Err(CtlError::verbatim(1, format!("command [{}] error ({f})\n", list.join(" "))));
        }
    }
    Ok(())
}

/// One `watch ...` line of interactive mode.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
enum Line {
    Watch(WatchArgs),
}

async fn interactive(ctx: &mut Ctx) -> Result<()> {
    let client = ctx.client().await?;
    ctx.flush();
    let printer = ctx.printer;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(line) = rx.recv().await {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if words.is_empty() {
            continue;
        }
        if words[0] != "watch" {
            eprintln!("Invalid command {line} (only support watch)");
            continue;
        }
        let parsed = match Line::try_parse_from(&words) {
            Ok(Line::Watch(a)) => spec(&a),
            Err(e) => Err(CtlError::bad_args(e.kind().to_string())),
        };
        match parsed {
            Ok(s) => {
                let c = client.clone();
                tasks.spawn(async move { run_one(c, printer, s).await });
            }
            Err(e) => eprintln!("Invalid command {line} ({e})"),
        }
    }
    tasks.abort_all();
    Err(CtlError::invalid_input("Error reading watch request line: EOF"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str], prefix: bool) -> WatchArgs {
        WatchArgs {
            interactive: false,
            prefix,
            rev: "0".into(),
            prev_kv: false,
            args: list.iter().map(|s| (*s).to_owned()).collect(),
            exec: Vec::new(),
        }
    }

    #[test]
    fn exec_args_follow_the_separator() {
        let argv = ["etcdctl", "watch", "k", "--prefix", "--", "echo", "-n"];
        let cli = crate::args::parse(argv.iter().map(std::ffi::OsString::from).collect()).unwrap();
        let crate::cli::Command::Watch(w) = cli.command else { panic!("not a watch") };
        let s = spec(&w).unwrap();
        assert_eq!(s.create.key, b"k");
        assert_eq!(s.exec, ["echo", "-n"]);
        assert_eq!(s.create.range_end, b"l");
        assert_eq!(
            spec(&args(&["a", "b"], true)).unwrap_err().to_string(),
            "`range_end` and `--prefix` are mutually exclusive"
        );
    }
}
