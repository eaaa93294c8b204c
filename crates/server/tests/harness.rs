//! The test harness itself: ports come from outside the ephemeral range and never twice, a started server is
//! seen listening on its ports, and one that lost a port to another process is told apart (so the harnesses
//! start it again on new ports instead of failing the test).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::launch::{self, Launch, Spawned};
use common::{free_port, Kind, Server};

#[test]
fn ports_are_outside_the_ephemeral_range_and_never_repeat() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let bounds: Vec<u16> = range.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let port = free_port();
        assert!(seen.insert(port), "port {port} handed out twice");
        if let [low, high] = bounds[..] {
            assert!(!(low..=high).contains(&port), "port {port} is in the ephemeral range {low}-{high}");
        }
    }
}

/// Spawns cairn on these ports, its log in `dir`.
fn spawn_cairn(dir: &std::path::Path, client_port: u16, peer_port: u16) -> std::process::Child {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client = format!("http://127.0.0.1:{client_port}");
    Command::new(Server::binary(Kind::Cairn))
        .args(launch::member_args("default", &dir.join("data"), &client, &peer, &format!("default={peer}")))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn a_server_that_lost_its_port_is_told_apart_from_one_listening() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (client_port, peer_port) = (free_port(), free_port());
    // Another process holds the client port.
    let thief = TcpListener::bind(("127.0.0.1", client_port)).unwrap();
    let mut child = spawn_cairn(dir.path(), client_port, peer_port);
    let ports = vec![client_port, peer_port];
    let state = launch::wait_listening(
        &mut [Spawned { child: &mut child, ports, log: &log }],
        Duration::from_secs(20),
    );
    assert_eq!(state, Launch::PortTaken, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    drop(thief);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (client_port, peer_port) = (free_port(), free_port());
    let mut child = spawn_cairn(dir.path(), client_port, peer_port);
    let ports = vec![client_port, peer_port];
    let state = launch::wait_listening(
        &mut [Spawned { child: &mut child, ports, log: &log }],
        Duration::from_secs(20),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(state, Launch::Listening, "{}", std::fs::read_to_string(&log).unwrap_or_default());
}
