//! etcdctl's printers: `-w simple|json|fields|table|protobuf`. Each response type has one method here that picks
//! the format; the formats live in their own files, each following etcdctl 3.4's printer of the same name.
//! Output is collected into a byte buffer the caller writes to stdout.

mod fields;
pub mod json;
mod simple;
pub mod table;

use cairn_api::etcdserverpb::{
    AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeResponse, LeaseTimeToLiveResponse, MemberAddResponse, MemberListResponse,
    MemberPromoteResponse, MemberRemoveResponse, MemberUpdateResponse, PutResponse, RangeResponse,
    ResponseHeader, TxnResponse, WatchResponse,
};
use prost::Message;

use crate::error::{CtlError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "fields" => Format::Fields,
            "table" => Format::Table,
            "protobuf" => Format::Protobuf,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

/// One endpoint's answer for `endpoint status|hashkv|health`.
#[derive(Debug, Clone)]
pub struct EpStatus {
    pub ep: String,
    pub resp: cairn_api::etcdserverpb::StatusResponse,
}

#[derive(Debug, Clone)]
pub struct EpHashKv {
    pub ep: String,
    pub resp: cairn_api::etcdserverpb::HashKvResponse,
}

#[derive(Debug, Clone)]
pub struct EpHealth {
    pub ep: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

/// `snapshot status`'s answer.
#[derive(Debug, Clone, Copy)]
pub struct DbStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

/// Writes responses in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    /// `get --print-value-only`: simple format prints values alone.
    pub value_only: bool,
}

type Out = Vec<u8>;

fn unsupported(format: Format) -> Result<()> {
    Err(CtlError::unsupported_format(format.name()))
}

fn pb(out: &mut Out, m: &impl Message) {
    out.extend_from_slice(&m.encode_to_vec());
}

/// The `-w fields` header lines.
pub fn fields_hdr(out: &mut Out, h: Option<&ResponseHeader>) {
    fields::hdr(out, h);
}

/// Go's printer finds the `Marshal` of the embedded `*pb.ResponseHeader` in clientv3's lease responses.
fn pb_header(out: &mut Out, h: Option<&ResponseHeader>) {
    if let Some(h) = h {
        pb(out, h);
    }
}

fn line(out: &mut Out, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

impl Printer {
    pub fn get(&self, out: &mut Out, r: &RangeResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::get(self, out, r),
            Format::Json => line(out, &json::range(r)),
            Format::Fields => fields::get(out, r),
            Format::Protobuf => pb(out, r),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn put(&self, out: &mut Out, r: &PutResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::put(self, out, r),
            Format::Json => line(out, &json::put(r)),
            Format::Fields => fields::put(out, r),
            Format::Protobuf => pb(out, r),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn del(&self, out: &mut Out, r: &DeleteRangeResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::del(self, out, r),
            Format::Json => line(out, &json::del(r)),
            Format::Fields => fields::del(out, r),
            Format::Protobuf => pb(out, r),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn txn(&self, out: &mut Out, r: &TxnResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::txn(self, out, r),
            Format::Json => line(out, &json::txn(r)),
            Format::Fields => fields::txn(out, r),
            Format::Protobuf => pb(out, r),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    /// One watch response (the events of one revision batch).
    pub fn watch(&self, out: &mut Out, r: &WatchResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::watch(self, out, r),
            Format::Json => line(out, &json::watch(r)),
            Format::Fields => fields::watch(out, r),
            Format::Protobuf => {
                let trimmed = WatchResponse {
                    header: r.header,
                    events: r.events.clone(),
                    compact_revision: r.compact_revision,
                    canceled: r.canceled,
                    created: r.created,
                    ..WatchResponse::default()
                };
                pb(out, &trimmed);
            }
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn grant(&self, out: &mut Out, r: &LeaseGrantResponse) -> Result<()> {
        match self.format {
            Format::Simple => line(out, &format!("lease {:016x} granted with TTL({}s)", r.id, r.ttl)),
            Format::Json => line(out, &json::grant(r)),
            Format::Fields => fields::id_ttl(out, r.header.as_ref(), r.id, r.ttl),
            Format::Protobuf => pb_header(out, r.header.as_ref()),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn revoke(&self, out: &mut Out, id: i64, r: &LeaseRevokeResponse) -> Result<()> {
        if self.format == Format::Protobuf {
            // clientv3's revoke response is no protobuf message: etcdctl refuses it, naming its value.
            let h = r.header.unwrap_or_default();
            let mut text = String::new();
            for (name, v) in [("cluster_id", h.cluster_id), ("member_id", h.member_id)] {
                if v != 0 {
                    text.push_str(&format!("{name}:{v} "));
                }
            }
            if h.revision != 0 {
                text.push_str(&format!("revision:{} ", h.revision));
            }
            if h.raft_term != 0 {
                text.push_str(&format!("raft_term:{} ", h.raft_term));
            }
            return Err(CtlError::new(
                crate::error::ExitCode::BadFeature,
                format!("marshal unsupported for type clientv3.LeaseRevokeResponse ({{{text}}})"),
            ));
        }
        self.header_only(out, r.header.as_ref(), &format!("lease {id:016x} revoked\n"), r)
    }

    pub fn keep_alive(&self, out: &mut Out, r: &LeaseKeepAliveResponse) -> Result<()> {
        match self.format {
            Format::Simple => line(out, &format!("lease {:016x} keepalived with TTL({})", r.id, r.ttl)),
            Format::Json => line(out, &json::keep_alive(r)),
            Format::Fields => fields::id_ttl(out, r.header.as_ref(), r.id, r.ttl),
            Format::Protobuf => pb_header(out, r.header.as_ref()),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn time_to_live(&self, out: &mut Out, r: &LeaseTimeToLiveResponse, keys: bool) -> Result<()> {
        match self.format {
            Format::Simple => simple::time_to_live(out, r, keys),
            Format::Json => line(out, &json::time_to_live(r)),
            Format::Fields => fields::time_to_live(out, r),
            Format::Protobuf => pb_header(out, r.header.as_ref()),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn leases(&self, out: &mut Out, r: &LeaseLeasesResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                line(out, &format!("found {} leases", r.leases.len()));
                for l in &r.leases {
                    line(out, &format!("{:016x}", l.id));
                }
            }
            Format::Json => line(out, &json::leases(r)),
            Format::Fields => fields::leases(out, r),
            Format::Protobuf => pb_header(out, r.header.as_ref()),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn member_list(&self, out: &mut Out, r: &MemberListResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                for row in table::member_rows(&r.members) {
                    line(out, &row.join(", "));
                }
            }
            Format::Json => line(out, &json::members(r.header.as_ref(), None, &r.members)),
            Format::Fields => fields::member_list(out, r.header.as_ref(), &r.members),
            Format::Table => table::member_list(out, &r.members),
            Format::Protobuf => pb(out, r),
        }
        Ok(())
    }

    pub fn member_add(&self, out: &mut Out, r: &MemberAddResponse) -> Result<()> {
        let (cluster, id) = (r.header.map_or(0, |h| h.cluster_id), r.member.as_ref().map_or(0, |m| m.id));
        match self.format {
            Format::Simple => line(out, &format!("Member {id:16x} added to cluster {cluster:16x}")),
            Format::Json => line(out, &json::members(r.header.as_ref(), r.member.as_ref(), &r.members)),
            Format::Protobuf => pb(out, r),
            // etcdctl 3.4's fields printer has no membership changes.
            Format::Fields | Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn member_remove(&self, out: &mut Out, id: u64, r: &MemberRemoveResponse) -> Result<()> {
        self.member_changed(out, id, "removed from", r.header.as_ref(), &r.members)?;
        if self.format == Format::Protobuf {
            pb(out, r);
        }
        Ok(())
    }

    pub fn member_update(&self, out: &mut Out, id: u64, r: &MemberUpdateResponse) -> Result<()> {
        self.member_changed(out, id, "updated in", r.header.as_ref(), &r.members)?;
        if self.format == Format::Protobuf {
            pb(out, r);
        }
        Ok(())
    }

    pub fn member_promote(&self, out: &mut Out, id: u64, r: &MemberPromoteResponse) -> Result<()> {
        self.member_changed(out, id, "promoted in", r.header.as_ref(), &r.members)?;
        if self.format == Format::Protobuf {
            pb(out, r);
        }
        Ok(())
    }

    fn member_changed(
        &self,
        out: &mut Out,
        id: u64,
        verb: &str,
        header: Option<&ResponseHeader>,
        members: &[cairn_api::etcdserverpb::Member],
    ) -> Result<()> {
        let cluster = header.map_or(0, |h| h.cluster_id);
        match self.format {
            Format::Simple => line(out, &format!("Member {id:16x} {verb} cluster {cluster:16x}")),
            Format::Json => line(out, &json::members(header, None, members)),
            Format::Protobuf => {}
            Format::Fields | Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn alarm(&self, out: &mut Out, r: &AlarmResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                for a in &r.alarms {
                    line(out, &format!("memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm)));
                }
            }
            Format::Json => line(out, &json::alarm(r)),
            Format::Fields => fields::alarm(out, r),
            Format::Protobuf => pb(out, r),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn endpoint_status(&self, out: &mut Out, eps: &[EpStatus]) -> Result<()> {
        match self.format {
            Format::Simple => {
                for row in table::status_rows(eps) {
                    line(out, &row.join(", "));
                }
            }
            Format::Json => line(out, &json::ep_status(eps)),
            Format::Fields => fields::ep_status(out, eps),
            Format::Table => table::endpoint_status(out, eps),
            Format::Protobuf => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn endpoint_hashkv(&self, out: &mut Out, eps: &[EpHashKv]) -> Result<()> {
        match self.format {
            Format::Simple => {
                for e in eps {
                    line(out, &format!("{}, {}", e.ep, e.resp.hash));
                }
            }
            Format::Json => line(out, &json::ep_hashkv(eps)),
            Format::Fields => fields::ep_hashkv(out, eps),
            Format::Table => table::endpoint_hashkv(out, eps),
            Format::Protobuf => return unsupported(self.format),
        }
        Ok(())
    }

    /// Health goes to stdout for json, fields and table; the simple format writes it to `err` (stderr).
    pub fn endpoint_health(&self, out: &mut Out, err: &mut Out, hs: &[EpHealth]) -> Result<()> {
        match self.format {
            Format::Simple => {
                for h in hs {
                    if h.error.is_empty() {
                        line(
                            err,
                            &format!(
                                "{} is healthy: successfully committed proposal: took = {}",
                                h.ep, h.took
                            ),
                        );
                    } else {
                        line(err, &format!("{} is unhealthy: failed to commit proposal: {}", h.ep, h.error));
                    }
                }
            }
            Format::Json => line(out, &json::ep_health(hs)),
            Format::Fields => fields::ep_health(out, hs),
            Format::Table => table::endpoint_health(out, hs),
            Format::Protobuf => return unsupported(self.format),
        }
        Ok(())
    }

    pub fn db_status(&self, out: &mut Out, s: &DbStatus) -> Result<()> {
        match self.format {
            Format::Simple => line(out, &table::db_status_row(s).join(", ")),
            Format::Json => line(out, &json::db_status(s)),
            Format::Fields => fields::db_status(out, s),
            Format::Table => table::db_status(out, s),
            Format::Protobuf => return unsupported(self.format),
        }
        Ok(())
    }

    /// A response that only carries a header (auth and maintenance commands): `simple` is the given text,
    /// protobuf the whole response `r`.
    pub fn header_only(
        &self,
        out: &mut Out,
        header: Option<&ResponseHeader>,
        simple: &str,
        r: &impl Message,
    ) -> Result<()> {
        match self.format {
            Format::Simple => out.extend_from_slice(simple.as_bytes()),
            Format::Json => line(out, &json::header_only(header)),
            Format::Fields => fields::hdr(out, header),
            Format::Protobuf => pb(out, r),
            Format::Table => return unsupported(self.format),
        }
        Ok(())
    }
}

/// The Go name of an `AlarmType`.
pub fn alarm_name(a: i32) -> &'static str {
    match a {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}
