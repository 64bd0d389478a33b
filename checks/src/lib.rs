//! The verify stage's checks: "is the backend really up?", answered with a table.
//!
//! This crate holds what the pipeline's verify stage (`pipeline::verify`, which re-exports
//! it) and the verify agent of the postdeploy hook (`verify-agent`, a static binary run on
//! the instance) share, and nothing of the AWS, Docker or GitHub clients, so the agent
//! builds small.
//!
//! Each configured check (`[[environments.NAME.checks]]`) becomes a [`Check`]: an HTTP GET of
//! the API root, a Redis PING, a Celery ping over the Redis broker (pidbox, no Python), or
//! Flower's worker API. [`run`] runs them concurrently, each until its own deadline, and
//! returns a [`VerifyReport`] with one line per check: its verdict (pass, fail "reached, but
//! wrong", unreachable "could not reach"), latency and detail. Targets are printed with their
//! secrets masked.

pub mod agent;
mod amqp;
mod broker_url;
mod celery;
pub mod config;
mod flower;
mod http;
mod nats;
pub mod output;
pub mod pidbox;
mod redis;
mod report;
mod tls;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use secrecy::SecretString;

use crate::config::{CheckKind, CheckSpec};

pub use amqp::{AmqpError, AmqpUrl};
pub use broker_url::Endpoint;
pub use celery::{Broker, CeleryCheck};
pub use flower::{FlowerAuth, FlowerCheck};
pub use http::HttpCheck;
pub use nats::{NatsCheck, NatsUrl};
pub use redis::{RedisCheck, RedisError, RedisUrl};
pub use report::{CheckOutcome, Verdict, VerifyReport};
pub use tls::{CertReqs, ConnectError};

/// Why a broker URL was rejected (the message shows the URL with its password masked).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{masked}: {reason}")]
    Invalid { masked: String, reason: String },
}

/// One check of the verify stage, ready to run.
#[derive(Debug, Clone)]
pub enum Check {
    Http(HttpCheck),
    Redis(RedisCheck),
    Celery(CeleryCheck),
    Flower(FlowerCheck),
    Nats(NatsCheck),
}

