//! What a command runs with: the global flags turned into connect options and a printer, a lazily opened
//! client, the command timeout, and the stdout/stderr buffers. It also writes the warning line clientv3's retry
//! interceptor logs when a unary call fails, so stderr reads as etcdctl's.

use std::future::Future;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_api::EtcdError;
use cairn_client::{Client, ClientError, ConnectOptions, Keepalive, TlsOptions, Transport};

use crate::cli::Global;
use crate::error::{client_message, go_code, CtlError, ExitCode, Result};
use crate::gofmt::parse_duration;
use crate::printer::{Format, Printer};

#[derive(Debug)]
pub struct Ctx {
    pub global: Global,
    pub printer: Printer,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
    keepalive: Keepalive,
    /// Buffered stdout; [`Ctx::flush`] writes it.
    pub out: Vec<u8>,
    /// Buffered stderr, written before stdout on flush.
    pub err: Vec<u8>,
    user: Option<(String, String)>,
    client: Option<Client>,
    /// clientv3 names its balancer target `endpoint://client-<uuid>/<endpoint>`.
    target_id: String,
}

fn duration_flag(name: &str, value: &str) -> Result<Duration> {
    parse_duration(value).map_err(|e| {
        crate::args::flag_error(&format!("invalid argument {value:?} for \"--{name}\" flag: {e}"))
    })
}

/// The TLS settings the flags ask for, files checked and read as etcdctl does before dialing. As etcdctl's:
/// TLS when a certificate, key or CA bundle is given or `--insecure-transport=false`, and
/// `--insecure-skip-tls-verify` only relaxes that TLS (alone it changes nothing).
fn tls_options(g: &Global) -> Result<Option<TlsOptions>> {
    if g.cert.is_some() != g.key.is_some() {
        return Err(CtlError::bad_args(format!(
            "KeyFile and CertFile must both be present[key: {}, cert: {}]",
            g.key.as_deref().unwrap_or(""),
            g.cert.as_deref().unwrap_or("")
        )));
    }
    let read = |file: &String| {
        std::fs::read(file).map_err(|e| {
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                _ => e.to_string(),
            };
            CtlError::bad_args(format!("open {file}: {reason}"))
        })
    };
    let cert = g.cert.as_ref().map(read).transpose()?;
    let key = g.key.as_ref().map(read).transpose()?;
    let ca_pem = g.cacert.as_ref().map(read).transpose()?;
    if cert.is_none() && ca_pem.is_none() && g.insecure_transport {
        return Ok(None);
    }
    Ok(Some(TlsOptions { ca_pem, identity: cert.zip(key), skip_verify: g.insecure_skip_tls_verify }))
}

impl Ctx {
    pub fn new(global: &Global) -> Result<Ctx> {
        let dial_timeout = duration_flag("dial-timeout", &global.dial_timeout)?;
        let command_timeout = duration_flag("command-timeout", &global.command_timeout)?;
        let keepalive = Keepalive {
            time: duration_flag("keepalive-time", &global.keepalive_time)?,
            timeout: duration_flag("keepalive-timeout", &global.keepalive_timeout)?,
        };
        let format = Format::parse(&global.write_out)
            .ok_or_else(|| CtlError::new(ExitCode::BadFeature, "unsupported output format"))?;
        if let Some(srv) = &global.discovery_srv {
            return Err(CtlError::new(
                ExitCode::Error,
                format!("--discovery-srv {srv}: DNS discovery is not supported by cairnctl"),
            ));
        }
        let user = match &global.user {
            None => None,
            Some(u) => Some(match (u.split_once(':'), &global.password) {
                (Some(_), Some(_)) => {
                    return Err(CtlError::bad_args("username contains ':' but password is also given"))
                }
                (Some((name, pw)), None) => (name.to_owned(), pw.to_owned()),
                (None, Some(pw)) => (u.clone(), pw.clone()),
                (None, None) => (u.clone(), prompt_password()?),
            }),
        };
        Ok(Ctx {
            global: global.clone(),
            printer: Printer { format, hex: global.hex, value_only: false },
            dial_timeout,
            command_timeout,
            keepalive,
            out: Vec::new(),
            err: Vec::new(),
            user,
            client: None,
            target_id: uuid_like(),
        })
    }

    /// A context for a concurrent part of a command: same flags, own buffers, no client yet.
    pub fn fork(&self) -> Ctx {
        Ctx {
            global: self.global.clone(),
            printer: self.printer,
            dial_timeout: self.dial_timeout,
            command_timeout: self.command_timeout,
            keepalive: self.keepalive,
            out: Vec::new(),
            err: Vec::new(),
            user: self.user.clone(),
            client: None,
            target_id: self.target_id.clone(),
        }
    }

