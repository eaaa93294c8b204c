//! A request-rate limit shared by all client tasks (`--rate`), as etcd's benchmark uses `rate.NewLimiter(r, 1)`:
//! requests are spaced `1/rate` apart, with a burst of one, so an idle moment does not bank a later burst.

use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so tests can pause and advance it.
use tokio::time::Instant;

/// The pure part: hands out evenly spaced start times.
#[derive(Debug)]
struct Schedule {
    interval: Duration,
    next: Option<Instant>,
}

impl Schedule {
    /// The instant the caller may start its request; the following caller gets one interval later.
    fn reserve(&mut self, now: Instant) -> Instant {
        let slot = self.next.map_or(now, |next| next.max(now));
        self.next = Some(slot + self.interval);
        slot
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    // A std mutex: held only to compute a slot, never across an await.
    schedule: Option<Mutex<Schedule>>,
}

impl RateLimiter {
    /// `per_second` 0 means no limit.
    pub fn new(per_second: u64) -> Self {
        let schedule = (per_second > 0).then(|| {
            Mutex::new(Schedule { interval: Duration::from_secs(1) / rate_u32(per_second), next: None })
        });
        RateLimiter { schedule }
    }

    /// Waits for this caller's turn.
    pub async fn wait(&self) {
        let Some(schedule) = &self.schedule else { return };
        let slot = schedule.lock().unwrap_or_else(std::sync::PoisonError::into_inner).reserve(Instant::now());
        tokio::time::sleep_until(slot).await;
    }
}

/// Rates above a billion per second are as good as unlimited; `Duration / u32` needs a u32.
fn rate_u32(per_second: u64) -> u32 {
    u32::try_from(per_second).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_one_interval_apart() {
        let t0 = Instant::now();
        let mut s = Schedule { interval: Duration::from_millis(10), next: None };
        assert_eq!(s.reserve(t0), t0);
        assert_eq!(s.reserve(t0), t0 + Duration::from_millis(10));
        assert_eq!(s.reserve(t0 + Duration::from_millis(1)), t0 + Duration::from_millis(20));
    }

    #[test]
    fn an_idle_period_does_not_bank_a_burst() {
        let t0 = Instant::now();
        let mut s = Schedule { interval: Duration::from_millis(10), next: None };
        s.reserve(t0);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(s.reserve(later), later, "the first request after a pause goes at once");
        assert_eq!(s.reserve(later), later + Duration::from_millis(10), "the next waits a full interval");
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_spaces_requests() {
        let limiter = RateLimiter::new(100);
        let start = Instant::now();
        for _ in 0..11 {
            limiter.wait().await;
        }
        // With the clock paused, sleeps advance it exactly: ten intervals of 10 ms after the first request.
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(rate_u32(u64::MAX), u32::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
