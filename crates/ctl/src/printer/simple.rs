//! `-w simple`: etcdctl's default, human-oriented output.

use cairn_api::etcdserverpb::response_op::Response;
use cairn_api::etcdserverpb::{
    DeleteRangeResponse, LeaseTimeToLiveResponse, PutResponse, RangeResponse, TxnResponse, WatchResponse,
};
use cairn_api::mvccpb::KeyValue;

use super::{line, Out, Printer};
use crate::gofmt;

/// etcdctl's printKV: key line (unless value-only) then value line; raw bytes, or `\xNN` with `--hex`.
pub fn print_kv(out: &mut Out, hex: bool, value_only: bool, kv: &KeyValue) {
    let field = |out: &mut Out, b: &[u8]| {
        if hex {
            out.extend_from_slice(gofmt::hex_escaped(b).as_bytes());
        } else {
            out.extend_from_slice(b);
        }
        out.push(b'\n');
    };
    if !value_only {
        field(out, &kv.key);
    }
    field(out, &kv.value);
}

pub fn get(p: &Printer, out: &mut Out, r: &RangeResponse) {
    for kv in &r.kvs {
        print_kv(out, p.hex, p.value_only, kv);
    }
}

pub fn put(p: &Printer, out: &mut Out, r: &PutResponse) {
    line(out, "OK");
    if let Some(kv) = &r.prev_kv {
        print_kv(out, p.hex, p.value_only, kv);
    }
}

pub fn del(p: &Printer, out: &mut Out, r: &DeleteRangeResponse) {
    line(out, &r.deleted.to_string());
    for kv in &r.prev_kvs {
        print_kv(out, p.hex, p.value_only, kv);
    }
}

pub fn txn(p: &Printer, out: &mut Out, r: &TxnResponse) {
    line(out, if r.succeeded { "SUCCESS" } else { "FAILURE" });
    for op in &r.responses {
        line(out, "");
        match &op.response {
            Some(Response::ResponseDeleteRange(d)) => del(p, out, d),
            Some(Response::ResponsePut(x)) => put(p, out, x),
            Some(Response::ResponseRange(g)) => get(p, out, g),
            Some(Response::ResponseTxn(_)) | None => line(out, "unexpected response"),
        }
    }
}

pub fn watch(p: &Printer, out: &mut Out, r: &WatchResponse) {
    for e in &r.events {
        line(out, if e.r#type == 1 { "DELETE" } else { "PUT" });
        if let Some(prev) = &e.prev_kv {
            print_kv(out, p.hex, p.value_only, prev);
        }
        print_kv(out, p.hex, p.value_only, e.kv.as_ref().unwrap_or(&KeyValue::default()));
    }
}

pub fn time_to_live(out: &mut Out, r: &LeaseTimeToLiveResponse, keys: bool) {
    if r.granted_ttl == 0 && r.ttl == -1 {
        line(out, &format!("lease {:016x} already expired", r.id));
        return;
    }
    let mut txt = format!("lease {:016x} granted with TTL({}s), remaining({}s)", r.id, r.granted_ttl, r.ttl);
    if keys {
        txt.push_str(&format!(", attached keys({})", gofmt::string_slice(&r.keys)));
    }
    line(out, &txt);
}