    /// Writes buffered stderr then stdout.
    pub fn flush(&mut self) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&self.err).and_then(|()| err.flush());
        self.err.clear();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&self.out).and_then(|()| out.flush());
        self.out.clear();
    }

    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            dial_timeout: self.dial_timeout,
            request_timeout: self.command_timeout,
            user: self.user.clone(),
        }
    }

    /// The client for `--endpoints`, connected on first use.
    pub async fn client(&mut self) -> Result<Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let endpoints = self.global.endpoints.clone();
        let c = self.connect(&endpoints).await?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// A client for the given endpoints (per-endpoint commands, `--cluster`).
    pub async fn connect(&mut self, endpoints: &[String]) -> Result<Client> {
        let transport = Transport { tls: tls_options(&self.global)?, keepalive: Some(self.keepalive) };
        let mut opts = self.connect_options();
        match Client::connect_with(endpoints, opts.clone(), transport.clone()).await {
            Ok(c) => Ok(c),
            Err(ClientError::Etcd(EtcdError::AuthNotEnabled)) => {
                // etcdctl logs the refusal and goes on without a token.
                self.warn_retry(&ClientError::Etcd(EtcdError::AuthNotEnabled));
                opts.user = None;
                Client::connect_with(endpoints, opts, transport).await.map_err(|e| self.failed(e))
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// A failed connect: etcdctl cannot build its client (bad credentials) and exits 2; an unreachable
    /// endpoint only fails the first request (exit 1), as clientv3 dials without blocking.
    fn failed(&mut self, e: ClientError) -> CtlError {
        self.warn_retry(&e);
        match e {
            ClientError::Unreachable { .. } => e.into(),
            other => CtlError::new(ExitCode::BadConnection, client_message(&other)),
        }
    }

    /// Runs one unary call under `--command-timeout`; failures are logged as clientv3 logs them.
    pub async fn call<T>(&mut self, fut: impl Future<Output = cairn_client::Result<T>>) -> Result<T> {
        self.call_raw(fut).await.map_err(CtlError::from)
    }

    /// As [`Ctx::call`], keeping the client error for commands that wrap its message.
    pub async fn call_raw<T>(
        &mut self,
        fut: impl Future<Output = cairn_client::Result<T>>,
    ) -> std::result::Result<T, ClientError> {
        let result = match tokio::time::timeout(self.command_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Status(tonic::Status::deadline_exceeded("context deadline exceeded"))),
        };
        if let Err(e) = &result {
            self.warn_retry(e);
        }
        result
    }

    /// clientv3's `retrying of unary invoker failed` warning.
    pub fn warn_retry(&mut self, e: &ClientError) {
        let (code, desc) = match e {
            ClientError::Etcd(x) => (go_code(x.code()), x.message().to_owned()),
            ClientError::Status(s) => (go_code(s.code()), s.message().to_owned()),
            ClientError::Unreachable { .. } => {
                ("DeadlineExceeded", "latest balancer error: all SubConns are in TransientFailure".to_owned())
            }
            other => ("Unknown", client_message(other)),
        };
        // clientv3's balancer target names the endpoint without its scheme.
        let first = self.global.endpoints.first().map_or("", String::as_str);
        let endpoint = first.split_once("://").map_or(first, |(_, rest)| rest);
        let line = format!(
            "{{\"level\":\"warn\",\"ts\":\"{}\",\"caller\":\"clientv3/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":\"endpoint://client-{}/{}\",\"attempt\":0,\"error\":{}}}\n",
            log_timestamp(true),
            self.target_id,
            endpoint,
            crate::gojson::string(&format!("rpc error: code = {code} desc = {desc}"))
        );
        self.err.extend_from_slice(line.as_bytes());
    }
}

/// Reads a password for `--user name` without one, as etcdctl prompts for it.
fn prompt_password() -> Result<String> {
    crate::prompt::ask("Password: ").map_err(|e| CtlError::new(ExitCode::Error, e))
}

/// A random id in a UUID's shape (only printed in log lines).
fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut words = [0u64; 2];
    for w in &mut words {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        *w = h.finish();
    }
    let hex = format!("{:016x}{:016x}", words[0], words[1]);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// UTC now as `2026-11-24T08:22:25.785Z` (zap's ISO8601) or `2026-11-24 08:29:00.639267` (capnslog).
pub fn log_timestamp(iso: bool) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if iso {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z", now.subsec_millis())
    } else {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}.{:06}", now.subsec_micros())
    }
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
    }
}
