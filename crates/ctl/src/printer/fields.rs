//! `-w fields`: one `"Name" : value` line per field, strings Go-quoted.

use cairn_api::etcdserverpb::response_op::Response;
use cairn_api::etcdserverpb::{
    AlarmResponse, DeleteRangeResponse, LeaseLeasesResponse, LeaseTimeToLiveResponse, Member, PutResponse,
    RangeResponse, ResponseHeader, TxnResponse, WatchResponse,
};
use cairn_api::mvccpb::KeyValue;

use super::{alarm_name, line, DbStatus, EpHashKv, EpHealth, EpStatus, Out};
use crate::gofmt::quote;

fn kv(out: &mut Out, pfx: &str, kv: &KeyValue) {
    line(out, &format!("\"{pfx}Key\" : {}", quote(&kv.key)));
    line(out, &format!("\"{pfx}CreateRevision\" : {}", kv.create_revision));
    line(out, &format!("\"{pfx}ModRevision\" : {}", kv.mod_revision));
    line(out, &format!("\"{pfx}Version\" : {}", kv.version));
    line(out, &format!("\"{pfx}Value\" : {}", quote(&kv.value)));
    line(out, &format!("\"{pfx}Lease\" : {}", kv.lease));
}

pub fn hdr(out: &mut Out, h: Option<&ResponseHeader>) {
    let h = h.copied().unwrap_or_default();
    line(out, &format!("\"ClusterID\" : {}", h.cluster_id));
    line(out, &format!("\"MemberID\" : {}", h.member_id));
    line(out, &format!("\"Revision\" : {}", h.revision));
    line(out, &format!("\"RaftTerm\" : {}", h.raft_term));
}

pub fn get(out: &mut Out, r: &RangeResponse) {
    hdr(out, r.header.as_ref());
    for k in &r.kvs {
        kv(out, "", k);
    }
    line(out, &format!("\"More\" : {}", r.more));
    line(out, &format!("\"Count\" : {}", r.count));
}

pub fn put(out: &mut Out, r: &PutResponse) {
    hdr(out, r.header.as_ref());
    if let Some(p) = &r.prev_kv {
        kv(out, "Prev", p);
    }
}

pub fn del(out: &mut Out, r: &DeleteRangeResponse) {
    hdr(out, r.header.as_ref());
    line(out, &format!("\"Deleted\" : {}", r.deleted));
    for p in &r.prev_kvs {
        kv(out, "Prev", p);
    }
}

pub fn txn(out: &mut Out, r: &TxnResponse) {
    hdr(out, r.header.as_ref());
    line(out, &format!("\"Succeeded\" : {}", r.succeeded));
    for op in &r.responses {
        match &op.response {
            Some(Response::ResponseDeleteRange(d)) => del(out, d),
            Some(Response::ResponsePut(p)) => put(out, p),
            Some(Response::ResponseRange(g)) => get(out, g),
            Some(Response::ResponseTxn(_)) | None => line(out, "\"Unknown\" : \"\""),
        }
    }
}

pub fn watch(out: &mut Out, r: &WatchResponse) {
    hdr(out, r.header.as_ref());
    for e in &r.events {
        line(out, &format!("\"Type\" : {}", if e.r#type == 1 { "DELETE" } else { "PUT" }));
        if let Some(p) = &e.prev_kv {
            kv(out, "Prev", p);
        }
        kv(out, "", e.kv.as_ref().unwrap_or(&KeyValue::default()));
    }
}

pub fn id_ttl(out: &mut Out, h: Option<&ResponseHeader>, id: i64, ttl: i64) {
    hdr(out, h);
    line(out, &format!("\"ID\" : {id}"));
    line(out, &format!("\"TTL\" : {ttl}"));
}

pub fn time_to_live(out: &mut Out, r: &LeaseTimeToLiveResponse) {
    id_ttl(out, r.header.as_ref(), r.id, r.ttl);
    line(out, &format!("\"GrantedTTL\" : {}", r.granted_ttl));
    for k in &r.keys {
        line(out, &format!("\"Key\" : {}", quote(k)));
    }
}

pub fn leases(out: &mut Out, r: &LeaseLeasesResponse) {
    hdr(out, r.header.as_ref());
    for l in &r.leases {
        line(out, &format!("\"ID\" : {}", l.id));
    }
}

fn member_fields(out: &mut Out, m: &Member) {
    line(out, &format!("\"ID\" : {}", m.id));
    line(out, &format!("\"Name\" : {}", quote(m.name.as_bytes())));
    for u in &m.peer_ur_ls {
        line(out, &format!("\"PeerURL\" : {}", quote(u.as_bytes())));
    }
    for u in &m.client_ur_ls {
        line(out, &format!("\"ClientURL\" : {}", quote(u.as_bytes())));
    }
    line(out, &format!("\"IsLearner\" : {}", m.is_learner));
    line(out, "");
}

pub fn member_list(out: &mut Out, h: Option<&ResponseHeader>, members: &[Member]) {
    hdr(out, h);
    for m in members {
        member_fields(out, m);
    }
}

pub fn alarm(out: &mut Out, r: &AlarmResponse) {
    hdr(out, r.header.as_ref());
    for a in &r.alarms {
        line(out, &format!("\"MemberID\" : {}", a.member_id));
        line(out, &format!("\"AlarmType\" : {}", alarm_name(a.alarm)));
        line(out, "");
    }
}

pub fn ep_status(out: &mut Out, eps: &[EpStatus]) {
    for ep in eps {
        let r = &ep.resp;
        hdr(out, r.header.as_ref());
        line(out, &format!("\"Version\" : {}", quote(r.version.as_bytes())));
        line(out, &format!("\"DBSize\" : {}", r.db_size));
        line(out, &format!("\"Leader\" : {}", r.leader));
        line(out, &format!("\"IsLearner\" : {}", r.is_learner));
        line(out, &format!("\"RaftIndex\" : {}", r.raft_index));
        line(out, &format!("\"RaftTerm\" : {}", r.raft_term));
        line(out, &format!("\"RaftAppliedIndex\" : {}", r.raft_applied_index));
        line(out, &format!("\"Errors\" : [{}]", r.errors.join(" ")));
        line(out, &format!("\"Endpoint\" : {}", quote(ep.ep.as_bytes())));
        line(out, "");
    }
}

pub fn ep_hashkv(out: &mut Out, eps: &[EpHashKv]) {
    for ep in eps {
        hdr(out, ep.resp.header.as_ref());
        line(out, &format!("\"Endpoint\" : {}", quote(ep.ep.as_bytes())));
        line(out, &format!("\"Hash\" : {}", ep.resp.hash));
        line(out, "");
    }
}

pub fn ep_health(out: &mut Out, hs: &[EpHealth]) {
    for h in hs {
        line(out, &format!("\"Endpoint\" : {}", quote(h.ep.as_bytes())));
        line(out, &format!("\"Health\" : {}", h.health));
        line(out, &format!("\"Took\" : {}", h.took));
        line(out, &format!("\"Error\" : {}", h.error));
        line(out, "");
    }
}

pub fn db_status(out: &mut Out, s: &DbStatus) {
    line(out, &format!("\"Hash\" : {}", s.hash));
    line(out, &format!("\"Revision\" : {}", s.revision));
    line(out, &format!("\"Keys\" : {}", s.total_key));
    line(out, &format!("\"Size\" : {}", s.total_size));
}
