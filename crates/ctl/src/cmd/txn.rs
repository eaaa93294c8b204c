//! txn: compares, success ops and failure ops read from stdin, each list ended by an empty line; with `-i` the
//! section prompts are printed. Line syntax and error texts as etcdctl's txn_command.go.

use std::io::BufRead;

use cairn_api::etcdserverpb::compare::CompareResult;
use cairn_api::etcdserverpb::Compare;
use cairn_client::options::{
    compare_create_revision, compare_lease, compare_mod_revision, compare_value, compare_version,
};
use cairn_client::{Txn, TxnOp};
use clap::Parser;

use super::parse_int;
use crate::cli::{DelArgs, GetArgs, PutArgs, TxnArgs};
use crate::ctx::Ctx;
use crate::error::{CtlError, Result};
use crate::gofmt::{quote, unquote_prefix};

pub async fn txn(ctx: &mut Ctx, a: TxnArgs) -> Result<()> {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let prompt = |ctx: &mut Ctx, s: &str| {
        if a.interactive {
            ctx.out.extend_from_slice(format!("{s}\n").as_bytes());
            ctx.flush();
        }
    };
    prompt(ctx, "compares:");
    let mut compares = Vec::new();
    while let Some(line) = next_line(&mut reader)? {
        compares.push(parse_compare(&line)?);
    }
    prompt(ctx, "success requests (get, put, del):");
    let success = read_ops(&mut reader)?;
    prompt(ctx, "failure requests (get, put, del):");
    let failure = read_ops(&mut reader)?;
    drop(reader);
    let client = ctx.client().await?;
    let resp = ctx.call(client.txn(Txn::new().when(compares).and_then(success).or_else(failure))).await?;
    ctx.printer.txn(&mut ctx.out, &resp)
}

/// The next non-empty trimmed line; `None` at the empty line ending a section. A missing newline is Go's EOF.
fn next_line(r: &mut impl BufRead) -> Result<Option<String>> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| CtlError::invalid_input(e.to_string()))?;
    if !line.ends_with('\n') {
        return Err(CtlError::invalid_input("EOF"));
    }
    let line = line.trim();
    Ok(if line.is_empty() { None } else { Some(line.to_owned()) })
}

fn read_ops(r: &mut impl BufRead) -> Result<Vec<TxnOp>> {
    let mut ops = Vec::new();
    while let Some(line) = next_line(r)? {
        ops.push(parse_op(&line)?);
    }
    Ok(ops)
}

/// One request line, parsed as the get/put/del command lines are.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
enum OpLine {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

fn parse_op(line: &str) -> Result<TxnOp> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(CtlError::invalid_input(format!("invalid txn compare request: {line}")));
    }
    let parsed = OpLine::try_parse_from(&args)
        .map_err(|_| CtlError::invalid_input(format!("invalid txn request: {line}")))?;
    Ok(match parsed {
        OpLine::Get(a) => {
            let (k, o) = super::kv::get_op(&a)?;
            TxnOp::Get(k, o)
        }
        OpLine::Put(a) => {
            let (k, v, o) = super::kv::put_op(&a, false)?;
            TxnOp::Put(k, v, o)
        }
        OpLine::Del(a) => {
            let (k, o) = super::kv::del_op(&a)?;
            TxnOp::Delete(k, o)
        }
    })
}

/// etcdctl's argify: double-quoted (Go escapes), single-quoted, or bare words.
fn argify(s: &str) -> Result<Vec<String>> {
    let mut args = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'"' => match closing_double_quote(&b[i..]) {
                Some(len) => {
                    let token = &s[i..i + len];
                    let (v, _) =
                        unquote_prefix(token).ok_or_else(|| CtlError::invalid_input("invalid syntax"))?;
                    args.push(String::from_utf8_lossy(&v).into_owned());
                    i += len;
                }
                None => i += 1,
            },
            b'\'' => match s[i + 1..].find('\'') {
                Some(end) => {
                    args.push(s[i + 1..i + 1 + end].to_owned());
                    i += end + 2;
                }
                None => i += 1,
            },
            _ => {
                let end = s[i..].find(|c: char| c.is_whitespace()).map_or(s.len(), |e| i + e);
                args.push(s[i..end].to_owned());
                i = end;
            }
        }
    }
    Ok(args)
}

