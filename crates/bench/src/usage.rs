//! The server's resource use while a workload runs, read from Linux's /proc when the bench knows the server's
//! process ids (it started the server, or `--server-pid` names it): resident memory (VmRSS now, VmHWM the peak) from
//! `/proc/<pid>/status`, and CPU time (utime + stime) from `/proc/<pid>/stat`, as deltas over the measured phase.
//! Several pids (a local 3-member cluster) are summed.

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

/// Clock ticks per second of /proc's utime and stime: USER_HZ, 100 on every Linux architecture's user ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// Memory of one process, in KiB as /proc reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// VmRSS and VmHWM from the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some(Memory { rss_kib: field("VmRSS")?, hwm_kib: field("VmHWM")? })
}

/// utime + stime (fields 14 and 15) from the text of `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may hold spaces or parentheses itself, so fields are counted after its last ')'.
pub fn parse_cpu_ticks(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn read_memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status(&text).with_context(|| format!("no VmRSS/VmHWM in {path}"))
}

fn read_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("no utime/stime in {path}"))
}

/// What a workload cost the server(s).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerUsage {
    /// Resident memory at the end of the measured phase (summed over the processes).
    pub rss_mib: f64,
    /// Peak resident memory since each process started (summed).
    pub hwm_mib: f64,
    /// CPU seconds (user + system) spent during the measured phase.
    pub cpu_seconds: f64,
    /// `cpu_seconds` over the phase's wall time, in percent of one core.
    pub cpu_percent: f64,
}

impl ServerUsage {
    fn from_samples(memory: &[Memory], ticks: u64, wall_seconds: f64) -> Self {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let cpu_seconds = ticks as f64 / TICKS_PER_SECOND;
        ServerUsage {
            rss_mib: mib(memory.iter().map(|m| m.rss_kib).sum()),
            hwm_mib: mib(memory.iter().map(|m| m.hwm_kib).sum()),
            cpu_seconds,
            cpu_percent: if wall_seconds > 0.0 { 100.0 * cpu_seconds / wall_seconds } else { 0.0 },
        }
    }
}

/// Watches the server processes named by pid; without pids every reading is `None`.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pids: Vec<u32>,
}

/// A measured phase in progress: CPU ticks and time at its start.
#[derive(Debug)]
pub struct Phase {
    pids: Vec<u32>,
    ticks: u64,
    started: Instant,
}

impl Probe {
    pub fn new(pids: Vec<u32>) -> Self {
        Probe { pids }
    }

    /// Starts a measured phase.
    pub fn start(&self) -> anyhow::Result<Option<Phase>> {
        if self.pids.is_empty() {
            return Ok(None);
        }
        let ticks = self.pids.iter().map(|pid| read_cpu_ticks(*pid)).sum::<anyhow::Result<u64>>()?;
        Ok(Some(Phase { pids: self.pids.clone(), ticks, started: Instant::now() }))
    }
}

impl Phase {
    /// Ends the phase: memory now, CPU since the start.
    pub fn finish(&self) -> anyhow::Result<ServerUsage> {
        let wall = self.started.elapsed().as_secs_f64();
        let ticks = self.pids.iter().map(|pid| read_cpu_ticks(*pid)).sum::<anyhow::Result<u64>>()?;
        let memory = self.pids.iter().map(|pid| read_memory(*pid)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(ServerUsage::from_samples(&memory, ticks.saturating_sub(self.ticks), wall))
    }
}

/// Ends a phase if there is one.
pub fn finish(phase: Option<&Phase>) -> anyhow::Result<Option<ServerUsage>> {
    phase.map(Phase::finish).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tetcd\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 11061124 kB\n\
                          VmHWM:\t   52340 kB\nVmRSS:\t   48112 kB\nRssAnon:\t   20000 kB\nThreads:\t12\n";

    #[test]
    fn status_gives_rss_and_peak() {
        assert_eq!(parse_status(STATUS), Some(Memory { rss_kib: 48_112, hwm_kib: 52_340 }));
        assert_eq!(parse_status("Name:\tkthreadd\nState:\tS\n"), None, "kernel threads have no VmRSS");
    }

    #[test]
    fn stat_gives_user_plus_system_ticks_even_with_odd_names() {
        let stat = "4242 (cairn (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 \
                    123456789 4000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("1 (init) S 0"), None);
    }

    #[test]
    fn usage_sums_processes_and_converts_units() {
        let memory = [Memory { rss_kib: 1024, hwm_kib: 2048 }, Memory { rss_kib: 3072, hwm_kib: 3072 }];
        let u = ServerUsage::from_samples(&memory, 150, 3.0);
        assert!((u.rss_mib - 4.0).abs() < 1e-9);
        assert!((u.hwm_mib - 5.0).abs() < 1e-9);
        assert!((u.cpu_seconds - 1.5).abs() < 1e-9);
        assert!((u.cpu_percent - 50.0).abs() < 1e-9);
        assert!(ServerUsage::from_samples(&memory, 0, 0.0).cpu_percent.abs() < 1e-9);
    }

    #[test]
    fn this_process_can_be_probed() {
        let probe = Probe::new(vec![std::process::id()]);
        let phase = probe.start().unwrap().unwrap();
        let usage = phase.finish().unwrap();
        assert!(usage.rss_mib > 0.0 && usage.hwm_mib >= usage.rss_mib, "{usage:?}");
        assert!(Probe::default().start().unwrap().is_none());
    }
}
