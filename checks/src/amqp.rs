//! Celery's broker over AMQP 0-9-1 (RabbitMQ, Amazon MQ): the URL, a connection through
//! `lapin` (TLS by rustls with the same options as Redis), and the pidbox broadcast.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::constants::REPLY_SUCCESS;
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};

use super::broker_url::{Endpoint, Prelude, Syntax};
use super::pidbox::{self, Request};
use super::tls::{percent_decode, ConnectError};
use super::{uuid4, UrlError};

const SYNTAX: Syntax = Syntax {
    schemes: &[("amqp", false), ("pyamqp", false), ("amqps", true)],
    expected_schemes: "amqp:// or amqps:// (TLS)",
    form: "amqp://USER:PASSWORD@HOST[:PORT]/VHOST or amqps://…",
    host_form: "amqp://HOST:PORT",
};

/// A parsed `amqp://` or `amqps://` URL (also kombu's `pyamqp://`), read as Celery reads it:
/// `amqp://USER:PASSWORD@HOST:PORT/VHOST`, the vhost percent-decoded, `/` when empty.
#[derive(Debug, Clone)]
pub struct AmqpUrl {
    /// Host, port and TLS (`amqps://`; `ssl_cert_reqs`, `ssl_ca_certs=PATH`).
    pub endpoint: Endpoint,
    pub username: String,
    pub password: SecretString,
    pub vhost: String,
}

impl AmqpUrl {
    /// Parses `amqp[s]://[USER[:PASSWORD]@]HOST[:PORT][/VHOST][?ssl_cert_reqs=none|required&ssl_ca_certs=PATH]`.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let p = Prelude::parse(text, super::mask_url(text.trim()), &SYNTAX)?;
        let url = &p.url;
        let port = url.port().unwrap_or(if p.tls { 5671 } else { 5672 });
        // kombu's defaults: guest/guest on vhost "/".
        let username = match percent_decode(url.username()) {
            u if u.is_empty() => "guest".to_string(),
            u => u,
        };
        let password = SecretString::from(
            url.password()
                .map(percent_decode)
                .unwrap_or_else(|| "guest".to_string()),
        );
        let vhost = match url.path().strip_prefix('/').unwrap_or("") {
            "" => "/".to_string(),
            v => percent_decode(v),
        };
        Ok(Self {
            endpoint: p.endpoint(port)?,
            username,
            password,
            vhost,
        })
    }
}

/// What went wrong talking to the AMQP broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AmqpError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// 403 ACCESS_REFUSED while logging in: wrong user or password.
    #[error("the broker refused the login of user {user:?}: {message}")]
    Login { user: String, message: String },
    /// 530 NOT_ALLOWED while opening the vhost: it does not exist, or the user has no access.
    #[error("the broker refused vhost {vhost:?}: {message}")]
    Vhost { vhost: String, message: String },
    /// The vhost has no `celery.pidbox` exchange: no worker ever started on it.
    #[error(
        "vhost {vhost:?} has no exchange celery.pidbox: no Celery worker has started on this vhost"
    )]
    NoMailbox { vhost: String },
    #[error("{0}")]
    Protocol(String),
}

