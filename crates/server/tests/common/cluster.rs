//! A multi-member harness: N real `cairn` (or `etcd`) processes on free loopback ports, each in its own data
//! dir, killed when the cluster drops (also when a test panics). Faults per member: kill -9, restart, pause (SIGSTOP) and
//! resume, and a network partition through the transport's fault hook (`CAIRN_FAULT_FILE`).

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries, each using part of it

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_api::etcdserverpb::cluster_client::ClusterClient;
use cairn_api::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_api::etcdserverpb::{Member as PbMember, MemberListRequest, StatusRequest, StatusResponse};
use cairn_client::{Client, ConnectOptions, GetOptions};
use tonic::transport::Channel;

use crate::common::launch::{self, Launch, Spawned};
use crate::common::{free_port, Kind, Server};

pub struct Member {
    kind: Kind,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// `new` or `existing`, and the --initial-cluster it was started with.
    state: String,
    initial_cluster: String,
    extra: Vec<String>,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Started and not exited (a process that exited by itself is a zombie until reaped).
    pub fn running(&self) -> bool {
        self.child.as_ref().is_some_and(|c| match std::fs::read_to_string(format!("/proc/{}/stat", c.id())) {
            Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
            Err(_) => true,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).unwrap();
        let child = Command::new(Server::binary(self.kind))
            .args(launch::member_args(
                &self.name,
                &self.dir.join("data"),
                &self.client_url(),
                &self.peer_url(),
                &self.initial_cluster,
            ))
            .arg(format!("--initial-cluster-state={}", self.state))
            .arg("--logger=capnslog")
            .args(&self.extra)
            .env("CAIRN_FAULT_FILE", self.dir.join("fault"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg(format!("-{sig}")).arg(c.id().to_string()).status();
        }
    }

    pub fn kill9(&mut self) {
        crate::common::kill9(&mut self.child);
        self.paused = false;
    }

    /// Waits (bounded) for the process to exit by itself: Some(exit code).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        crate::common::wait_exit(&mut self.child, limit)
    }
}

/// Waits until every started member listens on its ports, or one exited.
fn listening(members: &mut [Member]) -> Launch {
    let logs: Vec<PathBuf> = members.iter().map(|m| m.dir.join("server.log")).collect();
    let mut spawned: Vec<Spawned<'_>> = members
        .iter_mut()
        .zip(&logs)
        .filter_map(|(m, log)| {
            let ports = vec![m.client_port, m.peer_port];
            m.child.as_mut().map(|child| Spawned { child, ports, log })
        })
        .collect();
    launch::wait_listening(&mut spawned, Duration::from_secs(20))
}

pub struct Cluster {
    kind: Kind,
    _tmp: tempfile::TempDir,
    pub members: Vec<Member>,
    extra: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill9();
        }
    }
}

/// Client options for tests: short timeouts so a dead member does not stall a test.
pub fn quick() -> ConnectOptions {
    ConnectOptions {
        dial_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        user: None,
    }
}

