//! `-w json`: Go's encoding/json of the etcd 3.4 structs etcdctl marshals (proto field names as JSON keys,
//! `omitempty`, numbers for int64, base64 for bytes). Only fields etcd 3.4 knows are written, so the output is
//! etcdctl 3.4's even when a newer server sends more.

use cairn_api::etcdserverpb::response_op::Response;
use cairn_api::etcdserverpb::{
    AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseTimeToLiveResponse, Member, PutResponse, RangeResponse, ResponseHeader, StatusResponse, TxnResponse,
    WatchResponse,
};
use cairn_api::mvccpb::{Event, KeyValue};

use super::{DbStatus, EpHashKv, EpHealth, EpStatus};
use crate::gojson::{self, Obj};

fn header_fields(h: &ResponseHeader) -> Obj {
    Obj::new()
        .int_oe("cluster_id", h.cluster_id)
        .int_oe("member_id", h.member_id)
        .int_oe("revision", h.revision)
        .int_oe("raft_term", h.raft_term)
}

/// A `*pb.ResponseHeader` field: omitted when nil.
pub fn header(h: Option<&ResponseHeader>) -> Option<String> {
    h.map(|h| header_fields(h).build())
}

/// Go's embedded `*pb.ResponseHeader`: its fields inline in the outer object.
fn embedded_header(h: Option<&ResponseHeader>) -> String {
    h.map(|h| header_fields(h).fields()).unwrap_or_default()
}

pub fn kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes_oe("key", &kv.key)
        .int_oe("create_revision", kv.create_revision)
        .int_oe("mod_revision", kv.mod_revision)
        .int_oe("version", kv.version)
        .bytes_oe("value", &kv.value)
        .int_oe("lease", kv.lease)
        .build()
}

fn kvs(list: &[KeyValue]) -> Vec<String> {
    list.iter().map(kv).collect()
}

fn range_obj(r: &RangeResponse) -> String {
    Obj::new()
        .msg("header", header(r.header.as_ref()))
        .list_oe("kvs", kvs(&r.kvs))
        .bool_oe("more", r.more)
        .int_oe("count", r.count)
        .build()
}

pub fn range(r: &RangeResponse) -> String {
    range_obj(r)
}

pub fn put(r: &PutResponse) -> String {
    Obj::new().msg("header", header(r.header.as_ref())).msg("prev_kv", r.prev_kv.as_ref().map(kv)).build()
}

pub fn del(r: &DeleteRangeResponse) -> String {
    Obj::new()
        .msg("header", header(r.header.as_ref()))
        .int_oe("deleted", r.deleted)
        .list_oe("prev_kvs", kvs(&r.prev_kvs))
        .build()
}

pub fn txn(r: &TxnResponse) -> String {
    let ops = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(Response::ResponseRange(g)) => Some(Obj::new().raw("ResponseRange", &range(g)).build()),
                Some(Response::ResponsePut(p)) => Some(Obj::new().raw("ResponsePut", &put(p)).build()),
                Some(Response::ResponseDeleteRange(d)) => {
                    Some(Obj::new().raw("ResponseDeleteRange", &del(d)).build())
                }
                Some(Response::ResponseTxn(t)) => Some(Obj::new().raw("ResponseTxn", &txn(t)).build()),
                None => None,
            };
            Obj::new().msg("Response", inner).build()
        })
        .collect();
    Obj::new()
        .msg("header", header(r.header.as_ref()))
        .bool_oe("succeeded", r.succeeded)
        .list_oe("responses", ops)
        .build()
}

