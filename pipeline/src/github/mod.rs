//! GitHub's REST API through octocrab's typed endpoints: the pull-request preview comment
//! (issue comments, paged with octocrab's `Page`) and deployments with their statuses.
//!
//! The base URL is configurable (GitHub Enterprise, and how tests reach a fake server); the
//! token is a [`SecretString`] that is never printed. Every request goes through
//! [`crate::retry`]: exponential backoff on 5xx answers and transport errors, and the wait GitHub
//! asks for on rate limits (`retry-after`, else `x-ratelimit-reset`), decided on the status and
//! headers octocrab hands back, never on message text. 401, 403 and 404 become typed errors that
//! say what to fix. octocrab's own retry layer is not compiled in (one retry policy, ours).

pub mod actions;
mod comments;
mod deployments;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octocrab::Octocrab;
use secrecy::ExposeSecret;
pub use secrecy::{self, SecretString};

use crate::retry::{backoff, Retryable};

pub use comments::{Comment, Upserted, COMMENT_LIMIT};
pub use deployments::{DeploymentState, DeploymentTracker, NewDeployment, StatusDetails};

/// GitHub's public API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Where and as whom to talk to GitHub.
#[derive(Clone)]
pub struct GitHubSettings {
    /// Base URL of the REST API (`GITHUB_API_URL`).
    pub api_url: String,
    /// `owner/name` (`GITHUB_REPOSITORY`).
    pub repository: String,
    /// `GITHUB_TOKEN`.
    pub token: SecretString,
    pub retry: RetryPolicy,
}

impl fmt::Debug for GitHubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubSettings")
            .field("api_url", &self.api_url)
            .field("repository", &self.repository)
            .field("token", &"***")
            .finish()
    }
}

impl GitHubSettings {
    /// Settings from the variables GitHub Actions sets (`GITHUB_TOKEN`, `GITHUB_REPOSITORY`,
    /// `GITHUB_API_URL`); `None` without a token, which means "no GitHub calls".
    pub fn from_env() -> Result<Option<Self>, GitHubError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let Some(token) = var("GITHUB_TOKEN") else {
            return Ok(None);
        };
        let repository = var("GITHUB_REPOSITORY").ok_or_else(|| GitHubError::Config {
            message: "GITHUB_TOKEN is set but GITHUB_REPOSITORY is not: set it to `owner/name`"
                .into(),
        })?;
        Ok(Some(Self {
            api_url: var("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.into()),
            repository,
            token: SecretString::from(token),
            retry: RetryPolicy::default(),
        }))
    }
}

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// First backoff after a 5xx or a transport error; doubled each time, with jitter.
    pub base_delay: Duration,
    /// The longest single wait; a rate limit that resets later fails at once instead.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_wait: Duration::from_secs(120),
        }
    }
}

/// A failed GitHub call: what was attempted, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("invalid GitHub settings: {message}")]
    Config { message: String },
    #[error("GitHub rejected the token (401) when trying to {action} ({url}): {message}; set GITHUB_TOKEN to a valid, unexpired token")]
    Unauthorized {
        action: String,
        url: String,
        message: String,
    },
    #[error("GitHub denied permission (403) to {action} ({url}): {message}; the token needs `{permission}` (in a workflow: `permissions: {permission}` on the job; a pull request from a fork only gets a read-only token)")]
    Forbidden {
        action: String,
        url: String,
        message: String,
        permission: String,
    },
    #[error("GitHub found nothing (404) when trying to {action} ({url}): {message}; check the repository `{repository}`, the number or id, and that the token can see the repository")]
    NotFound {
        action: String,
        url: String,
        message: String,
        repository: String,
    },
    #[error("GitHub rate limit when trying to {action} ({url}) after {attempts} attempt(s){}: {message}; wait, then re-run", wait.map(|w| format!(", the limit resets in {}s", w.as_secs())).unwrap_or_default())]
    RateLimited {
        action: String,
        url: String,
        attempts: u32,
        wait: Option<Duration>,
        message: String,
    },
    #[error("GitHub answered {status} when trying to {action} ({url}) after {attempts} attempt(s): {message}")]
    Status {
        action: String,
        url: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("cannot reach GitHub at {url} to {action} after {attempts} attempt(s): {source}")]
    Transport {
        action: String,
        url: String,
        attempts: u32,
        source: Box<octocrab::Error>,
    },
    #[error("unexpected answer from GitHub when trying to {action} ({url}): {detail}")]
    Unexpected {
        action: String,
        url: String,
        detail: String,
    },
}

