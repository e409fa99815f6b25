//! Attempts and back-off: exponential from the product's `retry_delay_minutes`, with jitter and a cap,
//! only for transient errors; a server's `Retry-After` is honoured.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::TaskError;

/// No single wait is longer: a scheduled job that needs more should fail (75) and let the scheduler retry.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub retries: u32,
    pub first_delay: Duration,
}

impl Policy {
    pub(crate) fn new(retries: u32, delay_minutes: f64) -> Self {
        Policy {
            retries,
            first_delay: Duration::from_secs_f64((delay_minutes * 60.0).clamp(0.0, MAX_DELAY.as_secs_f64())),
        }
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1): the first delay doubled per
    /// attempt, capped, with up to a quarter taken off at random so that many runs do not retry in step.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exponential = self
            .first_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(MAX_DELAY);
        exponential.mul_f64(1.0 - fastrand::f64() * 0.25)
    }
}

/// What a retried operation reports between attempts.
pub(crate) struct Retrying<'a> {
    pub attempt: u32,
    pub of: u32,
    pub error: &'a TaskError,
    pub wait: Duration,
}

/// What a stop does to an attempt under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnStop {
    /// The attempt is dropped: it commits nothing (requests, queries).
    Drop,
    /// The attempt sees the stop itself and is awaited, so what it committed is known (stores).
    Await,
}

/// Runs `operation` until it succeeds, fails permanently, runs out of attempts or is cancelled.
/// Returns the result and the number of attempts made.
pub(crate) async fn run<T, F, Fut>(
    policy: Policy,
    cancel: &CancellationToken,
    on_stop: OnStop,
    mut on_retry: impl FnMut(Retrying<'_>),
    mut operation: F,
) -> (Result<T, TaskError>, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, TaskError>>,
{
    let attempts = policy.retries + 1;
    let mut attempt = 1;
    loop {
        let result = match on_stop {
            OnStop::Drop => tokio::select! {
                result = operation(attempt) => result,
                () = cancel.cancelled() => Err(TaskError::interrupted()),
            },
            OnStop::Await => operation(attempt).await,
        };
        let error = match result {
            Ok(value) => return (Ok(value), attempt),
            Err(error) if !error.is_transient() || attempt == attempts => return (Err(error), attempt),
            Err(error) => error,
        };
        let mut wait = policy.delay(attempt);
        if let Some(asked) = error.retry_after {
            if asked > MAX_DELAY {
                let error = error.context(format!(
                    "the server asked to wait {} s before retrying, longer than dpf waits in one run",
                    asked.as_secs()
                ));
                return (Err(error), attempt);
            }
            wait = wait.max(asked);
        }
        on_retry(Retrying {
            attempt,
            of: attempts,
            error: &error,
            wait,
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => {
                let stopped = match on_stop {
                    OnStop::Drop => TaskError::interrupted(),
                    // An attempt that failed may have written part of its rows (a non-atomic batch).
                    OnStop::Await => TaskError::stopped(format!(
                        "stopped between attempts; attempt {attempt} failed ({}) and may have written part of \
                         its rows, which a rerun writes again",
                        error.message
                    )),
                };
                return (Err(stopped), attempt);
            }
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let policy = Policy::new(5, 1.0);
        for _ in 0..50 {
            let first = policy.delay(1).as_secs_f64();
            assert!((45.0..=60.0).contains(&first), "{first}");
            let third = policy.delay(3).as_secs_f64();
            assert!((180.0..=240.0).contains(&third), "{third}");
            assert!(policy.delay(30) <= MAX_DELAY);
        }
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let cancel = CancellationToken::new();
        let policy = Policy::new(3, 0.0);
        let mut calls = 0;
        let (result, attempts) = run(
            policy,
            &cancel,
            OnStop::Drop,
            |_| {},
            |_| {
                calls += 1;
                async { Err::<(), _>(TaskError::permanent("bad request")) }
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!((attempts, calls), (1, 1));

        let mut calls = 0;
        let (result, attempts) = run(
            policy,
            &cancel,
            OnStop::Drop,
            |_| {},
            |attempt| {
                calls += 1;
                async move {
                    if attempt < 3 {
                        Err(TaskError::transient("503"))
                    } else {
                        Ok(attempt)
                    }
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!((attempts, calls), (3, 3));
    }

    #[tokio::test]
    async fn a_stop_drops_an_attempt_or_awaits_it() {
        let policy = Policy::new(0, 0.0);
        for (on_stop, finished) in [(OnStop::Drop, false), (OnStop::Await, true)] {
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            let (result, _) = run(
                policy,
                &cancel,
                on_stop,
                |_| {},
                |_| {
                    let stop = stop.clone();
                    async move {
                        stop.cancel();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, TaskError>("committed")
                    }
                },
            )
            .await;
            assert_eq!(result.is_ok(), finished, "{on_stop:?}");
        }
    }
}
