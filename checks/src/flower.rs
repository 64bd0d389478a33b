//! The Flower check, for runners outside the VPC: Flower's worker API with basic auth,
//! with the same worker and queue expectations as the Celery check.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{pidbox, Attempt};

/// Flower's port in Antenna's Dockerrun (`5555 → 5555`).
pub const FLOWER_PORT: u16 = 5555;

/// The environment's base URL with Flower's port.
pub fn default_url(base: &str) -> Result<String> {
    let mut url = url::Url::parse(base)
        .with_context(|| format!("invalid environment URL {}", super::mask_url(base)))?;
    url.set_port(Some(FLOWER_PORT)).map_err(|()| {
        anyhow::anyhow!(
            "cannot set a port on the environment URL {}",
            super::mask_url(base)
        )
    })?;
    url.set_path("/");
    url.set_query(None);
    Ok(url.to_string())
}

/// Flower's basic-auth credentials, and where they came from (for hints).
#[derive(Debug, Clone)]
pub struct FlowerAuth {
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub user_env: String,
    pub password_env: String,
}

#[derive(Debug, Clone)]
pub struct FlowerCheck {
    /// Flower's base URL, without credentials.
    pub base: url::Url,
    pub auth: FlowerAuth,
    pub min_workers: usize,
    pub queues: Vec<String>,
    pub timeout: Duration,
    pub required: bool,
    client: reqwest::Client,
}