impl GitHubError {
    /// The HTTP status GitHub answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Unauthorized { .. } => Some(401),
            GitHubError::Forbidden { .. } => Some(403),
            GitHubError::NotFound { .. } => Some(404),
            GitHubError::RateLimited { .. } => Some(429),
            GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one repository.
#[derive(Clone)]
pub struct GitHub {
    octo: Octocrab,
    api_url: String,
    owner: String,
    name: String,
    retry: RetryPolicy,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.api_url)
            .field("repository", &self.repository())
            .finish()
    }
}

/// One call, as its messages name it.
struct Call<'a> {
    /// What was attempted ("comment on pull request #7").
    action: String,
    /// The URL, for the error message.
    url: String,
    /// The token permission a 403 asks for.
    permission: &'a str,
}

/// What an octocrab error means for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No answer (connection, timeout, body cut): worth another try.
    Transport,
    /// 429, or a 403 with `retry-after` or `x-ratelimit-remaining: 0`: wait that long.
    RateLimited(Duration),
    /// 5xx: back off and try again.
    Server,
    /// Anything else: the same request would fail the same way.
    Final,
}

/// GitHub's answer, when the error is one.
fn answer(e: &octocrab::Error) -> Option<&octocrab::GitHubError> {
    match e {
        octocrab::Error::GitHub { source, .. } => Some(source),
        _ => None,
    }
}

fn kind(e: &octocrab::Error, max_wait: Duration) -> Kind {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let header = |name: &str| {
                source
                    .headers
                    .as_ref()?
                    .get(name)?
                    .to_str()
                    .ok()
                    .map(str::trim)
            };
            let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
            let exhausted = header("x-ratelimit-remaining") == Some("0");
            if status == 429 || (status == 403 && (retry_after.is_some() || exhausted)) {
                let wait = retry_after
                    .map(Duration::from_secs)
                    .or_else(|| {
                        let reset = source.rate_limit_reset?;
                        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
                        Some(Duration::from_secs(reset.saturating_sub(now) + 1))
                    })
                    .unwrap_or_else(|| Duration::from_secs(60).min(max_wait));
                Kind::RateLimited(wait)
            } else if source.status_code.is_server_error() {
                Kind::Server
            } else {
                Kind::Final
            }
        }
        octocrab::Error::Service { .. } | octocrab::Error::Hyper { .. } => Kind::Transport,
        _ => Kind::Final,
    }
}

impl GitHub {
    /// A client for `settings.repository` at `settings.api_url`. Call it inside a Tokio runtime.
    pub fn new(settings: &GitHubSettings) -> Result<Self, GitHubError> {
        let (owner, name) = settings
            .repository
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| GitHubError::Config {
                message: format!(
                    "repository {:?} is not `owner/name` (GITHUB_REPOSITORY)",
                    settings.repository
                ),
            })?;
        let api_url = settings.api_url.trim_end_matches('/').to_string();
        url::Url::parse(&api_url).map_err(|e| GitHubError::Config {
            message: format!("GitHub API URL {api_url:?} is not a URL ({e}): set GITHUB_API_URL to e.g. {DEFAULT_API_URL}"),
        })?;
        let octo = Octocrab::builder()
            .base_uri(api_url.as_str())
            .map_err(|e| GitHubError::Config {
                message: format!("GitHub API URL {api_url:?} is not usable: {e}"),
            })?
            .personal_token(settings.token.expose_secret().to_string())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(60)))
            .build()
            .map_err(|e| GitHubError::Config {
                message: format!("cannot build the GitHub client: {e}"),
            })?;
        Ok(Self {
            octo,
            api_url,
            owner: owner.to_string(),
            name: name.to_string(),
            retry: settings.retry,
        })
    }

    /// `owner/name`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// `/repos/OWNER/NAME{path}`, the route of a repository's endpoint.
    fn repo_route(&self, path: &str) -> String {
        format!("/repos/{}/{}{path}", self.owner, self.name)
    }

    /// Absolute URL of `path` under the repository, for messages.
    fn repo_url(&self, path: &str) -> String {
        format!("{}{}", self.api_url, self.repo_route(path))
    }

    /// Runs `op` (one octocrab request) with the project's retry policy
    /// ([`crate::retry::backoff`]): transport errors and 5xx back off, rate limits wait as long
    /// as GitHub says (or fail at once when that is longer than the policy's `max_wait`), and
    /// anything else fails at once. The error names the call and what to do.
    async fn call<T, F, Fut>(&self, call: &Call<'_>, op: F) -> Result<T, GitHubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, octocrab::Error>>,
    {
        let max_wait = self.retry.max_wait;
        let retries = AtomicU32::new(0);
        tracing::debug!("GitHub: {} ({})", call.action, call.url);
        let result = op
            .retry(backoff(
                self.retry.attempts,
                self.retry.base_delay,
                max_wait,
            ))
            .when(|e| match kind(e, max_wait) {
                Kind::RateLimited(wait) => wait <= max_wait,
                Kind::Transport | Kind::Server => true,
                Kind::Final => false,
            })
            .adjust(|e, next| match kind(e, max_wait) {
                // The policy's attempts still count: no next backoff, no retry.
                Kind::RateLimited(wait) => next.map(|_| wait),
                _ => next,
            })
            .notify(|e, wait| {
                retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "GitHub: cannot {} ({}): {}; retrying in {:.1}s",
                    call.action,
                    call.url,
                    short(e),
                    wait.as_secs_f64()
                );
            })
            .await;
        let attempts = retries.load(Ordering::Relaxed) + 1;
        result.map_err(|e| self.error(call, e, attempts))
    }

    /// The typed error for `e`, the last failure of `call` after `attempts` tries.
    fn error(&self, call: &Call<'_>, e: octocrab::Error, attempts: u32) -> GitHubError {
        let (action, url) = (call.action.clone(), call.url.clone());
        let kind = kind(&e, self.retry.max_wait);
        let Some(answer) = answer(&e) else {
            return match kind {
                Kind::Transport => GitHubError::Transport {
                    action,
                    url,
                    attempts,
                    source: Box::new(e),
                },
                _ => GitHubError::Unexpected {
                    action,
                    url,
                    detail: short(&e),
                },
            };
        };
        let message = error_message(&answer.message, answer.errors.as_deref());
        match (answer.status_code.as_u16(), kind) {
            (401, _) => GitHubError::Unauthorized {
                action,
                url,
                message,
            },
            (404, _) => GitHubError::NotFound {
                action,
                url,
                message,
                repository: self.repository(),
            },
            (_, Kind::RateLimited(wait)) => GitHubError::RateLimited {
                action,
                url,
                attempts,
                wait: (wait > self.retry.max_wait).then_some(wait),
                message,
            },
            (403, _) => GitHubError::Forbidden {
                action,
                url,
                message,
                permission: call.permission.to_string(),
            },
            (status, _) => GitHubError::Status {
                action,
                url,
                status,
                attempts,
                message,
            },
        }
    }
}

