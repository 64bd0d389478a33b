//! GitHub's REST API over octocrab: the pull-request preview comment and deployment statuses.
//!
//! The base URL is configurable (GitHub Enterprise, and how tests reach a fake server); the
//! token is a [`SecretString`] that is never printed. Requests are retried with exponential
//! backoff on 5xx answers and transport errors, and after the wait GitHub asks for on rate
//! limits (`retry-after`, else `x-ratelimit-reset`). 401, 403 and 404 become typed errors that
//! say what to fix.

pub mod actions;
mod comments;
mod deployments;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octocrab::Octocrab;
use secrecy::ExposeSecret;
pub use secrecy::{self, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;

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

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        })
    }
}

/// A successful answer, read whole.
struct Reply {
    status: u16,
    link: Option<String>,
    body: String,
}

/// What to do with an answer that is not a success.
enum RetryDecision {
    Retry(Duration),
    /// Limited for longer than the policy waits.
    RateLimited(Duration),
    Fail,
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
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
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

    /// Absolute URL of `path` under the repository (`/repos/OWNER/NAME{path}`).
    fn repo_url(&self, path: &str) -> String {
        format!("{}/repos/{}/{}{path}", self.api_url, self.owner, self.name)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: &str,
        action: &str,
        permission: &str,
    ) -> Result<(T, Option<String>), GitHubError> {
        let reply = self
            .send(Method::Get, url, None::<&()>, action, permission)
            .await?;
        Ok((self.decode(&reply, url, action)?, reply.link))
    }

