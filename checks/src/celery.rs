//! The Celery check: ping the workers through the broker (the pidbox, over Redis or AMQP),
//! then ask each one's `active_queues` and check that every configured queue has a consumer.
//! No Python.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::amqp::{AmqpMailbox, AmqpUrl, Replies};
use super::pidbox::{self, Request};
use super::redis::{RedisConn, RedisError, RedisUrl};
use super::{uuid4, Attempt, UrlError};

/// How long to wait for replies to one broadcast (Celery's `inspect` waits 1 s by default);
/// the wait ends earlier once every expected worker has answered.
const REPLY_WINDOW: Duration = Duration::from_secs(2);
/// A shorter ping window than this is cut short by the deadline, not a verdict on the workers.
const MIN_PING_WINDOW: Duration = Duration::from_millis(250);

/// Celery's broker, from `CELERY_BROKER_URL`.
#[derive(Debug, Clone)]
pub enum Broker {
    /// `redis://` or `rediss://` (ElastiCache).
    Redis(RedisUrl),
    /// `amqp://` or `amqps://` (RabbitMQ, Amazon MQ).
    Amqp(AmqpUrl),
}

impl Broker {
    /// Parses a broker URL by its scheme.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        // Only a well-formed scheme is echoed: a mistyped URL (`rediss//:PASSWORD@host`) has
        // none, and its text must not reach the message.
        let scheme = text.trim().split_once("://").map(|(s, _)| s).filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        let invalid = |reason: String| UrlError::Invalid {
            masked: super::mask_url(text.trim()),
            reason,
        };
        match scheme {
            Some("redis" | "rediss") => RedisUrl::parse(text).map(Broker::Redis),
            Some("amqp" | "amqps" | "pyamqp") => AmqpUrl::parse(text).map(Broker::Amqp),
            Some(other) => Err(invalid(format!(
                "unsupported scheme {other:?}: expected redis://, rediss://, amqp:// or amqps://"
            ))),
            None => Err(invalid(
                "no scheme: expected redis://, rediss://, amqp:// or amqps://".into(),
            )),
        }
    }

    /// The URL with its password masked.
    pub fn masked(&self) -> String {
        match self {
            Broker::Redis(u) => u.endpoint.masked(),
            Broker::Amqp(u) => u.endpoint.masked(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CeleryCheck {
    pub broker: Broker,
    pub min_workers: usize,
    pub queues: Vec<String>,
    pub timeout: Duration,
    pub required: bool,
}

/// An open connection to the broker, ready to broadcast control requests.
enum Mailbox<'a> {
    Redis { conn: RedisConn, url: &'a RedisUrl },
    Amqp(Box<AmqpMailbox>, &'a AmqpUrl),
}

impl Mailbox<'_> {
    async fn broadcast(
        &mut self,
        method: &str,
        destination: Option<&[String]>,
        window: Duration,
    ) -> Result<Replies, String> {
        match self {
            Mailbox::Redis { conn, url } => {
                redis_broadcast(conn, url.db, method, destination, window)
                    .await
                    .map_err(|e| format!("broker: {}", e.describe(url)))
            }
            Mailbox::Amqp(mailbox, url) => mailbox
                .broadcast(method, destination, window)
                .await
                .map_err(|e| format!("broker: {}", e.describe(url))),
        }
    }

    /// Where the requests go: the Redis channel, or the AMQP exchange.
    fn name(&self) -> String {
        match self {
            Mailbox::Redis { url, .. } => pidbox::channel(url.db),
            Mailbox::Amqp(..) => pidbox::EXCHANGE.to_string(),
        }
    }

    /// Why nobody heard the request, when the transport says that no worker listens.
    fn nobody_listens(&self) -> String {
        match self {
            Mailbox::Redis { url, .. } => format!(
                "no worker listens on the broker (PUBLISH {} reached 0 clients): are the Celery workers running, on this broker and database?",
                pidbox::channel(url.db)
            ),
            Mailbox::Amqp(_, url) => format!(
                "no worker listens on the broker (the ping to {} on vhost {:?} was returned unroutable): are the Celery workers running, on this broker and vhost?",
                pidbox::EXCHANGE, url.vhost
            ),
        }
    }
}

impl CeleryCheck {
    pub(crate) async fn attempt(&self, left: Duration) -> Attempt {
        match &self.broker {
            Broker::Redis(url) => {
                let conn = match RedisConn::connect(url, left).await {
                    Ok(c) => c,
                    Err(e) if e.is_unreachable() => {
                        return Attempt::unreachable(format!("broker: {}", e.describe(url)))
                    }
                    Err(e) if e.is_for_good() => {
                        return Attempt::fail_for_good(format!("broker: {}", e.describe(url)))
                    }
                    Err(e) => return Attempt::fail(format!("broker: {}", e.describe(url))),
                };
                let mut mailbox = Mailbox::Redis { conn, url };
                self.inspect(&mut mailbox, left)
                    .await
                    .unwrap_or_else(Attempt::fail)
            }
            Broker::Amqp(url) => {
                let started = Instant::now();
                let mailbox = match AmqpMailbox::connect(url, left).await {
                    Ok(m) => m,
                    Err(e) if e.is_unreachable() => {
                        return Attempt::unreachable(format!("broker: {}", e.describe(url)))
                    }
                    Err(e) if e.is_for_good() => {
                        return Attempt::fail_for_good(format!("broker: {}", e.describe(url)))
                    }
                    Err(e) => return Attempt::fail(format!("broker: {}", e.describe(url))),
                };
                let mut mailbox = Mailbox::Amqp(Box::new(mailbox), url);
                let outcome = self
                    .inspect(&mut mailbox, left.saturating_sub(started.elapsed()))
                    .await
                    .unwrap_or_else(Attempt::fail);
                if let Mailbox::Amqp(m, _) = mailbox {
                    m.close().await;
                }
                outcome
            }
        }
    }

    async fn inspect(&self, mailbox: &mut Mailbox<'_>, left: Duration) -> Result<Attempt, String> {
        let until = crate::config::instant_after(left);
        let window =
            |share: u32| REPLY_WINDOW.min(until.saturating_duration_since(Instant::now()) / share);
        let ping_window = window(2);
        let ping = mailbox.broadcast("ping", None, ping_window).await?;
        let workers: Vec<String> = ping
            .answers
            .iter()
            .filter(|(_, v)| v.get("ok").and_then(Value::as_str) == Some("pong"))
            .map(|(k, _)| k.clone())
            .collect();
        if workers.len() < self.min_workers {
            let waited = crate::output::human_duration(ping_window);
            let detail = match (workers.is_empty(), ping.listeners) {
                (true, Some(0)) => mailbox.nobody_listens(),
                (true, Some(n)) => format!("no worker answered the ping within {waited} ({n} client(s) subscribed to {}: a stuck or killed worker?)", mailbox.name()),
                (true, None) => format!("no worker answered the ping within {waited} (the mailbox has listeners: a stuck or killed worker?)"),
                (false, _) => format!(
                    "{} of at least {} worker(s) answered the ping within {waited}: {}",
                    workers.len(),
                    self.min_workers,
                    workers.join(", ")
                ),
            };
            // A ping squeezed into the deadline's last milliseconds says nothing about the
            // workers: the verdict then keeps the last attempt that had time to hear them.
            return Ok(Attempt::fail(detail).cut_short(ping_window < MIN_PING_WINDOW));
        }
        let mut consumed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if !self.queues.is_empty() {
            let replies = mailbox
                .broadcast("active_queues", Some(&workers), window(1))
                .await?;
            for (worker, queues) in &replies.answers {
                consumed.insert(worker.clone(), pidbox::queue_names(queues));
            }
        }
        let unconsumed = super::unconsumed(&self.queues, consumed.values().map(Vec::as_slice));
        let who = workers
            .iter()
            .map(|w| match consumed.get(w) {
                Some(qs) => format!("{w} [{}]", qs.join(", ")),
                None if self.queues.is_empty() => w.clone(),
                None => format!("{w} [no answer]"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        if !unconsumed.is_empty() {
            return Ok(Attempt::fail(format!(
                "no worker consumes {}: {} answered: {who}; hint: start a worker with -Q {} (CELERY_QUEUES)",
                unconsumed.join(", "),
                plural(workers.len(), "worker"),
                self.queues.join(",")
            )));
        }
        let tls = match mailbox {
            Mailbox::Amqp(m, _) => match m.verified {
                Some(true) => ", TLS, certificate verified",
                Some(false) => ", TLS, certificate not verified (ssl_cert_reqs=none)",
                None => "",
            },
            Mailbox::Redis { .. } => "",
        };
        Ok(Attempt::pass(format!(
            "{} answered: {who}{tls}",
            plural(workers.len(), "worker")
        )))
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Publishes a control request over Redis and collects the replies until `window` ends or
/// every expected worker has answered; cleans up the reply binding and queue afterwards.
async fn redis_broadcast(
    conn: &mut RedisConn,
    db: u32,
    method: &str,
    destination: Option<&[String]>,
    window: Duration,
) -> Result<Replies, RedisError> {
    let reply_key = uuid4();
    let ticket = uuid4();
    let binding = pidbox::binding_member(&reply_key);
    let queue = pidbox::reply_queue(&reply_key);
    conn.call::<i64>(
        "SADD",
        &[pidbox::binding_key().as_bytes(), binding.as_bytes()],
    )
    .await?;
    let result = publish_and_collect(
        conn,
        db,
        method,
        destination,
        window,
        &reply_key,
        &ticket,
        &queue,
    )
    .await;
    let cleanup = async {
        conn.call::<i64>(
            "SREM",
            &[pidbox::binding_key().as_bytes(), binding.as_bytes()],
        )
        .await?;
        conn.call::<i64>("DEL", &[queue.as_bytes()]).await
    };
    let cleaned = cleanup.await;
    let replies = result?;
    cleaned?;
    Ok(replies)
}
#[allow(clippy::too_many_arguments)]
async fn publish_and_collect(
    conn: &mut RedisConn,
    db: u32,
    method: &str,
    destination: Option<&[String]>,
    window: Duration,
    reply_key: &str,
    ticket: &str,
    queue: &str,
) -> Result<Replies, RedisError> {
    let request = Request {
        method,
        destination,
        reply_key,
        ticket,
        delivery_tag: &uuid4(),
    }
    .encode();
    let listeners: i64 = conn
        .call(
            "PUBLISH",
            &[pidbox::channel(db).as_bytes(), request.as_bytes()],
        )
        .await?;
    let expected = destination.map_or(listeners.max(0) as usize, <[String]>::len);
    let mut answers = BTreeMap::new();
    let until = crate::config::instant_after(window);
    let mut whole_seconds = false;
    while answers.len() < expected {
        let left = until.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            break;
        }
        // Redis 6 and later take a fractional timeout; older servers whole seconds.
        let secs = if whole_seconds {
            left.as_secs_f64().ceil().max(1.0).to_string()
        } else {
            format!("{:.3}", left.as_secs_f64())
        };
        // A list name and the message, or nothing when the wait ended.
        let reply: Option<(Vec<u8>, Vec<u8>)> = match conn
            .call("BRPOP", &[queue.as_bytes(), secs.as_bytes()])
            .await
        {
            Err(RedisError::Server { message, .. })
                if !whole_seconds && message.contains("timeout") =>
            {
                whole_seconds = true;
                continue;
            }
            r => r?,
        };
        let Some((_, raw)) = reply else { break };
        match pidbox::decode_reply(&raw, ticket) {
            Ok(Some(map)) => answers.extend(map),
            Ok(None) => {}
            Err(e) => tracing::warn!("ignoring a reply on {queue}: {e}"),
        }
    }
    Ok(Replies {
        listeners: Some(listeners),
        answers,
    })
}

#[cfg(test)]
mod broker_url_tests {
    use super::*;

    #[test]
    fn a_mistyped_broker_url_never_echoes_its_password() {
        for text in [
            "rediss//:Zq8rPassw0rd@cache.example:6379/0",
            "amqps:/user:Zq8rPassw0rd@mq.example:5671/antenna",
            "redis:Zq8rPassw0rd@cache.example",
        ] {
            let err = Broker::parse(text).unwrap_err().to_string();
            assert!(!err.contains("Zq8rPassw0rd"), "{err}");
            assert!(err.contains("expected redis://"), "{err}");
        }
        let err = Broker::parse("http://u:Zq8rPassw0rd@h/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported scheme \"http\""), "{err}");
        assert!(!err.contains("Zq8rPassw0rd"), "{err}");
    }
}
