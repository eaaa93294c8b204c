//! `cairn-bench compare` end to end at a tiny size: every workload runs against real servers (etcd, and cairn when
//! its binary is built next to cairn-bench, as `cargo test --workspace` does) and reports numbers without errors.
//! Nothing here asserts performance.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the bench (and so, through its own guards, its servers) if the test fails while it runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcd_installed() -> bool {
    Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `cairn` beside `cairn-bench` when the workspace's binaries are built; etcd stands in otherwise.
fn second_server() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_cairn-bench"));
    let cairn = bench.with_file_name("cairn");
    if cairn.exists() {
        cairn
    } else {
        PathBuf::from("etcd")
    }
}

#[test]
fn compare_runs_every_workload_and_reports_numbers() {
    if !etcd_installed() {
        assert!(std::env::var_os("CI").is_none(), "etcd must be installed in CI");
        eprintln!("compare_runs_every_workload_and_reports_numbers: skipped: etcd is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.json");
    let err_path = dir.path().join("err.txt");
    let server = second_server();
    let child = Command::new(env!("CARGO_BIN_EXE_cairn-bench"))
        .args(["compare", "--json", "--members", "1", "--total", "200", "--watchers", "50", "--leases", "50"])
        .args(["--seconds", "1", "--data-root"])
        .arg(dir.path())
        .arg("--cairn-bin")
        .arg(&server)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "compare did not finish in 10 minutes");
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "compare failed: {stderr}");

    let rows: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 11, "one row per workload: {rows:?}");
    for row in rows {
        for who in ["etcd", "cairn"] {
            let report = &row[who]["measured"];
            assert!(report.is_object(), "{who} was not measured ({}): {row}", server.display());
            assert_eq!(report["errors"], 0, "{who}: {row}");
            assert!(report["requests"].as_u64().unwrap() > 0, "{who}: {row}");
            assert!(report["server"]["rss_mib"].as_f64().unwrap() > 0.0, "{who}: {row}");
        }
    }
}
