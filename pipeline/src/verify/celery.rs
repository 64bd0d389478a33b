//! The Celery check: ping the workers over the Redis broker (pidbox), then ask each one's
//! `active_queues` and check that every configured queue has a consumer. No Python.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::pidbox::{self, Request};
use super::redis::{RedisConn, RedisError, RedisUrl, Value as Resp};
use super::{uuid4, Attempt};

/// How long to wait for replies to one broadcast (Celery's `inspect` waits 1 s by default);
/// the wait ends earlier once every subscribed worker has answered.
const REPLY_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct CeleryCheck {
    pub broker: RedisUrl,
    pub min_workers: usize,
    pub queues: Vec<String>,
    pub timeout: Duration,
    pub required: bool,
}

/// What a broadcast brought back.
struct Replies {
    /// Clients subscribed to the pidbox channel when the request was published.
    listeners: i64,
    answers: BTreeMap<String, Value>,
}

impl CeleryCheck {
    pub(crate) async fn attempt(&self, left: Duration) -> Attempt {
        let mut conn = match RedisConn::connect(&self.broker, left).await {
            Ok(c) => c,
            Err(e) if e.is_unreachable() => {
                return Attempt::unreachable(format!("broker: {}", e.describe(&self.broker)))
            }
            Err(
                e
                @ (RedisError::Certificate { .. } | RedisError::Auth(_) | RedisError::TlsSetup(_)),
            ) => return Attempt::fail_for_good(format!("broker: {}", e.describe(&self.broker))),
            Err(e) => return Attempt::fail(format!("broker: {}", e.describe(&self.broker))),
        };
        match self.inspect(&mut conn, left).await {
            Ok(a) => a,
            Err(e) => Attempt::fail(format!("broker: {}", e.describe(&self.broker))),
        }
    }

    async fn inspect(&self, conn: &mut RedisConn, left: Duration) -> Result<Attempt, RedisError> {
        let until = crate::config::instant_after(left);
        let window =
            |share: u32| REPLY_WINDOW.min(until.saturating_duration_since(Instant::now()) / share);
        let ping_window = window(2);
        let ping = broadcast(conn, self.broker.db, "ping", None, ping_window).await?;
        let workers: Vec<String> = ping
            .answers
            .iter()
            .filter(|(_, v)| v.get("ok").and_then(Value::as_str) == Some("pong"))
            .map(|(k, _)| k.clone())
            .collect();
        let channel = pidbox::channel(self.broker.db);
        if workers.len() < self.min_workers {
            let detail = if workers.is_empty() && ping.listeners == 0 {
                format!("no worker listens on the broker (PUBLISH {channel} reached 0 clients): are the Celery workers running, on this broker and database?")
            } else if workers.is_empty() {
                format!("no worker answered the ping within {} ({} client(s) subscribed to {channel}: a stuck or killed worker?)", crate::output::human_duration(ping_window), ping.listeners)
            } else {
                format!(
                    "{} of at least {} worker(s) answered the ping within {}: {}",
                    workers.len(),
                    self.min_workers,
                    crate::output::human_duration(ping_window),
                    workers.join(", ")
                )
            };
            return Ok(Attempt::fail(detail));
        }
        let mut consumed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if !self.queues.is_empty() {
            let replies = broadcast(
                conn,
                self.broker.db,
                "active_queues",
                Some(&workers),
                window(1),
            )
            .await?;
            for (worker, queues) in &replies.answers {
                consumed.insert(worker.clone(), pidbox::queue_names(queues));
            }
        }
        let unconsumed: Vec<&str> = self
            .queues
            .iter()
            .filter(|q| !consumed.values().any(|qs| qs.contains(q)))
            .map(String::as_str)
            .collect();
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
        Ok(Attempt::pass(format!(
            "{} answered: {who}",
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

/// Publishes a control request and collects the replies until `window` ends or every
/// expected worker has answered; cleans up the reply binding and queue afterwards.
async fn broadcast(
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
    conn.call(&[
        b"SADD",
        pidbox::binding_key().as_bytes(),
        binding.as_bytes(),
    ])
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
        conn.call(&[
            b"SREM",
            pidbox::binding_key().as_bytes(),
            binding.as_bytes(),
        ])
        .await?;
        conn.call(&[b"DEL", queue.as_bytes()]).await
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
    let listeners = match conn
        .call(&[
            b"PUBLISH",
            pidbox::channel(db).as_bytes(),
            request.as_bytes(),
        ])
        .await?
    {
        Resp::Int(n) => n,
        other => {
            return Err(RedisError::Protocol(format!(
                "PUBLISH answered {other:?} instead of a number"
            )))
        }
    };
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
        let reply = match conn
            .call(&[b"BRPOP", queue.as_bytes(), secs.as_bytes()])
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
        match reply {
            Resp::Array(Some(items)) if items.len() == 2 => {
                let Resp::Bulk(Some(raw)) = &items[1] else {
                    continue;
                };
                match pidbox::decode_reply(raw, ticket) {
                    Ok(Some(map)) => answers.extend(map),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("ignoring a reply on {queue}: {e}"),
                }
            }
            Resp::Array(None) | Resp::Bulk(None) => break,
            other => return Err(RedisError::Protocol(format!("BRPOP answered {other:?}"))),
        }
    }
    Ok(Replies { listeners, answers })
}
