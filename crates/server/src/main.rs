//! The `cairn` binary: parse etcd's flags, set up logging, run the member.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Every request allocates its frames, messages and futures: mimalloc's thread-local pages cost about half of what
/// glibc's malloc does on the put path, for a resident set a few MiB larger (built without transparent huge
/// pages, whose 2 MiB zeroed faults cost more than they saved).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cfg = match cairn_server::config::Config::parse().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairn: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let (level, json) = cfg.logging();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cairn: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(cairn_server::server::run(cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cairn stopped");
            std::process::ExitCode::from(1)
        }
    }
}
