//! `--initial-cluster` and `--initial-advertise-peer-urls` as etcd reads them for `snapshot restore`: URLs
//! checked as etcd's `types.NewURLs`, the `name=url,...` map as `types.NewURLsMap`, and the checks of etcd's
//! `ServerConfig.VerifyBootstrap`, with etcd's error texts. Member and cluster ids come from cairn-storage, the
//! server's own derivation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};

use cairn_storage::member;

use crate::gofmt::quote;

/// One member of the cluster to bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub id: u64,
    pub name: String,
    /// Sorted, as etcd keeps them.
    pub peer_urls: Vec<String>,
}

/// The cluster `--initial-cluster` describes, members sorted by id (etcd's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialCluster {
    pub id: u64,
    pub members: Vec<InitialMember>,
}

/// Checks one URL as etcd's `types.NewURLs` does (after Go's `url.Parse`).
fn check_url(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    // Go's getScheme: letters, then letters, digits, '+', '-', '.', up to ':'.
    let scheme_end = s.char_indices().find_map(|(i, c)| match c {
        ':' => Some(Some(i)),
        c if c.is_ascii_alphabetic() => None,
        '0'..='9' | '+' | '-' | '.' if i > 0 => None,
        _ => Some(None),
    });
    let Some(Some(colon)) = scheme_end.filter(|c| *c != Some(0)) else {
        if scheme_end == Some(Some(0)) {
            return Err(format!("parse {}: missing protocol scheme", quote(s.as_bytes())));
        }
        let first_segment = s.split('/').next().unwrap_or("");
        if first_segment.contains(':') {
            return Err(format!(
                "parse {}: first path segment in URL cannot contain colon",
                quote(s.as_bytes())
            ));
        }
        return Err(format!("URL scheme must be http, https, unix, or unixs: {s}"));
    };
    let scheme = s[..colon].to_ascii_lowercase();
    if !["http", "https", "unix", "unixs"].contains(&scheme.as_str()) {
        return Err(format!("URL scheme must be http, https, unix, or unixs: {s}"));
    }
    let rest = &s[colon + 1..];
    let Some(authority_and_path) = rest.strip_prefix("//") else {
        return Err(format!("URL address does not have the form \"host:port\": {s}"));
    };
    let end = authority_and_path.find(['/', '?', '#']).unwrap_or(authority_and_path.len());
    let (host, path) = authority_and_path.split_at(end);
    if split_host_port(host).is_none() {
        return Err(format!("URL address does not have the form \"host:port\": {s}"));
    }
    if !path.is_empty() {
        return Err(format!("URL must not contain a path: {s}"));
    }
    Ok(format!("{scheme}:{rest}"))
}

/// Go's `net.SplitHostPort`, for the checks that need it: `host:port` or `[v6]:port`.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    let (host, port) = hostport.rsplit_once(':')?;
    if let Some(inner) = host.strip_prefix('[') {
        return Some((inner.strip_suffix(']')?, port));
    }
    (!host.contains([':', '[', ']'])).then_some((host, port))
}

/// etcd's `types.NewURLs`: every URL checked, sorted.
pub fn parse_urls(list: &[&str]) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Err("no valid URLs given".into());
    }
    let mut urls = list.iter().map(|u| check_url(u)).collect::<Result<Vec<_>, _>>()?;
    urls.sort();
    Ok(urls)
}

/// etcd's `types.NewURLsMap`: `name=url` items separated by commas, a name may repeat.
pub fn parse_urls_map(s: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut raw: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (name, url) = item.split_once('=').unwrap_or((item, ""));
        raw.entry(name.to_owned()).or_default().push(url);
    }
    raw.into_iter().map(|(name, urls)| Ok((name, parse_urls(&urls)?))).collect()
}

/// etcd's `URLsMap.String()`: `name=url` pairs sorted, joined by commas.
fn urls_map_string(map: &BTreeMap<String, Vec<String>>) -> String {
    let mut pairs: Vec<String> =
        map.iter().flat_map(|(name, urls)| urls.iter().map(move |u| format!("{name}={u}"))).collect();
    pairs.sort();
    pairs.join(",")
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn quoted_list(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| quote(s.as_bytes())).collect();
    format!("[{}]", items.join(" "))
}

/// A URL with its host resolved, as etcd's netutil compares advertised and configured URLs.
fn resolve(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((host, port)) = split_host_port(rest) else { return url.to_owned() };
    let Ok(port_num) = port.parse::<u16>() else { return url.to_owned() };
    let addrs: Vec<SocketAddr> =
        (host, port_num).to_socket_addrs().map(Iterator::collect).unwrap_or_default();
    match addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
        Some(a) => format!("{scheme}://{a}"),
        None => url.to_owned(),
    }
}

/// etcd's `netutil.URLStringsEqual`: the same URLs once hosts are resolved.
fn urls_equal(a: &[String], b: &[String]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("len({}) != len({})", quoted_list(a), quoted_list(b)));
    }
    let mut ra: Vec<(String, &String)> = a.iter().map(|u| (resolve(u), u)).collect();
    let mut rb: Vec<(String, &String)> = b.iter().map(|u| (resolve(u), u)).collect();
    ra.sort();
    rb.sort();
    for ((x, xs), (y, ys)) in ra.iter().zip(&rb) {
        if x != y {
            return Err(format!("resolved urls: {} != {}", quote(xs.as_bytes()), quote(ys.as_bytes())));
        }
    }
    Ok(())
}

