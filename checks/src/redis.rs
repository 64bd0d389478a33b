//! The Redis check, and the Redis connection Celery's pidbox uses, through the `redis` crate
//! (async on tokio, TLS with rustls).
//!
//! Errors are typed so that the checks can tell connection, certificate, TLS and
//! authentication failures apart.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;

use super::broker_url::{Endpoint, Prelude, Syntax};
use super::tls::{percent_decode, ConnectError};
use super::{Attempt, UrlError};

const SYNTAX: Syntax = Syntax {
    schemes: &[("redis", false), ("rediss", true)],
    expected_schemes: "redis:// or rediss:// (TLS)",
    form: "redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://…",
    host_form: "redis://HOST:PORT",
};

/// A parsed `redis://` or `rediss://` URL.
#[derive(Debug, Clone)]
pub struct RedisUrl {
    /// Host, port and TLS (`rediss://`; `ssl_cert_reqs`, `ssl_ca_certs=PATH`).
    pub endpoint: Endpoint,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub db: u32,
}

impl RedisUrl {
    /// Parses `redis://[[user]:password@]host[:port][/db][?ssl_cert_reqs=none|required&ssl_ca_certs=PATH]`
    /// (also `rediss://`).
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let p = Prelude::parse(text, super::mask_url(text.trim()), &SYNTAX)?;
        let url = &p.url;
        let port = url.port().unwrap_or(6379);
        let username = Some(percent_decode(url.username())).filter(|u| !u.is_empty());
        let password = url
            .password()
            .map(|pw| SecretString::from(percent_decode(pw)));
        let mut db = match url.path().trim_matches('/') {
            "" => 0,
            path => path.parse().map_err(|_| {
                p.invalid(format!(
                    "the path {path:?} is not a database number: expected /0, /1…"
                ))
            })?,
        };
        let endpoint = p.endpoint(port)?;
        if let Some(v) = url.query_pairs().find(|(k, _)| k == "db").map(|(_, v)| v) {
            db = v
                .parse()
                .map_err(|_| p.invalid(format!("db={v:?} is not a database number")))?;
        }
        Ok(Self {
            endpoint,
            username,
            password,
            db,
        })
    }
}

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("authentication failed: {0}")]
    Auth(String),
    /// An error reply: its code (`READONLY`, `ERR`…) and the whole message, code first.
    #[error("the server answered {command}: {message}")]
    Server {
        command: String,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("the connection broke: {0}")]
    Io(String),
}

impl RedisError {
    /// Could not reach the server at all (as opposed to reached, but wrong).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RedisError::Connect(e) if e.is_unreachable())
    }

    /// Waiting will not fix it: credentials, the certificate, the TLS settings.
    pub fn is_for_good(&self) -> bool {
        match self {
            RedisError::Connect(e) => e.is_for_good(),
            RedisError::Auth(_) => true,
            _ => false,
        }
    }

    /// A hint for the operator, when there is an obvious next step.
    pub fn hint(&self, url: &RedisUrl) -> Option<&'static str> {
        match self {
            RedisError::Connect(ConnectError::Certificate { .. }) => Some(
                "ElastiCache's certificate is accepted with ?ssl_cert_reqs=none; or trust its CA with ?ssl_ca_certs=PATH",
            ),
            RedisError::Connect(ConnectError::Tls { .. }) => Some("is this a TLS port? use redis:// for a server without TLS"),
            RedisError::Io(_) | RedisError::Protocol(_) if url.endpoint.tls.is_none() => {
                Some("if the server requires TLS (in-transit encryption), use rediss://")
            }
            RedisError::Server { code, .. } if code == "READONLY" => {
                Some("this is a read-only replica: use the primary endpoint")
            }
            RedisError::Connect(ConnectError::Tcp { .. }) => Some(
                "is Redis running, and reachable from here? ElastiCache answers only inside its VPC: from outside, use the flower check",
            ),
            RedisError::Auth(_) => Some("check the password in the URL (redis://:PASSWORD@HOST:PORT)"),
            _ => None,
        }
    }

    /// `self` with its hint, for a report line.
    pub fn describe(&self, url: &RedisUrl) -> String {
        match self.hint(url) {
            Some(h) => format!("{self}; hint: {h}"),
            None => self.to_string(),
        }
    }

    /// The typed error for a failed command `command` (an error reply, a broken connection,
    /// an answer that is not RESP).
    fn from_command(command: &str, e: redis::RedisError) -> Self {
        if let Some(code) = e.code() {
            let message = match e.detail() {
                Some(detail) => format!("{code} {detail}"),
                None => code.to_string(),
            };
            return if matches!(code, "NOAUTH" | "WRONGPASS") {
                RedisError::Auth(message)
            } else {
                RedisError::Server {
                    command: command.to_string(),
                    code: code.to_string(),
                    message,
                }
            };
        }
        match e.kind() {
            redis::ErrorKind::Parse => RedisError::Protocol(format!(
                "this is not a Redis server (its answer to {command} is not RESP: {e})"
            )),
            redis::ErrorKind::AuthenticationFailed => RedisError::Auth(e.to_string()),
            _ if e.is_timeout() => RedisError::Io(format!("no answer to {command} in time")),
            _ => RedisError::Io(e.to_string()),
        }
    }
}

