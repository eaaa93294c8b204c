//! get, put, del, compaction: etcdctl's get_command.go, put_command.go, del_command.go, compaction_command.go.

use std::io::Read;

use cairn_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_client::options::KeyRange;
use cairn_client::{DeleteOptions, GetOptions, PutOptions};

use super::{flag_int, parse_int};
use crate::cli::{CompactionArgs, DelArgs, GetArgs, PutArgs};
use crate::ctx::Ctx;
use crate::error::{CtlError, ExitCode, Result};
use crate::printer::Format;

/// The key and range of a `get` or `del` as etcdctl reads its arguments: `key [range_end]`, `--prefix`, or
/// `--from-key` (an empty key with either means every key).
fn key_range(args: &[String], prefix: bool, from_key: bool) -> Result<(Vec<u8>, KeyRange)> {
    let mut key = args[0].clone().into_bytes();
    let mut range = KeyRange::Single;
    if args.len() > 1 {
        if prefix || from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        range = KeyRange::Until(args[1].clone().into_bytes());
    }
    if prefix {
        if key.is_empty() {
            key = vec![0];
            range = KeyRange::FromKey;
        } else {
            range = KeyRange::Prefix;
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        range = KeyRange::FromKey;
    }
    Ok((key, range))
}

/// The key and options of a `get` (also a txn's get line).
pub fn get_op(a: &GetArgs) -> Result<(Vec<u8>, GetOptions)> {
    let limit = flag_int("limit", &a.limit)?;
    let rev = flag_int("rev", &a.rev)?;
    if a.args.is_empty() {
        return Err(CtlError::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut opts = GetOptions::default();
    match a.consistency.as_str() {
        "s" => opts.serializable = true,
        "l" => {}
        c => return Err(CtlError::new(ExitCode::BadFeature, format!("unknown consistency flag {c:?}"))),
    }
    let (key, range) = key_range(&a.args, a.prefix, a.from_key)?;
    opts.range = range;
    opts.limit = limit;
    if rev > 0 {
        opts.revision = rev;
    }
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(CtlError::new(ExitCode::BadFeature, format!("bad sort order {}", a.order))),
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(CtlError::new(ExitCode::BadFeature, format!("bad sort target {}", a.sort_by))),
    };
    // clientv3's WithSort: ascending by key is the server's default order.
    let order = if target == SortTarget::Key && order == SortOrder::Ascend { SortOrder::None } else { order };
    opts.sort = Some((target, order));
    opts.keys_only = a.keys_only;
    Ok((key, opts))
}

pub async fn get(ctx: &mut Ctx, a: GetArgs) -> Result<()> {
    let (key, opts) = get_op(&a)?;
    let client = ctx.client().await?;
    let resp = ctx.call(client.get(key, opts)).await?;
    let mut printer = ctx.printer;
    if a.print_value_only {
        if printer.format != Format::Simple {
            return Err(CtlError::bad_args("print-value-only is only for `--write-out=simple`"));
        }
        printer.value_only = true;
    }
    printer.get(&mut ctx.out, &resp)
}

/// The key, value and options of a `put` (also a txn's put line); the value may come from stdin.
pub fn put_op(a: &PutArgs, stdin_allowed: bool) -> Result<(Vec<u8>, Vec<u8>, PutOptions)> {
    let needs = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = a.args.first() else {
        return Err(CtlError::bad_args(needs));
    };
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args("put command needs only 1 argument when 'ignore-value' is set"));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        value = match a.args.get(1) {
            Some(v) => v.clone().into_bytes(),
            None if stdin_allowed => {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map_err(|_| CtlError::bad_args(needs))?;
                if buf.is_empty() {
                    return Err(CtlError::bad_args(needs));
                }
                buf
            }
            None => return Err(CtlError::bad_args(needs)),
        };
    }
    let lease = parse_int(&a.lease, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    let opts =
        PutOptions { lease, prev_kv: a.prev_kv, ignore_value: a.ignore_value, ignore_lease: a.ignore_lease };
    Ok((key.clone().into_bytes(), value, opts))
}

pub async fn put(ctx: &mut Ctx, a: PutArgs) -> Result<()> {
    let (key, value, opts) = put_op(&a, true)?;
    let client = ctx.client().await?;
    let resp = ctx.call(client.put(key, value, opts)).await?;
    ctx.printer.put(&mut ctx.out, &resp)
}

/// The key and options of a `del` (also a txn's del line).
pub fn del_op(a: &DelArgs) -> Result<(Vec<u8>, DeleteOptions)> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let (key, range) = key_range(&a.args, a.prefix, a.from_key)?;
    Ok((key, DeleteOptions { prev_kv: a.prev_kv, range }))
}

pub async fn del(ctx: &mut Ctx, a: DelArgs) -> Result<()> {
    let (key, opts) = del_op(&a)?;
    let client = ctx.client().await?;
    let resp = ctx.call(client.delete(key, opts)).await?;
    ctx.printer.del(&mut ctx.out, &resp)
}

pub async fn compaction(ctx: &mut Ctx, a: CompactionArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    }
    let rev = parse_int(&a.args[0], 10).map_err(|e| CtlError::new(ExitCode::Error, e))?;
    let client = ctx.client().await?;
    ctx.call(client.compact(rev, a.physical)).await?;
    ctx.out.extend_from_slice(format!("compacted revision {rev}\n").as_bytes());
    Ok(())
}