/// Length of `"(?:[^"\\]|\\.)*"` at the start of `b`.
fn closing_double_quote(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// `fmt.Sscanf(rest, "%q) %s %q", &key, &op, &val)`: how many were read, and what.
fn scan_compare(rest: &str) -> (usize, Vec<u8>, String, Vec<u8>) {
    let (mut key, mut op, mut val) = (Vec::new(), String::new(), Vec::new());
    let s = rest.trim_start();
    let Some((k, s)) = unquote_prefix(s) else { return (0, key, op, val) };
    key = k;
    let Some(s) = s.strip_prefix(')') else { return (1, key, op, val) };
    // A space in Go's format needs at least one space in the input (or its end).
    if !(s.is_empty() || s.starts_with(char::is_whitespace)) {
        return (1, key, op, val);
    }
    let s = s.trim_start();
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    if end == 0 {
        return (1, key, op, val);
    }
    op = s[..end].to_owned();
    let s = &s[end..];
    if !(s.is_empty() || s.starts_with(char::is_whitespace)) {
        return (2, key, op, val);
    }
    let Some((v, _)) = unquote_prefix(s.trim_start()) else { return (2, key, op, val) };
    val = v;
    (3, key, op, val)
}

fn parse_compare(line: &str) -> Result<Compare> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(CtlError::invalid_input(format!("malformed comparison: {line}")));
    };
    let (n, key, op, val) = scan_compare(rest);
    if n != 3 {
        return Err(CtlError::invalid_input(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            quote(&key),
            quote(&val)
        )));
    }
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => return Err(CtlError::verbatim(2, "panic: Unknown result op\n")),
    };
    let int = |base: u32| {
        let text = String::from_utf8_lossy(&val).into_owned();
        parse_int(&text, base)
            .map_err(|_| CtlError::invalid_input(format!("invalid txn compare request: {line}")))
    };
    Ok(match target {
        "ver" | "version" => compare_version(&key, result, int(10)?),
        "c" | "create" => compare_create_revision(&key, result, int(10)?),
        "m" | "mod" => compare_mod_revision(&key, result, int(10)?),
        "val" | "value" => compare_value(&key, result, &val),
        "lease" => compare_lease(&key, result, int(16)?),
        _ => {
            return Err(CtlError::invalid_input(format!(
                "malformed comparison: {line} (unknown target {target})"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<Compare>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn compares_parse_as_etcdctl() {
        let c = parse_compare(r#"mod("a") > "0""#).unwrap();
        assert_eq!((c.key.as_slice(), c.result), (&b"a"[..], CompareResult::Greater as i32));
        assert_eq!(
            message(parse_compare(r#"mod("a")>"0""#)),
            r#"malformed comparison: mod("a")>"0"; got mod("a")  """#
        );
        assert_eq!(
            message(parse_compare(r#"mod("a") >"#)),
            r#"malformed comparison: mod("a") >; got mod("a") > """#
        );
        assert_eq!(message(parse_compare("bogus")), "malformed comparison: bogus");
        assert_eq!(
            message(parse_compare(r#"foo("a") > "0""#)),
            r#"malformed comparison: foo("a") > "0" (unknown target foo)"#
        );
        assert_eq!(
            message(parse_compare(r#"mod("a") > "x""#)),
            r#"invalid txn compare request: mod("a") > "x""#
        );
    }

    #[test]
    fn argify_as_etcdctl() {
        assert_eq!(argify(r#"put k "a b" 'c d' e"#).unwrap(), ["put", "k", "a b", "c d", "e"]);
        assert_eq!(argify(r#"put k "a\tb""#).unwrap(), ["put", "k", "a\tb"]);
    }

    #[test]
    fn op_lines_parse() {
        assert!(matches!(parse_op("put k v").unwrap(), TxnOp::Put(..)));
        assert!(matches!(parse_op("get k --prefix").unwrap(), TxnOp::Get(..)));
        assert_eq!(parse_op("foo a b").unwrap_err().to_string(), "invalid txn request: foo a b");
        assert_eq!(parse_op("put").unwrap_err().to_string(), "invalid txn compare request: put");
    }
}
