//! Elastic Beanstalk stages: upload the bundle to S3, create the application version, deploy it
//! and wait for a verdict, roll back.
//!
//! Every EB call goes through [`Eb`], which paces calls and retries throttling, 5xx and
//! connection errors with jittered exponential backoff. The SDK's own retries are off for EB so
//! that one place decides.
//!
//! EB throttles per account and per family of actions (AWS Support: DescribeEvents and
//! DescribeEnvironments draw on one bucket; peers measure about 2 calls/s with a burst of 15).
//! So [`Eb`] keeps two budgets: one for the polls (Describe*/List*), at or below
//! [`Pacing::max_rate`], and one for the few write calls, so that a deploy's
//! `UpdateEnvironment` never waits behind the polls that came before it.

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

use crate::retry::Retryable;

pub use deploy::{
    deploy, rollback, wait_until_ready, DeployOutcome, DeployRequest, DeployVerdict, OptionUpdate,
    Previous,
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
    /// First wait between two polls of a deploy (the wait grows by half each quiet poll).
    pub initial_interval: Duration,
    /// The wait once EB's events say the deploy is finishing (instances being deployed).
    pub min_interval: Duration,
    /// Longest wait between two polls.
    pub max_interval: Duration,
    /// First wait for something EB does in about a second (processing a version).
    pub quick_interval: Duration,
    /// How long EB's events may stay silent before the environment's status is read anyway
    /// (an event that says the update ended always leads to a status read).
    pub status_interval: Duration,
    /// Each wait is drawn uniformly within ± this fraction of the interval, so that runs
    /// started together do not poll in step.
    pub jitter: f64,
    /// Average poll calls (Describe*/List*) per second this process stays under.
    pub max_rate: f64,
    /// Poll calls that may go out at once before the rate applies.
    pub burst: u32,
    /// Longest a poll waits for the run's budget (see [`Eb::run_budget_wait`]): the EB CLI
    /// looks every 5 s, and no poll of the wait is further apart than that.
    pub budget_max_wait: Duration,
    /// Average write calls per second (their own budget: a write never waits for the polls).
    pub write_rate: f64,
    /// Write calls that may go out at once.
    pub write_burst: u32,
    /// First retry delay (doubled each retry, jittered, capped at `retry_max`).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Retries of one call before giving up.
    pub max_retries: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            // The EB CLI polls every 5 s: never slower than that, faster near the end. Quiet
            // polls (one call each) spend half the budget, so that it fills up again for the
            // reads around the end.
            initial_interval: Duration::from_secs(4),
            min_interval: Duration::from_secs(2),
            max_interval: Duration::from_millis(4500),
            quick_interval: Duration::from_millis(250),
            status_interval: Duration::from_secs(30),
            jitter: 0.1,
            max_rate: 0.5,
            burst: 8,
            budget_max_wait: Duration::from_secs(5),
            write_rate: 0.1,
            write_burst: 4,
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
            min_interval: s(d.min_interval),
            max_interval: s(d.max_interval),
            quick_interval: s(d.quick_interval),
            status_interval: s(d.status_interval),
            jitter: d.jitter,
            max_rate: d.max_rate * factor,
            burst: d.burst,
            budget_max_wait: s(d.budget_max_wait),
            write_rate: d.write_rate * factor,
            write_burst: d.write_burst,
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

    /// How many times the call was sent.
    pub fn attempts(&self) -> u32 {
        match self {
            EbError::Service { attempts, .. } | EbError::Transport { attempts, .. } => *attempts,
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

/// A token bucket: `rate` calls per second on average, `burst` at once.
impl Bucket {
    fn new(burst: u32) -> Self {
        Self {
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// How long until the bucket holds `n` tokens (none taken).
    fn until(&self, n: f64, rate: f64, burst: u32) -> Duration {
        let rate = rate.max(f64::MIN_POSITIVE);
        let n = n.min(burst.max(1) as f64);
        let tokens =
            (self.tokens + self.last.elapsed().as_secs_f64() * rate).min(burst.max(1) as f64);
        if tokens >= n {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((n - tokens) / rate)
        }
    }

    /// How long to wait before the next call may go (and takes its token).
    fn take(&mut self, rate: f64, burst: u32) -> Duration {
        let rate = rate.max(f64::MIN_POSITIVE);
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate)
            .min(burst.max(1) as f64);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// Which budget an action draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Describe*/List*/Retrieve*/Check*: the polls.
    Poll,
    /// Everything that changes something.
    Write,
}

impl Budget {
    pub fn of(action: &str) -> Self {
        const READS: &[&str] = &["Describe", "List", "Retrieve", "Check", "Validate"];
        if READS.iter().any(|p| action.starts_with(p)) {
            Budget::Poll
        } else {
            Budget::Write
        }
    }
}

/// EB calls, paced and retried.
pub struct Eb {
    client: aws_sdk_elasticbeanstalk::Client,
    pub pacing: Pacing,
    polls: Mutex<Bucket>,
    writes: Mutex<Bucket>,
    calls: std::sync::atomic::AtomicU64,
    /// When this client was made: the start of the run its budget counts from.
    started: Instant,
    /// The instances of each environment as the last `DescribeInstancesHealth` listed them,
    /// and when: a look right after (the failure logs after a verdict) need not ask again.
    instances: std::sync::Mutex<std::collections::HashMap<String, (Instant, Vec<String>)>>,
    /// Each environment as the last `DescribeEnvironments` outside a deploy described it
    /// (a deploy's preflight), and when: the deploy that follows takes it instead of asking.
    environments: std::sync::Mutex<
        std::collections::HashMap<
            String,
            (
                Instant,
                aws_sdk_elasticbeanstalk::types::EnvironmentDescription,
            ),
        >,
    >,
}

impl fmt::Debug for Eb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eb").field("pacing", &self.pacing).finish()
    }
}

/// One option setting: of an environment's configuration (`DescribeConfigurationSettings`), or
/// of an `.ebextensions` file (a single, scalar value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionSetting {
    pub namespace: String,
    pub name: String,
    /// `""` when EB gives no value.
    pub value: String,
}

/// An environment's configuration as `DescribeConfigurationSettings` describes it.
#[derive(Debug, Clone, Default)]
pub struct Configuration {
    /// The deployed configuration's options (the first set described when none says
    /// `deployed`); `None` when EB described no configuration at all.
    pub deployed: Option<Vec<OptionSetting>>,
    /// An update of the configuration is in progress (a `pending` draft exists).
    pub pending: bool,
}

impl Configuration {
    /// The deployed value of `namespace`/`name`, when set.
    pub fn value(&self, namespace: &str, name: &str) -> Option<&str> {
        self.deployed
            .iter()
            .flatten()
            .find(|o| o.namespace == namespace && o.name == name)
            .map(|o| o.value.as_str())
    }
}

impl Eb {
    pub fn new(client: aws_sdk_elasticbeanstalk::Client, pacing: Pacing) -> Self {
        Self {
            client,
            pacing,
            polls: Mutex::new(Bucket::new(pacing.burst)),
            writes: Mutex::new(Bucket::new(pacing.write_burst)),
            calls: Default::default(),
            started: Instant::now(),
            instances: Default::default(),
            environments: Default::default(),
        }
    }

    pub fn client(&self) -> &aws_sdk_elasticbeanstalk::Client {
        &self.client
    }

    /// Calls sent so far (retries included).
    pub fn calls_made(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes the instances `DescribeInstancesHealth` just listed for `environment`.
    pub fn note_instances(&self, environment: &str, ids: Vec<String>) {
        if let Ok(mut m) = self.instances.lock() {
            m.insert(environment.to_string(), (Instant::now(), ids));
        }
    }

    /// The instances of `environment` listed less than `max_age` ago, if any.
    pub fn instances_seen(&self, environment: &str, max_age: Duration) -> Option<Vec<String>> {
        let m = self.instances.lock().ok()?;
        m.get(environment)
            .filter(|(at, _)| at.elapsed() <= max_age)
            .map(|(_, ids)| ids.clone())
    }

    /// Notes an environment as `DescribeEnvironments` just described it.
    pub fn note_environment(&self, env: &aws_sdk_elasticbeanstalk::types::EnvironmentDescription) {
        let Some(name) = env.environment_name() else {
            return;
        };
        if let Ok(mut m) = self.environments.lock() {
            m.insert(name.to_string(), (Instant::now(), env.clone()));
        }
    }

    /// The description of `environment` noted less than `max_age` ago, taken: it serves
    /// once (a second look asks EB again).
    pub fn take_environment(
        &self,
        environment: &str,
        max_age: Duration,
    ) -> Option<aws_sdk_elasticbeanstalk::types::EnvironmentDescription> {
        let mut m = self.environments.lock().ok()?;
        m.remove(environment)
            .filter(|(at, _)| at.elapsed() <= max_age)
            .map(|(_, env)| env)
    }

    /// How long until the run's average stays within [`Pacing::max_rate`] with one more call
    /// and `reserve` more after it: every call since this client was made counts (writes and
    /// retries too), over the time since. The token bucket bounds bursts; this bounds the
    /// whole run, which is what EB's account-wide throttle and other tools sharing it see. A
    /// deploy spends a few calls at once when it starts (the version, the lock, the update)
    /// and at its end (the final look): the quiet polls in between pay for them.
    pub fn run_budget_wait(&self, reserve: u32) -> Duration {
        let rate = self.pacing.max_rate.max(f64::MIN_POSITIVE);
        let due = (self.calls_made() + 1 + u64::from(reserve)) as f64 / rate;
        Duration::try_from_secs_f64(due - self.started.elapsed().as_secs_f64())
            .unwrap_or(Duration::ZERO)
    }

    /// How long until the poll budget allows `calls` calls in a row without waiting.
    pub async fn polls_available_in(&self, calls: u32) -> Duration {
        let p = &self.pacing;
        self.polls
            .lock()
            .await
            .until(calls as f64, p.max_rate, p.burst)
    }

    /// Waits until `budget` allows one more call. The bucket stays locked while its caller
    /// waits, so that concurrent callers go one by one, each counted from the real time it
    /// went (a late wake-up never releases several at once).
    async fn pace(&self, budget: Budget) {
        let p = &self.pacing;
        let (bucket, rate, burst) = match budget {
            Budget::Poll => (&self.polls, p.max_rate, p.burst),
            Budget::Write => (&self.writes, p.write_rate, p.write_burst),
        };
        let mut b = bucket.lock().await;
        let wait = b.take(rate, burst);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The configuration of `environment` in `application` (`DescribeConfigurationSettings`):
    /// the deployed options, and whether a draft is pending.
    pub async fn configuration(
        &self,
        application: &str,
        environment: &str,
    ) -> Result<Configuration, EbError> {
        let out = self
            .call("DescribeConfigurationSettings", environment, |c| {
                c.describe_configuration_settings()
                    .application_name(application)
                    .environment_name(environment)
                    .send()
            })
            .await?;
        let sets = out.configuration_settings();
        let status = |s: &aws_sdk_elasticbeanstalk::types::ConfigurationSettingsDescription| {
            s.deployment_status().map(|d| d.as_str().to_string())
        };
        let deployed = sets
            .iter()
            .find(|s| status(s).as_deref() == Some("deployed"))
            .or_else(|| sets.first());
        Ok(Configuration {
            pending: sets.iter().any(|s| status(s).as_deref() == Some("pending")),
            deployed: deployed.map(|d| {
                d.option_settings()
                    .iter()
                    .filter_map(|o| {
                        Some(OptionSetting {
                            namespace: o.namespace()?.to_string(),
                            name: o.option_name()?.to_string(),
                            value: o.value().unwrap_or_default().to_string(),
                        })
                    })
                    .collect()
            }),
        })
    }

    /// Runs one EB call (`send` builds and sends it), paced, retrying what can be retried
    /// with the project's one retry policy ([`crate::retry`]). Each try, retries included,
    /// waits for its budget and counts against the run's. `target` names the resource for
    /// messages.
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
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let max_retries = self.pacing.max_retries;
        let once = || async {
            let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            self.pace(Budget::of(action)).await;
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            send(self.client.clone())
                .await
                .map_err(|e| classify(action, target, attempt, e))
        };
        once.retry(retry_policy(&self.pacing))
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.retryable)
            .notify(|f: &Failure, delay: Duration| {
                tracing::warn!(
                    "{}; retrying in {} (retry {} of {max_retries})",
                    f.error,
                    humantime::format_duration(round_ms(delay)),
                    f.error.attempts()
                )
            })
            .await
            .map_err(|f| f.error)
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// The retries of one EB call: exponential from [`Pacing::retry_base`], capped at
/// [`Pacing::retry_max`], each wait drawn between half of that and all of it (backon's
/// jitter adds up to the base again: the base is half the step), at most
/// [`Pacing::max_retries`] retries.
pub fn retry_policy(p: &Pacing) -> backon::ExponentialBuilder {
    crate::retry::backoff(p.max_retries + 1, p.retry_base / 2, p.retry_max / 2)
}

/// One failed try, and whether another may follow.
struct Failure {
    retryable: bool,
    error: EbError,
}

/// Whether a failure is worth another try, from its kind: EB answered 5xx or a throttle
/// code; no answer because the connection failed or timed out (or hyper said the failure is
/// transient); an answer that could not be read. Not: a request that could not be built, or
/// signed (no credentials: the SDK reports that as a dispatch failure of kind "other"), nor
/// any other error EB answered.
fn retryable<E>(err: &SdkError<E, aws_sdk_elasticbeanstalk::config::http::HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    use aws_smithy_types::retry::ErrorKind;
    match err {
        SdkError::ServiceError(se) => {
            se.raw().status().is_server_error()
                || se.err().code().is_some_and(|c| THROTTLE_CODES.contains(&c))
        }
        SdkError::DispatchFailure(d) => {
            d.is_io()
                || d.is_timeout()
                || d.as_connector_error().and_then(|c| c.as_other())
                    == Some(ErrorKind::TransientError)
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        _ => false,
    }
}

fn classify<E>(
    action: &'static str,
    target: &str,
    attempts: u32,
    err: SdkError<E, aws_sdk_elasticbeanstalk::config::http::HttpResponse>,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = retryable(&err);
    let error = match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let e = se.err();
            EbError::Service {
                action,
                target: target.to_string(),
                status,
                code: e.code().unwrap_or("Unknown").to_string(),
                message: e.message().unwrap_or("no message").to_string(),
                attempts,
            }
        }
        other => EbError::Transport {
            action,
            target: target.to_string(),
            detail: aws_sdk_elasticbeanstalk::error::DisplayErrorContext(&other).to_string(),
            attempts,
        },
    };
    Failure { retryable, error }
}

/// What EB's events say about a deploy in progress, for the poll interval and for when to
/// read the environment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    /// Nothing new.
    Quiet,
    /// Something happened (any new event).
    Moved,
    /// An instance finished, or the version reached the instances: the end is next.
    Finishing,
    /// EB says the update ended: the status and health are read now.
    Ended,
}

impl Progress {
    /// What one event says.
    pub fn of_event(message: &str) -> Self {
        const ENDED: &[&str] = &[
            "Environment update completed successfully",
            "Successfully deployed new configuration to environment",
            "Update environment operation is complete",
        ];
        const FINISHING: &[&str] = &[
            "Instance deployment completed successfully",
            "New application version was deployed to running EC2 instances",
            "Command execution completed on all instances",
        ];
        if ENDED.iter().any(|f| message.contains(f)) {
            Progress::Ended
        } else if FINISHING.iter().any(|f| message.contains(f)) {
            Progress::Finishing
        } else {
            Progress::Moved
        }
    }
}

/// Poll intervals, jittered: quiet polls grow by half from [`Pacing::initial_interval`] up
/// to [`Pacing::max_interval`]; once EB's events say the deploy is finishing (an instance
/// finished) the interval drops to [`Pacing::min_interval`] and stays there.
#[derive(Debug, Clone)]
pub struct Poller {
    pacing: Pacing,
    current: Duration,
    floor: Duration,
    hold: bool,
}

impl Poller {
    pub fn new(pacing: Pacing) -> Self {
        Self {
            pacing,
            current: pacing.initial_interval,
            floor: pacing.initial_interval,
            hold: false,
        }
    }

    /// For what EB finishes in about a second: starts at [`Pacing::quick_interval`].
    pub fn quick(pacing: Pacing) -> Self {
        Self {
            current: pacing.quick_interval,
            floor: pacing.quick_interval,
            ..Self::new(pacing)
        }
    }

    /// The interval before jitter (for logs and tests).
    pub fn interval(&self) -> Duration {
        self.current
    }

    /// True once EB's events said the end is next (the interval holds at the minimum).
    pub fn finishing(&self) -> bool {
        self.hold
    }

    /// The wait before the next poll, jittered; the one after is longer unless held.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.current;
        if !self.hold {
            self.current = self.current.mul_f64(1.5).min(self.pacing.max_interval);
        }
        let j = self.pacing.jitter.clamp(0.0, 0.9);
        base.mul_f64(1.0 - j + 2.0 * j * fastrand::f64())
    }

    /// Back to the first interval (something happened).
    pub fn reset(&mut self) {
        self.current = self.floor;
        self.hold = false;
    }

    /// Adapts to what the latest events say.
    pub fn observe(&mut self, progress: Progress) {
        match progress {
            Progress::Quiet => {}
            Progress::Moved => {
                if !self.hold {
                    self.current = self.current.min(self.floor);
                }
            }
            Progress::Finishing | Progress::Ended => {
                self.current = self.pacing.min_interval.min(self.floor);
                self.hold = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waits of one call's retries, in order, as `Eb::call` draws them.
    fn retry_waits(p: &Pacing) -> Vec<Duration> {
        use backon::BackoffBuilder;
        retry_policy(p).build().collect()
    }

    #[test]
    fn retries_grow_are_jittered_and_capped() {
        let p = Pacing::default();
        for _ in 0..20 {
            let waits = retry_waits(&p);
            assert_eq!(waits.len() as u32, p.max_retries, "{waits:?}");
            for (i, d) in waits.iter().enumerate() {
                // Doubling from retry_base, capped at retry_max: each wait within half of
                // that and all of it (a fixed interval fails here from the second retry).
                let cap = (p.retry_base * (1 << i)).min(p.retry_max);
                assert!(
                    *d >= cap / 2 && *d <= cap,
                    "retry {}: {d:?} vs cap {cap:?}",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn retries_are_jittered() {
        // Without jitter every third retry would wait the same.
        let p = Pacing::default();
        let waits: Vec<Duration> = (0..40).map(|_| retry_waits(&p)[2]).collect();
        let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(*hi - *lo >= Duration::from_millis(800), "{lo:?}..{hi:?}");
    }

    fn unjittered() -> Pacing {
        Pacing {
            jitter: 0.0,
            ..Pacing::default()
        }
    }

    #[test]
    fn quiet_polls_slow_down_but_stay_under_the_eb_clis_5s() {
        let mut p = Poller::new(unjittered());
        let waits: Vec<u64> = (0..4).map(|_| p.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, vec![4000, 4500, 4500, 4500]);
        p.reset();
        assert_eq!(p.next_wait(), Duration::from_secs(4));
    }

    #[test]
    fn polls_tighten_when_the_deploy_is_finishing() {
        let mut p = Poller::new(unjittered());
        p.next_wait();
        p.observe(Progress::Quiet);
        assert_eq!(p.interval(), Duration::from_millis(4500));
        p.observe(Progress::of_event("Environment update is starting."));
        assert_eq!(p.interval(), Duration::from_secs(4));
        // The long part: instances pull and start the containers; quiet polls.
        p.observe(Progress::of_event("Deploying new version to instance(s)."));
        assert_eq!(p.next_wait(), Duration::from_secs(4));
        assert!(!p.finishing());
        // An instance finished: the end is next; the interval holds at the minimum.
        p.observe(Progress::of_event(
            "Instance deployment completed successfully.",
        ));
        assert!(p.finishing());
        let held: Vec<u64> = (0..5).map(|_| p.next_wait().as_millis() as u64).collect();
        assert_eq!(held, vec![2000; 5]);
        // Another event does not loosen it.
        p.observe(Progress::Moved);
        assert_eq!(p.next_wait(), Duration::from_secs(2));
    }

    #[test]
    fn events_that_end_the_update_are_told_apart() {
        for text in [
            "Environment update completed successfully.",
            "Successfully deployed new configuration to environment.",
            "Update environment operation is complete, but with errors.",
        ] {
            assert_eq!(Progress::of_event(text), Progress::Ended, "{text}");
        }
        for text in [
            "Instance deployment completed successfully.",
            "New application version was deployed to running EC2 instances.",
        ] {
            assert_eq!(Progress::of_event(text), Progress::Finishing, "{text}");
        }
        assert_eq!(
            Progress::of_event("Environment update is starting."),
            Progress::Moved
        );
    }

    #[test]
    fn poll_waits_are_jittered_within_bounds() {
        let pacing = Pacing::default();
        let mut waits = vec![];
        for _ in 0..50 {
            let mut p = Poller::new(pacing);
            waits.push(p.next_wait());
        }
        let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(*lo >= Duration::from_millis(3600) && *hi <= Duration::from_millis(4400));
        // Not in step: the waits spread over most of the ±10 % band.
        assert!(*hi - *lo >= Duration::from_millis(450), "{lo:?}..{hi:?}");
    }

    #[test]
    fn quick_polls_start_at_a_quarter_second() {
        let mut p = Poller::quick(unjittered());
        let waits: Vec<u64> = (0..3).map(|_| p.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, vec![250, 375, 562]);
    }

    #[test]
    fn scaled_pacing_keeps_the_shape() {
        let p = Pacing::scaled(100.0);
        assert_eq!(p.initial_interval, Duration::from_millis(40));
        assert_eq!(p.max_interval, Duration::from_millis(45));
        assert!((p.max_rate - 50.0).abs() < 1e-9);
        assert!((p.write_rate - 10.0).abs() < 1e-9);
    }

    #[test]
    fn reads_and_writes_draw_on_separate_budgets() {
        for a in [
            "DescribeEvents",
            "DescribeEnvironments",
            "ListTagsForResource",
        ] {
            assert_eq!(Budget::of(a), Budget::Poll, "{a}");
        }
        for a in [
            "UpdateEnvironment",
            "CreateApplicationVersion",
            "CreateStorageLocation",
        ] {
            assert_eq!(Budget::of(a), Budget::Write, "{a}");
        }
    }

    fn eb(pacing: Pacing) -> Eb {
        Eb::new(
            aws_sdk_elasticbeanstalk::Client::from_conf(
                aws_sdk_elasticbeanstalk::Config::builder()
                    .behavior_version(aws_sdk_elasticbeanstalk::config::BehaviorVersion::latest())
                    .build(),
            ),
            pacing,
        )
    }

    #[tokio::test]
    async fn a_write_never_waits_behind_the_polls() {
        let eb = eb(Pacing::default());
        for _ in 0..8 {
            eb.pace(Budget::Poll).await;
        }
        // The poll budget is spent (the next poll would wait 2 s); a write goes at once.
        let start = Instant::now();
        eb.pace(Budget::Write).await;
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn the_poll_budget_says_when_it_holds_a_few_calls() {
        let eb = eb(Pacing::scaled(100.0));
        assert_eq!(eb.polls_available_in(5).await, Duration::ZERO);
        for _ in 0..8 {
            eb.pace(Budget::Poll).await;
        }
        // Empty; 5 calls at 50/s take 100 ms to come back.
        let wait = eb.polls_available_in(5).await;
        assert!(
            (Duration::from_millis(90)..=Duration::from_millis(101)).contains(&wait),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn the_run_budget_counts_every_call_since_the_start() {
        let eb = eb(Pacing::default());
        // Nothing spent: the first call and 3 more fit in 8 s at 0.5 calls/s.
        let wait = eb.run_budget_wait(3);
        assert!(
            (Duration::from_millis(7900)..=Duration::from_secs(8)).contains(&wait),
            "{wait:?}"
        );
        // Five calls at the start (version, lock, update): the next poll, with the final look
        // kept in reserve, is due 18 s into the run.
        eb.calls.store(5, std::sync::atomic::Ordering::Relaxed);
        let wait = eb.run_budget_wait(3);
        assert!(
            (Duration::from_millis(17900)..=Duration::from_secs(18)).contains(&wait),
            "{wait:?}"
        );
        // Scaled like the rest: the same shape a hundred times faster.
        let fast = self::eb(Pacing::scaled(100.0));
        fast.calls.store(5, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(fast.run_budget_wait(3), Duration::ZERO);
    }

    #[tokio::test]
    async fn pacing_keeps_the_average_rate() {
        let eb = eb(Pacing::scaled(200.0));
        let start = Instant::now();
        for _ in 0..28 {
            eb.pace(Budget::Poll).await;
        }
        // 8 at once (burst), then 20 more at 100/s = 0.2 s.
        let took = start.elapsed().as_secs_f64();
        assert!((0.19..=0.35).contains(&took), "{took}");
    }
}
