//! The HTTP check: GET the API root, expect a status (200) and a JSON body.
//!
//! Redirects are not followed: behind EB's load balancer, Django's SSL redirect answers
//! 301 to every request without `X-Forwarded-Proto: https`, which would otherwise look healthy.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::Attempt;

#[derive(Debug, Clone)]
pub struct HttpCheck {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub expect_status: u16,
    pub timeout: Duration,
    pub required: bool,
    client: reqwest::Client,
}

/// The longest a single attempt waits for an answer (the check retries until its timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

impl HttpCheck {
    pub fn new(
        url: &str,
        headers: BTreeMap<String, String>,
        expect_status: u16,
        timeout: Duration,
        required: bool,
    ) -> Result<Self> {
        let parsed = url::Url::parse(url)
            .with_context(|| format!("invalid check URL {}", super::mask_url(url)))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "invalid check URL {}: expected http:// or https://",
            super::mask_url(url)
        );
        let mut map = HeaderMap::new();
        for (k, v) in &headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .with_context(|| format!("invalid header name {k:?} in the http check"))?;
            let value = HeaderValue::from_str(v)
                .with_context(|| format!("invalid value for header {k:?} in the http check"))?;
            map.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(map)
            .user_agent(concat!(
                "antenna-pipeline-verify/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            url: url.to_string(),
            headers,
            expect_status,
            timeout,
            required,
            client,
        })
    }

    pub fn target(&self) -> String {
        super::mask_url(&self.url)
    }

    pub(crate) async fn attempt(&self, left: Duration) -> Attempt {
        let per_attempt = ATTEMPT_TIMEOUT.min(left);
        let response = match self.client.get(&self.url).timeout(per_attempt).send().await {
            Ok(r) => r,
            Err(e) => {
                let cut_short = e.is_timeout() && per_attempt < ATTEMPT_TIMEOUT;
                return request_error(&e, &self.url, per_attempt)
                    .await
                    .cut_short(cut_short);
            }
        };
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(super::mask_url);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::fail(format!("HTTP {status}, but reading the body failed: {e}"))
            }
        };
        if status.as_u16() != self.expect_status {
            return self.wrong_status(status, location.as_deref(), &body);
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(map)) => {
                let keys: Vec<&str> = map.keys().map(String::as_str).take(5).collect();
                let more = if map.len() > keys.len() { ", …" } else { "" };
                Attempt::pass(format!("HTTP {}, JSON object with {} keys ({}{more})", status.as_u16(), map.len(), keys.join(", ")))
            }
            Ok(other) => Attempt::pass(format!("HTTP {}, JSON {}", status.as_u16(), json_kind(&other))),
            Err(_) => Attempt::fail(format!(
                "HTTP {}, but the body is not JSON (content-type {:?}, starts with {:?}): is something other than Django answering (a proxy, the platform's default page)?",
                status.as_u16(),
                content_type,
                snippet(&body)
            )),
        }
    }

    fn wrong_status(
        &self,
        status: reqwest::StatusCode,
        location: Option<&str>,
        body: &[u8],
    ) -> Attempt {
        let code = status.as_u16();
        let got = format!("HTTP {status} (expected {})", self.expect_status);
        match code {
            301 | 302 | 307 | 308 => {
                let to = location.map(|l| format!(" to {l}")).unwrap_or_default();
                let https = location.is_some_and(|l| l.starts_with("https://"));
                let hint = if https && !self.has_forwarded_proto() {
                    "Django's SECURE_SSL_REDIRECT sends plain-HTTP requests to https: add headers = { \"X-Forwarded-Proto\" = \"https\" } to the http check (the load balancer sets it), or turn the setting off"
                } else {
                    "redirects are not followed: point the check at the final URL, or, for Django's SSL redirect, send X-Forwarded-Proto: https (headers in the check) or turn SECURE_SSL_REDIRECT off"
                };
                Attempt::fail_for_good(format!("{got}, redirect{to}; hint: {hint}"))
            }
            400 => Attempt::fail_for_good(format!(
                "{got}: Django rejects the Host header {:?} (DisallowedHost); hint: add it to DJANGO_ALLOWED_HOSTS, or send an allowed Host with headers = {{ \"Host\" = \"…\" }} in the check",
                self.host_sent()
            )),
            401 | 403 => Attempt::fail_for_good(format!("{got}: the API root should answer anonymous requests; body starts with {:?}", snippet(body))),
            404 => Attempt::fail_for_good(format!("{got}: no such path; check `path` of the http check (Antenna's API root is /api/v2/)")),
            500..=599 => Attempt::fail(format!("{got}: the application or the proxy in front of it is failing; body starts with {:?}", snippet(body))),
            _ => Attempt::fail(format!("{got}; body starts with {:?}", snippet(body))),
        }
    }

    fn has_forwarded_proto(&self) -> bool {
        self.headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("x-forwarded-proto"))
    }

    fn host_sent(&self) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone())
            .or_else(|| {
                url::Url::parse(&self.url)
                    .ok()
                    .and_then(|u| u.host_str().map(String::from))
            })
            .unwrap_or_default()
    }
}

async fn request_error(e: &reqwest::Error, url: &str, per_attempt: Duration) -> Attempt {
    let cause = root_cause(e);
    if e.is_connect() {
        Attempt::unreachable(format!(
            "cannot connect: {cause}; hint: is the environment up, and is the URL right (`url`, DEPLOY_URL or --url)?"
        ))
    } else if e.is_timeout() {
        // The request's deadline may end during the TCP connect (a host that drops packets):
        // try the port once more to tell "could not reach" from "reached, but no answer".
        let within = crate::output::human_duration(per_attempt);
        if tcp_reachable(url).await {
            Attempt::fail(format!(
                "connected, but no answer within {within}: the application is slow or stuck"
            ))
        } else {
            Attempt::unreachable(format!("cannot connect: no answer within {within}"))
        }
    } else {
        Attempt::unreachable(format!("request failed: {cause}"))
    }
}

/// Whether a TCP connection to `url`'s host and port opens within half a second.
async fn tcp_reachable(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let connect = tokio::net::TcpStream::connect((host, port));
    matches!(
        tokio::time::timeout(Duration::from_millis(500), connect).await,
        Ok(Ok(_))
    )
}

pub(super) fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Array(_) => "array",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Null => "null",
        serde_json::Value::Object(_) => "object",
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(60).collect()
}
