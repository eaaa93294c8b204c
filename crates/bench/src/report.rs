//! A run's result: throughput and latency percentiles (merged HDR histograms), the server's resource use when
//! known, and workload-specific details, printed as text or as JSON for scripts.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::usage::ServerUsage;

/// Highest latency the histograms track; slower operations are clamped (and still counted).
pub const MAX_LATENCY_MICROS: u64 = 60_000_000;

pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).context("creating a latency histogram")
}

/// Records one latency, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
}

/// Errors of a run: how many, and the first one's text.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    pub count: u64,
    pub first: Option<String>,
}

impl Errors {
    pub fn add(&mut self, error: impl std::fmt::Display) {
        self.count += 1;
        self.first.get_or_insert_with(|| error.to_string());
    }

    pub fn merge(&mut self, other: Errors) {
        self.count += other.count;
        self.first = self.first.take().or(other.first);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Operations measured (requests, delivered events, keep-alives, lock acquisitions).
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// etcd benchmark's "response time histogram": ten equal-width buckets from the fastest to the slowest.
    pub histogram: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Upper bound of the bucket, in ms.
    pub up_to_ms: f64,
    pub count: u64,
}

const BUCKETS: u64 = 10;
/// Width of the longest bar in the text histogram.
const BAR_WIDTH: u64 = 40;

/// Ten equal-width buckets over [min, max] (fewer when the range is narrower than ten microseconds).
fn buckets(histogram: &Histogram<u64>) -> Vec<Bucket> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let (min, max) = (histogram.min(), histogram.max());
    let width = ((max - min) / BUCKETS).max(1);
    let n = usize::try_from(((max - min) / width + 1).min(BUCKETS)).unwrap_or(1);
    let mut counts = vec![0u64; n];
    for v in histogram.iter_recorded() {
        let value = v.value_iterated_to().clamp(min, max);
        let i = usize::try_from((value - min) / width).unwrap_or(n - 1).min(n - 1);
        counts[i] += v.count_at_value();
    }
    let upper = |i: usize| if i + 1 == n { max } else { min + (i as u64 + 1) * width - 1 };
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| Bucket { up_to_ms: upper(i) as f64 / 1000.0, count })
        .collect()
}

impl Summary {
    pub fn new(histogram: &Histogram<u64>, errors: Errors, elapsed: Duration) -> Self {
        let requests = histogram.len();
        let seconds = elapsed.as_secs_f64();
        let ms = |micros: u64| micros as f64 / 1000.0;
        Summary {
            requests,
            errors: errors.count,
            first_error: errors.first,
            seconds,
            requests_per_second: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
            latency_ms: Latency {
                mean: histogram.mean() / 1000.0,
                p50: ms(histogram.value_at_quantile(0.50)),
                p90: ms(histogram.value_at_quantile(0.90)),
                p99: ms(histogram.value_at_quantile(0.99)),
                p999: ms(histogram.value_at_quantile(0.999)),
                max: ms(histogram.max()),
                histogram: buckets(histogram),
            },
        }
    }
}

/// One workload's full result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: String,
    /// What `requests` and `latency_ms` count in this workload.
    pub unit: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
    pub server: Option<ServerUsage>,
    /// Workload-specific numbers (watchers created, events expected, catch-up rate, ...).
    pub details: BTreeMap<String, f64>,
}

impl Report {
    pub fn new(workload: impl Into<String>, unit: &'static str, summary: Summary) -> Self {
        Report { workload: workload.into(), unit, summary, server: None, details: BTreeMap::new() }
    }

