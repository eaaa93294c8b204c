//! make-mirror: copy a prefix to another cluster, then follow its changes (etcdctl's make_mirror_command.go and
//! clientv3/mirror). The number of mirrored keys is printed every 30 seconds; a terminal also gets a spinner.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::{WatchCreateRequest, WatchRequest};
use cairn_api::EtcdError;
use cairn_client::options::{prefix_end, KeyRange};
use cairn_client::{ClientError, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use indicatif::ProgressBar;

use crate::cli::MirrorArgs;
use crate::ctx::Ctx;
use crate::error::{CtlError, ExitCode, Result};

/// Keys per page while copying the base state, as clientv3's syncer.
const BATCH: i64 = 1000;

pub async fn make_mirror(ctx: &mut Ctx, a: MirrorArgs) -> Result<()> {
    let [dest] = a.args.as_slice() else {
        return Err(CtlError::bad_args("make-mirror takes one destination argument"));
    };
    let dc = ctx.connect(std::slice::from_ref(dest)).await?;
    let c = ctx.client().await?;
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix =
        if !a.no_dest_prefix && a.dest_prefix.is_empty() { a.prefix.clone() } else { a.dest_prefix };
    let prefix = a.prefix.into_bytes();
    let rename = |key: &[u8]| -> Vec<u8> {
        let mut k = dest_prefix.clone().into_bytes();
        k.extend_from_slice(&key[prefix.len().min(key.len())..]);
        k
    };
    let total = Arc::new(AtomicI64::new(0));
    let bar = std::io::stderr().is_terminal().then(ProgressBar::new_spinner);
    let ticker = {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                println!("{}", total.load(Ordering::Relaxed));
            }
        })
    };
    let err = |e: ClientError| CtlError::from(e);
    // Base: everything under the prefix at one revision, in pages.
    let range = if prefix.is_empty() { KeyRange::FromKey } else { KeyRange::Prefix };
    let first = c
        .get(prefix.clone(), GetOptions { limit: 1, range: range.clone(), ..Default::default() })
        .await
        .map_err(err)?;
    let rev = first.header.map_or(0, |h| h.revision);
    let end = if prefix.is_empty() { vec![0] } else { prefix_end(&prefix) };
    let mut from = if prefix.is_empty() { vec![0] } else { prefix.clone() };
    loop {
        let page = c
            .get(
                from.clone(),
                GetOptions {
                    range: KeyRange::Until(end.clone()),
                    revision: rev,
                    limit: BATCH,
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        for kv in &page.kvs {
            dc.put(rename(&kv.key), kv.value.clone(), PutOptions::default()).await.map_err(err)?;
            total.fetch_add(1, Ordering::Relaxed);
            if let Some(b) = &bar {
                b.set_message(format!("{} keys mirrored", total.load(Ordering::Relaxed)));
                b.tick();
            }
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                from = last.key.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    // Updates: every later revision applied as one transaction.
    let create = WatchCreateRequest {
        key: if prefix.is_empty() { vec![0] } else { prefix.clone() },
        range_end: end,
        start_revision: rev + 1,
        ..Default::default()
    };
    let mut stream = c
        .watch(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) })
        .await
        .map_err(err)?;
    let result = loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break Ok(()),
            Err(e) => break Err(err(e)),
        };
        if resp.compact_revision != 0 {
            break Err(err(ClientError::Etcd(EtcdError::Compacted)));
        }
        let mut ops = Vec::new();
        let mut last_rev = 0;
        for ev in &resp.events {
            let kv = ev.kv.clone().unwrap_or_default();
            if last_rev != 0 && kv.mod_revision > last_rev {
                dc.txn(Txn::new().and_then(std::mem::take(&mut ops))).await.map_err(err)?;
            }
            last_rev = kv.mod_revision;
            ops.push(if ev.r#type == 1 {
                TxnOp::Delete(rename(&kv.key), DeleteOptions::default())
            } else {
                TxnOp::Put(rename(&kv.key), kv.value.clone(), PutOptions::default())
            });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            dc.txn(Txn::new().and_then(ops)).await.map_err(err)?;
        }
    };
    ticker.abort();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result?;
    Err(CtlError::new(ExitCode::Error, "<nil>"))
}