impl FlowerCheck {
    pub fn new(
        url: &str,
        mut auth: FlowerAuth,
        min_workers: usize,
        queues: Vec<String>,
        timeout: Duration,
        required: bool,
    ) -> Result<Self> {
        let mut base = url::Url::parse(url)
            .with_context(|| format!("invalid Flower URL {}", super::mask_url(url)))?;
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https"),
            "invalid Flower URL {}: expected http:// or https://",
            super::mask_url(url)
        );
        // Credentials written into the URL count when the variables are not set.
        if auth.user.is_none() && !base.username().is_empty() {
            auth.user = Some(base.username().to_string());
        }
        if auth.password.is_none() {
            auth.password = base.password().map(|p| SecretString::from(p.to_string()));
        }
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base,
            auth,
            min_workers,
            queues,
            timeout,
            required,
            client,
        })
    }

    /// `…/api/workers`, with the user and a masked password when basic auth is used.
    pub fn target(&self) -> String {
        let mut url = self.api_url();
        if let Some(user) = &self.auth.user {
            let _ = url.set_username(user);
            if self.auth.password.is_some() {
                let _ = url.set_password(Some("***"));
            }
        }
        url.to_string()
    }

    fn api_url(&self) -> url::Url {
        // Invariant: `base` was checked to be http(s) when it was read, and such a URL is
        // always a base that a relative path joins onto.
        self.base
            .join("api/workers")
            .expect("a relative path joins onto an http URL")
    }

    pub(crate) async fn attempt(&self, left: Duration) -> Attempt {
        // `status=1` says which workers are online (from their heartbeats, at once);
        // `refresh=1` makes Flower ask them live for their queues (it waits about 1 s, and
        // after a worker stops it may still return that worker's cached data).
        let until = crate::config::instant_after(left);
        let status = match self.get("status=1", left).await {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Attempt::fail(
                    "Flower's /api/workers did not answer a JSON object: is this Flower?",
                )
            }
            Err(a) => return a,
        };
        let online: Vec<&String> = status
            .iter()
            .filter(|(_, up)| up.as_bool() == Some(true))
            .map(|(w, _)| w)
            .collect();
        let offline: Vec<&str> = status
            .iter()
            .filter(|(_, up)| up.as_bool() != Some(true))
            .map(|(w, _)| w.as_str())
            .collect();
        let offline_note = if offline.is_empty() {
            String::new()
        } else {
            format!("; offline: {}", offline.join(", "))
        };
        if online.len() < self.min_workers {
            let names: Vec<&str> = online.iter().map(|w| w.as_str()).collect();
            let names = if names.is_empty() {
                String::new()
            } else {
                format!(": {}", names.join(", "))
            };
            return Attempt::fail(format!(
                "{} of at least {} worker(s) online{names}{offline_note}",
                online.len(),
                self.min_workers
            ));
        }
        if self.queues.is_empty() {
            let names: Vec<&str> = online.iter().map(|w| w.as_str()).collect();
            return Attempt::pass(format!(
                "{} online: {}{offline_note}",
                online.len(),
                names.join(", ")
            ));
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        let workers =
            match self.get("refresh=1", left).await {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Attempt::fail(
                    "Flower's /api/workers?refresh=1 did not answer a JSON object: is this Flower?",
                ),
                Err(a) => return a,
            };
        let queues_of = |w: &str| -> Vec<String> {
            workers
                .get(w)
                .and_then(|d| d.get("active_queues"))
                .map(pidbox::queue_names)
                .unwrap_or_default()
        };
        let who = online
            .iter()
            .map(|w| format!("{w} [{}]", queues_of(w).join(", ")))
            .collect::<Vec<_>>()
            .join(", ");
        let consumed: BTreeMap<&str, Vec<String>> =
            online.iter().map(|w| (w.as_str(), queues_of(w))).collect();
        let unconsumed = super::unconsumed(&self.queues, consumed.values().map(Vec::as_slice));
        if !unconsumed.is_empty() {
            return Attempt::fail(format!(
                "no online worker consumes {}: online: {who}{offline_note}; hint: start a worker with -Q {} (CELERY_QUEUES)",
                unconsumed.join(", "),
                self.queues.join(",")
            ));
        }
        Attempt::pass(format!("{} online: {who}{offline_note}", online.len()))
    }

    async fn get(&self, query: &str, left: Duration) -> Result<Value, Attempt> {
        let mut url = self.api_url();
        url.set_query(Some(query));
        let mut request = self
            .client
            .get(url)
            .timeout(left.max(Duration::from_millis(100)));
        if let Some(user) = &self.auth.user {
            request = request.basic_auth(
                user,
                self.auth
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_string()),
            );
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(Attempt::unreachable(format!(
                    "cannot connect to Flower: {}; hint: Flower listens on port {FLOWER_PORT} of the instance: is it open to this runner (security group)?",
                    super::http::root_cause(&e)
                )))
            }
            Err(e) if e.is_timeout() => {
                return Err(Attempt::fail(format!(
                    "connected to Flower, but /api/workers?{query} did not answer within {} (refresh=1 waits for every worker's reply)",
                    crate::output::human_duration(left)
                ))
                .cut_short(true))
            }
            Err(e) => return Err(Attempt::unreachable(format!("request to Flower failed: {}", super::http::root_cause(&e)))),
        };
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let hint = match (&self.auth.user, &self.auth.password) {
                (Some(_), Some(_)) => format!("the credentials from {} and {} were rejected: check them against Flower's --basic-auth", self.auth.user_env, self.auth.password_env),
                _ => format!("Flower wants basic auth: set {} and {}", self.auth.user_env, self.auth.password_env),
            };
            return Err(Attempt::fail_for_good(format!(
                "HTTP 401 Unauthorized; hint: {hint}"
            )));
        }
        if !status.is_success() {
            return Err(Attempt::fail(format!(
                "HTTP {status} from Flower's /api/workers"
            )));
        }
        response.json::<Value>().await.map_err(|e| {
            Attempt::fail(format!(
                "Flower's /api/workers answered something that is not JSON: {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user: Option<&str>, password: Option<&str>) -> FlowerAuth {
        FlowerAuth {
            user: user.map(String::from),
            password: password.map(|p| SecretString::from(p.to_string())),
            user_env: "CELERY_FLOWER_USER".into(),
            password_env: "CELERY_FLOWER_PASSWORD".into(),
        }
    }

    #[test]
    fn default_url_uses_flowers_port() {
        assert_eq!(
            default_url("https://antenna.example.org/app").unwrap(),
            "https://antenna.example.org:5555/"
        );
    }

    #[test]
    fn credentials_in_the_url_are_taken_out_and_masked() {
        let c = FlowerCheck::new(
            "http://admin:hunter2@h:5555/flower",
            auth(None, None),
            1,
            vec![],
            Duration::from_secs(1),
            true,
        )
        .unwrap();
        assert_eq!(c.base.as_str(), "http://h:5555/flower/");
        assert_eq!(c.auth.user.as_deref(), Some("admin"));
        assert_eq!(c.target(), "http://admin:***@h:5555/flower/api/workers");
        let c = FlowerCheck::new(
            "http://h:5555",
            auth(None, None),
            1,
            vec![],
            Duration::from_secs(1),
            true,
        )
        .unwrap();
        assert_eq!(c.target(), "http://h:5555/api/workers");
    }
}
