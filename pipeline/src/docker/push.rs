//! Pushing an image with explicit credentials, retrying what is worth retrying.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Result};
use bollard::auth::DockerCredentials;
use bollard::query_parameters::PushImageOptions;
use futures_util::StreamExt;

use crate::retry::Retryable;
use secrecy::{ExposeSecret, SecretString};

use super::{stream_error, Engine};
use crate::output::human_bytes;

/// Credentials for one registry. The password is a secret: never printed, never logged.
#[derive(Debug, Clone)]
pub struct RegistryAuth {
    /// `host[:port]`.
    pub registry: String,
    pub username: String,
    pub password: SecretString,
    /// Where they came from, for messages ("ECR GetAuthorizationToken").
    pub source: String,
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    pub digest: Option<String>,
    pub layers_pushed: u32,
    pub layers_existing: u32,
    pub bytes_sent: u64,
}

/// Retry policy for transient push failures.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// The backoff of [`crate::retry`]: `attempts` in all, the first retry after about `base`.
    pub fn backoff(&self) -> backon::ExponentialBuilder {
        crate::retry::backoff(self.attempts, self.base, self.base.saturating_mul(1 << 10))
    }
}

impl Engine {
    /// Pushes `repo:tag` with `auth`, retrying transient failures with jittered backoff.
    /// Authentication failures are not retried.
    pub async fn push(
        &self,
        repo: &str,
        tag: &str,
        auth: &RegistryAuth,
        retry: Retry,
    ) -> Result<Pushed> {
        let reference = format!("{repo}:{tag}");
        let once = move || async move { self.push_once(repo, tag, auth).await };
        let mut attempt = 0;
        let pushed = once
            .retry(retry.backoff())
            .when(|f| matches!(f, PushFailure::Transient(_)))
            .notify(|f, wait| {
                attempt += 1;
                tracing::warn!(
                    "pushing {reference} failed (attempt {attempt}/{}): {}; retrying in {}",
                    retry.attempts,
                    f.message(),
                    humantime::format_duration(Duration::from_millis(wait.as_millis() as u64))
                );
            })
            .await;
        match pushed {
            Ok(p) => Ok(p),
            Err(PushFailure::Auth(message)) => bail!(
                "the registry {} refused the credentials of user {:?} (from {}) for pushing {reference}: {message}\n  hint: check the AWS credentials and that they may push to this repository; the registry address comes from `registry`/DEPLOY_REGISTRY when set",
                auth.registry, auth.username, auth.source
            ),
            Err(PushFailure::Other(message)) => {
                bail!("pushing {reference} to {} failed: {message}", auth.registry)
            }
            Err(PushFailure::Transient(message)) => bail!(
                "pushing {reference} to {} failed after {} attempts: {message}\n  hint: check that the registry is up and reachable from the Docker Engine",
                auth.registry,
                attempt + 1
            ),
        }
    }

    async fn push_once(
        &self,
        repo: &str,
        tag: &str,
        auth: &RegistryAuth,
    ) -> Result<Pushed, PushFailure> {
        let credentials = DockerCredentials {
            username: Some(auth.username.clone()),
            password: Some(auth.password.expose_secret().to_string()),
            serveraddress: Some(auth.registry.clone()),
            ..Default::default()
        };
        let mut stream = self.docker.push_image(
            repo,
            Some(PushImageOptions {
                tag: Some(tag.to_string()),
                platform: None,
            }),
            Some(credentials),
        );
        let mut pushed = Pushed::default();
        // The engine's messages carry no layer id through bollard; uploads are told apart by
        // their size (`total`), which is what the progress lines show.
        let mut uploads: HashMap<i64, i64> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    self.account(&mut pushed, &uploads);
                    return Err(classify(&stream_error(&e)));
                }
            };
            let status = info.status.unwrap_or_default();
            let detail = info.progress_detail.unwrap_or_default();
            match status.as_str() {
                "Pushing" => {
                    if let (Some(cur), Some(total)) = (detail.current, detail.total) {
                        let e = uploads.entry(total).or_insert(0);
                        let before = *e * 4 / total.max(1);
                        *e = (*e).max(cur.min(total));
                        // One line per quarter of each layer, not one per engine message.
                        let now = *e * 4 / total.max(1);
                        if now > before {
                            tracing::info!(
                                "uploading a layer of {}: {} of {}",
                                human_bytes(total as u64),
                                human_bytes(*e as u64),
                                human_bytes(total as u64)
                            );
                        }
                    }
                }
                "Pushed" => {
                    pushed.layers_pushed += 1;
                    tracing::info!("layer pushed ({} of {repo}:{tag})", pushed.layers_pushed);
                }
                "Layer already exists" => {
                    pushed.layers_existing += 1;
                    tracing::info!("layer already in the registry");
                }
                s if s.starts_with("Mounted from ") => {
                    pushed.layers_existing += 1;
                    tracing::info!("layer {}", s.to_lowercase());
                }
                s if s.contains("digest: sha256:") => {
                    pushed.digest = s
                        .split_whitespace()
                        .find(|w| w.starts_with("sha256:"))
                        .map(str::to_string);
                    tracing::info!("{s}");
                }
                "" | "Preparing" | "Waiting" => {}
                s if s.starts_with("Retrying in") => {
                    tracing::warn!("the engine retries a layer upload: {s}")
                }
                s => tracing::debug!("push: {s}"),
            }
        }
        self.account(&mut pushed, &uploads);
        if pushed.digest.is_none() {
            return Err(PushFailure::Other(
                "the engine ended the push without a digest".into(),
            ));
        }
        Ok(pushed)
    }

    fn account(&self, pushed: &mut Pushed, uploads: &HashMap<i64, i64>) {
        pushed.bytes_sent = uploads.values().map(|v| *v as u64).sum();
    }
}

enum PushFailure {
    Auth(String),
    Transient(String),
    Other(String),
}

impl PushFailure {
    fn message(&self) -> &str {
        match self {
            PushFailure::Auth(m) | PushFailure::Transient(m) | PushFailure::Other(m) => m,
        }
    }
}

/// Sorts an engine push error: credentials refused, worth retrying, or final.
fn classify(message: &str) -> PushFailure {
    let m = message.to_ascii_lowercase();
    let auth = [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "401",
    ];
    let transient = [
        "connection refused",
        "connection reset",
        "broken pipe",
        "eof",
        "timeout",
        "timed out",
        "500 internal",
        "502",
        "503",
        "504",
        "internal server error",
        "bad gateway",
        "service unavailable",
        "tls handshake",
        "no such host",
    ];
    if auth.iter().any(|a| m.contains(a)) {
        PushFailure::Auth(message.to_string())
    } else if transient.iter().any(|t| m.contains(t)) {
        PushFailure::Transient(message.to_string())
    } else {
        PushFailure::Other(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_errors_are_sorted() {
        assert!(matches!(
            classify("unauthorized: authentication required"),
            PushFailure::Auth(_)
        ));
        assert!(matches!(
            classify("no basic auth credentials"),
            PushFailure::Auth(_)
        ));
        assert!(matches!(
            classify(
                "Get \"http://127.0.0.1:9/v2/\": dial tcp 127.0.0.1:9: connect: connection refused"
            ),
            PushFailure::Transient(_)
        ));
        assert!(matches!(
            classify("received unexpected HTTP status: 503 Service Unavailable"),
            PushFailure::Transient(_)
        ));
        assert!(matches!(
            classify("manifest invalid"),
            PushFailure::Other(_)
        ));
    }
}