impl AmqpError {
    /// Could not reach the broker at all (as opposed to reached, but wrong).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, AmqpError::Connect(e) if e.is_unreachable())
    }

    /// Waiting will not fix it (credentials, certificate, settings).
    pub fn is_for_good(&self) -> bool {
        match self {
            AmqpError::Connect(e) => e.is_for_good(),
            AmqpError::Login { .. } | AmqpError::Vhost { .. } => true,
            _ => false,
        }
    }

    /// `self` with a hint for the operator, when there is an obvious next step.
    pub fn describe(&self, url: &AmqpUrl) -> String {
        let hint = match self {
            AmqpError::Connect(ConnectError::Certificate { .. }) => Some("trust the broker's CA with ?ssl_ca_certs=PATH (or, only for a test broker, ?ssl_cert_reqs=none)"),
            AmqpError::Connect(ConnectError::Tls { .. }) => Some("is this a TLS port (5671)? use amqp:// for a broker without TLS"),
            AmqpError::Protocol(_) if url.endpoint.tls.is_none() => Some("if the broker requires TLS (Amazon MQ does), use amqps:// on port 5671"),
            AmqpError::Connect(ConnectError::Tcp { .. }) => Some("is the broker running, and reachable from here? Amazon MQ and RabbitMQ in a VPC answer only inside it: run this check on the instance (where = \"instance\")"),
            AmqpError::Login { .. } => Some("check the user and password in CELERY_BROKER_URL (amqp://USER:PASSWORD@HOST/VHOST)"),
            AmqpError::Vhost { .. } => Some("check the vhost (the URL's path: /VHOST, %2F for \"/\") and the user's permissions on it"),
            AmqpError::NoMailbox { .. } => Some("are the Celery workers running, on this broker and vhost?"),
            _ => None,
        };
        match hint {
            Some(h) => format!("{self}; hint: {h}"),
            None => self.to_string(),
        }
    }

    fn from_lapin(e: &lapin::Error, url: &AmqpUrl) -> Self {
        match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => {
                let message = amqp.get_message().to_string();
                match amqp.get_id() {
                    403 => AmqpError::Login {
                        user: url.username.clone(),
                        message,
                    },
                    530 => AmqpError::Vhost {
                        vhost: url.vhost.clone(),
                        message,
                    },
                    404 if message.contains("celery.pidbox") => AmqpError::NoMailbox {
                        vhost: url.vhost.clone(),
                    },
                    code => AmqpError::Protocol(format!("the broker answered {code}: {message}")),
                }
            }
            _ => AmqpError::Protocol(e.to_string()),
        }
    }
}

/// What a broadcast brought back.
pub(super) struct Replies {
    /// How many workers could hear the request, when the transport tells (Redis: PUBLISH's
    /// count; AMQP: 0 when the broker returned the request as unroutable).
    pub listeners: Option<i64>,
    pub answers: BTreeMap<String, serde_json::Value>,
}

/// A connection to the broker with one channel (publisher confirms on).
pub(super) struct AmqpMailbox {
    conn: Connection,
    channel: lapin::Channel,
    url: AmqpUrl,
    /// Whether the broker's certificate was verified (TLS only).
    pub verified: Option<bool>,
}

