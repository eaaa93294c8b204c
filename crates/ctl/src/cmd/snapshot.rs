//! snapshot save|status|restore (etcdctl's snapshot_command.go and clientv3/snapshot). `save` streams the
//! backend to `<path>.part`, syncs and renames it; `status` reads the bolt file etcd sends; `restore` lives in
//! [`super::restore`].

use std::io::{IsTerminal, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use crate::boltdb::{Bolt, BoltError};
use crate::cli::{Positional, SnapshotCommand};
use crate::ctx::{log_timestamp, Ctx};
use crate::error::{client_message, CtlError, ExitCode, Result};
use crate::gofmt::humanize_bytes;
use crate::gojson;
use crate::printer::DbStatus;

pub async fn snapshot(ctx: &mut Ctx, c: SnapshotCommand) -> Result<()> {
    match c {
        SnapshotCommand::Save(a) => save(ctx, a).await,
        SnapshotCommand::Status(a) => {
            let [path] = a.args.as_slice() else {
                return Err(CtlError::bad_args("snapshot status requires exactly one argument"));
            };
            let s = status(path)?;
            ctx.printer.db_status(&mut ctx.out, &s)
        }
        SnapshotCommand::Restore(a) => super::restore::restore(ctx, &a),
    }
}

/// zap's production logger line, as etcdctl's snapshot code logs.
pub(super) fn info(ctx: &mut Ctx, iso: bool, caller: &str, msg: &str, fields: &str) {
    let ts = if iso {
        gojson::string(&log_timestamp(true))
    } else {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        // Go's shortest float: no trailing zeros, no point for a whole second.
        let fraction = format!("{:07}", now.subsec_nanos() / 100);
        match fraction.trim_end_matches('0') {
            "" => now.as_secs().to_string(),
            f => format!("{}.{f}", now.as_secs()),
        }
    };
    let line =
        format!("{{\"level\":\"info\",\"ts\":{ts},\"caller\":\"{caller}\",\"msg\":\"{msg}\"{fields}}}\n");
    ctx.err.extend_from_slice(line.as_bytes());
}

async fn save(ctx: &mut Ctx, a: Positional) -> Result<()> {
    let [path] = a.args.as_slice() else {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    };
    let eps = ctx.global.endpoints.clone();
    if eps.len() != 1 {
        return Err(CtlError::new(
            ExitCode::Interrupted,
            format!("snapshot must be requested to one selected node, not multiple [{}]", eps.join(" ")),
        ));
    }
    let interrupted = |m: String| CtlError::new(ExitCode::Interrupted, m);
    let part = format!("{path}.part");
    let _ = std::fs::remove_file(&part);
    let mut file =
        std::fs::File::create(&part).map_err(|e| interrupted(format!("could not open {part} ({e})")))?;
    info(
        ctx,
        false,
        "snapshot/v3_snapshot.go:119",
        "created temporary db file",
        &format!(",\"path\":{}", gojson::string(&part)),
    );
    let client = ctx.client().await?;
    let start = Instant::now();
    let mut stream = client.snapshot().await.map_err(|e| interrupted(client_message(&e)))?;
    info(ctx, true, "clientv3/maintenance.go:200", "opened snapshot stream; downloading", "");
    info(
        ctx,
        false,
        "snapshot/v3_snapshot.go:127",
        "fetching snapshot",
        &format!(",\"endpoint\":{}", gojson::string(&eps[0])),
    );
    ctx.flush();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {bytes} received ({bytes_per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b
    });
    let mut size = 0u64;
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                file.write_all(&chunk.blob).map_err(|e| interrupted(e.to_string()))?;
                size += chunk.blob.len() as u64;
                if let Some(b) = &bar {
                    b.set_position(size);
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(interrupted(client_message(&e)));
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    info(ctx, true, "clientv3/maintenance.go:208", "completed snapshot read; closing", "");
    file.sync_all().map_err(|e| interrupted(e.to_string()))?;
    drop(file);
    info(
        ctx,
        false,
        "snapshot/v3_snapshot.go:142",
        "fetched snapshot",
        &format!(
            ",\"endpoint\":{},\"size\":{},\"took\":{}",
            gojson::string(&eps[0]),
            gojson::string(&humanize_bytes(size)),
            start.elapsed().as_secs_f64()
        ),
    );
    std::fs::rename(&part, path)
        .map_err(|e| interrupted(format!("could not rename {part} to {path} ({e})")))?;
    info(ctx, false, "snapshot/v3_snapshot.go:152", "saved", &format!(",\"path\":{}", gojson::string(path)));
    ctx.out.extend_from_slice(format!("Snapshot saved at {path}\n").as_bytes());
    Ok(())
}

/// etcd's snapshot status: CRC-32C over every bucket name, key and value, the newest revision in "key", the
/// number of keys and the file's size in pages.
pub fn status(path: &str) -> Result<DbStatus> {
    let data = std::fs::read(path).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
            _ => e.to_string(),
        };
        CtlError::new(ExitCode::Error, format!("stat {path}: {reason}"))
    })?;
    let err = |e: BoltError| CtlError::new(ExitCode::Error, e.to_string());
    let db = Bolt::open(&data).map_err(err)?;
    let mut hash = 0u32;
    let mut total_key = 0u64;
    let mut revision = 0i64;
    let mut buckets = Vec::new();
    db.each_root(&mut |name, value, _| {
        buckets.push((name.to_vec(), value.to_vec()));
        Ok(())
    })
    .map_err(err)?;
    for (name, header) in buckets {
        hash = crc32c::crc32c_append(hash, &name);
        let is_key = name == b"key";
        db.each_in(&header, &mut |k, v, _| {
            hash = crc32c::crc32c_append(hash, k);
            hash = crc32c::crc32c_append(hash, v);
            if is_key && k.len() >= 8 {
                let mut main = [0u8; 8];
                main.copy_from_slice(&k[..8]);
                revision = i64::from_be_bytes(main);
            }
            total_key += 1;
            Ok(())
        })
        .map_err(err)?;
    }
    Ok(DbStatus { hash, revision, total_key, total_size: db.size() })
}
