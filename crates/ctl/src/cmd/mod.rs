//! One module per group of etcdctl commands; [`dispatch`] runs the parsed command.

mod auth;
mod check;
mod cluster;
mod concurrency;
mod initial_cluster;
mod kv;
mod lease;
mod maintenance;
mod mirror;
mod restore;
mod snapshot;
mod txn;
mod watch;

use crate::cli::Command;
use crate::ctx::Ctx;
use crate::error::Result;
use crate::gofmt::quote;

pub async fn dispatch(ctx: &mut Ctx, command: Command) -> Result<()> {
    match command {
        Command::Get(a) => kv::get(ctx, a).await,
        Command::Put(a) => kv::put(ctx, a).await,
        Command::Del(a) => kv::del(ctx, a).await,
        Command::Txn(a) => txn::txn(ctx, a).await,
        Command::Compaction(a) => kv::compaction(ctx, a).await,
        Command::Watch(a) => watch::watch(ctx, a).await,
        Command::Lease(c) => lease::lease(ctx, c).await,
        Command::Member(c) => cluster::member(ctx, c).await,
        Command::Endpoint(a) => cluster::endpoint(ctx, a).await,
        Command::Alarm(c) => maintenance::alarm(ctx, c).await,
        Command::Defrag(a) => maintenance::defrag(ctx, a).await,
        Command::Snapshot(c) => snapshot::snapshot(ctx, c).await,
        Command::MoveLeader(a) => maintenance::move_leader(ctx, a).await,
        Command::Lock(a) => concurrency::lock(ctx, a).await,
        Command::Elect(a) => concurrency::elect(ctx, a).await,
        Command::Auth(c) => auth::auth(ctx, c).await,
        Command::User(c) => auth::user(ctx, c).await,
        Command::Role(c) => auth::role(ctx, c).await,
        Command::MakeMirror(a) => mirror::make_mirror(ctx, a).await,
        Command::Version(_) => {
            ctx.out.extend_from_slice(b"etcdctl version: 3.4.23\nAPI version: 3.4\n");
            Ok(())
        }
        Command::Check(c) => check::check(ctx, c).await,
    }
}

/// Go's `strconv.ParseInt(s, base, 64)`, with its error text.
pub fn parse_int(s: &str, base: u32) -> std::result::Result<i64, String> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    let ok = !digits.is_empty()
        && digits.strip_prefix('-').unwrap_or(digits).chars().all(|c| c.is_digit(base))
        && !digits.strip_prefix('-').unwrap_or(digits).is_empty();
    if !ok {
        return Err(format!("strconv.ParseInt: parsing {}: invalid syntax", quote(s.as_bytes())));
    }
    i64::from_str_radix(digits, base)
        .map_err(|_| format!("strconv.ParseInt: parsing {}: value out of range", quote(s.as_bytes())))
}

/// An int64 flag's value, with pflag's error when it is not a number.
pub fn flag_int(name: &str, value: &str) -> Result<i64> {
    parse_int(value, 10).map_err(|e| {
        crate::args::flag_error(&format!("invalid argument {value:?} for \"--{name}\" flag: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_as_go() {
        assert_eq!(parse_int("ff", 16), Ok(255));
        assert_eq!(parse_int("-12", 10), Ok(-12));
        assert_eq!(parse_int("zz", 16).unwrap_err(), "strconv.ParseInt: parsing \"zz\": invalid syntax");
        assert_eq!(
            parse_int("99999999999999999999", 10).unwrap_err(),
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
        assert_eq!(flag_int("limit", "5").unwrap(), 5);
    }
}
