//! The one retry policy of the clients: exponential backoff with jitter ([`backon`]); each
//! client decides what is worth retrying from its error's kind.

use std::time::Duration;

use backon::ExponentialBuilder;
pub use backon::Retryable;

/// `attempts` tries in all, the first retry after about `first` (doubled each time, with
/// jitter: up to twice as long), no wait longer than `max`.
pub fn backoff(attempts: u32, first: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_max_times(attempts.saturating_sub(1) as usize)
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_what_the_caller_retries_and_stops_after_the_attempts() {
        let calls = AtomicU32::new(0);
        let op = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), &str>("transient")
        };
        let started = std::time::Instant::now();
        let err = op
            .retry(backoff(
                3,
                Duration::from_millis(10),
                Duration::from_millis(40),
            ))
            .when(|e| *e == "transient")
            .await
            .unwrap_err();
        assert_eq!((err, calls.load(Ordering::SeqCst)), ("transient", 3));
        assert!(
            started.elapsed() >= Duration::from_millis(30),
            "it waited between tries"
        );

        let calls = AtomicU32::new(0);
        let op = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), &str>("final")
        };
        op.retry(backoff(
            3,
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .when(|e| *e == "transient")
        .await
        .unwrap_err();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a final error is not retried"
        );
    }
}
