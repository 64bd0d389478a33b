//! The registry's HTTP API (OCI distribution): manifests and blobs, with basic auth or the
//! anonymous bearer-token exchange public registries use.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use crate::retry::Retryable;

/// Attempts per request when the registry fails transiently.
const ATTEMPTS: u32 = 3;

/// Manifest kinds we ask for, newest first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A failed registry call: which registry, which image or URL, and what to check.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot create the HTTP client")]
    Client(#[from] reqwest::Error),
    #[error(
        "the registry credentials or token for {url} hold characters an HTTP header cannot carry"
    )]
    BadHeader { url: String },
    #[error("cannot reach the registry at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the registry {host} refused access to {what} ({status}){who}")]
    Denied {
        host: String,
        what: String,
        status: StatusCode,
        /// " with the credentials of user …" or " without credentials"; never the password.
        who: String,
    },
    #[error("the registry {host} answered {status} for {what}")]
    Status {
        host: String,
        what: String,
        status: StatusCode,
    },
    #[error("the registry's bearer challenge has no realm")]
    NoRealm,
    #[error("cannot get a registry token from {realm}")]
    TokenUnreachable {
        realm: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the token service {realm} answered {status}")]
    TokenStatus { realm: String, status: StatusCode },
    #[error("unreadable token from {realm}")]
    TokenUnreadable {
        realm: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the token service {realm} returned no token")]
    NoToken { realm: String },
    #[error("cannot read the {what}")]
    Read {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("the {what} is not JSON")]
    NotJson {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{image} is not a single-platform image manifest ({media_type})")]
    NotSinglePlatform { image: String, media_type: String },
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Why one request did not get a usable answer.
enum SendFailure {
    /// A 5xx answer: retried, then the answer.
    Server(reqwest::Response),
    Transport(reqwest::Error),
    /// Not worth retrying.
    Final(RegistryError),
}

impl SendFailure {
    fn is_transient(&self) -> bool {
        match self {
            SendFailure::Server(_) => true,
            SendFailure::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            SendFailure::Final(_) => false,
        }
    }
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::Server(r) => write!(f, "HTTP {}", r.status()),
            SendFailure::Transport(e) => write!(f, "{e}"),
            SendFailure::Final(e) => write!(f, "{e}"),
        }
    }
}

/// A client for one registry host.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    host: String,
    base: String,
    credentials: Option<(String, SecretString)>,
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub body: String,
    pub media_type: String,
    pub digest: Option<String>,
}