    pub fn detail(mut self, name: &str, value: f64) -> Self {
        self.details.insert(name.to_owned(), value);
        self
    }

    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print!("{self}");
        }
        Ok(())
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.summary;
        let l = &s.latency_ms;
        writeln!(f, "Summary ({}, {}):", self.workload, self.unit)?;
        writeln!(f, "  Total:\t{:.4} secs.", s.seconds)?;
        writeln!(f, "  Count:\t{}", s.requests)?;
        writeln!(f, "  Per second:\t{:.1}", s.requests_per_second)?;
        writeln!(f, "  Errors:\t{}", s.errors)?;
        if let Some(e) = &s.first_error {
            writeln!(f, "  First error:\t{e}")?;
        }
        writeln!(f, "Latency (ms):")?;
        writeln!(
            f,
            "  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.mean, l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        if !l.histogram.is_empty() {
            writeln!(f, "Response time histogram (ms):")?;
            let most = l.histogram.iter().map(|b| b.count).max().unwrap_or(0).max(1);
            for b in &l.histogram {
                let bar = "∎".repeat(usize::try_from(b.count * BAR_WIDTH / most).unwrap_or(0));
                writeln!(f, "  {:9.3} [{}]\t|{bar}", b.up_to_ms, b.count)?;
            }
        }
        if let Some(u) = &self.server {
            writeln!(f, "Server:")?;
            writeln!(
                f,
                "  RSS {:.1} MiB  peak RSS {:.1} MiB  CPU {:.2} s ({:.1}% of a core)",
                u.rss_mib, u.hwm_mib, u.cpu_seconds, u.cpu_percent
            )?;
        }
        if !self.details.is_empty() {
            writeln!(f, "Details:")?;
            for (name, value) in &self.details {
                writeln!(f, "  {name}:\t{value}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of_10us_steps() -> Histogram<u64> {
        let mut h = new_histogram().unwrap();
        for micros in 1..=1000 {
            h.record(micros * 10).unwrap();
        }
        h
    }

    #[test]
    fn summary_reports_throughput_and_percentiles() {
        let errors = Errors { count: 2, first: Some("boom".into()) };
        let s = Summary::new(&histogram_of_10us_steps(), errors, Duration::from_secs(2));
        assert_eq!(s.requests, 1000);
        assert!((s.requests_per_second - 500.0).abs() < 1e-9);
        assert!((s.latency_ms.p50 - 5.0).abs() < 0.01, "p50 {}", s.latency_ms.p50);
        assert!((s.latency_ms.p90 - 9.0).abs() < 0.01, "p90 {}", s.latency_ms.p90);
        assert!((s.latency_ms.p99 - 9.9).abs() < 0.01, "p99 {}", s.latency_ms.p99);
        assert!((s.latency_ms.p999 - 9.99).abs() < 0.01, "p99.9 {}", s.latency_ms.p999);
        assert!((s.latency_ms.max - 10.0).abs() < 0.01, "max {}", s.latency_ms.max);
        assert_eq!(s.first_error.as_deref(), Some("boom"));
    }

    #[test]
    fn the_histogram_has_ten_buckets_covering_every_request() {
        let h = histogram_of_10us_steps();
        let b = buckets(&h);
        assert_eq!(b.len(), 10, "{b:?}");
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 1000);
        assert!((b[9].up_to_ms - 10.0).abs() < 0.01, "the last bucket ends at the slowest: {b:?}");
        assert!(
            b.iter().all(|b| (95..=105).contains(&b.count)),
            "evenly spread latencies fill evenly: {b:?}"
        );
        let mut one = new_histogram().unwrap();
        one.record(500).unwrap();
        assert_eq!(buckets(&one), [Bucket { up_to_ms: 0.5, count: 1 }]);
        assert!(buckets(&new_histogram().unwrap()).is_empty());
        let text =
            Report::new("put", "requests", Summary::new(&h, Errors::default(), Duration::from_secs(1)))
                .to_string();
        assert!(text.contains("Response time histogram (ms):"), "{text}");
        assert!(text.contains(&format!("|{}", "∎".repeat(40))), "{text}");
    }

    #[test]
    fn latencies_are_clamped_into_range() {
        let mut h = new_histogram().unwrap();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_LATENCY_MICROS && h.max() < MAX_LATENCY_MICROS + MAX_LATENCY_MICROS / 100);
    }

    #[test]
    fn errors_keep_the_first_text() {
        let mut a = Errors::default();
        a.add("first");
        a.add("second");
        let mut b = Errors::default();
        b.add("other");
        a.merge(b);
        assert_eq!(a.count, 3);
        assert_eq!(a.first.as_deref(), Some("first"));
    }

    #[test]
    fn report_prints_server_usage_and_details_and_serializes_flat() {
        let summary = Summary::new(&histogram_of_10us_steps(), Errors::default(), Duration::from_secs(1));
        let mut r = Report::new("watch", "events", summary).detail("watchers", 10.0);
        r.server = Some(ServerUsage { rss_mib: 12.5, hwm_mib: 20.0, cpu_seconds: 1.0, cpu_percent: 50.0 });
        let text = r.to_string();
        assert!(text.contains("Summary (watch, events):"), "{text}");
        assert!(text.contains("RSS 12.5 MiB  peak RSS 20.0 MiB  CPU 1.00 s (50.0% of a core)"), "{text}");
        assert!(text.contains("watchers:\t10"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["requests"], 1000, "summary fields sit at the top level: {json}");
        assert_eq!(json["details"]["watchers"], 10.0);
        assert_eq!(json["server"]["rss_mib"], 12.5);
    }
}