/// One connection to a Redis server, authenticated and on the URL's database.
pub struct RedisConn {
    conn: redis::aio::MultiplexedConnection,
    /// Whether the server's certificate was verified (TLS only).
    pub verified: Option<bool>,
}

impl RedisConn {
    /// Connects, negotiates TLS for `rediss://`, authenticates, selects the database; the
    /// TCP connection and the TLS handshake each get at most `budget`, and so does each
    /// command.
    ///
    /// The TCP connection and the TLS handshake are ours (the TLS of the AMQP check, see
    /// [`super::tls::client_config`]), the `redis` crate speaks RESP over the stream: its
    /// own TLS hides the rustls error behind a boxed error that cannot be downcast, so a
    /// certificate rejection could not be told from a broken handshake, and it has one
    /// timeout for the connection and the handshake. AUTH and SELECT are sent here rather than through the
    /// crate's connection info, so that the server's own answer (`WRONGPASS`, `NOAUTH`)
    /// reaches the report.
    pub async fn connect(url: &RedisUrl, budget: Duration) -> Result<Self, RedisError> {
        let addr = url.endpoint.addr();
        let within = human(budget);
        let tcp = match tokio::time::timeout(budget, TcpStream::connect(&addr)).await {
            Ok(r) => r.map_err(|e| ConnectError::Tcp {
                addr: addr.clone(),
                reason: e.to_string(),
            })?,
            Err(_) => {
                return Err(ConnectError::Tcp {
                    addr: addr.clone(),
                    reason: format!("no answer within {within}"),
                }
                .into())
            }
        };
        let _ = tcp.set_nodelay(true);
        let settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(budget));
        let host = &url.endpoint.host;
        let setup = match url.endpoint.tls_config().map_err(ConnectError::TlsSetup)? {
            None => start(&settings, tcp, config).await,
            Some(config_tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                    ConnectError::TlsSetup(format!("{host:?} is not a valid TLS server name: {e}"))
                })?;
                let handshake =
                    tokio_rustls::TlsConnector::from(Arc::new(config_tls)).connect(name, tcp);
                let stream = match tokio::time::timeout(budget, handshake).await {
                    Ok(r) => r.map_err(|e| ConnectError::handshake(&addr, &e))?,
                    Err(_) => {
                        return Err(ConnectError::Tls {
                            addr: addr.clone(),
                            reason: format!(
                            "the server accepted the connection but said nothing within {within}"
                        ),
                        }
                        .into())
                    }
                };
                start(&settings, stream, config).await
            }
        };
        let conn = setup.map_err(|e| RedisError::from_command("the connection setup", e))?;
        let mut conn = Self {
            conn,
            verified: url.endpoint.verified(),
        };
        if let Some(password) = &url.password {
            let mut args: Vec<&[u8]> = Vec::new();
            if let Some(user) = &url.username {
                args.push(user.as_bytes());
            }
            args.push(password.expose_secret().as_bytes());
            conn.call::<redis::Value>("AUTH", &args)
                .await
                .map_err(|e| match e {
                    RedisError::Server { message, .. } => RedisError::Auth(message),
                    e => e,
                })?;
        }
        if url.db != 0 {
            let db = url.db.to_string();
            conn.call::<redis::Value>("SELECT", &[db.as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    /// Sends `command` with `args`; an error reply becomes a [`RedisError`] (`NOAUTH` and
    /// `WRONGPASS` are `Auth`), the answer is converted to `T`.
    pub async fn call<T: redis::FromRedisValue>(
        &mut self,
        command: &str,
        args: &[&[u8]],
    ) -> Result<T, RedisError> {
        let mut cmd = redis::cmd(command);
        for a in args {
            cmd.arg(*a);
        }
        cmd.query_async(&mut self.conn)
            .await
            .map_err(|e| RedisError::from_command(command, e))
    }
}

/// The `redis` crate's connection over `stream`, its driver (which reads and writes the
/// stream, and ends when the connection is dropped) spawned.
async fn start<C>(
    settings: &redis::RedisConnectionInfo,
    stream: C,
    config: redis::AsyncConnectionConfig,
) -> redis::RedisResult<redis::aio::MultiplexedConnection>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (conn, driver) =
        redis::aio::MultiplexedConnection::new_with_config(settings, stream, config).await?;
    tokio::spawn(driver);
    Ok(conn)
}

fn human(d: Duration) -> String {
    crate::output::human_duration(d)
}

/// PING a Redis server; report its version and role.
#[derive(Debug, Clone)]
pub struct RedisCheck {
    pub url: RedisUrl,
    pub timeout: Duration,
    pub required: bool,
}

impl RedisCheck {
    pub(crate) async fn attempt(&self, left: Duration) -> Attempt {
        match self.ping(left).await {
            Ok(detail) => Attempt::pass(detail),
            Err(e) if e.is_unreachable() => Attempt::unreachable(e.describe(&self.url)),
            Err(e) if e.is_for_good() => Attempt::fail_for_good(e.describe(&self.url)),
            Err(e) => Attempt::fail(e.describe(&self.url)),
        }
    }

    async fn ping(&self, left: Duration) -> Result<String, RedisError> {
        let mut conn = RedisConn::connect(&self.url, left).await?;
        let pong: redis::Value = conn.call("PING", &[]).await?;
        let is_pong = match &pong {
            redis::Value::SimpleString(s) => s == "PONG",
            redis::Value::BulkString(b) => b == b"PONG",
            _ => false,
        };
        if !is_pong {
            return Err(RedisError::Protocol(format!(
                "PING answered {pong:?} instead of PONG"
            )));
        }
        let info =
            |v: Result<String, RedisError>, key: &str| v.ok().and_then(|t| info_field(&t, key));
        let version = info(conn.call("INFO", &[b"server"]).await, "redis_version");
        let role = info(conn.call("INFO", &[b"replication"]).await, "role");
        let mut detail = format!(
            "PONG from redis {} ({})",
            version.as_deref().unwrap_or("(version unknown)"),
            role.as_deref().unwrap_or("role unknown")
        );
        if role.as_deref() == Some("slave") {
            detail.push_str(" (a read-only replica: Celery needs the primary endpoint)");
        }
        detail.push_str(&format!(", db {}", self.url.db));
        match conn.verified {
            Some(true) => detail.push_str(", TLS, certificate verified"),
            Some(false) => detail.push_str(", TLS, certificate not verified (ssl_cert_reqs=none)"),
            None => detail.push_str(", no TLS"),
        }
        Ok(detail)
    }
}

/// The value of `key` in an INFO reply.
pub fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertReqs;
    use std::path::PathBuf;

    #[test]
    fn parses_elasticache_urls() {
        let u = RedisUrl::parse(
            "rediss://:p%40ss@master.cache.amazonaws.com:6379/0?ssl_cert_reqs=none",
        )
        .unwrap();
        assert_eq!(u.endpoint.tls, Some(CertReqs::None));
        assert_eq!(u.endpoint.host, "master.cache.amazonaws.com");
        assert_eq!(u.endpoint.port, 6379);
        assert_eq!(u.username, None);
        assert_eq!(u.password.as_ref().unwrap().expose_secret(), "p@ss");
        assert_eq!(u.db, 0);
        assert_eq!(
            u.endpoint.masked(),
            "rediss://:***@master.cache.amazonaws.com:6379/0?ssl_cert_reqs=none"
        );
    }

    #[test]
    fn defaults_and_options() {
        let u = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!((u.endpoint.tls, u.endpoint.port, u.db), (None, 6379, 0));
        let u = RedisUrl::parse(
            "rediss://user:pw@h:7000/3?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/tmp/ca.pem",
        )
        .unwrap();
        assert_eq!(u.endpoint.tls, Some(CertReqs::Required));
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.db, 3);
        assert_eq!(u.endpoint.ca_file, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(
            RedisUrl::parse("rediss://h").unwrap().endpoint.tls,
            Some(CertReqs::Required)
        );
        assert_eq!(RedisUrl::parse("redis://h?db=5").unwrap().db, 5);
        assert_eq!(
            RedisUrl::parse("redis://[::1]:6390")
                .unwrap()
                .endpoint
                .addr(),
            "[::1]:6390"
        );
    }

    #[test]
    fn rejects_bad_urls_without_leaking_the_password() {
        let err = RedisUrl::parse("http://:secret@h:1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "http://:***@h:1/: unsupported scheme \"http\": expected redis:// or rediss:// (TLS)"
        );
        let err = RedisUrl::parse("redis://:secret@h/x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a database number") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%40c"), "a/b@c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn error_replies_are_typed_by_their_code() {
        let url = RedisUrl::parse("redis://h").unwrap();
        let reply = |code: &str, detail: &str| {
            redis::make_extension_error(code.to_string(), Some(detail.to_string()))
        };
        let e =
            RedisError::from_command("AUTH", reply("WRONGPASS", "invalid username-password pair"));
        assert!(e.is_for_good(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "authentication failed: WRONGPASS invalid username-password pair"
        );
        let e = RedisError::from_command("PING", reply("NOAUTH", "Authentication required."));
        assert!(matches!(e, RedisError::Auth(_)), "{e:?}");
        let e = RedisError::from_command("SADD", reply("READONLY", "You can't write"));
        assert_eq!(
            e.describe(&url),
            "the server answered SADD: READONLY You can't write; hint: this is a read-only replica: use the primary endpoint"
        );
        assert!(!e.is_for_good());
        let e = RedisError::from_command("SELECT", reply("ERR", "DB index is out of range"));
        assert!(
            matches!(&e, RedisError::Server { code, .. } if code == "ERR"),
            "{e:?}"
        );
        assert_eq!(e.hint(&url), None);
        let e = RedisError::from_command(
            "PING",
            redis::RedisError::from((redis::ErrorKind::Parse, "invalid first byte")),
        );
        assert!(matches!(e, RedisError::Protocol(_)), "{e:?}");
        assert!(e.describe(&url).contains("use rediss://"), "{e:?}");
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version").as_deref(), Some("7.0.15"));
        assert_eq!(info_field(info, "role"), None);
    }
}