impl Check {
    /// Builds the check described by `spec`. `base_url` is the environment's URL (for HTTP
    /// and Flower checks without their own `url`); `env` looks up environment variables
    /// (URLs and credentials are read from the variables the spec names).
    pub fn from_spec(
        spec: &CheckSpec,
        base_url: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Check> {
        let name = spec.kind.name();
        let var = |var: &str, what: &str| -> Result<String> {
            match env(var).filter(|v| !v.trim().is_empty()) {
                Some(v) => Ok(v),
                None => bail!(
                    "the {name} check needs {what} in the environment variable {var}, which is not set: export it (or change the check's setting in the configuration)"
                ),
            }
        };
        // The check's own `url`, else one made of the environment's URL by `from_base`.
        let url_or = |url: &Option<String>,
                      where_to_set: &str,
                      from_base: &dyn Fn(&str) -> Result<String>|
         -> Result<String> {
            match url {
                Some(u) => Ok(u.clone()),
                None => from_base(base_url.with_context(|| {
                    format!("the {name} check has no `url` and the environment has no URL: set `url` in {where_to_set}, DEPLOY_URL, or pass --url")
                })?),
            }
        };
        let (timeout, required) = (spec.timeout, spec.required);
        Ok(match &spec.kind {
            CheckKind::Http {
                url,
                path,
                headers,
                expect_status,
            } => {
                let url = url_or(
                    url,
                    "the environment's table of the configuration",
                    &|base| Ok(join_url(base, path)),
                )?;
                Check::Http(HttpCheck::new(
                    &url,
                    headers.clone(),
                    *expect_status,
                    timeout,
                    required,
                )?)
            }
            CheckKind::Redis { url_env } => {
                let url = var(url_env, "the Redis URL (redis://… or rediss://…)")?;
                let url = RedisUrl::parse(&url)
                    .with_context(|| format!("invalid Redis URL in {url_env}"))?;
                Check::Redis(RedisCheck {
                    url,
                    timeout,
                    required,
                })
            }
            CheckKind::Celery {
                broker_url_env,
                min_workers,
                queues,
            } => {
                let url = var(
                    broker_url_env,
                    "the Celery broker URL (amqp://…, amqps://…, redis://… or rediss://…)",
                )?;
                let broker = Broker::parse(&url)
                    .with_context(|| format!("invalid Celery broker URL in {broker_url_env}"))?;
                Check::Celery(CeleryCheck {
                    broker,
                    min_workers: *min_workers,
                    queues: queues.clone(),
                    timeout,
                    required,
                })
            }
            CheckKind::Flower {
                url,
                user_env,
                password_env,
                min_workers,
                queues,
            } => {
                let url = url_or(url, "the check or the environment", &flower::default_url)?;
                let auth = FlowerAuth {
                    user: env(user_env).filter(|v| !v.is_empty()),
                    password: env(password_env)
                        .filter(|v| !v.is_empty())
                        .map(SecretString::from),
                    user_env: user_env.clone(),
                    password_env: password_env.clone(),
                };
                Check::Flower(FlowerCheck::new(
                    &url,
                    auth,
                    *min_workers,
                    queues.clone(),
                    timeout,
                    required,
                )?)
            }
            CheckKind::Nats {
                url_env,
                creds_file,
                ca_file,
                verify_certificate,
                jetstream,
                streams,
            } => {
                let url = var(url_env, "the NATS URL (nats://… or tls://…)")?;
                let url = NatsUrl::parse(&url)
                    .with_context(|| format!("invalid NATS URL in {url_env}"))?
                    .with_tls_options(*verify_certificate, ca_file.clone());
                Check::Nats(NatsCheck {
                    url,
                    creds_file: creds_file.clone(),
                    jetstream: *jetstream,
                    streams: streams.clone(),
                    timeout,
                    required,
                })
            }
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Check::Http(_) => "http",
            Check::Redis(_) => "redis",
            Check::Celery(_) => "celery",
            Check::Flower(_) => "flower",
            Check::Nats(_) => "nats",
        }
    }

    /// What the check talks to, with secrets masked.
    pub fn target(&self) -> String {
        match self {
            Check::Http(c) => c.target(),
            Check::Redis(c) => c.url.endpoint.masked(),
            Check::Celery(c) => c.broker.masked(),
            Check::Flower(c) => c.target(),
            Check::Nats(c) => c.url.endpoint.masked(),
        }
    }

    pub fn timeout(&self) -> Duration {
        match self {
            Check::Http(c) => c.timeout,
            Check::Redis(c) => c.timeout,
            Check::Celery(c) => c.timeout,
            Check::Flower(c) => c.timeout,
            Check::Nats(c) => c.timeout,
        }
    }

    /// Shortens the check's timeout to `limit` (the stage's `timeouts.verify`) if it is longer.
    pub fn cap_timeout(&mut self, limit: Duration) {
        let t = match self {
            Check::Http(c) => &mut c.timeout,
            Check::Redis(c) => &mut c.timeout,
            Check::Celery(c) => &mut c.timeout,
            Check::Flower(c) => &mut c.timeout,
            Check::Nats(c) => &mut c.timeout,
        };
        *t = (*t).min(limit);
    }

    pub fn required(&self) -> bool {
        match self {
            Check::Http(c) => c.required,
            Check::Redis(c) => c.required,
            Check::Celery(c) => c.required,
            Check::Flower(c) => c.required,
            Check::Nats(c) => c.required,
        }
    }

    /// Runs the check until it passes, fails for good, or its timeout ends.
    pub async fn run(&self) -> CheckOutcome {
        let timeout = self.timeout();
        let tried = match self {
            Check::Http(c) => retry_until(timeout, |left| c.attempt(left)).await,
            Check::Redis(c) => retry_until(timeout, |left| c.attempt(left)).await,
            Check::Celery(c) => retry_until(timeout, |left| c.attempt(left)).await,
            Check::Flower(c) => retry_until(timeout, |left| c.attempt(left)).await,
            Check::Nats(c) => retry_until(timeout, |left| c.attempt(left)).await,
        };
        let mut detail = tried.last.detail;
        if tried.attempts > 1 {
            detail.push_str(&format!(
                " ({} attempts in {})",
                tried.attempts,
                crate::output::human_duration(tried.elapsed)
            ));
        }
        CheckOutcome {
            check: self.kind().to_string(),
            target: self.target(),
            required: self.required(),
            verdict: tried.last.verdict,
            latency_ms: tried.latency.as_millis() as u64,
            elapsed_ms: tried.elapsed.as_millis() as u64,
            attempts: tried.attempts,
            detail,
        }
    }
}

/// Runs every check concurrently and collects their outcomes, in the order given.
pub async fn run(checks: &[Check]) -> VerifyReport {
    let outcomes = futures_util::future::join_all(checks.iter().map(Check::run)).await;
    VerifyReport::new(outcomes)
}

/// The result of one attempt of a check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attempt {
    pub verdict: Verdict,
    pub detail: String,
    /// Worth trying again before the deadline (the server may still be starting).
    pub retry: bool,
    /// Ended by the check's deadline rather than by an answer: an earlier attempt that got
    /// an answer says more about what is wrong.
    pub cut_short: bool,
}

impl Attempt {
    pub fn pass(detail: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Pass,
            detail: detail.into(),
            retry: false,
            cut_short: false,
        }
    }
    /// Reached, but wrong, and it may still change (a worker starting, a 502 during a deploy).
    pub fn fail(detail: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Fail,
            detail: detail.into(),
            retry: true,
            cut_short: false,
        }
    }
    /// Reached, but wrong in a way that waiting will not fix (credentials, certificate, settings).
    pub fn fail_for_good(detail: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Fail,
            detail: detail.into(),
            retry: false,
            cut_short: false,
        }
    }
    /// Marks an attempt that the deadline ended (see [`Attempt::cut_short`]).
    pub fn cut_short(mut self, by_deadline: bool) -> Self {
        self.cut_short = by_deadline;
        self
    }
    pub fn unreachable(detail: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Unreachable,
            detail: detail.into(),
            retry: true,
            cut_short: false,
        }
    }
}