/// An octocrab error in one line: GitHub's message, or the error without its backtrace.
fn short(e: &octocrab::Error) -> String {
    match answer(e) {
        Some(a) => format!("HTTP {}: {}", a.status_code.as_u16(), excerpt(&a.message)),
        None => match e {
            octocrab::Error::Json { source, .. } => {
                format!(
                    "cannot read the JSON answer at {}: {}",
                    source.path(),
                    source.inner()
                )
            }
            other => excerpt(&other.to_string()),
        },
    }
}

/// GitHub's `message`, with the messages of its `errors` list, cut to a readable length.
fn error_message(message: &str, errors: Option<&[serde_json::Value]>) -> String {
    let message = excerpt(message);
    match errors.filter(|e| !e.is_empty()) {
        None => message,
        Some(errors) => {
            let details: Vec<String> = errors
                .iter()
                .map(|e| match e.get("message").and_then(|m| m.as_str()) {
                    Some(m) => m.to_string(),
                    None => e.to_string(),
                })
                .collect();
            format!("{message} ({})", details.join("; "))
        }
    }
}

fn excerpt(body: &str) -> String {
    let t: String = body.trim().chars().take(200).collect();
    if t.len() < body.trim().len() {
        format!("{t}…")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_the_body() {
        assert_eq!(
            error_message(
                "Validation Failed",
                Some(&[serde_json::json!({"message": "ref not found"})])
            ),
            "Validation Failed (ref not found)"
        );
        assert_eq!(
            error_message(
                "Validation Failed",
                Some(&[serde_json::json!({"code": "x"})])
            ),
            r#"Validation Failed ({"code":"x"})"#
        );
        assert_eq!(error_message("  Bad Gateway\n", None), "Bad Gateway");
        let long = "x".repeat(300);
        assert_eq!(
            error_message(&long, Some(&[])),
            format!("{}…", "x".repeat(200))
        );
    }

    #[tokio::test]
    async fn settings_never_show_the_token() {
        let s = GitHubSettings {
            api_url: DEFAULT_API_URL.into(),
            repository: "o/r".into(),
            token: SecretString::from("ghp_secret".to_string()),
            retry: RetryPolicy::default(),
        };
        assert!(!format!("{s:?}").contains("ghp_secret"));
        let gh = GitHub::new(&s).unwrap();
        assert!(!format!("{gh:?}").contains("ghp_secret"));
        let bad = GitHubSettings {
            repository: "just-a-name".into(),
            ..s
        };
        let err = GitHub::new(&bad).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid GitHub settings: repository \"just-a-name\" is not `owner/name` (GITHUB_REPOSITORY)"
        );
    }
}