fn event(e: &Event) -> String {
    Obj::new()
        .int_oe("type", e.r#type)
        .msg("kv", e.kv.as_ref().map(kv))
        .msg("prev_kv", e.prev_kv.as_ref().map(kv))
        .build()
}

/// clientv3.WatchResponse: exported fields without json tags.
pub fn watch(r: &WatchResponse) -> String {
    let hdr = header_fields(&r.header.unwrap_or_default()).build();
    Obj::new()
        .raw("Header", &hdr)
        .list_or_null("Events", r.events.iter().map(event).collect())
        .int("CompactRevision", r.compact_revision)
        .bool("Canceled", r.canceled)
        .bool("Created", r.created)
        .build()
}

pub fn grant(r: &LeaseGrantResponse) -> String {
    Obj::new()
        .embed(&embedded_header(r.header.as_ref()))
        .int("ID", r.id)
        .int("TTL", r.ttl)
        .str("Error", &r.error)
        .build()
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) -> String {
    Obj::new().embed(&embedded_header(r.header.as_ref())).int("ID", r.id).int("TTL", r.ttl).build()
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse) -> String {
    Obj::new()
        .embed(&embedded_header(r.header.as_ref()))
        .int("id", r.id)
        .int("ttl", r.ttl)
        .int("granted-ttl", r.granted_ttl)
        .list_or_null("keys", r.keys.iter().map(|k| gojson::bytes(k)).collect())
        .build()
}

pub fn leases(r: &LeaseLeasesResponse) -> String {
    let items = r.leases.iter().map(|l| Obj::new().int("id", l.id).build()).collect();
    Obj::new().embed(&embedded_header(r.header.as_ref())).raw("leases", &gojson::list(items)).build()
}

pub fn header_only(h: Option<&ResponseHeader>) -> String {
    Obj::new().msg("header", header(h)).build()
}

fn member(m: &Member) -> String {
    Obj::new()
        .int_oe("ID", m.id)
        .str_oe("name", &m.name)
        .list_oe("peerURLs", m.peer_ur_ls.iter().map(|u| gojson::string(u)).collect())
        .list_oe("clientURLs", m.client_ur_ls.iter().map(|u| gojson::string(u)).collect())
        .bool_oe("isLearner", m.is_learner)
        .build()
}

/// Member list/add/remove/update/promote responses.
pub fn members(h: Option<&ResponseHeader>, added: Option<&Member>, list: &[Member]) -> String {
    Obj::new()
        .msg("header", header(h))
        .msg("member", added.map(member))
        .list_oe("members", list.iter().map(member).collect())
        .build()
}

pub fn alarm(r: &AlarmResponse) -> String {
    let alarms = r
        .alarms
        .iter()
        .map(|a| Obj::new().int_oe("memberID", a.member_id).int_oe("alarm", a.alarm).build())
        .collect();
    Obj::new().msg("header", header(r.header.as_ref())).list_oe("alarms", alarms).build()
}

fn status(r: &StatusResponse) -> String {
    Obj::new()
        .msg("header", header(r.header.as_ref()))
        .str_oe("version", &r.version)
        .int_oe("dbSize", r.db_size)
        .int_oe("leader", r.leader)
        .int_oe("raftIndex", r.raft_index)
        .int_oe("raftTerm", r.raft_term)
        .int_oe("raftAppliedIndex", r.raft_applied_index)
        .list_oe("errors", r.errors.iter().map(|e| gojson::string(e)).collect())
        .int_oe("dbSizeInUse", r.db_size_in_use)
        .bool_oe("isLearner", r.is_learner)
        .build()
}

pub fn ep_status(eps: &[EpStatus]) -> String {
    gojson::list(
        eps.iter()
            .map(|e| Obj::new().str("Endpoint", &e.ep).raw("Status", &status(&e.resp)).build())
            .collect(),
    )
}

pub fn ep_hashkv(eps: &[EpHashKv]) -> String {
    gojson::list(
        eps.iter()
            .map(|e| {
                let h = Obj::new()
                    .msg("header", header(e.resp.header.as_ref()))
                    .int_oe("hash", e.resp.hash)
                    .int_oe("compact_revision", e.resp.compact_revision)
                    .build();
                Obj::new().str("Endpoint", &e.ep).raw("HashKV", &h).build()
            })
            .collect(),
    )
}

pub fn ep_health(hs: &[EpHealth]) -> String {
    gojson::list(
        hs.iter()
            .map(|h| {
                Obj::new()
                    .str("endpoint", &h.ep)
                    .bool("health", h.health)
                    .str("took", &h.took)
                    .str_oe("error", &h.error)
                    .build()
            })
            .collect(),
    )
}

pub fn db_status(s: &DbStatus) -> String {
    Obj::new()
        .int("hash", s.hash)
        .int("revision", s.revision)
        .int("totalKey", s.total_key)
        .int("totalSize", s.total_size)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_as_etcdctl() {
        let r = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 4, raft_term: 2 }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            range(&r),
            r#"{"header":{"cluster_id":1,"member_id":2,"revision":4,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,"value":"YmFy"}],"count":1}"#
        );
    }

    #[test]
    fn lease_grant_embeds_the_header() {
        let r = LeaseGrantResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 17, raft_term: 2 }),
            id: 7,
            ttl: 100,
            error: String::new(),
        };
        assert_eq!(
            grant(&r),
            r#"{"cluster_id":1,"member_id":2,"revision":17,"raft_term":2,"ID":7,"TTL":100,"Error":""}"#
        );
    }
}
