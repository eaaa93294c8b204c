//! cairnctl: a command-line client for cairn and etcd, a twin of etcdctl v3 — the same commands, flags,
//! ETCDCTL_* environment variables, output formats and error texts, built on cairn-client.
//!
//! # Layout
//! - [`cli`]: the command line (clap), etcdctl's global flags and commands.
//! - [`args`]: cobra/pflag-compatible handling around clap: flag errors, unknown commands, env conflicts.
//! - [`ctx`]: the connection and printer a command runs with, timeouts, clientv3's log lines.
//! - [`printer`]: `-w simple|json|fields|table|protobuf`, byte for byte as etcdctl 3.4.
//! - [`cmd`]: one module per command group (kv, txn, watch, lease, member, endpoint, maintenance, auth,
//!   concurrency, mirror, check).
//! - [`boltdb`]: a read-only walk of etcd's bolt snapshot files for `snapshot status` and `snapshot restore`.
//! - [`gofmt`], [`gojson`]: Go's `%q`, durations, go-humanize and encoding/json rules the output relies on.
//! - [`prompt`]: password prompts without echo, as etcdctl's (stty on stdin).
//! - [`usage`]: etcdctl's usage text, printed when flags do not parse.
//! - [`error`]: [`error::CtlError`] and etcdctl's exit codes.
//!
//! It must not know the server: it speaks the etcd v3 API through cairn-client only. The one exception is
//! `snapshot restore`, which writes a member's data dir offline through cairn-storage and cairn-mvcc (the same
//! id derivation, WAL and backend code the server uses), as etcdctl 3.4 writes etcd's.

mod args;
mod boltdb;
mod cli;
mod cmd;
mod ctx;
mod error;
mod gofmt;
mod gojson;
mod printer;
mod prompt;
mod usage;

use std::io::Write;

use error::CtlError;

fn main() {
    let code = match args::parse(std::env::args_os().collect()) {
        Ok(cli) => run(cli),
        Err(e) => report(&e),
    };
    std::process::exit(code);
}

fn run(cli: cli::Cli) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => return report(&CtlError::new(error::ExitCode::Error, e.to_string())),
    };
    let result = runtime.block_on(async move {
        let mut ctx = ctx::Ctx::new(&cli.global)?;
        let r = cmd::dispatch(&mut ctx, cli.command).await;
        ctx.flush();
        r
    });
    runtime.shutdown_background();
    match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

/// Prints an error as etcdctl does and gives the exit code.
fn report(e: &CtlError) -> i32 {
    let mut err = std::io::stderr().lock();
    let _ = match e {
        CtlError::Exit { message, .. } => writeln!(err, "Error: {message}"),
        CtlError::Verbatim { stdout, stderr, .. } => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(stdout.as_bytes()).and_then(|()| out.flush());
            err.write_all(stderr.as_bytes())
        }
    };
    e.code()
}