impl AmqpMailbox {
    /// Connects (TCP, TLS for `amqps://`, login, vhost) within `budget`.
    pub async fn connect(url: &AmqpUrl, budget: Duration) -> Result<Self, AmqpError> {
        let addr = url.endpoint.addr();
        let within = crate::output::human_duration(budget);
        let connector = url
            .endpoint
            .tls_config()
            .map_err(|e| AmqpError::Connect(ConnectError::TlsSetup(e)))?
            .map(|config| RustlsConnector::from(Arc::new(config)));
        // lapin reports a transport failure as text; the typed error is kept here.
        let failure: Arc<Mutex<Option<AmqpError>>> = Arc::default();
        let uri = AMQPUri {
            scheme: if url.endpoint.tls.is_some() {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: url.username.clone(),
                    password: url.password.expose_secret().to_string(),
                },
                host: url.endpoint.host.clone(),
                port: url.endpoint.port,
            },
            vhost: url.vhost.clone(),
            query: AMQPQueryString {
                connection_timeout: Some(budget.as_millis() as u64),
                ..Default::default()
            },
        };
        let runtime = lapin::runtime::default_runtime()
            .map_err(|e| AmqpError::Protocol(format!("no async runtime for AMQP: {e}")))?;
        let (host, port, seen) = (
            url.endpoint.host.clone(),
            url.endpoint.port,
            failure.clone(),
        );
        let within_connect = within.clone();
        let connect = async move |_uri: AMQPUri, runtime| {
            let within = &within_connect;
            let fail = |e: ConnectError| {
                let text = e.to_string();
                if let Ok(mut slot) = seen.lock() {
                    *slot = Some(AmqpError::Connect(e));
                }
                lapin::Error::from(std::io::Error::other(text))
            };
            let addr = format!("{host}:{port}");
            let resolved: Vec<SocketAddr> =
                match tokio::time::timeout(budget, tokio::net::lookup_host((host.as_str(), port)))
                    .await
                {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(e)) => {
                        return Err(fail(ConnectError::Tcp {
                            addr,
                            reason: format!("cannot resolve the host name: {e}"),
                        }))
                    }
                    Err(_) => {
                        return Err(fail(ConnectError::Tcp {
                            addr,
                            reason: format!("no answer within {within}"),
                        }))
                    }
                };
            let stream =
                match tokio::time::timeout(budget, AsyncTcpStream::connect(&runtime, resolved))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        return Err(fail(ConnectError::Tcp {
                            addr,
                            reason: e.to_string(),
                        }))
                    }
                    Err(_) => {
                        return Err(fail(ConnectError::Tcp {
                            addr,
                            reason: format!("no answer within {within}"),
                        }))
                    }
                };
            match &connector {
                None => Ok(stream),
                Some(connector) => {
                    match tokio::time::timeout(budget, stream.into_rustls(connector, &host)).await
                    {
                        Ok(Ok(s)) => Ok(s),
                        Ok(Err(e)) => Err(fail(ConnectError::handshake(&addr, &e))),
                        Err(_) => Err(fail(ConnectError::Tls {
                            addr,
                            reason: format!(
                                "the broker accepted the connection but said nothing within {within}"
                            ),
                        })),
                    }
                }
            }
        };
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from("antenna-pipeline verify"));
        let opened = tokio::time::timeout(
            budget,
            Connection::connector(uri, runtime, connect, properties),
        )
        .await;
        let taken = || failure.lock().ok().and_then(|mut s| s.take());
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(taken().unwrap_or_else(|| match e.kind() {
                    lapin::ErrorKind::IOError(io) => AmqpError::Protocol(format!(
                        "the broker at {addr} closed the connection during the AMQP handshake ({io}): is this an AMQP port?"
                    )),
                    _ => AmqpError::from_lapin(&e, url),
                }))
            }
            Err(_) => {
                return Err(taken().unwrap_or_else(|| AmqpError::Protocol(format!(
                    "the broker at {addr} did not finish the AMQP handshake within {within}"
                ))))
            }
        };
        let channel = match conn.create_channel().await {
            Ok(c) => c,
            Err(e) => return Err(AmqpError::from_lapin(&e, url)),
        };
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| AmqpError::from_lapin(&e, url))?;
        Ok(Self {
            conn,
            channel,
            url: url.clone(),
            verified: url.endpoint.verified(),
        })
    }

    /// Publishes a control request on `celery.pidbox` and collects the replies until `window`
    /// ends or every worker of `destination` has answered.
    pub async fn broadcast(
        &self,
        method: &str,
        destination: Option<&[String]>,
        window: Duration,
    ) -> Result<Replies, AmqpError> {
        let lapin_err = |e: lapin::Error| AmqpError::from_lapin(&e, &self.url);
        let ch = &self.channel;
        // The workers declare the mailbox exchange; without it no worker ever ran here.
        ch.exchange_declare(
            ShortString::from(pidbox::EXCHANGE),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(lapin_err)?;
        // The reply exchange and queue, declared as kombu declares them.
        let reply_key = uuid4();
        let ticket = uuid4();
        let queue = pidbox::reply_queue(&reply_key);
        ch.exchange_declare(
            ShortString::from(pidbox::REPLY_EXCHANGE),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(lapin_err)?;
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-expires"), AMQPValue::LongInt(10_000));
        ch.queue_declare(
            ShortString::from(queue.as_str()),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(lapin_err)?;
        ch.queue_bind(
            ShortString::from(queue.as_str()),
            ShortString::from(pidbox::REPLY_EXCHANGE),
            ShortString::from(reply_key.as_str()),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(lapin_err)?;
        let mut consumer = ch
            .basic_consume(
                ShortString::from(queue.as_str()),
                ShortString::from(""),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(lapin_err)?;
        let body = Request {
            method,
            destination,
            reply_key: &reply_key,
            ticket: &ticket,
            delivery_tag: "",
        }
        .body()
        .to_string();
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + window;
        let mut headers = FieldTable::default();
        headers.insert(ShortString::from("clock"), AMQPValue::LongLongInt(1));
        headers.insert(
            ShortString::from("expires"),
            AMQPValue::Double(expires.as_secs_f64()),
        );
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_content_encoding(ShortString::from("utf-8"))
            .with_delivery_mode(1)
            .with_headers(headers);
        // Mandatory: the broker returns the request when no worker's mailbox queue is bound.
        let confirm = ch
            .basic_publish(
                ShortString::from(pidbox::EXCHANGE),
                ShortString::from(""),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                properties,
            )
            .await
            .map_err(lapin_err)?
            .await
            .map_err(lapin_err)?;
        let listeners = match confirm {
            lapin::Confirmation::Ack(Some(_)) | lapin::Confirmation::Nack(Some(_)) => Some(0),
            _ => None,
        };
        let mut answers = BTreeMap::new();
        if listeners == Some(0) {
            return Ok(Replies { listeners, answers });
        }
        let expected = destination.map(<[String]>::len);
        let until = crate::config::instant_after(window);
        while expected.is_none_or(|n| answers.len() < n) {
            let left = until.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(10) {
                break;
            }
            let delivery = match tokio::time::timeout(left, consumer.next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(d)) => d.map_err(lapin_err)?,
            };
            let headers = delivery.properties.headers().as_ref();
            let reply_ticket = headers
                .and_then(|h| h.inner().get("ticket"))
                .and_then(amqp_text);
            if reply_ticket.is_some_and(|t| t != ticket) {
                continue;
            }
            let content_type = delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.as_str().to_string());
            match pidbox::decode_body(content_type.as_deref(), &delivery.data) {
                Ok(map) => answers.extend(map),
                Err(e) => tracing::warn!("ignoring a reply on {queue}: {e}"),
            }
        }
        Ok(Replies { listeners, answers })
    }

    /// Closes the connection (the reply queues go with it).
    pub async fn close(self) {
        let _ = self.channel.close(REPLY_SUCCESS, "OK".into()).await;
        let _ = self.conn.close(REPLY_SUCCESS, "OK".into()).await;
    }
}

fn amqp_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertReqs;
    use std::path::PathBuf;

    #[test]
    fn parses_broker_urls_as_celery_does() {
        let u = AmqpUrl::parse("amqp://antenna:p%40ss@rabbitmq:5672/antenna").unwrap();
        assert_eq!(u.endpoint.tls, None);
        assert_eq!(
            (u.endpoint.host.as_str(), u.endpoint.port),
            ("rabbitmq", 5672)
        );
        assert_eq!(u.username, "antenna");
        assert_eq!(u.password.expose_secret(), "p@ss");
        assert_eq!(u.vhost, "antenna");
        assert_eq!(
            u.endpoint.masked(),
            "amqp://antenna:***@rabbitmq:5672/antenna"
        );
        let u = AmqpUrl::parse("amqps://u:pw@b-1.mq.us-east-1.amazonaws.com").unwrap();
        assert_eq!(u.endpoint.tls, Some(CertReqs::Required));
        assert_eq!(u.endpoint.port, 5671);
        assert_eq!(u.vhost, "/");
        let u = AmqpUrl::parse("amqp://localhost//").unwrap();
        assert_eq!((u.username.as_str(), u.vhost.as_str()), ("guest", "/"));
        assert_eq!(u.password.expose_secret(), "guest");
        assert_eq!(AmqpUrl::parse("amqp://h/%2F").unwrap().vhost, "/");
        let u = AmqpUrl::parse("amqps://h:1/v?ssl_cert_reqs=none").unwrap();
        assert_eq!(u.endpoint.tls, Some(CertReqs::None));
        let u = AmqpUrl::parse("amqps://h/v?ssl_ca_certs=/etc/ca.pem").unwrap();
        assert_eq!(u.endpoint.ca_file, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn rejects_bad_urls_without_leaking_the_password() {
        let err = AmqpUrl::parse("amqp://u:secret@/v")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
