//! Elastic Beanstalk stages: upload the bundle to S3, create the application version, deploy it
//! and wait for a verdict, roll back.
//!
//! Every EB call goes through [`Eb`], which paces calls (a token bucket that keeps the average
//! at or below [`Pacing::max_rate`]) and retries throttling, 5xx and connection errors with
//! jittered exponential backoff. The SDK's own retries are off for EB so that one place decides.

pub mod deploy;
pub mod upload;
pub mod version;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_sdk_elasticbeanstalk::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::retry::RetryConfig;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use deploy::{
    deploy, rollback, wait_until_ready, DeployOutcome, DeployRequest, OptionUpdate, Previous,
    Verdict,
};
pub use upload::{upload, UploadRequest, Uploaded};
pub use version::{ensure_version, VersionOutcome, VersionRequest};

/// The clients the EB stages use.
#[derive(Clone, Debug)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub eb: aws_sdk_elasticbeanstalk::Client,
}

impl Clients {
    /// The production clients, from the shared AWS configuration.
    pub fn from_aws(aws: &crate::aws::Aws) -> Self {
        Self {
            s3: aws.s3(),
            eb: eb_client(&aws.sdk),
        }
    }
}

/// An EB client without the SDK's retries ([`Eb`] retries, paced).
pub fn eb_client(sdk: &aws_config::SdkConfig) -> aws_sdk_elasticbeanstalk::Client {
    let conf = aws_sdk_elasticbeanstalk::config::Builder::from(sdk)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_elasticbeanstalk::Client::from_conf(conf)
}

/// How often to poll and how to retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// First wait between two polls.
    pub initial_interval: Duration,
    /// Longest wait between two polls (the wait grows by half each quiet poll).
    pub max_interval: Duration,
    /// Average EB calls per second this process stays under.
    pub max_rate: f64,
    /// Calls that may go out at once before the rate applies.
    pub burst: u32,
    /// First retry delay (doubled each retry, jittered, capped at `retry_max`).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Retries of one call before giving up.
    pub max_retries: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(15),
            max_rate: 0.5,
            burst: 4,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(20),
            max_retries: 8,
        }
    }
}

impl Pacing {
    /// The default pacing with every duration and the rate scaled by `factor` (tests and
    /// benchmarks run the same logic a hundred or a thousand times faster).
    pub fn scaled(factor: f64) -> Self {
        let d = Self::default();
        let s = |t: Duration| t.div_f64(factor);
        Self {
            initial_interval: s(d.initial_interval),
            max_interval: s(d.max_interval),
            max_rate: d.max_rate * factor,
            burst: d.burst,
            retry_base: s(d.retry_base),
            retry_max: s(d.retry_max),
            max_retries: d.max_retries,
        }
    }
}

/// A failed EB call, typed so that callers can branch on EB's error code.
#[derive(Debug, thiserror::Error)]
pub enum EbError {
    /// EB answered with an error (after retries, when it was retryable).
    #[error("Elastic Beanstalk {action} on {target} failed: {code}: {message}{}", retried_note(*attempts))]
    Service {
        action: &'static str,
        target: String,
        status: u16,
        code: String,
        message: String,
        attempts: u32,
    },
    /// No answer (connection refused or reset, timeout), after retries.
    #[error("Elastic Beanstalk {action} on {target} failed: {detail}{}; check the network and the endpoint (AWS_ENDPOINT_URL*), then re-run", retried_note(*attempts))]
    Transport {
        action: &'static str,
        target: String,
        detail: String,
        attempts: u32,
    },
}

fn retried_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl EbError {
    /// EB's error code, if EB answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            EbError::Service { code, .. } => Some(code),
            EbError::Transport { .. } => None,
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self {
            EbError::Service { message, .. } => Some(message),
            EbError::Transport { .. } => None,
        }
    }
}

/// EB error codes that mean "slow down".
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// EB calls, paced and retried.
pub struct Eb {
    client: aws_sdk_elasticbeanstalk::Client,
    pub pacing: Pacing,
    bucket: Mutex<Bucket>,
    calls: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Eb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eb").field("pacing", &self.pacing).finish()
    }
}

impl Eb {
    pub fn new(client: aws_sdk_elasticbeanstalk::Client, pacing: Pacing) -> Self {
        Self {
            client,
            pacing,
            bucket: Mutex::new(Bucket {
                tokens: pacing.burst as f64,
                last: Instant::now(),
            }),
            calls: Default::default(),
        }
    }

    pub fn client(&self) -> &aws_sdk_elasticbeanstalk::Client {
        &self.client
    }