    async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: &B,
        action: &str,
        permission: &str,
    ) -> Result<(u16, T), GitHubError> {
        let reply = self
            .send(method, url, Some(body), action, permission)
            .await?;
        Ok((reply.status, self.decode(&reply, url, action)?))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        reply: &Reply,
        url: &str,
        action: &str,
    ) -> Result<T, GitHubError> {
        serde_json::from_str(&reply.body).map_err(|e| GitHubError::Unexpected {
            action: action.to_string(),
            url: url.to_string(),
            detail: format!("cannot read the JSON body ({e}): {}", excerpt(&reply.body)),
        })
    }

    /// Sends one request, retrying as the policy says; returns a 2xx answer or a typed error.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        url: &str,
        body: Option<&B>,
        action: &str,
        permission: &str,
    ) -> Result<Reply, GitHubError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::debug!("GitHub {method} {url} (attempt {attempt})");
            let sent = match method {
                Method::Get => self.octo._get(url).await,
                Method::Post => self.octo._post(url, body).await,
                Method::Patch => self.octo._patch(url, body).await,
            };
            let response = match sent {
                Ok(r) => r,
                Err(source) => {
                    if attempt < self.retry.attempts {
                        let wait = self.backoff(attempt);
                        tracing::warn!(
                            "cannot reach GitHub at {url} ({source}); retrying in {}ms",
                            wait.as_millis()
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(GitHubError::Transport {
                        action: action.into(),
                        url: url.into(),
                        attempts: attempt,
                        source: Box::new(source),
                    });
                }
            };
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let retry_after = header("retry-after");
            let remaining = header("x-ratelimit-remaining");
            let reset = header("x-ratelimit-reset");
            let link = header("link");
            let text = self.octo.body_to_string(response).await.map_err(|source| {
                GitHubError::Transport {
                    action: action.into(),
                    url: url.into(),
                    attempts: attempt,
                    source: Box::new(source),
                }
            })?;
            if (200..300).contains(&status) {
                return Ok(Reply {
                    status,
                    link,
                    body: text,
                });
            }
            let message = error_message(&text, status);
            let rate_limited = is_rate_limit(
                status,
                &message,
                remaining.as_deref(),
                retry_after.is_some(),
            );
            let verdict = self.verdict(
                status,
                rate_limited,
                retry_after.as_deref(),
                reset.as_deref(),
                attempt,
            );
            if let RetryDecision::Retry(wait) = verdict {
                if attempt < self.retry.attempts {
                    tracing::warn!(
                        "GitHub answered {status} to {method} {url} ({message}); retrying in {:.1}s",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            let (action, url) = (action.to_string(), url.to_string());
            return Err(match status {
                401 => GitHubError::Unauthorized {
                    action,
                    url,
                    message,
                },
                404 => GitHubError::NotFound {
                    action,
                    url,
                    message,
                    repository: self.repository(),
                },
                _ if rate_limited => GitHubError::RateLimited {
                    action,
                    url,
                    attempts: attempt,
                    wait: match verdict {
                        RetryDecision::RateLimited(wait) => Some(wait),
                        _ => None,
                    },
                    message,
                },
                403 => GitHubError::Forbidden {
                    action,
                    url,
                    message,
                    permission: permission.to_string(),
                },
                _ => GitHubError::Status {
                    action,
                    url,
                    status,
                    attempts: attempt,
                    message,
                },
            });
        }
    }

    fn verdict(
        &self,
        status: u16,
        rate_limited: bool,
        retry_after: Option<&str>,
        reset: Option<&str>,
        attempt: u32,
    ) -> RetryDecision {
        if rate_limited {
            let wait = retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .or_else(|| {
                    let reset = reset?.trim().parse::<u64>().ok()?;
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
                    Some(Duration::from_secs(reset.saturating_sub(now) + 1))
                })
                .unwrap_or_else(|| Duration::from_secs(60).min(self.retry.max_wait));
            if wait > self.retry.max_wait {
                return RetryDecision::RateLimited(wait);
            }
            return RetryDecision::Retry(wait);
        }
        if status >= 500 {
            return RetryDecision::Retry(self.backoff(attempt));
        }
        RetryDecision::Fail
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.retry.base_delay.as_millis() as u64;
        let exp = base.saturating_mul(1 << (attempt - 1).min(10));
        let jitter = fastrand::u64(0..=base / 2 + 1);
        Duration::from_millis(exp + jitter).min(self.retry.max_wait)
    }
}

/// Primary (`x-ratelimit-remaining: 0`) or secondary (`retry-after`, "secondary rate limit")
/// limits, and plain 429s.
fn is_rate_limit(
    status: u16,
    message: &str,
    remaining: Option<&str>,
    has_retry_after: bool,
) -> bool {
    status == 429
        || (status == 403
            && (has_retry_after
                || remaining.is_some_and(|r| r.trim() == "0")
                || message.to_ascii_lowercase().contains("rate limit")))
}

/// GitHub's `message` (and `errors`) from an error body, else the body's first characters.
fn error_message(body: &str, status: u16) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody {
            message: Some(m),
            errors,
        }) => {
            if errors.is_empty() {
                m
            } else {
                let details: Vec<String> = errors
                    .iter()
                    .map(|e| match e.get("message").and_then(|m| m.as_str()) {
                        Some(m) => m.to_string(),
                        None => e.to_string(),
                    })
                    .collect();
                format!("{m} ({})", details.join("; "))
            }
        }
        _ if body.trim().is_empty() => format!("HTTP {status} with an empty body"),
        _ => excerpt(body),
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

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found_among_others() {
        let link = r#"<https://api.github.com/repositories/1/issues/2/comments?page=1>; rel="prev", <https://api.github.com/repositories/1/issues/2/comments?page=3>; rel="next", <https://api.github.com/repositories/1/issues/2/comments?page=5>; rel="last""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/repositories/1/issues/2/comments?page=3")
        );
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="first""#), None);
    }

    #[test]
    fn error_messages_come_from_the_body() {
        assert_eq!(
            error_message(
                r#"{"message":"Validation Failed","errors":[{"message":"ref not found"}]}"#,
                422
            ),
            "Validation Failed (ref not found)"
        );
        assert_eq!(error_message("", 502), "HTTP 502 with an empty body");
        assert_eq!(
            error_message("<html>bad gateway</html>", 502),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn rate_limits_are_told_from_permission_errors() {
        assert!(is_rate_limit(429, "", None, false));
        assert!(is_rate_limit(
            403,
            "API rate limit exceeded for installation",
            None,
            false
        ));
        assert!(is_rate_limit(403, "x", Some("0"), false));
        assert!(is_rate_limit(
            403,
            "You have exceeded a secondary rate limit",
            None,
            true
        ));
        assert!(!is_rate_limit(
            403,
            "Resource not accessible by integration",
            Some("4999"),
            false
        ));
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
