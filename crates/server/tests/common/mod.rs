//! The one harness every integration test uses: real `cairn` (or `etcd`) processes on free loopback ports, in a
//! temp data dir, killed when the handle drops, also when the test panics.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries, each using part of it

pub mod launch;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_client::{Client, ConnectOptions, GetOptions};
pub use launch::free_port;
use launch::{Launch, Spawned};

/// How long a spawned server may take to listen on its ports.
const LISTEN_LIMIT: Duration = Duration::from_secs(20);

/// SIGKILL: no chance to flush anything. Reaps the process.
pub fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Waits (bounded) for the process to exit by itself: its exit code, or None on timeout.
pub fn wait_exit(child: &mut Option<Child>, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                *child = None;
                return Some(status.code().unwrap_or(-1));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Which server binary a [`Server`] runs: the tests run the same checks on cairn and on the real etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cairn,
    Etcd,
}

pub struct Server {
    kind: Kind,
    child: Option<Child>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub client_port: u16,
    pub peer_port: u16,
    extra: Vec<String>,
}

impl Server {
    pub fn start(kind: Kind) -> Server {
        Self::start_with(kind, &[])
    }

    pub fn start_with(kind: Kind, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server {
            kind,
            child: None,
            dir: tmp.path().to_owned(),
            _tmp: Some(tmp),
            client_port: free_port(),
            peer_port: free_port(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        s.launch();
        s
    }

    /// Spawns the server and waits until it holds its ports; one that lost a port before binding it starts
    /// again on new ports, with a clean data dir (bounded).
    fn launch(&mut self) {
        for _ in 1..launch::ATTEMPTS {
            self.spawn();
            if self.wait_listening() != Launch::PortTaken {
                return;
            }
            self.kill9();
            let _ = std::fs::remove_dir_all(self.dir.join("data"));
            let _ = std::fs::remove_file(self.dir.join("server.log"));
            self.client_port = free_port();
            self.peer_port = free_port();
        }
        self.spawn();
    }

    fn wait_listening(&mut self) -> Launch {
        let log = self.dir.join("server.log");
        let ports = vec![self.client_port, self.peer_port];
        match self.child.as_mut() {
            Some(child) => launch::wait_listening(&mut [Spawned { child, ports, log: &log }], LISTEN_LIMIT),
            None => Launch::Exited,
        }
    }

    /// Starts on given ports and data dir (to run etcd and cairn with identical flags one after the other).
    pub fn start_at(kind: Kind, dir: &Path, client_port: u16, peer_port: u16) -> Server {
        let mut s = Server {
            kind,
            child: None,
            dir: dir.to_owned(),
            _tmp: None,
            client_port,
            peer_port,
            extra: Vec::new(),
        };
        s.spawn();
        // The caller chose the ports (to run etcd and cairn alike): a lost port cannot be replaced here.
        let launched = s.wait_listening();
        assert_ne!(launched, Launch::PortTaken, "port {client_port} or {peer_port} was taken\n{}", s.log());
        s
    }

    pub fn binary(kind: Kind) -> PathBuf {
        match kind {
            Kind::Cairn => PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
            Kind::Etcd => PathBuf::from("etcd"),
        }
    }

    /// True if the etcd binary is installed; in CI its absence is a failure, elsewhere the test is skipped.
    pub fn etcd_available(test: &str) -> bool {
        let found = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(std::env::var("CI").is_err(), "{test}: etcd is not installed but CI is set");
            eprintln!("{test}: skipped: etcd not installed");
        }
        found
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let client = self.client_url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).unwrap();
        let child = Command::new(Self::binary(self.kind))
            .args(launch::member_args(
                "default",
                &self.dir.join("data"),
                &client,
                &peer,
                &format!("default={peer}"),
            ))
            .args(&self.extra)
            .env_remove("ETCDCTL_API")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until a linearizable read succeeds.
    pub async fn ready(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let c = Client::connect([self.client_url()], ConnectOptions::default()).await?;
                c.get("ready?", GetOptions::default()).await?;
                Ok::<_, cairn_client::ClientError>(c)
            };
            match attempt.await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => {
                    panic!("server never became ready: {e}\n{}", self.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to exit by itself; its exit code, or None on timeout.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_exit(&mut self.child, limit)
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A raw HTTP/1.1 request on the client port: (status code, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.client_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        // Chunked encoding: keep the JSON line.
        let body = body.lines().find(|l| l.starts_with('{')).unwrap_or("").to_owned();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
