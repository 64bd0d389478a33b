//! What the broker URL parsers share (Redis, AMQP, NATS): parse the text, match the
//! scheme, read the host, and the [`Endpoint`] it names. Every failure is a [`UrlError`]
//! showing the URL masked.

use std::path::PathBuf;

use super::tls::{self, CertReqs};
use super::UrlError;

/// What a kind of broker URL looks like, for the parser and its messages.
pub(super) struct Syntax {
    /// The accepted schemes, each with whether it means TLS.
    pub schemes: &'static [(&'static str, bool)],
    /// The accepted schemes in words, e.g. `redis:// or rediss:// (TLS)`.
    pub expected_schemes: &'static str,
    /// The whole form, shown when the text is not a URL.
    pub form: &'static str,
    /// The form with a host, shown when the host is missing, e.g. `redis://HOST:PORT`.
    pub host_form: &'static str,
}

/// A broker URL past the shared prelude.
pub(super) struct Prelude {
    pub url: url::Url,
    /// Whether the scheme is a TLS one.
    pub tls: bool,
    /// The host, without the brackets of an IPv6 address.
    pub host: String,
    /// The URL as shown in messages (secrets masked).
    pub masked: String,
}

impl Prelude {
    /// Parses `text`; `masked` is how the URL is shown in messages.
    pub fn parse(text: &str, masked: String, syntax: &Syntax) -> Result<Self, UrlError> {
        let invalid = |reason: String| UrlError::Invalid {
            masked: masked.clone(),
            reason,
        };
        let url = url::Url::parse(text.trim())
            .map_err(|e| invalid(format!("not a URL ({e}); expected {}", syntax.form)))?;
        let Some(&(_, tls)) = syntax.schemes.iter().find(|(s, _)| *s == url.scheme()) else {
            return Err(invalid(format!(
                "unsupported scheme {:?}: expected {}",
                url.scheme(),
                syntax.expected_schemes
            )));
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(format!("no host: expected {}", syntax.host_form)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Self {
            url,
            tls,
            host,
            masked,
        })
    }

    /// The endpoint on `port`, with the TLS options of the URL's query (`ssl_cert_reqs`,
    /// `ssl_ca_certs`).
    pub fn endpoint(&self, port: u16) -> Result<Endpoint, UrlError> {
        let (cert_reqs, ca_file) = tls::query_options(&self.url).map_err(|r| self.invalid(r))?;
        Ok(self.endpoint_with(port, cert_reqs, ca_file))
    }

    /// The endpoint on `port`, with the TLS options given (for a TLS scheme).
    pub fn endpoint_with(
        &self,
        port: u16,
        cert_reqs: CertReqs,
        ca_file: Option<PathBuf>,
    ) -> Endpoint {
        Endpoint {
            tls: self.tls.then_some(cert_reqs),
            host: self.host.clone(),
            port,
            ca_file,
            masked: self.masked.clone(),
        }
    }

    /// A rejection of this URL for `reason`.
    pub fn invalid(&self, reason: String) -> UrlError {
        UrlError::Invalid {
            masked: self.masked.clone(),
            reason,
        }
    }
}

/// The server a broker URL names: host, port, TLS, and the URL as shown in messages. The
/// Redis, AMQP and NATS URLs add their own parts (credentials, database, vhost).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `None` without TLS (`redis://`, `amqp://`, `nats://`); else the certificate policy.
    pub tls: Option<CertReqs>,
    pub host: String,
    pub port: u16,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    masked: String,
}

impl Endpoint {
    /// The URL with its secrets masked.
    pub fn masked(&self) -> String {
        self.masked.clone()
    }

    /// `host:port`, to connect to.
    pub(super) fn addr(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// Whether the server's certificate is verified (TLS only).
    pub fn verified(&self) -> Option<bool> {
        self.tls.map(|reqs| reqs == CertReqs::Required)
    }

    /// The rustls client configuration (TLS only); the error says what is wrong with the
    /// CA file.
    pub(super) fn tls_config(&self) -> Result<Option<rustls::ClientConfig>, String> {
        self.tls
            .map(|reqs| tls::client_config(reqs, self.ca_file.as_ref()))
            .transpose()
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub(super) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNTAX: Syntax = Syntax {
        schemes: &[("x", false), ("xs", true)],
        expected_schemes: "x:// or xs:// (TLS)",
        form: "x://HOST[:PORT]",
        host_form: "x://HOST:PORT",
    };

    fn parse(text: &str) -> Result<Prelude, UrlError> {
        Prelude::parse(text, super::super::mask_url(text), &SYNTAX)
    }

    #[test]
    fn reads_scheme_and_host_and_names_what_is_wrong() {
        let p = parse("xs://u:pw@[::1]:7").unwrap();
        assert!(p.tls);
        assert_eq!(p.host, "::1");
        assert_eq!(host_port(&p.host, 7), "[::1]:7");
        assert_eq!(host_port("h", 7), "h:7");
        assert!(!parse("x://h").unwrap().tls);
        let err = |t: &str| parse(t).err().unwrap().to_string();
        assert_eq!(
            err("y://u:secret@h"),
            "y://u:***@h: unsupported scheme \"y\": expected x:// or xs:// (TLS)"
        );
        assert!(err("no url").ends_with("expected x://HOST[:PORT]"));
        assert!(!err("x://u:secret@:1").contains("secret"));
    }

    #[test]
    fn the_endpoint_reads_the_tls_options_of_the_query() {
        let e = parse("xs://h?ssl_cert_reqs=none&ssl_ca_certs=/etc/ca.pem")
            .unwrap()
            .endpoint(7)
            .unwrap();
        assert_eq!((e.tls, e.verified()), (Some(CertReqs::None), Some(false)));
        assert_eq!(e.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(e.addr(), "h:7");
        let e = parse("x://h?ssl_cert_reqs=none")
            .unwrap()
            .endpoint(7)
            .unwrap();
        assert_eq!((e.tls, e.verified()), (None, None));
        let err = parse("xs://u:secret@h?ssl_cert_reqs=maybe")
            .unwrap()
            .endpoint(7)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected none or required") && !err.contains("secret"),
            "{err}"
        );
    }
}
