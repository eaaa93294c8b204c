//! A run's result: throughput and latency percentiles, printed as text or as JSON for scripts.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
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
}

impl Summary {
    pub fn new(
        histogram: &Histogram<u64>,
        errors: u64,
        first_error: Option<String>,
        elapsed: Duration,
    ) -> Self {
        let requests = histogram.len();
        let seconds = elapsed.as_secs_f64();
        let ms = |micros: u64| micros as f64 / 1000.0;
        Summary {
            requests,
            errors,
            first_error,
            seconds,
            requests_per_second: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
            latency_ms: Latency {
                mean: histogram.mean() / 1000.0,
                p50: ms(histogram.value_at_quantile(0.50)),
                p90: ms(histogram.value_at_quantile(0.90)),
                p99: ms(histogram.value_at_quantile(0.99)),
                p999: ms(histogram.value_at_quantile(0.999)),
                max: ms(histogram.max()),
            },
        }
    }

    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            println!("{self}");
        }
        Ok(())
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.latency_ms;
        writeln!(f, "Summary:")?;
        writeln!(f, "  Total:\t{:.4} secs.", self.seconds)?;
        writeln!(f, "  Requests/sec:\t{:.1}", self.requests_per_second)?;
        writeln!(f, "  Errors:\t{}", self.errors)?;
        if let Some(e) = &self.first_error {
            writeln!(f, "  First error:\t{e}")?;
        }
        writeln!(f, "Latency (ms):")?;
        writeln!(
            f,
            "  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.mean, l.p50, l.p90, l.p99, l.p999, l.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_throughput_and_percentiles() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for micros in 1..=1000 {
            h.record(micros * 10).unwrap();
        }
        let s = Summary::new(&h, 2, Some("boom".into()), Duration::from_secs(2));
        assert_eq!(s.requests, 1000);
        assert!((s.requests_per_second - 500.0).abs() < 1e-9);
        assert!((s.latency_ms.p50 - 5.0).abs() < 0.01, "p50 {}", s.latency_ms.p50);
        assert!((s.latency_ms.p99 - 9.9).abs() < 0.01, "p99 {}", s.latency_ms.p99);
        assert!(s.to_string().contains("First error:\tboom"));
    }
}
