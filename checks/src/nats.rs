//! The NATS check: connect (`nats://` or `tls://`, with a user and password, a token or a
//! credentials file), report the server's version and whether JetStream is on, and that the
//! configured streams exist, with their consumers (Antenna's ML job queues).

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};

use super::broker_url::{Endpoint, Prelude, Syntax};
use super::tls::{self, CertReqs};
use super::{Attempt, UrlError};

const SYNTAX: Syntax = Syntax {
    schemes: &[("nats", false), ("tls", true)],
    expected_schemes: "nats:// or tls://",
    form: "nats://HOST:4222 or tls://HOST:4222",
    host_form: "nats://HOST:4222",
};

/// A parsed NATS URL: `nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT]` or `tls://…`.
#[derive(Debug, Clone)]
pub struct NatsUrl {
    /// Host, port and TLS (`tls://`; verified unless [`NatsUrl::with_tls_options`] says not).
    pub endpoint: Endpoint,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// A user name without a password is a token, as NATS clients read it.
    pub token: Option<SecretString>,
}

impl NatsUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        // A token sits where a user name would: mask it as a password.
        let masked = match url::Url::parse(text) {
            Ok(mut u) if !u.username().is_empty() && u.password().is_none() => {
                let _ = u.set_username("***");
                u.to_string()
            }
            _ => super::mask_url(text),
        };
        let p = Prelude::parse(text, masked, &SYNTAX)?;
        let url = &p.url;
        let name = tls::percent_decode(url.username());
        let (user, password, token) = match url.password() {
            Some(pw) => (
                Some(name),
                Some(SecretString::from(tls::percent_decode(pw))),
                None,
            ),
            None if !name.is_empty() => (None, None, Some(SecretString::from(name))),
            None => (None, None, None),
        };
        Ok(Self {
            endpoint: p.endpoint_with(url.port().unwrap_or(4222), CertReqs::Required, None),
            user,
            password,
            token,
        })
    }

    /// The URL with the check's TLS options: a NATS URL carries none in its query.
    pub fn with_tls_options(mut self, verify_certificate: bool, ca_file: Option<PathBuf>) -> Self {
        if !verify_certificate {
            self.endpoint.tls = self.endpoint.tls.map(|_| CertReqs::None);
        }
        self.endpoint.ca_file = ca_file;
        self
    }

    /// The address without credentials (they go in the connect options).
    fn server(&self) -> String {
        let scheme = if self.endpoint.tls.is_some() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://{}", self.endpoint.addr())
    }
}

/// Connect to NATS; report version and JetStream; check the named streams.
#[derive(Debug, Clone)]
pub struct NatsCheck {
    pub url: NatsUrl,
    /// A credentials file (JWT and NKey seed), as `nsc` writes it.
    pub creds_file: Option<PathBuf>,
    /// Fail when JetStream is off.
    pub jetstream: bool,
    /// Streams that must exist (JetStream required then).
    pub streams: Vec<String>,
    pub timeout: Duration,
    pub required: bool,
}

