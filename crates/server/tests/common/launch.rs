//! Starting servers on loopback ports without flaky collisions, for every harness that spawns `cairn` or `etcd`
//! (the server's tests, cairnctl's compatibility suite, cairn-bench's clusters: each includes this file with
//! `#[path]`; std only, nothing here panics).
//!
//! A port picked by binding port 0 and releasing it lies in the kernel's ephemeral range, where any outgoing
//! connection (every client a test opens) may take it before the server binds it. So [`free_port`] picks at
//! random *below* that range, never the same port twice in one process, and checks it is free. A server can
//! still lose a port to another process in the window before it binds: [`wait_listening`] watches freshly
//! spawned servers until each listens on its ports, and says when one exited because a port was taken ("address
//! already in use" in its log), so the harness picks new ports and starts again (at most [`ATTEMPTS`] times).

#![allow(dead_code)] // shared by several harnesses, each using part of it

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many times a harness starts a server (or a cluster) on new ports before giving up.
pub const ATTEMPTS: usize = 5;

/// Lowest port handed out: below are well-known and registered services.
const LOWEST: u16 = 10_000;

/// Ports handed out by this process (tests of one binary run in parallel threads).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
static RANDOM: AtomicU64 = AtomicU64::new(0);

/// The kernel's ephemeral port range (Linux), or the usual default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// A pseudo-random number (xorshift), seeded from the clock and the process id.
fn random() -> u64 {
    let mut x = RANDOM.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
        x = nanos ^ (u64::from(std::process::id()) << 32) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    RANDOM.store(x, Ordering::Relaxed);
    x
}

/// Records `port` as handed out; false if it already was.
fn claim(port: u16) -> bool {
    match HANDED_OUT.lock() {
        Ok(mut set) => set.get_or_insert_with(HashSet::new).insert(port),
        Err(_) => true,
    }
}

/// The flags (etcd's names, which cairn shares) that place one member: its name, data dir, client and peer
/// URLs (each listened on and advertised), and the initial cluster it belongs to.
pub fn member_args(
    name: &str,
    data_dir: &Path,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
) -> [String; 7] {
    [
        format!("--name={name}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster={initial_cluster}"),
    ]
}

/// A free loopback port outside the ephemeral range, not handed out before by this process.
pub fn free_port() -> u16 {
    let (low, high) = ephemeral_range();
    // Below the ephemeral range if there is room, else above it.
    let (start, end) = if low > LOWEST + 1_000 { (LOWEST, low) } else { (high.saturating_add(1), u16::MAX) };
    if start < end {
        for _ in 0..200 {
            let port = start + u16::try_from(random() % u64::from(end - start)).unwrap_or(0);
            if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim(port) {
                return port;
            }
        }
    }
    // No room outside the ephemeral range: let the kernel choose.
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port());
        if port != 0 && claim(port) {
            return port;
        }
    }
}

/// How a freshly spawned server is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// It listens on all its ports.
    Listening,
    /// It exited because one of its ports was taken: start it again on new ports.
    PortTaken,
    /// It exited for another reason (its log says why).
    Exited,
    /// Neither yet.
    Starting,
}

/// The inodes of sockets listening on `port` (Linux's /proc/net/tcp{,6}); None if those cannot be read.
fn listening_inodes(port: u16) -> Option<Vec<String>> {
    let mut inodes = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        readable = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            // 0A: TCP_LISTEN.
            if local_port == Some(port) && *state == "0A" {
                inodes.push((*inode).to_owned());
            }
        }
    }
    readable.then_some(inodes)
}

/// Whether process `pid` itself listens on `port` (not some other process that took it).
fn listens(pid: u32, port: u16) -> bool {
    let Some(inodes) = listening_inodes(port) else {
        // No /proc: someone listens, and the caller checks the process is still alive.
        return TcpStream::connect(("127.0.0.1", port)).is_ok();
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            inodes.iter().any(|inode| target == format!("socket:[{inode}]"))
        })
    })
}

/// Whether a server's log says a port was taken (cairn: "Address already in use", etcd: "bind: address
/// already in use").
pub fn port_taken_in(log: &Path) -> bool {
    std::fs::read_to_string(log)
        .is_ok_and(|text| text.to_ascii_lowercase().contains("address already in use"))
}

/// One look at a spawned server that should listen on `ports` and writes its log to `log`.
pub fn launch_state(child: &mut Child, ports: &[u16], log: &Path) -> Launch {
    match child.try_wait() {
        Ok(Some(_)) | Err(_) => {
            return if port_taken_in(log) { Launch::PortTaken } else { Launch::Exited };
        }
        Ok(None) => {}
    }
    if ports.iter().all(|&port| listens(child.id(), port)) {
        Launch::Listening
    } else {
        Launch::Starting
    }
}

/// A spawned server to watch: its process, the ports it should listen on, its log.
#[derive(Debug)]
pub struct Spawned<'a> {
    pub child: &'a mut Child,
    pub ports: Vec<u16>,
    pub log: &'a Path,
}

/// Waits (at most `limit`) until every server listens on its ports: `PortTaken` as soon as one exited for a
/// taken port (the caller starts them all again on new ports), `Exited` if one exited otherwise, `Starting` if
/// the time ran out (the caller's own readiness wait reports what went wrong), else `Listening`.
pub fn wait_listening(servers: &mut [Spawned<'_>], limit: Duration) -> Launch {
    let deadline = Instant::now() + limit;
    loop {
        let mut all = true;
        for s in servers.iter_mut() {
            match launch_state(s.child, &s.ports, s.log) {
                Launch::Listening => {}
                Launch::Starting => all = false,
                other => return other,
            }
        }
        if all {
            return Launch::Listening;
        }
        if Instant::now() > deadline {
            return Launch::Starting;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
