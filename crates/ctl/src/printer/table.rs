//! `-w table`, drawn as olekukonko/tablewriter draws etcdctl's tables (upper-case centred headers, cells
//! right-aligned), and the rows the simple format joins with ", ".

use cairn_api::etcdserverpb::Member;

use super::{line, DbStatus, EpHashKv, EpHealth, EpStatus, Out};
use crate::gofmt::humanize_bytes;

/// Renders a table of `rows` under `header`.
pub fn render(out: &mut Out, header: &[&str], rows: &[Vec<String>]) {
    let titles: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let mut widths: Vec<usize> = titles.iter().map(|t| t.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let border: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+";
    line(out, &border);
    let mut head = String::new();
    for (t, w) in titles.iter().zip(&widths) {
        let gap = w - t.chars().count();
        let left = gap / 2;
        head.push_str(&format!("| {}{}{} ", " ".repeat(left), t, " ".repeat(gap - left)));
    }
    line(out, &(head + "|"));
    line(out, &border);
    for row in rows {
        let mut text = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            text.push_str(&format!("| {cell:>w$} "));
        }
        line(out, &(text + "|"));
    }
    line(out, &border);
}

pub fn member_rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() { "unstarted" } else { "started" }.to_owned(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

pub fn member_list(out: &mut Out, members: &[Member]) {
    render(out, &["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"], &member_rows(members));
}

pub fn status_rows(eps: &[EpStatus]) -> Vec<Vec<String>> {
    eps.iter()
        .map(|e| {
            let r = &e.resp;
            let member = r.header.map_or(0, |h| h.member_id);
            vec![
                e.ep.clone(),
                format!("{member:x}"),
                r.version.clone(),
                humanize_bytes(u64::try_from(r.db_size).unwrap_or(0)),
                (r.leader == member).to_string(),
                r.is_learner.to_string(),
                r.raft_term.to_string(),
                r.raft_index.to_string(),
                r.raft_applied_index.to_string(),
                r.errors.join(", "),
            ]
        })
        .collect()
}

pub fn endpoint_status(out: &mut Out, eps: &[EpStatus]) {
    render(
        out,
        &[
            "endpoint",
            "ID",
            "version",
            "db size",
            "is leader",
            "is learner",
            "raft term",
            "raft index",
            "raft applied index",
            "errors",
        ],
        &status_rows(eps),
    );
}

pub fn endpoint_hashkv(out: &mut Out, eps: &[EpHashKv]) {
    let rows: Vec<Vec<String>> = eps.iter().map(|e| vec![e.ep.clone(), e.resp.hash.to_string()]).collect();
    render(out, &["endpoint", "hash"], &rows);
}

pub fn endpoint_health(out: &mut Out, hs: &[EpHealth]) {
    let rows: Vec<Vec<String>> = hs
        .iter()
        .map(|h| vec![h.ep.clone(), h.health.to_string(), h.took.clone(), h.error.clone()])
        .collect();
    render(out, &["endpoint", "health", "took", "error"], &rows);
}

pub fn db_status_row(s: &DbStatus) -> Vec<String> {
    vec![
        format!("{:x}", s.hash),
        s.revision.to_string(),
        s.total_key.to_string(),
        humanize_bytes(s.total_size),
    ]
}

pub fn db_status(out: &mut Out, s: &DbStatus) {
    render(out, &["hash", "revision", "total keys", "total size"], &[db_status_row(s)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_as_tablewriter() {
        let mut out = Vec::new();
        render(&mut out, &["endpoint", "hash"], &[vec!["127.0.0.1:23791".into(), "2484836647".into()]]);
        let want = "\
+-----------------+------------+
|    ENDPOINT     |    HASH    |
+-----------------+------------+
| 127.0.0.1:23791 | 2484836647 |
+-----------------+------------+
";
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