impl Cluster {
    /// Starts `n` cairn members of a new cluster (names n1..nN) with extra flags for each.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Self::start_kind(Kind::Cairn, n, extra)
    }

    /// Starts `n` members of `kind` (cairn or etcd) of a new cluster (names n1..nN) with extra flags for each.
    pub fn start_kind(kind: Kind, n: usize, extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let mut members: Vec<Member> = (1..=n)
            .map(|i| {
                let dir = tmp.path().join(format!("n{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                Member {
                    kind,
                    name: format!("n{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    dir,
                    child: None,
                    paused: false,
                    state: "new".into(),
                    initial_cluster: String::new(),
                    extra: extra.clone(),
                }
            })
            .collect();
        // A member that lost a port before binding it exits; its peer URL is in everyone's --initial-cluster,
        // so the whole cluster starts again on new ports, in clean data dirs (bounded).
        for attempt in 1..=launch::ATTEMPTS {
            let initial: Vec<String> =
                members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect();
            for m in &mut members {
                m.initial_cluster = initial.join(",");
                m.spawn();
            }
            if attempt == launch::ATTEMPTS || listening(&mut members) != Launch::PortTaken {
                break;
            }
            for m in &mut members {
                m.kill9();
                let _ = std::fs::remove_dir_all(&m.dir);
                std::fs::create_dir_all(&m.dir).unwrap();
                m.client_port = free_port();
                m.peer_port = free_port();
            }
        }
        Cluster { kind, _tmp: tmp, members, extra }
    }

    /// Prepares (does not start) a member to join with `--initial-cluster-state existing`.
    pub fn prepare_member(&mut self, name: &str) -> usize {
        let dir = self._tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = Member {
            kind: self.kind,
            name: name.to_owned(),
            client_port: free_port(),
            peer_port: free_port(),
            dir,
            child: None,
            paused: false,
            state: "existing".into(),
            initial_cluster: String::new(),
            extra: self.extra.clone(),
        };
        let mut initial: Vec<String> =
            self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect();
        initial.push(format!("{}={}", m.name, m.peer_url()));
        m.initial_cluster = initial.join(",");
        self.members.push(m);
        self.members.len() - 1
    }

    /// Replaces member `i`'s extra flags (for its next start).
    pub fn set_extra(&mut self, i: usize, extra: &[&str]) {
        self.members[i].extra = extra.iter().map(|s| (*s).to_owned()).collect();
    }

    pub fn spawn(&mut self, i: usize) {
        self.members[i].spawn();
    }

    pub fn kill9(&mut self, i: usize) {
        self.members[i].kill9();
    }

    pub fn restart(&mut self, i: usize) {
        self.members[i].kill9();
        self.members[i].spawn();
    }

    /// SIGTERM and wait for member `i` to exit: its exit code (None if it did not exit within 10 s).
    pub fn stop(&mut self, i: usize) -> Option<i32> {
        self.members[i].signal("TERM");
        self.members[i].wait_exit(Duration::from_secs(10))
    }

    pub fn pause(&mut self, i: usize) {
        self.members[i].signal("STOP");
        self.members[i].paused = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.members[i].signal("CONT");
        self.members[i].paused = false;
    }

    /// Cuts member `i` off from every peer (both directions), or heals it.
    pub fn isolate(&self, i: usize, on: bool) {
        let path = self.members[i].dir.join("fault");
        std::fs::write(path, if on { "isolate" } else { "" }).unwrap();
    }

    pub fn logs(&self) -> String {
        self.members.iter().map(|m| format!("==== {} ====\n{}", m.name, m.log())).collect()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().filter(|m| m.running()).map(Member::client_url).collect()
    }

    pub async fn channel(&self, i: usize) -> Option<Channel> {
        tonic::transport::Endpoint::from_shared(self.members[i].client_url())
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .ok()
    }

    pub async fn maintenance(&self, i: usize) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel(i).await.expect("member reachable"))
    }

    pub async fn cluster_client(&self, i: usize) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel(i).await.expect("member reachable"))
    }

    pub async fn status(&self, i: usize) -> Option<StatusResponse> {
        if !self.members[i].running() || self.members[i].paused {
            return None;
        }
        let ch = self.channel(i).await?;
        let req = tonic::Request::new(StatusRequest {});
        let mut client = MaintenanceClient::new(ch);
        let answer = tokio::time::timeout(Duration::from_secs(2), client.status(req)).await;
        answer.ok()?.ok().map(tonic::Response::into_inner)
    }

    /// A client of member `i` alone.
    pub async fn client(&self, i: usize) -> Client {
        Client::connect([self.members[i].client_url()], quick()).await.unwrap()
    }

    /// Waits until the running members (those in `among`) agree on one leader among them; its index.
    pub async fn wait_leader_among(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut leaders = Vec::new();
            for &i in among {
                leaders.push(self.status(i).await.map(|s| (s.leader, s.header.map_or(0, |h| h.member_id))));
            }
            if let Some(Some((leader, _))) = leaders.first() {
                let agreed = *leader != 0 && leaders.iter().all(|l| l.is_some_and(|(x, _)| x == *leader));
                if agreed {
                    if let Some(pos) = leaders.iter().position(|l| l.is_some_and(|(_, me)| me == *leader)) {
                        return among[pos];
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader among {among:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_leader(&self) -> usize {
        let running: Vec<usize> = (0..self.members.len()).filter(|&i| self.members[i].running()).collect();
        self.wait_leader_among(&running).await
    }

    /// Waits until member `i` serves `key` with `value` from its own store (a serializable read).
    pub async fn wait_value(&self, i: usize, key: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = Client::connect([self.members[i].client_url()], quick()).await {
                let opts = GetOptions { serializable: true, ..GetOptions::default() };
                if let Ok(r) = c.get(key, opts).await {
                    if r.kvs.first().is_some_and(|kv| kv.value == value.as_bytes()) {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never saw {key}={value}\n{}",
                self.members[i].name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The member list as member `i` serves it.
    pub async fn member_list(&self, i: usize) -> Vec<PbMember> {
        let mut c = self.cluster_client(i).await;
        c.member_list(MemberListRequest { linearizable: false }).await.unwrap().into_inner().members
    }

    /// Waits until every member named in the list has published its name and client URLs.
    pub async fn wait_published(&self, i: usize, count: usize) -> Vec<PbMember> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.member_list(i).await;
            if list.len() == count && list.iter().all(|m| !m.name.is_empty() && !m.client_ur_ls.is_empty()) {
                return list;
            }
            assert!(Instant::now() < deadline, "members never published: {list:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
