//! TLS for the broker checks (Redis, AMQP): one client configuration built from the URL's
//! `ssl_cert_reqs` / `ssl_ca_certs` options, and handshake failures told apart by kind.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Which server certificates a TLS connection accepts (`ssl_cert_reqs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertReqs {
    /// Any certificate (`ssl_cert_reqs=none`, what ElastiCache's URLs say): only when asked.
    None,
    /// A certificate valid for the host, from a trusted CA (the default; also `optional`).
    Required,
}

/// The TLS options of a broker URL's query: `ssl_cert_reqs=none|required` and
/// `ssl_ca_certs=PATH` (extra trusted CA certificates, PEM). Unknown keys are left alone.
pub(super) fn query_options(url: &url::Url) -> Result<(CertReqs, Option<PathBuf>), String> {
    let mut cert_reqs = CertReqs::Required;
    let mut ca_file = None;
    for (k, v) in url.query_pairs() {
        match &*k {
            "ssl_cert_reqs" => {
                cert_reqs = match v.to_ascii_lowercase().as_str() {
                    "none" | "cert_none" => CertReqs::None,
                    "required" | "cert_required" | "optional" | "cert_optional" => {
                        CertReqs::Required
                    }
                    other => {
                        return Err(format!(
                            "ssl_cert_reqs={other:?}: expected none or required"
                        ))
                    }
                }
            }
            "ssl_ca_certs" => ca_file = Some(PathBuf::from(&*v)),
            _ => {}
        }
    }
    Ok((cert_reqs, ca_file))
}

/// Failing to reach a broker or to secure the connection: what the Redis and AMQP errors
/// share (each adds what its protocol can answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {addr}: {reason}")]
    Tcp { addr: String, reason: String },
    #[error("the TLS certificate of {addr} was rejected: {reason}")]
    Certificate { addr: String, reason: String },
    #[error("the TLS handshake with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("{0}")]
    TlsSetup(String),
}

impl ConnectError {
    /// The error of a failed TLS handshake with `addr`, by kind (see [`classify`]).
    pub(super) fn handshake(addr: &str, e: &io::Error) -> Self {
        let addr = addr.to_string();
        match classify(e) {
            HandshakeFailure::Certificate(reason) => ConnectError::Certificate { addr, reason },
            HandshakeFailure::Other(reason) => ConnectError::Tls { addr, reason },
        }
    }

    /// Could not reach the server at all (as opposed to reached, but wrong).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ConnectError::Tcp { .. })
    }

    /// Waiting will not fix it: the certificate, the TLS settings.
    pub fn is_for_good(&self) -> bool {
        matches!(
            self,
            ConnectError::Certificate { .. } | ConnectError::TlsSetup(_)
        )
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HandshakeFailure {
    /// The server's certificate was rejected (unknown CA, wrong name, expired…).
    Certificate(String),
    /// Anything else (not a TLS port, closed during the handshake…).
    Other(String),
}

/// Classifies the error of a rustls handshake (the rustls error travels inside the io::Error).
pub(super) fn classify(e: &io::Error) -> HandshakeFailure {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => HandshakeFailure::Certificate(match c {
            rustls::CertificateError::UnknownIssuer => {
                "it is signed by an unknown authority (self-signed, or a private CA)".to_string()
            }
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => {
                format!("it is not valid for this host name ({c})")
            }
            other => format!("{other}"),
        }),
        Some(other) => HandshakeFailure::Other(other.to_string()),
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                HandshakeFailure::Other(format!(
                    "the server closed the connection during the handshake ({e})"
                ))
            }
            _ => HandshakeFailure::Other(e.to_string()),
        },
    }
}

/// The rustls client configuration for `reqs`, trusting the public roots, the system's and
/// the certificates of `ca_file`. The error says what is wrong with `ca_file`.
pub(super) fn client_config(
    reqs: CertReqs,
    ca_file: Option<&PathBuf>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let config = match reqs {
        CertReqs::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth(),
        CertReqs::Required => {
            let mut roots = public_roots().clone();
            if let Some(path) = ca_file {
                use rustls::pki_types::pem::PemObject;
                let unreadable = |e: &dyn std::fmt::Display| {
                    format!("cannot read ssl_ca_certs={}: {e}", path.display())
                };
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| unreadable(&e))?;
                let mut added = 0;
                for cert in certs {
                    let cert = cert.map_err(|e| unreadable(&e))?;
                    roots.add(cert).map_err(|e| {
                        format!(
                            "ssl_ca_certs={}: not a usable CA certificate: {e}",
                            path.display()
                        )
                    })?;
                    added += 1;
                }
                if added == 0 {
                    return Err(format!(
                        "ssl_ca_certs={} holds no PEM certificate",
                        path.display()
                    ));
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// The Mozilla roots and the system's, loaded once.
fn public_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(
            "TLS roots: {} Mozilla, {added} from the system",
            webpki_roots::TLS_SERVER_ROOTS.len()
        );
        roots
    })
}

/// `ssl_cert_reqs=none`: any certificate is accepted (the handshake signatures are still
/// checked, so the connection is encrypted to whoever holds the key).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Decodes `%XX` escapes (URL user names, passwords and vhosts).
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let (true, Ok(b)) = (
                hex.bytes().all(|c| c.is_ascii_hexdigit()),
                u8::from_str_radix(hex, 16),
            ) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