struct Tried {
    last: Attempt,
    attempts: u32,
    /// Duration of the last attempt.
    latency: Duration,
    elapsed: Duration,
}

/// Calls `attempt(time left)` until it passes, says not to retry, or `timeout` has passed;
/// waits with a growing, jittered delay between attempts.
async fn retry_until<F, Fut>(timeout: Duration, mut attempt: F) -> Tried
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let start = Instant::now();
    let deadline = crate::config::instant_after(timeout);
    let mut delay = Duration::from_millis(250);
    let mut attempts = 0;
    // The latest attempt that ended with an answer, and its duration.
    let mut answered: Option<(Attempt, Duration)> = None;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let t0 = Instant::now();
        // Each attempt keeps to `left` itself; the grace only catches one that does not.
        let last = match tokio::time::timeout(left + Duration::from_secs(1), attempt(left)).await {
            Ok(a) => a,
            Err(_) => Attempt::unreachable(format!(
                "no answer within {}",
                crate::output::human_duration(timeout)
            ))
            .cut_short(true),
        };
        let latency = t0.elapsed();
        let now = Instant::now();
        let wait = delay.mul_f64(0.75 + fastrand::f64() / 2.0);
        // Stop when done, or when what is left would not fit another attempt as long as this
        // one (a cut-off attempt would only report the deadline, not what is wrong).
        if last.verdict == Verdict::Pass
            || !last.retry
            || deadline.saturating_duration_since(now) <= wait + latency
        {
            let (last, latency) = match (last.cut_short, answered) {
                (true, Some(earlier)) => earlier,
                _ => (last, latency),
            };
            return Tried {
                last,
                attempts,
                latency,
                elapsed: start.elapsed(),
            };
        }
        if !last.cut_short {
            answered = Some((last.clone(), latency));
        }
        tracing::debug!(detail = %last.detail, "check not passing yet; trying again in {wait:?}");
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The wanted queues that no worker consumes, in the order given; `consumed` holds each
/// worker's queues (the Celery check's `active_queues` answers, Flower's workers).
pub(crate) fn unconsumed<'a, 'b>(
    wanted: &'a [String],
    consumed: impl IntoIterator<Item = &'b [String]>,
) -> Vec<&'a str> {
    let consumed: std::collections::BTreeSet<&str> =
        consumed.into_iter().flatten().map(String::as_str).collect();
    wanted
        .iter()
        .map(String::as_str)
        .filter(|q| !consumed.contains(q))
        .collect()
}

