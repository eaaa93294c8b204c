//! Server configuration: etcd's flags, names and defaults, each also read from its `ETCD_*` environment variable,
//! and `--config-file` (YAML with etcd's key names). Also the member and cluster ids, derived as etcd derives them
//! so that headers match etcd's for the same flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;

/// etcd's default quota when --quota-backend-bytes is 0.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, Parser)]
#[command(name = "cairn", version, about = "cairn: a distributed key-value store, drop-in for etcd v3")]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: ${name}.etcd).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to the dedicated wal directory.
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER", default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Number of entries a leader keeps after a snapshot for slow followers to catch up by log.
    #[arg(
        long = "experimental-snapshot-catchup-entries",
        visible_alias = "snapshot-catchup-entries",
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub snapshot_catchup_entries: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to the low space quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Specify 'zap' (JSON) or 'capnslog' (text) logger.
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Log output format: 'json' or 'text' (cairn's addition; --logger=capnslog also means text).
    #[arg(long, env = "ETCD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Duration of periodic watch progress notifications (Go duration: 10m, 30s, 500ms).
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        visible_alias = "watch-progress-notify-interval",
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m",
        value_parser = parse_go_duration
    )]
    pub watch_progress_notify_interval: std::time::Duration,
    /// Interpret 'auto-compaction-retention' one of: 'periodic', 'revision'.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention: a duration or hours for 'periodic' (0 disables), revisions for 'revision'.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Persist leases' remaining TTL periodically so a leader change does not restart them from their full TTL.
    /// On by default in cairn (etcd 3.4 has it off); `=false` turns it off.
    #[arg(
        long = "experimental-enable-lease-checkpoint",
        env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub lease_checkpoint: bool,
    /// How often the leader checkpoints leases' remaining TTL (Go duration).
    #[arg(
        long = "experimental-lease-checkpoint-interval",
        env = "ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL",
        default_value = "5m",
        value_parser = parse_go_duration
    )]
    pub lease_checkpoint_interval: std::time::Duration,
    /// Reject reconfiguration requests that would cause quorum loss (etcd's strict reconfiguration check):
    /// adding or removing a member while peers are down, or with too few started members. `=false` turns it off.
    #[arg(
        long,
        env = "ETCD_STRICT_RECONFIG_CHECK",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub strict_reconfig_check: bool,
    /// Path to the server configuration file (YAML, etcd's keys). Flags and environment are ignored when set.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
}

/// `--config-file`'s keys, as etcd's YAML config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    wal_dir: Option<PathBuf>,
    listen_client_urls: Option<String>,
    advertise_client_urls: Option<String>,
    listen_peer_urls: Option<String>,
    initial_advertise_peer_urls: Option<String>,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    initial_cluster_token: Option<String>,
    heartbeat_interval: Option<u64>,
    election_timeout: Option<u64>,
    snapshot_count: Option<u64>,
    experimental_snapshot_catchup_entries: Option<u64>,
    quota_backend_bytes: Option<i64>,
    max_request_bytes: Option<u32>,
    max_txn_ops: Option<u32>,
    log_level: Option<String>,
    logger: Option<String>,
    log_format: Option<String>,
    experimental_watch_progress_notify_interval: Option<String>,
    experimental_enable_lease_checkpoint: Option<bool>,
    auto_compaction_mode: Option<String>,
    auto_compaction_retention: Option<serde_yaml::Value>,
    experimental_lease_checkpoint_interval: Option<String>,
    strict_reconfig_check: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("cannot parse config file {path}: {source}")]
    ParseFile { path: PathBuf, source: serde_yaml::Error },
    #[error("{0}")]
    Invalid(String),
}

/// A Go duration as etcd's flags take it: a sequence of number+unit ("1h30m", "500ms", "10s").
pub fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// One member of --initial-cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub id: u64,
}

