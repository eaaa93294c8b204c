//! The harness of cairnctl's compatibility suite: a fresh server (etcd or cairn) on free loopback ports in a temp
//! dir, killed on drop; a script of commands run through `etcdctl` and through `cairnctl`, each against its own
//! fresh server on the same ports and flags (so member id, cluster id and revisions match); transcripts normalised
//! only where runs must differ (lease ids, timings, log lines) and compared.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries, each using part of it

#[path = "../../../server/tests/common/launch.rs"]
pub mod launch;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use launch::free_port;
use launch::{Launch, Spawned};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cairn,
    Etcd,
}

/// The `cairn` binary beside `cairnctl` in the target directory, if built.
pub fn cairn_binary() -> Option<PathBuf> {
    let ctl = PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"));
    let cairn = ctl.with_file_name("cairn");
    cairn.exists().then_some(cairn)
}

fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// True if etcd and etcdctl are installed; in CI their absence fails the test, elsewhere it is skipped.
pub fn etcd_available(test: &str) -> bool {
    let found = installed("etcd") && installed("etcdctl");
    if !found {
        assert!(std::env::var("CI").is_err(), "{test}: etcd/etcdctl are not installed but CI is set");
        eprintln!("{test}: skipped: etcd or etcdctl not installed");
    }
    found
}

/// True if the cairn binary was built (cargo test --workspace builds it).
pub fn cairn_available(test: &str) -> bool {
    let found = cairn_binary().is_some() && installed("etcdctl");
    if !found {
        assert!(std::env::var("CI").is_err(), "{test}: the cairn binary or etcdctl is missing but CI is set");
        eprintln!("{test}: skipped: no cairn binary beside cairnctl (build the workspace) or no etcdctl");
    }
    found
}

/// The test CA and server certificate (IP SAN 127.0.0.1), in tests/tls.
pub fn tls_file(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls").join(name).display().to_string()
}

pub struct Server {
    kind: Kind,
    tls: bool,
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub client_port: u16,
}

impl Server {
    /// A fresh member named `default` on the given ports, ready to serve.
    pub fn start(kind: Kind, client_port: u16, peer_port: u16) -> Server {
        Self::start_with(kind, client_port, peer_port, false)
    }

    /// As [`Server::start`]; with `tls` the client URL is https with the test certificate.
    pub fn start_with(kind: Kind, client_port: u16, peer_port: u16, tls: bool) -> Server {
        Self::try_start_with(kind, client_port, peer_port, tls)
            .unwrap_or_else(|| panic!("port {client_port} or {peer_port} was taken by another process"))
    }