/// `base` (an origin, maybe with a path) joined with an absolute `path`.
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// Names of query parameters whose values are masked.
const SECRET_QUERY_KEYS: [&str; 5] = ["password", "passwd", "secret", "token", "key"];

fn secret_query_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_QUERY_KEYS.iter().any(|s| key.contains(s))
}

/// `url` with its password (and the values of query parameters that look secret) replaced
/// by `***`. Text that is not a URL (a mistyped `rediss//:PW@host`, `https:/u:PW@h`) keeps
/// nothing between the scheme-like start and the last `@`, so that nothing secret slips
/// through a parse error.
pub fn mask_url(url: &str) -> String {
    let secrets = url_secrets(url);
    if secrets.is_empty() {
        // Nothing to hide: the text as given, not as the URL parser would normalise it.
        return url.to_string();
    }
    let mut masked = match url::Url::parse(url) {
        Ok(mut u) if u.has_host() && !u.cannot_be_a_base() => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query().is_some() {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let value = if secret_query_key(&k) {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), value)
                    })
                    .collect();
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in &pairs {
                    q.append_pair(k, v);
                }
                u.set_query(Some(&q.finish()));
            }
            u.to_string()
        }
        _ => mask_userinfo(url),
    };
    // Belt and braces: whatever the parse made of it, no secret of it may remain.
    for secret in secrets {
        if secret.len() >= 3 {
            masked = masked.replace(&secret, "***");
        }
    }
    masked
}