impl Config {
    /// Applies --config-file (which, as in etcd, replaces flags) and validates.
    pub fn resolve(mut self) -> Result<Config, ConfigError> {
        if let Some(path) = self.config_file.clone() {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::ReadFile { path: path.clone(), source })?;
            let f: FileConfig = serde_yaml::from_str(&text)
                .map_err(|source| ConfigError::ParseFile { path: path.clone(), source })?;
            macro_rules! take {
                ($($field:ident),*) => {$( if let Some(v) = f.$field { self.$field = v; } )*};
            }
            take!(
                name,
                listen_client_urls,
                advertise_client_urls,
                listen_peer_urls,
                initial_advertise_peer_urls,
                initial_cluster,
                initial_cluster_state,
                initial_cluster_token,
                heartbeat_interval,
                election_timeout,
                snapshot_count,
                quota_backend_bytes,
                max_request_bytes,
                max_txn_ops,
                log_level,
                logger
            );
            if let Some(n) = f.experimental_snapshot_catchup_entries {
                self.snapshot_catchup_entries = n;
            }
            self.data_dir = f.data_dir.or(self.data_dir);
            self.wal_dir = f.wal_dir.or(self.wal_dir);
            self.log_format = f.log_format.or(self.log_format);
            if let Some(d) = f.experimental_watch_progress_notify_interval {
                self.watch_progress_notify_interval = parse_go_duration(&d).map_err(ConfigError::Invalid)?;
            }
            if let Some(mode) = f.auto_compaction_mode {
                self.auto_compaction_mode = mode;
            }
            if let Some(r) = f.auto_compaction_retention {
                // etcd's YAML takes the retention as a string, and a bare number as well.
                self.auto_compaction_retention = match r {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Number(n) => n.to_string(),
                    other => {
                        return Err(ConfigError::Invalid(format!("auto-compaction-retention: {other:?}")))
                    }
                };
            }
            if let Some(on) = f.experimental_enable_lease_checkpoint {
                self.lease_checkpoint = on;
            }
            if let Some(d) = f.experimental_lease_checkpoint_interval {
                self.lease_checkpoint_interval = parse_go_duration(&d).map_err(ConfigError::Invalid)?;
            }
            if let Some(on) = f.strict_reconfig_check {
                self.strict_reconfig_check = on;
            }
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.heartbeat_interval == 0 {
            return invalid("--heartbeat-interval must be greater than 0".into());
        }
        if let Err(e) = crate::compactor::policy(&self.auto_compaction_mode, &self.auto_compaction_retention)
        {
            return invalid(e);
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return invalid(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        if self.election_timeout > 50_000 {
            return invalid(format!(
                "--election-timeout[{}ms] is too long, and should be set less than 50 seconds",
                self.election_timeout
            ));
        }
        if self.initial_cluster_state != "new" && self.initial_cluster_state != "existing" {
            return invalid(format!(
                "invalid value {:?} for --initial-cluster-state",
                self.initial_cluster_state
            ));
        }
        for urls in [&self.listen_client_urls, &self.advertise_client_urls, &self.listen_peer_urls] {
            for url in split_urls(urls) {
                parse_host_port(&url)?;
            }
        }
        let members = self.initial_members()?;
        if !members.iter().any(|m| m.name == self.name) {
            return invalid(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            ));
        }
        Ok(())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir.clone().unwrap_or_else(|| self.data_dir().join("member").join("wal"))
    }

    pub fn backend_path(&self) -> PathBuf {
        self.data_dir().join("member").join("snap").join("db")
    }

    pub fn quota_bytes(&self) -> i64 {
        if self.quota_backend_bytes <= 0 {
            DEFAULT_QUOTA_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    /// Members of --initial-cluster with their ids, in etcd's order (sorted by id).
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in self.initial_cluster.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, url) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::Invalid(format!("invalid --initial-cluster entry {item:?}")))?;
            parse_host_port(url)?;
            by_name.entry(name.to_owned()).or_default().push(url.to_owned());
        }
        if by_name.is_empty() {
            return Err(ConfigError::Invalid("--initial-cluster is empty".into()));
        }
        let mut members: Vec<InitialMember> = by_name
            .into_iter()
            .map(|(name, peer_urls)| {
                let id = member_id(&peer_urls, &self.initial_cluster_token);
                InitialMember { name, peer_urls, id }
            })
            .collect();
        members.sort_by_key(|m| m.id);
        Ok(members)
    }

    pub fn client_urls(&self) -> Vec<String> {
        split_urls(&self.listen_client_urls)
    }

    pub fn advertise_client_url_list(&self) -> Vec<String> {
        split_urls(&self.advertise_client_urls)
    }

    /// (log level filter, json?) for tracing.
    pub fn logging(&self) -> (&str, bool) {
        let level = match self.log_level.as_str() {
            "panic" | "fatal" => "error",
            other => other,
        };
        let json = match self.log_format.as_deref() {
            Some(f) => f == "json",
            None => self.logger != "capnslog",
        };
        (level, json)
    }
}