impl NatsCheck {
    pub(crate) async fn attempt(&self, left: Duration) -> Attempt {
        let client = match self.connect(left).await {
            Ok(c) => c,
            Err(a) => return a,
        };
        let info = client.server_info();
        let mut detail = format!(
            "NATS {} ({}), JetStream {}",
            info.version,
            info.server_name,
            if info.jetstream { "on" } else { "off" }
        );
        let needs_jetstream = self.jetstream || !self.streams.is_empty();
        if !info.jetstream {
            if needs_jetstream {
                let what = if self.streams.is_empty() {
                    "JetStream is required".to_string()
                } else {
                    format!("streams {} are required", self.streams.join(", "))
                };
                return Attempt::fail_for_good(format!("{detail}, but {what}; hint: start nats-server with JetStream on (-js, or a jetstream {{}} block in its configuration)"));
            }
            return Attempt::pass(detail);
        }
        let js = jetstream::new(client);
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for name in &self.streams {
            match js.get_stream(name).await {
                Ok(stream) => {
                    let mut consumers: Vec<String> = Vec::new();
                    let mut names = stream.consumer_names();
                    while let Some(c) = names.next().await {
                        match c {
                            Ok(c) => consumers.push(c),
                            Err(e) => {
                                return Attempt::fail(format!(
                                    "{detail}; cannot list the consumers of stream {name}: {e}"
                                ))
                            }
                        }
                    }
                    consumers.sort();
                    found.push(if consumers.is_empty() {
                        format!("{name} (no consumer)")
                    } else {
                        format!("{name} (consumers: {})", consumers.join(", "))
                    });
                }
                Err(e) => match e.kind() {
                    jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        missing.push(name.clone())
                    }
                    _ => {
                        return Attempt::fail(format!(
                            "{detail}; cannot look up stream {name}: {e}"
                        ))
                    }
                },
            }
        }
        if !found.is_empty() {
            detail.push_str(&format!("; streams: {}", found.join(", ")));
        }
        if !missing.is_empty() {
            return Attempt::fail(format!(
                "{detail}; missing stream(s): {} (Antenna creates its job streams when it queues ML jobs: has it run, on this server and account?)",
                missing.join(", ")
            ));
        }
        if let Some(verified) = self.url.endpoint.verified() {
            detail.push_str(if verified {
                ", TLS, certificate verified"
            } else {
                ", TLS, certificate not verified"
            });
        }
        Attempt::pass(detail)
    }

    async fn connect(&self, left: Duration) -> Result<async_nats::Client, Attempt> {
        let mut options = async_nats::ConnectOptions::new()
            .name("antenna-pipeline verify")
            .connection_timeout(left)
            .max_reconnects(Some(0))
            .ignore_discovered_servers();
        if let (Some(user), Some(password)) = (&self.url.user, &self.url.password) {
            options = options.user_and_password(user.clone(), password.expose_secret().to_string());
        }
        if let Some(token) = &self.url.token {
            options = options.token(token.expose_secret().to_string());
        }
        if let Some(path) = &self.creds_file {
            options = match options.credentials_file(path).await {
                Ok(o) => o,
                Err(e) => {
                    return Err(Attempt::fail_for_good(format!(
                        "cannot read the credentials file {}: {e}",
                        path.display()
                    )))
                }
            };
        }
        if let Some(config) = self
            .url
            .endpoint
            .tls_config()
            .map_err(Attempt::fail_for_good)?
        {
            options = options.require_tls(true).tls_client_config(config);
        }
        let server = self.url.server();
        match tokio::time::timeout(left, options.connect(server.as_str())).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.connect_failure(&e)),
            Err(_) => Err(Attempt::unreachable(format!(
                "cannot connect to {}: no answer within {}",
                self.url.endpoint.masked(),
                crate::output::human_duration(left)
            ))),
        }
    }

    fn connect_failure(&self, e: &async_nats::ConnectError) -> Attempt {
        use async_nats::ConnectErrorKind as K;
        // The rustls error, if any, travels in the source chain.
        let mut certificate = None;
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(rustls::Error::InvalidCertificate(_)) = s.downcast_ref::<rustls::Error>() {
                certificate = Some(s.to_string());
            }
            // io::Error::source skips the error it wraps: look inside.
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if let tls::HandshakeFailure::Certificate(reason) = tls::classify(io) {
                    certificate = Some(reason);
                }
            }
            source = s.source();
        }
        let server = self.url.endpoint.masked();
        match (e.kind(), certificate) {
            (_, Some(reason)) => Attempt::fail_for_good(format!(
                "the TLS certificate of {server} was rejected: {reason}; hint: trust its CA with ca_file = PATH in the check"
            )),
            (K::AuthorizationViolation | K::Authentication, _) => Attempt::fail_for_good(format!(
                "{server} refused the credentials ({e}); hint: check the user and password or token in the URL, or the credentials file"
            )),
            (K::Tls, _) => Attempt::fail_for_good(format!(
                "the TLS handshake with {server} failed ({e}); hint: tls:// needs a server with TLS on, nats:// one without"
            )),
            (K::Io | K::TimedOut | K::Dns | K::MaxReconnects, _) => Attempt::unreachable(format!(
                "cannot connect to {server} ({e}); hint: is nats-server running, and reachable from here? In a VPC, run this check on the instance (where = \"instance\")"
            )),
            _ => Attempt::fail(format!("cannot connect to {server}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nats_urls_and_masks_tokens_and_passwords() {
        let u = NatsUrl::parse("nats://antenna:s3cret@nats:4222").unwrap();
        assert_eq!(u.user.as_deref(), Some("antenna"));
        assert_eq!(u.password.as_ref().unwrap().expose_secret(), "s3cret");
        assert_eq!(u.endpoint.masked(), "nats://antenna:***@nats:4222");
        assert_eq!(u.server(), "nats://nats:4222");
        let u = NatsUrl::parse("tls://t0ken@nats.internal").unwrap();
        assert_eq!(u.endpoint.tls, Some(CertReqs::Required));
        assert_eq!(u.endpoint.port, 4222);
        assert_eq!(u.token.as_ref().unwrap().expose_secret(), "t0ken");
        assert_eq!(u.endpoint.masked(), "tls://***@nats.internal");
        assert_eq!(u.server(), "tls://nats.internal:4222");
        let u = u.with_tls_options(false, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(u.endpoint.verified(), Some(false));
        assert_eq!(u.endpoint.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        let err = NatsUrl::parse("http://u:secret@h").unwrap_err().to_string();
        assert!(
            err.contains("expected nats:// or tls://") && !err.contains("secret"),
            "{err}"
        );
    }
}