/// The secret parts of a URL-like `text`, to hide in a CI log (`::add-mask::`): the
/// password (as written and percent-decoded), the values of secret-looking query
/// parameters, and for text that does not parse as a URL with a host, everything between
/// its scheme-like start and the last `@`.
pub fn url_secrets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim();
        if !s.is_empty() && s != "***" && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    match url::Url::parse(text) {
        Ok(u) if u.has_host() && !u.cannot_be_a_base() => {
            if let Some(p) = u.password() {
                push(p);
                push(&percent_decode(p));
            }
            for (k, v) in u.query_pairs() {
                if secret_query_key(&k) {
                    push(&v);
                }
            }
        }
        _ => {
            if let Some((start, end)) = userinfo_span(text) {
                let info = &text[start..end];
                push(info);
                // The part after the user name, if there is one.
                if let Some((_, password)) = info.split_once(':') {
                    push(password);
                }
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if let (b'%', Some(h), Some(l)) = (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Byte range of what would be the user information of a URL-like `text` (between the
/// separators after its scheme-like start and the last `@`), or `None` without an `@`.
fn userinfo_span(text: &str) -> Option<(usize, usize)> {
    let at = text.rfind('@')?;
    let head = &text[..at];
    // A scheme-like word (letters, digits, `+.-`), then the `:` and `/` that should have
    // been `://`, in whatever order they were typed.
    let word_end = head
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
        .unwrap_or(head.len());
    let seps_end = head[word_end..]
        .find(|c: char| c != ':' && c != '/')
        .map_or(head.len(), |i| word_end + i);
    let start = if seps_end > word_end { seps_end } else { 0 };
    (start < at).then_some((start, at))
}

fn mask_userinfo(text: &str) -> String {
    match userinfo_span(text) {
        Some((start, end)) => {
            let info = &text[start..end];
            // Keep a user name when one is clearly there (`user:…`), never the rest.
            let kept = match info.split_once(':') {
                Some((user, _)) if !user.contains(['/', ' ']) => format!("{user}:***"),
                _ => "***".to_string(),
            };
            format!("{}{kept}{}", &text[..start], &text[end..])
        }
        None => text.to_string(),
    }
}

/// A random UUID (version 4) as text, for pidbox tickets and reply queues.
pub(crate) fn uuid4() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn retries_until_it_passes() {
        let mut n = 0;
        let tried = retry_until(Duration::from_secs(10), |_| {
            n += 1;
            let a = if n < 3 {
                Attempt::fail("not yet")
            } else {
                Attempt::pass("up")
            };
            async move { a }
        })
        .await;
        assert_eq!((tried.attempts, tried.last.verdict), (3, Verdict::Pass));
        assert_eq!(tried.last.detail, "up");
    }

    #[tokio::test]
    async fn an_attempt_cut_short_by_the_deadline_does_not_hide_the_answer_before() {
        let mut n = 0;
        let tried = retry_until(Duration::from_millis(700), |left| {
            n += 1;
            let first = n == 1;
            async move {
                if first {
                    Attempt::fail("0 of 1 worker(s) online")
                } else {
                    tokio::time::sleep(left).await;
                    Attempt::fail("no answer in time").cut_short(true)
                }
            }
        })
        .await;
        assert_eq!(tried.attempts, 2);
        assert_eq!(tried.last.detail, "0 of 1 worker(s) online");
    }

    #[tokio::test]
    async fn a_failure_for_good_is_not_retried() {
        let tried = retry_until(Duration::from_secs(10), |_| async {
            Attempt::fail_for_good("401")
        })
        .await;
        assert_eq!((tried.attempts, tried.last.verdict), (1, Verdict::Fail));
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_and_cuts_off_a_hung_attempt() {
        let start = Instant::now();
        let tried = retry_until(Duration::from_millis(600), |_| async {
            Attempt::unreachable("refused")
        })
        .await;
        assert!(tried.attempts >= 2, "{}", tried.attempts);
        assert_eq!(tried.last.detail, "refused");
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );

        let tried = retry_until(Duration::from_millis(200), |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Attempt::pass("never")
        })
        .await;
        assert_eq!(tried.last.verdict, Verdict::Unreachable);
        assert_eq!(tried.last.detail, "no answer within 200 ms");
    }

    #[test]
    fn masks_passwords_in_urls() {
        assert_eq!(
            mask_url("rediss://:s3cret@cache.example:6379/0?ssl_cert_reqs=none"),
            "rediss://:***@cache.example:6379/0?ssl_cert_reqs=none"
        );
        assert_eq!(
            mask_url("redis://default:p%40ss@h:1/2"),
            "redis://default:***@h:1/2"
        );
        assert_eq!(
            mask_url("http://admin:pw@host:5555/api/workers"),
            "http://admin:***@host:5555/api/workers"
        );
        assert_eq!(
            mask_url("http://host/api/v2/?token=abc&page=2"),
            "http://host/api/v2/?token=***&page=2"
        );
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn masks_text_that_does_not_parse() {
        let masked = mask_url("redis://user:pa ss@[bad/0");
        assert_eq!(masked, "redis://user:***@[bad/0");
        assert!(!masked.contains("pa ss"));
        assert_eq!(mask_url("not a url"), "not a url");
    }

    #[test]
    fn masks_mistyped_urls() {
        for (text, secret, want) in [
            (
                "rediss//:PW0rd1@host:6379",
                "PW0rd1",
                "rediss//:***@host:6379",
            ),
            ("rediss:/:PW0rd1@host", "PW0rd1", "rediss:/:***@host"),
            ("https//u:PW0rd1@h/x", "PW0rd1", "https//u:***@h/x"),
            ("redis:PW0rd1@host", "PW0rd1", "redis:***@host"),
            ("//:PW0rd1@host", "PW0rd1", "//:***@host"),
            (":PW0rd1@host", "PW0rd1", ":***@host"),
            ("rediss//:pa/ss:w@host", "pa/ss:w", "rediss//:***@host"),
            (
                "redis://u:p%40ss%2Fx@h:1/2",
                "p@ss/x",
                "redis://u:***@h:1/2",
            ),
        ] {
            let masked = mask_url(text);
            assert_eq!(masked, want, "{text}");
            assert!(!masked.contains(secret), "{text} -> {masked}");
            let secrets = url_secrets(text);
            assert!(
                secrets.iter().any(|s| s.contains(secret)),
                "{text}: {secrets:?}"
            );
        }
        assert_eq!(url_secrets("https://host/x"), Vec::<String>::new());
        assert_eq!(url_secrets("rediss://:pw@h?password=q"), vec!["pw", "q"]);
    }

    #[test]
    fn unconsumed_lists_the_wanted_queues_no_worker_consumes() {
        let wanted: Vec<String> = ["antenna", "jobs", "ml_results"].map(String::from).to_vec();
        let w1: Vec<String> = vec!["antenna".into(), "celery".into()];
        let w2: Vec<String> = vec!["ml_results".into()];
        assert_eq!(
            unconsumed(&wanted, [w1.as_slice(), w2.as_slice()]),
            vec!["jobs"]
        );
        assert_eq!(
            unconsumed(&wanted, []),
            vec!["antenna", "jobs", "ml_results"]
        );
        assert!(unconsumed(&[], [w1.as_slice()]).is_empty());
        let all: Vec<String> = vec!["jobs".into(), "antenna".into(), "ml_results".into()];
        assert!(unconsumed(&wanted, [all.as_slice()]).is_empty());
    }

    #[test]
    fn joins_base_and_path() {
        assert_eq!(
            join_url("http://h:8080/", "/api/v2/"),
            "http://h:8080/api/v2/"
        );
        assert_eq!(join_url("http://h", "/api/v2/"), "http://h/api/v2/");
    }

    #[test]
    fn uuid4_has_the_right_shape() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(u.matches('-').count(), 4);
        assert_ne!(u, uuid4());
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn spec(toml_text: &str) -> CheckSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn builds_checks_from_specs() {
        let env = env_of(&[
            ("REDIS_URL", "rediss://:pw@cache:6380/2?ssl_cert_reqs=none"),
            ("CELERY_FLOWER_USER", "u"),
            ("CELERY_FLOWER_PASSWORD", "p"),
        ]);
        let http = Check::from_spec(
            &spec("kind = \"http\""),
            Some("https://antenna.example/"),
            &env,
        )
        .unwrap();
        assert_eq!(http.target(), "https://antenna.example/api/v2/");
        assert_eq!(http.timeout(), Duration::from_secs(120));
        let redis = Check::from_spec(
            &spec("kind = \"redis\"\nurl_env = \"REDIS_URL\"\ntimeout = \"5s\""),
            None,
            &env,
        )
        .unwrap();
        assert_eq!(
            redis.target(),
            "rediss://:***@cache:6380/2?ssl_cert_reqs=none"
        );
        assert_eq!(redis.timeout(), Duration::from_secs(5));
        let flower = Check::from_spec(
            &spec("kind = \"flower\""),
            Some("http://env.example.com"),
            &env,
        )
        .unwrap();
        assert_eq!(
            flower.target(),
            "http://u:***@env.example.com:5555/api/workers"
        );
    }

    #[test]
    fn missing_variable_names_it() {
        let env = env_of(&[]);
        let err = Check::from_spec(
            &spec("kind = \"celery\"\nbroker_url_env = \"CELERY_BROKER_URL\""),
            None,
            &env,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("environment variable CELERY_BROKER_URL, which is not set"),
            "{msg}"
        );
    }

    #[test]
    fn http_check_without_any_url_says_where_to_set_one() {
        let err = Check::from_spec(&spec("kind = \"http\""), None, &env_of(&[])).unwrap_err();
        assert!(
            format!("{err:#}").contains("DEPLOY_URL, or pass --url"),
            "{err:#}"
        );
    }
}
