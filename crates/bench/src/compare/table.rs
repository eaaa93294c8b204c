//! The comparison as Markdown tables (the README's performance tables are pasted from this), with notes for
//! skipped servers and errors, and each workload's details.

use std::fmt::Write;

use super::{Outcome, Row};
use crate::report::Report;

/// "cairn is better" above 1: `higher_is_better` compares cairn/etcd, otherwise etcd/cairn.
fn ratio(etcd: Option<f64>, cairn: Option<f64>, higher_is_better: bool) -> String {
    match (etcd, cairn) {
        (Some(e), Some(c)) if e > 0.0 && c > 0.0 => {
            format!("{:.2}x", if higher_is_better { c / e } else { e / c })
        }
        _ => "-".to_owned(),
    }
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn rate(r: &Report) -> f64 {
    r.summary.requests_per_second
}

fn p50(r: &Report) -> f64 {
    r.summary.latency_ms.p50
}

fn p99(r: &Report) -> f64 {
    r.summary.latency_ms.p99
}

fn rss(r: &Report) -> Option<f64> {
    r.server.map(|u| u.rss_mib)
}

fn cpu_percent(r: &Report) -> Option<f64> {
    r.server.map(|u| u.cpu_percent)
}

/// Server CPU milliseconds per thousand operations: comparable between runs that took different times.
fn cpu_per_kop(r: &Report) -> Option<f64> {
    let u = r.server?;
    (r.summary.requests > 0).then(|| u.cpu_seconds * 1e6 / r.summary.requests as f64)
}

/// Whole numbers as such, others with three decimals.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_tables(&mut out, rows);
    out
}

fn write_tables(out: &mut String, rows: &[Row]) -> std::fmt::Result {
    writeln!(out, "Throughput and latency (ratio > 1: cairn better; throughput cairn/etcd, p99 etcd/cairn)")?;
    writeln!(out)?;
    writeln!(
        out,
        "| members | workload | counted | etcd per s | cairn per s | ratio | etcd p50 ms | cairn p50 ms | etcd p99 ms \
         | cairn p99 ms | ratio |"
    )?;
    writeln!(out, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in rows {
        let (e, c) = (row.etcd.report(), row.cairn.report());
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.members,
            row.workload,
            row.unit,
            cell(e.map(rate), 0),
            cell(c.map(rate), 0),
            ratio(e.map(rate), c.map(rate), true),
            cell(e.map(p50), 2),
            cell(c.map(p50), 2),
            cell(e.map(p99), 2),
            cell(c.map(p99), 2),
            ratio(e.map(p99), c.map(p99), false),
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Server resources during the workload, summed over members (RSS at its end; CPU as % of one core and as \
         CPU ms per 1000 operations; ratio > 1: cairn uses less)"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| members | workload | etcd RSS MiB | cairn RSS MiB | ratio | etcd CPU % | cairn CPU % | etcd CPU ms/1k | cairn CPU ms/1k | ratio |"
    )?;
    writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in rows {
        let (e, c) = (row.etcd.report(), row.cairn.report());
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.members,
            row.workload,
            cell(e.and_then(rss), 1),
            cell(c.and_then(rss), 1),
            ratio(e.and_then(rss), c.and_then(rss), false),
            cell(e.and_then(cpu_percent), 0),
            cell(c.and_then(cpu_percent), 0),
            cell(e.and_then(cpu_per_kop), 1),
            cell(c.and_then(cpu_per_kop), 1),
            ratio(e.and_then(cpu_per_kop), c.and_then(cpu_per_kop), false),
        )?;
    }
    write_notes(out, rows)
}

fn write_notes(out: &mut String, rows: &[Row]) -> std::fmt::Result {
    let mut notes = Vec::new();
    for row in rows {
        for (who, outcome) in [("etcd", &row.etcd), ("cairn", &row.cairn)] {
            let at = format!("{} member(s), {}, {who}", row.members, row.workload);
            match outcome {
                Outcome::Skipped(why) => notes.push(format!("{at}: not measured: {why}")),
                Outcome::Measured(r) => {
                    if r.summary.errors > 0 {
                        let first = r.summary.first_error.as_deref().unwrap_or("");
                        notes.push(format!("{at}: {} errors, first: {first}", r.summary.errors));
                    }
                    if !r.details.is_empty() {
                        let details: Vec<String> =
                            r.details.iter().map(|(k, v)| format!("{k} {}", number(*v))).collect();
                        notes.push(format!("{at}: {}", details.join(", ")));
                    }
                }
            }
        }
    }
    if !notes.is_empty() {
        writeln!(out)?;
        writeln!(out, "Notes and details:")?;
        for note in notes {
            writeln!(out, "- {note}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::{new_histogram, Errors, Summary};
    use crate::usage::ServerUsage;

    fn report(per_second: u64, p99_micros: u64, rss_mib: f64, cpu_seconds: f64) -> Report {
        let mut h = new_histogram().unwrap();
        for _ in 0..per_second {
            h.record(p99_micros).unwrap();
        }
        let mut r = Report::new("w", "requests", Summary::new(&h, Errors::default(), Duration::from_secs(1)));
        r.server =
            Some(ServerUsage { rss_mib, hwm_mib: rss_mib, cpu_seconds, cpu_percent: cpu_seconds * 100.0 });
        r
    }

    #[test]
    fn ratios_say_how_much_better_cairn_is() {
        assert_eq!(ratio(Some(100.0), Some(250.0), true), "2.50x");
        assert_eq!(ratio(Some(10.0), Some(4.0), false), "2.50x");
        assert_eq!(ratio(None, Some(4.0), false), "-");
        assert_eq!(ratio(Some(0.0), Some(4.0), true), "-");
        assert_eq!((number(3.0), number(0.12345)), ("3".to_owned(), "0.123".to_owned()));
    }

    #[test]
    fn tables_show_both_servers_and_notes() {
        let rows = vec![
            Row {
                members: 1,
                workload: "put, 1 client".into(),
                unit: "requests",
                etcd: Outcome::Measured(Box::new(report(1000, 2000, 40.0, 0.5))),
                cairn: Outcome::Measured(Box::new(report(2000, 1000, 20.0, 0.5).detail("watchers", 3.0))),
            },
            Row {
                members: 3,
                workload: "lock, 100 contenders".into(),
                unit: "acquisitions",
                etcd: Outcome::Measured(Box::new(report(500, 4000, 90.0, 1.0))),
                cairn: Outcome::Skipped("cairn did not form a 3-member cluster".into()),
            },
        ];
        let text = render(&rows);
        assert!(
            text.contains(
                "| 1 | put, 1 client | requests | 1000 | 2000 | 2.00x | 2.00 | 1.00 | 2.00 | 1.00 | 2.00x |"
            ),
            "{text}"
        );
        // CPU per 1000 ops: 0.5 s over 1000 requests = 500 ms; over 2000 = 250 ms.
        assert!(
            text.contains("| 1 | put, 1 client | 40.0 | 20.0 | 2.00x | 50 | 50 | 500.0 | 250.0 | 2.00x |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| 3 | lock, 100 contenders | acquisitions | 500 | - | - | 4.00 | - | 4.00 | - | - |"
            ),
            "{text}"
        );
        assert!(
            text.contains("- 3 member(s), lock, 100 contenders, cairn: not measured: cairn did not form"),
            "{text}"
        );
        assert!(text.contains("- 1 member(s), put, 1 client, cairn: watchers 3"), "{text}");
    }
}