pub fn split_urls(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

/// `scheme://host:port` -> ("host", port); only http is served for now (TLS is a later issue).
pub fn parse_host_port(url: &str) -> Result<(String, u16), ConfigError> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or_else(|| {
        ConfigError::Invalid(format!("URL scheme must be http, https, unix or unixs: {url}"))
    })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
        ConfigError::Invalid(format!("URL address does not have the form \"host:port\": {url}"))
    })?;
    let port = port.parse().map_err(|_| {
        ConfigError::Invalid(format!("URL address does not have the form \"host:port\": {url}"))
    })?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

/// etcd's member and cluster ids (one implementation, shared with `cairnctl snapshot restore`).
pub use cairn_storage::member::{cluster_id, member_id};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("cairn").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn go_durations_parse_as_etcd_flags_take_them() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("ten minutes").is_err());
        assert!(parse_go_duration("").is_err());
        let c = parse(&["--watch-progress-notify-interval=2s"]);
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(2));
        assert!(c.lease_checkpoint, "cairn checkpoints leases unless told not to");
        assert_eq!(c.lease_checkpoint_interval, Duration::from_secs(300));
        let c = parse(&[
            "--experimental-enable-lease-checkpoint=false",
            "--experimental-lease-checkpoint-interval=1m",
        ]);
        assert!(!c.lease_checkpoint);
        assert_eq!(c.lease_checkpoint_interval, Duration::from_secs(60));
        assert!(parse(&["--experimental-enable-lease-checkpoint"]).lease_checkpoint);
    }

    #[test]
    fn ids_match_etcds_for_the_default_flags() {
        let c = parse(&[]).resolve().unwrap();
        let members = c.initial_members().unwrap();
        assert_eq!(members[0].id, 0x8e9e_05c5_2164_694d, "etcd's well-known default member id");
        assert_eq!(cluster_id(&[members[0].id]), 0xcdf8_1819_4e3a_8c32, "etcd's default cluster id");
    }

    #[test]
    fn defaults_are_etcds() {
        let c = parse(&[]);
        assert_eq!(c.data_dir(), PathBuf::from("default.etcd"));
        assert_eq!(c.wal_dir(), PathBuf::from("default.etcd/member/wal"));
        assert_eq!((c.heartbeat_interval, c.election_timeout, c.max_txn_ops), (100, 1000, 128));
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.quota_bytes(), DEFAULT_QUOTA_BYTES);
        assert!(c.strict_reconfig_check, "etcd checks reconfigurations unless told not to");
        assert!(!parse(&["--strict-reconfig-check=false"]).strict_reconfig_check);
        assert!(parse(&["--strict-reconfig-check"]).strict_reconfig_check);
    }

    #[test]
    fn bad_flags_are_refused_with_etcds_words() {
        let e = parse(&["--election-timeout", "100"]).resolve().unwrap_err().to_string();
        assert!(e.contains("should be at least as 5 times as --heartbeat-interval"), "{e}");
        let e = parse(&["--name", "n2"]).resolve().unwrap_err().to_string();
        assert!(e.contains("couldn't find local name \"n2\""), "{e}");
        let e = parse(&["--listen-client-urls", "localhost:2379"]).resolve().unwrap_err().to_string();
        assert!(e.contains("URL scheme must be"), "{e}");
    }

    #[test]
    fn config_file_uses_etcds_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "name: n1\ninitial-cluster: n1=http://127.0.0.1:2380\nmax-txn-ops: 7\n")
            .unwrap();
        let c = parse(&["--config-file", path.to_str().unwrap()]).resolve().unwrap();
        assert_eq!((c.name.as_str(), c.max_txn_ops), ("n1", 7));
        std::fs::write(&path, "strict-reconfig-check: false\n").unwrap();
        assert!(!parse(&["--config-file", path.to_str().unwrap()]).resolve().unwrap().strict_reconfig_check);
        std::fs::write(&path, "nonsense-key: 1\n").unwrap();
        assert!(parse(&["--config-file", path.to_str().unwrap()]).resolve().is_err());
    }
}