    /// Calls sent so far (retries included).
    pub fn calls_made(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the rate allows one more call.
    async fn pace(&self) {
        let mut b = self.bucket.lock().await;
        let rate = self.pacing.max_rate.max(f64::MIN_POSITIVE);
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate)
            .min(self.pacing.burst.max(1) as f64);
        b.last = now;
        if b.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - b.tokens) / rate);
            tokio::time::sleep(wait).await;
            b.tokens = 1.0;
            b.last = Instant::now();
        }
        b.tokens -= 1.0;
    }

    /// Runs one EB call (`send` builds and sends it), paced, retrying what can be retried.
    /// `target` names the resource for messages.
    pub async fn call<T, E, F, Fut>(
        &self,
        action: &'static str,
        target: &str,
        send: F,
    ) -> Result<T, EbError>
    where
        F: Fn(aws_sdk_elasticbeanstalk::Client) -> Fut,
        Fut: Future<
            Output = Result<T, SdkError<E, aws_sdk_elasticbeanstalk::config::http::HttpResponse>>,
        >,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pace().await;
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let err = match send(self.client.clone()).await {
                Ok(out) => return Ok(out),
                Err(e) => e,
            };
            let (retryable, failure) = classify(action, target, attempt, err);
            if !retryable || attempt > self.pacing.max_retries {
                return Err(failure);
            }
            let delay = backoff(&self.pacing, attempt);
            tracing::warn!(
                "{failure}; retrying in {} (retry {attempt} of {})",
                humantime::format_duration(round_ms(delay)),
                self.pacing.max_retries
            );
            tokio::time::sleep(delay).await;
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Exponential backoff with "equal jitter": half fixed, half random.
pub fn backoff(p: &Pacing, attempt: u32) -> Duration {
    let exp = p
        .retry_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let cap = exp.min(p.retry_max);
    cap / 2 + cap.mul_f64(fastrand::f64() / 2.0)
}

fn classify<E>(
    action: &'static str,
    target: &str,
    attempts: u32,
    err: SdkError<E, aws_sdk_elasticbeanstalk::config::http::HttpResponse>,
) -> (bool, EbError)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let e = se.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = e.message().unwrap_or("no message").to_string();
            let retryable = status >= 500 || THROTTLE_CODES.contains(&code.as_str());
            (
                retryable,
                EbError::Service {
                    action,
                    target: target.to_string(),
                    status,
                    code,
                    message,
                    attempts,
                },
            )
        }
        other => {
            let detail = aws_sdk_elasticbeanstalk::error::DisplayErrorContext(&other).to_string();
            // Connection failures pass; a request that could not be built, or signed for want
            // of credentials, fails the same way every time.
            let retryable = !matches!(other, SdkError::ConstructionFailure(_))
                && !detail.contains("credential");
            (
                retryable,
                EbError::Transport {
                    action,
                    target: target.to_string(),
                    detail,
                    attempts,
                },
            )
        }
    }
}

/// Poll intervals that start short and grow by half up to a cap; [`Poller::reset`] when
/// something happens.
#[derive(Debug, Clone)]
pub struct Poller {
    pacing: Pacing,
    current: Duration,
}

impl Poller {
    pub fn new(pacing: Pacing) -> Self {
        Self {
            pacing,
            current: pacing.initial_interval,
        }
    }

    /// The wait before the next poll; the one after is longer.
    pub fn next_wait(&mut self) -> Duration {
        let now = self.current;
        self.current = self.current.mul_f64(1.5).min(self.pacing.max_interval);
        now
    }

    pub fn reset(&mut self) {
        self.current = self.pacing.initial_interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = Pacing::default();
        for attempt in 1..=10 {
            let d = backoff(&p, attempt);
            let cap = (p.retry_base * (1 << (attempt - 1))).min(p.retry_max);
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {attempt}: {d:?} vs cap {cap:?}"
            );
        }
    }

    #[test]
    fn poller_rises_from_5s_to_15s() {
        let mut p = Poller::new(Pacing::default());
        let waits: Vec<u64> = (0..5).map(|_| p.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, vec![5000, 7500, 11250, 15000, 15000]);
        p.reset();
        assert_eq!(p.next_wait(), Duration::from_secs(5));
    }

    #[test]
    fn scaled_pacing_keeps_the_shape() {
        let p = Pacing::scaled(100.0);
        assert_eq!(p.initial_interval, Duration::from_millis(50));
        assert_eq!(p.max_interval, Duration::from_millis(150));
        assert!((p.max_rate - 50.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn pacing_keeps_the_average_rate() {
        let eb = Eb::new(
            aws_sdk_elasticbeanstalk::Client::from_conf(
                aws_sdk_elasticbeanstalk::Config::builder()
                    .behavior_version(aws_sdk_elasticbeanstalk::config::BehaviorVersion::latest())
                    .build(),
            ),
            Pacing::scaled(200.0),
        );
        let start = Instant::now();
        for _ in 0..24 {
            eb.pace().await;
        }
        // 4 at once (burst), then 20 more at 100/s = 0.2 s.
        let took = start.elapsed().as_secs_f64();
        assert!((0.19..=0.35).contains(&took), "{took}");
    }
}