/// etcd's `VerifyBootstrap` for `name` advertising `peer_urls`, then the members and their ids
/// (`membership.NewClusterFromURLsMap`).
pub fn bootstrap(
    name: &str,
    peer_urls: &[String],
    map: &BTreeMap<String, Vec<String>>,
    token: &str,
) -> Result<InitialCluster, String> {
    let Some(mine) = map.get(name) else {
        return Err(format!(
            "couldn't find local name {} in the initial cluster configuration",
            quote(name.as_bytes())
        ));
    };
    if let Err(resolved) = urls_equal(peer_urls, mine) {
        let advertised: BTreeSet<&String> = peer_urls.iter().collect();
        let configured: BTreeSet<&String> = mine.iter().collect();
        let missing: Vec<String> =
            configured.difference(&advertised).map(|u| format!("{name}={u}")).collect();
        if !missing.is_empty() {
            return Err(format!(
                "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({resolved})",
                missing.join(","),
                peer_urls.join(",")
            ));
        }
        let mine_only = BTreeMap::from([(name.to_owned(), peer_urls.to_vec())]);
        let extra: Vec<&str> = advertised.difference(&configured).map(|u| u.as_str()).collect();
        if !extra.is_empty() {
            return Err(format!(
                "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
                extra.join(","),
                urls_map_string(&mine_only)
            ));
        }
        return Err(format!(
            "failed to resolve {} to match --initial-cluster={} ({resolved})",
            peer_urls.join(","),
            urls_map_string(&mine_only)
        ));
    }
    let mut seen = BTreeSet::new();
    if map.values().flatten().any(|u| !seen.insert(u)) {
        return Err(format!("initial cluster {} has duplicate url", urls_map_string(map)));
    }
    let mut members: Vec<InitialMember> = Vec::new();
    for (name, urls) in map {
        let id = member::member_id(urls, token);
        if members.iter().any(|m| m.id == id) {
            return Err(format!("member exists with identical ID {id:x}"));
        }
        members.push(InitialMember { id, name: name.clone(), peer_urls: urls.clone() });
    }
    members.sort_by_key(|m| m.id);
    let id = member::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    Ok(InitialCluster { id, members })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_are_checked_with_etcds_words() {
        assert_eq!(check_url(" http://127.0.0.1:1 "), Ok("http://127.0.0.1:1".into()));
        assert_eq!(
            check_url("127.0.0.1:1").unwrap_err(),
            "parse \"127.0.0.1:1\": first path segment in URL cannot contain colon"
        );
        assert_eq!(check_url("").unwrap_err(), "URL scheme must be http, https, unix, or unixs: ");
        assert_eq!(
            check_url("localhost:2380").unwrap_err(),
            "URL scheme must be http, https, unix, or unixs: localhost:2380"
        );
        assert_eq!(
            check_url("http://host").unwrap_err(),
            "URL address does not have the form \"host:port\": http://host"
        );
        assert_eq!(check_url("http://h:1/x").unwrap_err(), "URL must not contain a path: http://h:1/x");
        assert!(check_url("http://[::1]:2380").is_ok());
    }

    #[test]
    fn bootstrap_checks_and_ids_are_etcds() {
        let map = parse_urls_map("a=http://127.0.0.1:1,b=http://127.0.0.1:2,c=http://127.0.0.1:3").unwrap();
        let c = bootstrap("b", &["http://127.0.0.1:2".into()], &map, "tok").unwrap();
        assert_eq!(c.id, 0xe6b4_9e3f_120a_2cdb, "the cluster id etcdctl logs for this cluster");
        let ids: Vec<u64> = c.members.iter().map(|m| m.id).collect();
        assert_eq!(ids, [0x0b64_7f29_678b_82df, 0x1b86_cb6f_4861_f3fd, 0xd1dd_0451_a6b7_4da3]);

        assert_eq!(
            bootstrap("foo", &[], &map, "tok").unwrap_err(),
            "couldn't find local name \"foo\" in the initial cluster configuration"
        );
        assert_eq!(
            bootstrap("a", &["http://localhost:2380".into()], &map, "tok").unwrap_err(),
            "--initial-cluster has a=http://127.0.0.1:1 but missing from \
             --initial-advertise-peer-urls=http://localhost:2380 (resolved urls: \"http://localhost:2380\" != \
             \"http://127.0.0.1:1\")"
        );
        let dup = parse_urls_map("a=http://127.0.0.1:1,b=http://127.0.0.1:1").unwrap();
        assert_eq!(
            bootstrap("a", &["http://127.0.0.1:1".into()], &dup, "t").unwrap_err(),
            "initial cluster a=http://127.0.0.1:1,b=http://127.0.0.1:1 has duplicate url"
        );
        // One name, two URLs: one member.
        let two = parse_urls_map("a=http://127.0.0.1:3,a=http://127.0.0.1:1").unwrap();
        let urls = parse_urls(&["http://127.0.0.1:1", "http://127.0.0.1:3"]).unwrap();
        assert_eq!(bootstrap("a", &urls, &two, "t").unwrap().members[0].peer_urls, urls);
    }
}