    /// As [`Server::start_with`]; None if another process took one of the ports before the server bound it
    /// (the caller picks new ports and starts again).
    pub fn try_start_with(kind: Kind, client_port: u16, peer_port: u16, tls: bool) -> Option<Server> {
        let dir = tempfile::tempdir().unwrap();
        let binary = match kind {
            Kind::Etcd => PathBuf::from("etcd"),
            Kind::Cairn => cairn_binary().unwrap(),
        };
        let scheme = if tls { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let tls_args: Vec<String> = if tls {
            vec![
                format!("--cert-file={}", tls_file("server.pem")),
                format!("--key-file={}", tls_file("server.key")),
            ]
        } else {
            Vec::new()
        };
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(binary)
            .args(launch::member_args(
                "default",
                &dir.path().join("data"),
                &client,
                &peer,
                &format!("default={peer}"),
            ))
            .args(tls_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Server { kind, tls, child: Some(child), dir, client_port };
        let log = server.dir.path().join("server.log");
        if let Some(child) = server.child.as_mut() {
            let spawned = Spawned { child, ports: vec![client_port, peer_port], log: &log };
            if launch::wait_listening(&mut [spawned], Duration::from_secs(20)) == Launch::PortTaken {
                return None;
            }
        }
        server.wait_ready();
        Some(server)
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Ready: it has published its client URL (member list shows it) and, for etcd, set the cluster version (the
    /// raft entry right after), so raft indexes are the same from run to run.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let scheme = if self.tls { "https" } else { "http" };
        let url = format!("{scheme}://{}", self.endpoint());
        let ca = if self.tls { vec!["--cacert".to_owned(), tls_file("ca.pem")] } else { Vec::new() };
        while Instant::now() < deadline {
            let out = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
                .args(["--endpoints", &self.endpoint(), "--dial-timeout=300ms", "member", "list"])
                .args(&ca)
                .stderr(Stdio::null())
                .output();
            let published =
                out.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&url));
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            if published && (self.kind == Kind::Cairn || log.contains("set the initial cluster version")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!("server on {} never became ready; its log ends:\n{}", self.endpoint(), tail.join("\n"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Etcdctl,
    Cairnctl,
}

impl Tool {
    fn command(self) -> Command {
        let mut c = match self {
            Tool::Etcdctl => Command::new("etcdctl"),
            Tool::Cairnctl => Command::new(env!("CARGO_BIN_EXE_cairnctl")),
        };
        c.env("ETCDCTL_API", "3");
        for (k, _) in std::env::vars() {
            if k.starts_with("ETCDCTL_") && k != "ETCDCTL_API" {
                c.env_remove(k);
            }
        }
        c
    }
}

/// One command of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Arguments (`{LEASE}` is the last granted lease id, in hex; `{EP}` the server's endpoint) and stdin.
    Run(Vec<String>, String),
    /// A streaming command (watch, observe): started, then `during` runs, then it is killed after `settle`.
    Stream { args: Vec<String>, stdin: String, during: Vec<Step>, settle: Duration },
    /// Raw environment variables for the following steps of this script.
    Env(String, String),
}

/// Splits a command line on spaces; single quotes group words (no escapes).
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

pub fn run(line: &str) -> Step {
    Step::Run(words(line), String::new())
}

pub fn run_in(line: &str, stdin: &str) -> Step {
    Step::Run(words(line), stdin.to_owned())
}

pub fn stream(line: &str, during: Vec<Step>) -> Step {
    Step::Stream { args: words(line), stdin: String::new(), during, settle: Duration::from_millis(700) }
}

/// Runs a script with one tool against one endpoint; the transcript of every step.
pub struct Session {
    tool: Tool,
    endpoint: String,
    leases: Vec<i64>,
    env: BTreeMap<String, String>,
    pub transcript: Vec<String>,
}

impl Session {
    pub fn new(tool: Tool, endpoint: &str) -> Session {
        Session {
            tool,
            endpoint: endpoint.to_owned(),
            leases: Vec::new(),
            env: BTreeMap::new(),
            transcript: Vec::new(),
        }
    }

    fn args(&self, args: &[String]) -> Vec<String> {
        let lease = self.leases.last().map(|l| format!("{l:x}")).unwrap_or_default();
        let mut all = vec!["--endpoints".to_owned(), self.endpoint.clone()];
        all.extend(args.iter().map(|a| a.replace("{LEASE}", &lease).replace("{EP}", &self.endpoint)));
        all
    }

    fn spawn(&self, args: &[String]) -> Child {
        let mut c = self.tool.command();
        c.args(self.args(args))
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    }

    pub fn step(&mut self, step: &Step) {
        match step {
            Step::Env(k, v) => {
                self.env.insert(k.clone(), v.clone());
            }
            Step::Run(args, stdin) => {
                let mut child = self.spawn(args);
                let mut input = child.stdin.take().unwrap();
                input.write_all(stdin.as_bytes()).unwrap();
                drop(input);
                let out = wait_bounded(child, Duration::from_secs(20));
                self.record(args, out);
            }
            Step::Stream { args, stdin, during, settle } => {
                let mut child = self.spawn(args);
                let mut input = child.stdin.take().unwrap();
                input.write_all(stdin.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(600));
                for s in during {
                    self.step(s);
                }
                std::thread::sleep(*settle);
                // Killed before its stdin closes: an interactive watch exits by itself at end of input.
                let _ = child.kill();
                drop(input);
                let out = wait_bounded(child, Duration::from_secs(5));
                self.record(args, out);
            }
        }
    }

    fn record(&mut self, args: &[String], (stdout, stderr, code): (Vec<u8>, Vec<u8>, Option<i32>)) {
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let granting = args.windows(2).any(|w| w[0] == "lease" && w[1] == "grant");
        if let Some(id) = granted_lease(&stdout).filter(|_| granting) {
            self.leases.push(id);
        }
        let stderr: String = String::from_utf8_lossy(&stderr)
            .lines()
            .filter(|l| !l.starts_with("{\"level\":"))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = format!(
            "$ {}\n--- stdout\n{}--- stderr\n{}--- exit {:?}\n",
            args.join(" "),
            self.normalise(&stdout),
            self.normalise(&stderr),
            code
        );
        self.transcript.push(text);
    }

    /// Masks what differs between two runs of the same script: lease ids and timings.
    fn normalise(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for (i, l) in self.leases.iter().enumerate() {
            s = s.replace(&format!("{l:016x}"), &format!("<LEASE{i}>"));
            s = s.replace(&format!("{l:x}"), &format!("<LEASE{i}>"));
            s = s.replace(&l.to_string(), &format!("<LEASE{i}>"));
        }
        mask_sizes(&mask_ids(&mask_timestamps(&mask_durations(&s))))
    }
}

/// Database and snapshot sizes (bolt's file grows on its own schedule): `"dbSize":28672`, `"DBSize" : 28672`, `29 kB`.
fn mask_sizes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let markers = ["\"dbSize\":", "\"dbSizeInUse\":", "\"DBSize\" : ", "\"totalSize\":"];
    loop {
        let next = markers.iter().filter_map(|m| rest.find(m).map(|i| (i, m.len()))).min();
        let Some((i, len)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..i + len]);
        rest = &rest[i + len..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str("<SIZE>");
        rest = &rest[digits..];
    }
    // go-humanize sizes in simple and table rows: a number, a space, then B, kB or MB.
    let words: Vec<&str> = out.split(' ').collect();
    let mut masked = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let unit = words.get(i + 1).is_some_and(|u| u.starts_with("kB") || u.starts_with("MB"));
        if unit && !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            masked.push("<N>");
        } else {
            masked.push(w);
        }
    }
    masked.join(" ")
}

/// capnslog's `2026-11-24 08:29:00.639267 C | ...` timestamps → `<TS>`.
fn mask_timestamps(s: &str) -> String {
    s.lines()
        .map(|l| {
            let b = l.as_bytes();
            let stamp = b.len() > 26
                && b[4] == b'-'
                && b[10] == b' '
                && b[19] == b'.'
                && b[..4].iter().all(u8::is_ascii_digit);
            if stamp {
                format!("<TS>{}\n", &l[26..])
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>()
        .trim_end_matches('\n')
        .to_owned()
        + if s.ends_with('\n') { "\n" } else { "" }
}

/// Session lease ids inside lock and election keys (`name/694d77aa9e38260f`, `name/58aa20cdf00d80b`) →
/// `name/<ID>`.
fn mask_ids(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('/') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        // `%x` of a lease id: up to 16 digits, fewer when it starts with zeros.
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if (12..=16).contains(&hex) {
            out.push_str("<ID>");
            rest = &rest[hex..];
        }
    }
    out.push_str(rest);
    out
}

/// The lease id a `lease grant` printed (simple or json).
fn granted_lease(stdout: &str) -> Option<i64> {
    if let Some(rest) = stdout.strip_prefix("lease ") {
        if let Some((hex, tail)) = rest.split_once(' ') {
            if tail.starts_with("granted") {
                return i64::from_str_radix(hex, 16).ok();
            }
        }
    }
    let (at, skip) = match stdout.find("\"ID\":") {
        Some(at) => (at, 5),
        None => (stdout.find("\"ID\" : ")?, 7),
    };
    let digits: String = stdout[at + skip..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// "took = 1.2ms", "\"took\":\"1.2ms\"", "\"Took\" : 1.2ms" → "<T>".
fn mask_durations(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let markers = ["took = ", "\"took\":\"", "\"Took\" : "];
    loop {
        let next = markers.iter().filter_map(|m| rest.find(m).map(|i| (i, m.len()))).min();
        let Some((i, len)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i + len]);
        rest = &rest[i + len..];
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == 'µ')).unwrap_or(rest.len());
        out.push_str("<T>");
        rest = &rest[end..];
    }
}

/// Waits for a child with a deadline (killing it then): stdout, stderr and exit code.
pub fn wait_bounded(mut child: Child, limit: Duration) -> (Vec<u8>, Vec<u8>, Option<i32>) {
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (out_reader.join().unwrap(), err_reader.join().unwrap(), code)
}

/// Runs `script` through etcdctl and through cairnctl, each against its own fresh `kind` server on the same
/// ports, and asserts the transcripts are equal step by step.
pub fn compare(kind: Kind, script: &[Step]) {
    compare_with(kind, false, script);
}

/// As [`compare`], the server listening with TLS when `tls` is set.
pub fn compare_with(kind: Kind, tls: bool, script: &[Step]) {
    let transcripts = transcripts(kind, tls, script);
    let (want, got) = (&transcripts[0], &transcripts[1]);
    let mut failures = Vec::new();
    for (w, g) in want.iter().zip(got) {
        if w != g {
            failures.push(format!("etcdctl:\n{w}cairnctl:\n{g}"));
        }
    }
    assert!(failures.is_empty(), "{} step(s) differ on {kind:?}:\n{}", failures.len(), failures.join("\n"));
}

/// The transcripts of `script` through etcdctl and cairnctl, on servers at the same ports. Both runs start
/// again on new ports if either server lost a port to another process (bounded).
fn transcripts(kind: Kind, tls: bool, script: &[Step]) -> Vec<Vec<String>> {
    for _ in 0..launch::ATTEMPTS {
        let (client_port, peer_port) = (free_port(), free_port());
        let mut transcripts = Vec::new();
        for tool in [Tool::Etcdctl, Tool::Cairnctl] {
            let Some(server) = Server::try_start_with(kind, client_port, peer_port, tls) else { break };
            let mut session = Session::new(tool, &server.endpoint());
            for step in script {
                session.step(step);
            }
            drop(server);
            transcripts.push(session.transcript);
        }
        if transcripts.len() == 2 {
            return transcripts;
        }
    }
    panic!("no pair of free ports held in {} attempts", launch::ATTEMPTS);
}

#[test]
fn ids_and_timestamps_are_masked() {
    assert_eq!(mask_ids("lock/694d77aa9e38260f\n"), "lock/<ID>\n");
    assert_eq!(mask_ids("a/b/c"), "a/b/c");
    assert_eq!(mask_ids("el/58aa20cdf00d814\n"), "el/<ID>\n");
    assert_eq!(mask_timestamps("2026-11-24 08:29:00.639267 C | x\n"), "<TS> C | x\n");
    assert_eq!(mask_sizes("e, 3.4.23, 29 kB, true"), "e, 3.4.23, <N> kB, true");
    assert_eq!(mask_sizes("{\"dbSize\":28672,\"x\":1}"), "{\"dbSize\":<SIZE>,\"x\":1}");
}

#[test]
fn durations_are_masked() {
    assert_eq!(mask_durations("x took = 1.5ms\n"), "x took = <T>\n");
    assert_eq!(mask_durations("{\"took\":\"888µs\"}"), "{\"took\":\"<T>\"}");
    assert_eq!(granted_lease("lease 00000000000000ff granted with TTL(5s)\n"), Some(255));
    assert_eq!(words("put k 'a b'"), ["put", "k", "a b"]);
}