impl Registry {
    /// A client for `host` (`host[:port]`): plain HTTP on loopback, HTTPS elsewhere.
    pub fn new(host: &str, credentials: Option<(String, SecretString)>) -> Result<Self> {
        let loopback =
            host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
        let api_host = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        let scheme = if loopback { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            host: host.to_string(),
            base: format!("{scheme}://{api_host}"),
            credentials,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends a GET or HEAD to `path`; on a 401 answers the challenge (basic with our
    /// credentials, or a bearer token from the realm) and sends it again.
    async fn send(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let request = |auth: Option<String>| {
            let mut r = self.http.request(method.clone(), &url);
            if let Some(a) = accept {
                r = r.header(ACCEPT, a);
            }
            if let Some(a) = auth {
                // A token service may answer with anything; a token that is no header value
                // is an error, never a panic.
                let mut v = reqwest::header::HeaderValue::from_str(&a)
                    .map_err(|_| RegistryError::BadHeader { url: url.clone() })?;
                v.set_sensitive(true);
                r = r.header(reqwest::header::AUTHORIZATION, v);
            }
            Ok::<_, RegistryError>(r)
        };
        let basic = self.credentials.as_ref().map(|(u, p)| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{u}:{}", p.expose_secret()))
            )
        });
        // Connection failures and 5xx answers are retried with jittered backoff; when the
        // attempts run out, the last 5xx answer is the answer.
        let (request_ref, basic_ref) = (&request, &basic);
        let once = move || async move {
            match request_ref(basic_ref.clone())
                .map_err(SendFailure::Final)?
                .send()
                .await
            {
                Ok(r) if r.status().is_server_error() => Err(SendFailure::Server(r)),
                Ok(r) => Ok(r),
                Err(e) => Err(SendFailure::Transport(e)),
            }
        };
        let first = match once
            .retry(crate::retry::backoff(
                ATTEMPTS,
                Duration::from_millis(200),
                Duration::from_secs(2),
            ))
            .when(SendFailure::is_transient)
            .notify(|f, wait| tracing::debug!("{method} {url} failed ({f}); retrying in {wait:?}"))
            .await
        {
            Ok(r) | Err(SendFailure::Server(r)) => r,
            Err(SendFailure::Transport(source)) => {
                return Err(RegistryError::Unreachable { url, source })
            }
            Err(SendFailure::Final(e)) => return Err(e),
        };
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let challenge = first
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if let Some(params) = challenge.strip_prefix("Bearer ") {
            let token = self.bearer_token(params, basic).await?;
            return request(Some(format!("Bearer {}", token.expose_secret())))?
                .send()
                .await
                .map_err(|source| RegistryError::Unreachable { url, source });
        }
        Ok(first)
    }

    async fn bearer_token(&self, params: &str, basic: Option<String>) -> Result<SecretString> {
        let mut realm = None;
        let mut query = Vec::new();
        for part in split_params(params) {
            if let Some((k, v)) = part.split_once('=') {
                let v = v.trim_matches('"').to_string();
                match k.trim() {
                    "realm" => realm = Some(v),
                    k @ ("service" | "scope") => query.push((k.to_string(), v)),
                    _ => {}
                }
            }
        }
        let realm = realm.ok_or(RegistryError::NoRealm)?;
        let mut r = self.http.get(&realm).query(&query);
        if let Some(b) = basic {
            r = r.header(reqwest::header::AUTHORIZATION, b);
        }
        let resp = match r.send().await {
            Ok(resp) => resp,
            Err(source) => return Err(RegistryError::TokenUnreachable { realm, source }),
        };
        if !resp.status().is_success() {
            return Err(RegistryError::TokenStatus {
                realm,
                status: resp.status(),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = match resp.json().await {
            Ok(t) => t,
            Err(source) => return Err(RegistryError::TokenUnreadable { realm, source }),
        };
        t.token
            .or(t.access_token)
            .map(SecretString::from)
            .ok_or(RegistryError::NoToken { realm })
    }

    /// The answer to `method` on the manifest of `repository:reference`: `None` on a 404, an
    /// error when the registry refuses or fails.
    async fn manifest_answer(
        &self,
        method: Method,
        repository: &str,
        reference: &str,
    ) -> Result<Option<reqwest::Response>> {
        let resp = self
            .send(
                method,
                &format!("/v2/{repository}/manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.check(resp, &format!("{repository}:{reference}"))
            .map(Some)
    }

    /// True when `repository:reference` exists (HEAD on the manifest).
    pub async fn manifest_exists(&self, repository: &str, reference: &str) -> Result<bool> {
        Ok(self
            .manifest_answer(Method::HEAD, repository, reference)
            .await?
            .is_some())
    }

    /// The manifest of `repository:reference`, or `None` when it does not exist.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<Option<Manifest>> {
        let Some(resp) = self
            .manifest_answer(Method::GET, repository, reference)
            .await?
        else {
            return Ok(None);
        };
        let headers: HeaderMap = resp.headers().clone();
        let header = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let body = resp.text().await.map_err(|source| RegistryError::Read {
            what: "manifest",
            source,
        })?;
        let media_type = header("content-type")
            .or_else(|| {
                serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            })
            .unwrap_or_default();
        Ok(Some(Manifest {
            body,
            media_type,
            digest: header("docker-content-digest"),
        }))
    }

    /// The blob `digest` of `repository`, whole (configs are small).
    pub async fn blob(&self, repository: &str, digest: &str) -> Result<Vec<u8>> {
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{repository}/blobs/{digest}"),
                None,
            )
            .await?;
        let resp = self.check(resp, &format!("{repository}@{digest}"))?;
        let bytes = resp.bytes().await.map_err(|source| RegistryError::Read {
            what: "blob",
            source,
        })?;
        Ok(bytes.to_vec())
    }

    /// The labels of the image `repository:reference` (from its config blob), or `None`
    /// when the registry does not have it.
    pub async fn labels(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let Some(m) = self.manifest(repository, reference).await? else {
            return Ok(None);
        };
        let v: serde_json::Value =
            serde_json::from_str(&m.body).map_err(|source| RegistryError::NotJson {
                what: "manifest",
                source,
            })?;
        let Some(config) = v["config"]["digest"].as_str() else {
            return Err(RegistryError::NotSinglePlatform {
                image: format!("{repository}:{reference}"),
                media_type: m.media_type,
            });
        };
        let config: serde_json::Value =
            serde_json::from_slice(&self.blob(repository, config).await?).map_err(|source| {
                RegistryError::NotJson {
                    what: "image config",
                    source,
                }
            })?;
        Ok(Some(
            config["config"]["Labels"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ))
    }

    fn check(&self, resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
        let (host, what) = (self.host.clone(), what.to_string());
        match resp.status() {
            s if s.is_success() => Ok(resp),
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                Err(RegistryError::Denied {
                    host,
                    what,
                    status,
                    who: self.who(),
                })
            }
            status => Err(RegistryError::Status { host, what, status }),
        }
    }

    fn who(&self) -> String {
        match &self.credentials {
            Some((u, _)) => format!(" with the credentials of user {u:?}"),
            None => " without credentials".to_string(),
        }
    }
}

/// Splits `a="x,y",b="z"` at the commas outside quotes.
fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_params_split_outside_quotes() {
        let p = split_params(
            r#"realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p.len(), 3);
        assert_eq!(p[2], r#"scope="repository:a/b:pull,push""#);
    }

    /// A one-shot HTTP server on loopback answering each connection with the next status.
    async fn serve(statuses: Vec<u16>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            for status in statuses {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        (host, seen)
    }

    /// The error of asking `r` whether `a/b:v1` exists, as the user reads it.
    async fn manifest_error(r: &Registry) -> String {
        r.manifest_exists("a/b", "v1")
            .await
            .unwrap_err()
            .to_string()
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_the_answer_counts() {
        let (host, seen) = serve(vec![503, 502, 404]).await;
        let r = Registry::new(&host, None).unwrap();
        assert!(!r.manifest_exists("a/b", "v1").await.unwrap());
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);

        let (host, seen) = serve(vec![503, 503, 503, 200]).await;
        let r = Registry::new(&host, None).unwrap();
        let err = manifest_error(&r).await;
        assert_eq!(
            err,
            format!("the registry {host} answered 503 Service Unavailable for a/b:v1")
        );
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "three attempts, no more"
        );
    }

    #[tokio::test]
    async fn refused_credentials_name_the_user_not_the_password() {
        let (host, _) = serve(vec![401, 401]).await;
        let r = Registry::new(
            &host,
            Some(("AWS".into(), SecretString::from("s3cret".to_string()))),
        )
        .unwrap();
        let err = manifest_error(&r).await;
        assert_eq!(
            err,
            format!("the registry {host} refused access to a/b:v1 (401 Unauthorized) with the credentials of user \"AWS\"")
        );
    }
}
