//! How an extract paces its requests: at most `concurrency` in flight, at most `rate_limit` a
//! second, and slower after the API answers 429 (Too Many Requests).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// How an extract paces its requests, as `concurrency` and `rate_limit` ask.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Pace {
    /// The most requests in flight at once.
    pub concurrency: u32,
    /// The most requests sent per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
}

/// Requests an extract keeps in flight when nothing says otherwise.
pub(crate) const DEFAULT_CONCURRENCY: u32 = 4;

/// The slowest a throttled extract gets: one request every this long.
const SLOWEST: Duration = Duration::from_secs(60);

/// The pause after a 429 that names no `Retry-After`, when the extract has no rate of its own.
const FIRST_BACK_OFF: Duration = Duration::from_millis(200);

/// 429s in a row one request waits out before it counts as a failed attempt.
pub(crate) const MAX_THROTTLED: u32 = 10;

/// The requests of one extract task, shared by all its items and pages.
pub(crate) struct Throttle {
    permits: Semaphore,
    slots: Mutex<Slots>,
}

/// When requests may start.
struct Slots {
    /// The interval `rate_limit` asks for (zero without one).
    asked: Duration,
    /// The interval now: longer than asked after a 429, back to it as requests succeed.
    interval: Duration,
    /// The earliest the next request may start.
    next: Instant,
}

impl Throttle {
    pub(crate) fn new(concurrency: u32, rate_limit: Option<f64>) -> Self {
        let asked = rate_limit
            .filter(|rate| *rate > 0.0)
            .map_or(Duration::ZERO, |rate| Duration::from_secs_f64(1.0 / rate).min(SLOWEST));
        Throttle {
            permits: Semaphore::new(concurrency.max(1) as usize),
            slots: Mutex::new(Slots {
                asked,
                interval: asked,
                next: Instant::now(),
            }),
        }
    }

    /// Waits until a request may start; it is in flight until the permit is dropped.
    pub(crate) async fn admit(&self) -> SemaphorePermit<'_> {
        let permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let start = {
            let mut slots = self.slots.lock().expect("throttle lock");
            let start = slots.next.max(Instant::now());
            slots.next = start + slots.interval;
            start
        };
        tokio::time::sleep_until(start).await;
        permit
    }

    /// The API answered 429: every request of the task waits `retry_after` (or the interval, at
    /// least a moment), and they go on at half the rate.
    pub(crate) fn slow_down(&self, retry_after: Option<Duration>) {
        let mut slots = self.slots.lock().expect("throttle lock");
        slots.interval = (slots.interval * 2).max(FIRST_BACK_OFF).min(SLOWEST);
        let pause = retry_after.unwrap_or(slots.interval);
        slots.next = slots.next.max(Instant::now() + pause);
    }

    /// A request succeeded: the pace recovers a tenth of the way back to the asked rate.
    pub(crate) fn succeeded(&self) {
        let mut slots = self.slots.lock().expect("throttle lock");
        if slots.interval > slots.asked {
            let gap = slots.interval - slots.asked;
            slots.interval = if gap < Duration::from_millis(1) {
                slots.asked
            } else {
                slots.interval - gap / 10
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_keep_to_the_rate_and_slow_down_after_a_429() {
        let throttle = Throttle::new(2, Some(50.0));
        let start = Instant::now();
        for _ in 0..5 {
            drop(throttle.admit().await);
        }
        // Five requests at 50 a second: the fifth starts 80 ms after the first, never sooner.
        assert!(start.elapsed() >= Duration::from_millis(80));
        throttle.slow_down(Some(Duration::from_millis(300)));
        let paused = Instant::now();
        drop(throttle.admit().await);
        assert!(paused.elapsed() >= Duration::from_millis(300));
        assert_eq!(throttle.slots.lock().unwrap().interval, Duration::from_millis(200));
        for _ in 0..200 {
            throttle.succeeded();
        }
        assert_eq!(throttle.slots.lock().unwrap().interval, Duration::from_millis(20));
    }

    #[tokio::test]
    async fn at_most_concurrency_requests_are_in_flight() {
        let throttle = Throttle::new(2, None);
        let first = throttle.admit().await;
        let _second = throttle.admit().await;
        assert!(throttle.permits.try_acquire().is_err());
        drop(first);
        assert!(throttle.permits.try_acquire().is_ok());
    }
}
